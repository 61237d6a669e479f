// Data-parallel training throughput: the same LoRA fine-tuning job (global batch B, sequence 128)
// on 1 rank and on 2 local ranks (launcher, loopback Gloo), through the real Trainer. Prints the
// tokens/s of each and the all-reduce time per step (the trainer's calls: token counts, then the
// bucketed gradients + loss; timed by a wrapper around the process group), and the gradient
// all-reduce alone with the ranks lined up by a barrier (allreduce_synced_ms).
//
//   bench_distributed [steps=12] [global_batch=16]
//
// Model: random Llama, hidden 128, 4 layers, vocab 2048 (~1.3M params); LoRA r=16 on every
// linear layer. Two ranks get 1 ATen thread and cores/2 OpenBLAS threads each (the launcher's
// defaults); one rank runs as a plain `peft train` does. Output: "RESULT <k>=<v> ...".
#include <torch/torch.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>

#include "peft/core/runtime.h"
#include "peft/distributed/collective.h"
#include "peft/distributed/launcher.h"
#include "peft/models/model.h"
#include "peft/peft_model.h"
#include "peft/train/trainer.h"
#include "peft/tuners/lora/config.h"

namespace {

namespace dist = peft::distributed;
using Clock = std::chrono::steady_clock;

constexpr int64_t kSeq = 128;
constexpr int kWarmup = 2;

// Forwards to the process group and adds up the wall time of all_reduce_sum.
class TimedCollective final : public dist::Collective {
 public:
  explicit TimedCollective(std::shared_ptr<dist::Collective> inner) : inner_(std::move(inner)) {}
  int rank() const override { return inner_->rank(); }
  int world_size() const override { return inner_->world_size(); }
  void all_reduce_sum(const std::vector<at::Tensor>& t) override {
    const auto t0 = Clock::now();
    inner_->all_reduce_sum(t);
    seconds += std::chrono::duration<double>(Clock::now() - t0).count();
    bytes += [&] {
      int64_t b = 0;
      for (const auto& x : t) b += x.numel() * x.element_size();
      return b;
    }();
  }
  void barrier() override { inner_->barrier(); }
  double seconds = 0;
  int64_t bytes = 0;

 private:
  std::shared_ptr<dist::Collective> inner_;
};

int worker(int steps, int64_t global_batch) {
  const auto rt = peft::init_runtime();
  const auto env = dist::env_from_environment();
  torch::manual_seed(0);
  const nlohmann::json j = {{"model_type", "llama"},       {"hidden_size", 128}, {"intermediate_size", 344},
                            {"num_hidden_layers", 4},      {"num_attention_heads", 4}, {"num_key_value_heads", 4},
                            {"vocab_size", 2048},          {"max_position_embeddings", 256}, {"rms_norm_eps", 1e-5}};
  auto base = peft::models::create_model(peft::models::ModelConfig(j), peft::models::TaskHead::CausalLM);
  peft::LoraConfig c;
  c.task_type = peft::TaskType::CausalLM;
  c.r = 16;
  c.lora_alpha = 32;
  c.target_modules = peft::TargetSpec(std::vector<std::string>{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                               "up_proj", "down_proj"});
  auto pm = peft::get_peft_model(base, c);
  peft::train::Dataset d;
  std::mt19937_64 rng(1);
  for (int64_t i = 0; i < global_batch * (steps + kWarmup); ++i) {
    peft::train::Example e;
    for (int64_t t = 0; t < kSeq; ++t) e.input_ids.push_back(static_cast<int64_t>(rng() % 2048));
    e.labels = e.input_ids;
    d.examples.push_back(e);
  }
  peft::train::TrainingArguments a;
  a.output_dir = (std::filesystem::temp_directory_path() / ("peft_bench_dist_" + std::to_string(env.world_size))).string();
  a.max_steps = steps + kWarmup;
  a.per_device_train_batch_size = global_batch / env.world_size;
  a.learning_rate = 1e-4;
  a.logging_steps = 0;
  a.progress_bar = false;
  a.tensorboard = false;
  peft::train::Trainer tr(pm, a, d, nullptr, 0);
  std::shared_ptr<TimedCollective> timed;
  if (env.world_size > 1) {
    timed = std::make_shared<TimedCollective>(dist::init_process_group(env));
    tr.set_collective(timed);
  }
  Clock::time_point t_start;
  double reduce_at_start = 0;
  tr.on_step = [&](int64_t step, double, double) {
    if (step == kWarmup) {
      t_start = Clock::now();
      reduce_at_start = timed ? timed->seconds : 0;
    }
  };
  int64_t step_bytes = 0;
  tr.train();
  const double secs = std::chrono::duration<double>(Clock::now() - t_start).count();
  if (timed) step_bytes = timed->bytes / (steps + kWarmup);
  // The same gradient all-reduce with the ranks lined up by a barrier first: the transfer alone,
  // without waiting for the slower rank.
  double synced_ms = 0;
  if (timed) {
    std::vector<at::Tensor> grads;
    for (const auto& p : pm->base_model().parameters())
      if (p.requires_grad()) grads.push_back(torch::randn_like(p));
    constexpr int kReps = 20;
    for (int i = 0; i < kReps; ++i) {
      timed->barrier();
      const auto t0 = Clock::now();
      timed->all_reduce_sum(grads);
      synced_ms += std::chrono::duration<double, std::milli>(Clock::now() - t0).count() / kReps;
    }
  }
  if (env.rank == 0) {
    const double reduce_ms = timed ? (timed->seconds - reduce_at_start) * 1000 / steps : 0.0;
    std::cout << std::fixed << std::setprecision(1) << "RESULT ranks=" << env.world_size
              << " aten_threads=" << rt.intra_op_threads << " openblas_threads="
              << (std::getenv("OPENBLAS_NUM_THREADS") ? std::getenv("OPENBLAS_NUM_THREADS") : "default")
              << " global_batch=" << global_batch
              << " tokens_per_s=" << static_cast<double>(global_batch * kSeq * steps) / secs
              << " step_ms=" << secs * 1000 / steps << " allreduce_ms_per_step=" << std::setprecision(2) << reduce_ms
              << " allreduce_bytes_per_step=" << step_bytes << " allreduce_synced_ms=" << synced_ms << "\n";
  }
  if (env.rank == 0) std::filesystem::remove_all(a.output_dir);  // only rank 0 wrote there
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  peft::restart_with_suitable_blas(argv);  // OpenBLAS's right kernels on CPUs it does not recognise
  std::vector<std::string> args(argv + 1, argv + argc);
  const bool is_rank = !args.empty() && args[0] == "--rank";
  if (is_rank) args.erase(args.begin());
  const int steps = args.size() > 0 ? std::max(1, std::atoi(args[0].c_str())) : 12;
  const int64_t batch = args.size() > 1 ? std::max(2, std::atoi(args[1].c_str())) : 16;
  if (is_rank) {
    try {
      return worker(steps, batch);
    } catch (const std::exception& e) {
      std::cerr << "error: " << e.what() << "\n";
      return 1;
    }
  }
  if (!dist::available()) {
    std::cerr << "bench_distributed: this build has no c10d Gloo (libgloo-dev)\n";
    return 1;
  }
  for (int n : {1, 2}) {
    dist::LaunchOptions o;
    o.nproc_per_node = n;
    o.master_port = 29000 + (::getpid() % 1000);
    const int rc = dist::launch(o, {std::filesystem::read_symlink("/proc/self/exe").string(), "--rank",
                                    std::to_string(steps), std::to_string(batch)});
    if (rc != 0) return rc;
  }
  return 0;
}
