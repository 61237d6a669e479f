// Model forward and greedy-generation throughput; compare with bench/python/bench_models.py
// (same workloads in transformers), which also runs this binary and prints the ratios.
//
//   bench_models <stories260K-hf folder> [stories260K|gpt2-124M]
//   (folder from: peft convert models/stories260K/stories260K.bin <dir>; a model name runs only that one)
//
// Workloads: forward of a [4, 128] batch (no grad), and greedy generation of 64 new tokens from
// a 16-token prompt, batch 1 (KV cache, no EOS stop). Output lines: "RESULT <model> <metric> <value>".
#include <torch/torch.h>

#include <chrono>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>

#include "peft/core/runtime.h"
#include "peft/models/generation.h"
#include "peft/models/model.h"

namespace {

double seconds_best_of(int reps, const std::function<void()>& fn) {
  fn();  // warm-up
  double best = 1e30;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

void run(const std::string& name, peft::models::PretrainedModel& m, int64_t vocab, int fwd_reps, int gen_reps) {
  torch::NoGradGuard ng;
  m.eval();
  torch::manual_seed(0);
  const at::Tensor ids = torch::randint(vocab, {4, 128}, torch::kLong);
  const at::Tensor mask = torch::ones({4, 128}, torch::kLong);
  const double fwd = seconds_best_of(fwd_reps, [&] {
    peft::models::ModelInputs in;
    in.input_ids = ids;
    in.attention_mask = mask;
    m.forward(in);
  });
  const at::Tensor prompt = torch::randint(vocab, {1, 16}, torch::kLong);
  peft::models::GenerationConfig g;
  g.max_new_tokens = 64;
  g.pad_token_id = 0;
  int64_t produced = 0;
  const double gen = seconds_best_of(gen_reps, [&] {
    produced = peft::models::generate(m, prompt, at::Tensor(), g).size(1) - prompt.size(1);
  });
  std::cout << "RESULT " << name << " forward_tok_s " << 4 * 128 / fwd << "\n"
            << "RESULT " << name << " generate_tok_s " << produced / gen << "\n";
  std::cout << name << ": forward [4, 128] " << fwd * 1e3 << " ms (" << 4 * 128 / fwd << " tok/s); generate "
            << produced << " tokens " << gen * 1e3 << " ms (" << produced / gen << " tok/s)" << std::endl;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    std::cerr << "usage: bench_models <stories260K-hf folder> [stories260K|gpt2-124M]\n";
    return 2;
  }
  const auto rt = peft::init_runtime();
  std::cout << "threads " << rt.intra_op_threads << ", BLAS " << rt.blas_library << "\n";
  const std::string only = argc > 2 ? argv[2] : "";
  if (only.empty() || only == "stories260K") {
    auto m = peft::models::load_model(argv[1]);
    run("stories260K", *m, m->config().json().value("vocab_size", int64_t{512}), 20, 5);
  }
  if (only.empty() || only == "gpt2-124M") {
    const nlohmann::json j = {{"model_type", "gpt2"}, {"n_embd", 768},     {"n_layer", 12},
                              {"n_head", 12},         {"vocab_size", 50257}, {"n_positions", 1024}};
    auto m = peft::models::create_model(peft::models::ModelConfig(j), peft::models::TaskHead::CausalLM);
    run("gpt2-124M", *m, 50257, 3, 2);
  }
  return 0;
}
