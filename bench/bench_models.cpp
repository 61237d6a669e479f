// Model forward and greedy-generation throughput; compare with bench/python/bench_models.py
// (same workloads in transformers), which also runs this binary and prints the ratios.
//
//   bench_models <stories260K-hf folder> [stories260K|gpt2-124M]
//   (folder from: peft convert models/stories260K/stories260K.bin <dir>; a model name runs only that one)
//
// Workloads: forward of a [4, 128] batch (no grad), and greedy generation of 64 new tokens from
// a 16-token prompt, batch 1 (KV cache, no EOS stop). Output lines: "RESULT <model> <metric> <value>",
// tokens per wall-clock second and per process-CPU second (best of the repetitions).
#include <torch/torch.h>

#include <chrono>
#include <ctime>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>

#include "peft/core/runtime.h"
#include "peft/models/generation.h"
#include "peft/models/model.h"

namespace {

double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// Best wall time and best process CPU time (all threads) over `reps` calls after a warm-up.
// With one thread the CPU time is the figure the load of a shared machine disturbs least.
struct Timing {
  double wall = 1e30, cpu = 1e30;
};
Timing best_of(int reps, const std::function<void()>& fn) {
  fn();  // warm-up
  Timing t;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    const double c0 = cpu_seconds();
    fn();
    t.cpu = std::min(t.cpu, cpu_seconds() - c0);
    t.wall = std::min(t.wall, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return t;
}

void run(const std::string& name, peft::models::PretrainedModel& m, int64_t vocab, int fwd_reps, int gen_reps) {
  torch::NoGradGuard ng;
  m.eval();
  torch::manual_seed(0);
  const at::Tensor ids = torch::randint(vocab, {4, 128}, torch::kLong);
  const at::Tensor mask = torch::ones({4, 128}, torch::kLong);
  const Timing fwd = best_of(fwd_reps, [&] {
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
  const Timing gen = best_of(gen_reps, [&] {
    produced = peft::models::generate(m, prompt, at::Tensor(), g).size(1) - prompt.size(1);
  });
  std::cout << "RESULT " << name << " forward_tok_s " << 4 * 128 / fwd.wall << "\n"
            << "RESULT " << name << " generate_tok_s " << produced / gen.wall << "\n"
            << "RESULT " << name << " forward_cpu_tok_s " << 4 * 128 / fwd.cpu << "\n"
            << "RESULT " << name << " generate_cpu_tok_s " << produced / gen.cpu << "\n";
  std::cout << name << ": forward [4, 128] " << fwd.wall * 1e3 << " ms (" << 4 * 128 / fwd.wall
            << " tok/s; CPU " << fwd.cpu * 1e3 << " ms); generate " << produced << " tokens " << gen.wall * 1e3
            << " ms (" << produced / gen.wall << " tok/s; CPU " << gen.cpu * 1e3 << " ms)" << std::endl;
}

}  // namespace

int main(int argc, char** argv) {
  peft::restart_with_suitable_blas(argv);  // OpenBLAS's right kernels on CPUs it does not recognise
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
