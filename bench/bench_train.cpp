// Training throughput of one PEFT method through peft::train::Trainer; the C++ half of
// bench/python/bench_train.py, which writes the adapter config with Python PEFT, runs this
// binary and its own Python PEFT loop alternately on the same model, data and shapes, and prints
// the ratios. Run alone it prints the same RESULT lines.
//
//   bench_train --model DIR --adapter-config FILE [--batch 4] [--seq 128] [--steps 10] [--warmup 2]
//               [--threads N] [--load-4bit nf4|fp4] [--bf16]
//   bench_train --gemm-peak [--threads N] [--bf16]
//
// Data: fixed pseudo-random token ids (the same formula as the Python twin), labels = inputs,
// no shuffling, no evaluation, no intermediate checkpoints. Step time = interval between two
// optimizer steps as seen by Trainer::on_step (forward, backward, clipping, AdamW, schedule and,
// for AdaLoRA, the rank allocator). The first `warmup` steps are not timed. --bf16: the trainer's
// bf16 autocast (TrainingArguments::bf16; fp32 master weights), as transformers' Trainer with
// bf16=True; with --gemm-peak, the bf16 GEMM ceiling instead of fp32's.
// Output lines: "RESULT <metric> <value>".
#include <torch/csrc/autograd/profiler_legacy.h>
#include <torch/torch.h>

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "peft/config/peft_config.h"
#include "peft/core/runtime.h"
#include "peft/models/model.h"
#include "peft/models/quantized_model.h"
#include "peft/peft_model.h"
#include "peft/train/trainer.h"
#include "peft/tuners/registry.h"

namespace {

// User + system CPU time of the process, every thread.
double process_cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

double percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  if (v.empty()) return 0;
  const double pos = q * static_cast<double>(v.size() - 1);
  const auto lo = static_cast<std::size_t>(pos);
  const std::size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (pos - static_cast<double>(lo)) * (v[hi] - v[lo]);
}

// The fp32 GEMM ceiling of this machine with the runtime's thread settings: best GFLOP/s over
// square products large enough to be compute-bound.
double gemm_peak_gflops(bool bf16) {
  torch::NoGradGuard ng;
  double best = 0;
  const auto dt = bf16 ? at::kBFloat16 : at::kFloat;
  for (int64_t n : {512, 1024, 2048}) {
    const at::Tensor a = torch::randn({n, n}).to(dt), b = torch::randn({n, n}).to(dt);
    at::Tensor c = at::mm(a, b);
    const int reps = n >= 2048 ? 3 : 8;
    for (int r = 0; r < reps; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      at::mm_out(c, a, b);
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      best = std::max(best, 2.0 * n * n * n / s / 1e9);
    }
  }
  return best;
}

// Current resident set (VmRSS) in MB, to show where the peak comes from.
double rss_mb() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  return 0;
}

int usage() {
  std::cerr << "usage: bench_train --model DIR --adapter-config FILE [--batch N] [--seq N] [--steps N] "
               "[--warmup N] [--threads N] [--load-4bit nf4|fp4] [--bf16] [--profile TRACE.json]\n"
               "       bench_train --gemm-peak [--threads N] [--bf16]\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  peft::restart_with_suitable_blas(argv);  // OpenBLAS's right kernels on CPUs it does not recognise
  std::string model_dir, config_file;
  int64_t batch = 4, seq = 128, steps = 10, warmup = 2;
  int threads = 0;
  bool gemm = false, bf16 = false;
  std::string load_4bit;  // "nf4" / "fp4": QLoRA base (double quantisation, fp32 compute)
  std::string profile;    // LibTorch's profiler over the timed steps, as a Chrome trace
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error("missing value after " + a);
      return argv[++i];
    };
    try {
      if (a == "--model") model_dir = next();
      else if (a == "--adapter-config") config_file = next();
      else if (a == "--batch") batch = std::stoll(next());
      else if (a == "--seq") seq = std::stoll(next());
      else if (a == "--steps") steps = std::stoll(next());
      else if (a == "--warmup") warmup = std::stoll(next());
      else if (a == "--threads") threads = std::stoi(next());
      else if (a == "--gemm-peak") gemm = true;
      else if (a == "--load-4bit") load_4bit = next();
      else if (a == "--profile") profile = next();
      else if (a == "--bf16") bf16 = true;
      else return usage();
    } catch (const std::exception& e) {
      std::cerr << "bench_train: " << e.what() << "\n";
      return usage();
    }
  }
  const auto rt = peft::init_runtime(threads);
  (void)rt;
  std::cout << "RESULT torch_threads " << at::get_num_threads() << "\n";
  if (gemm) {
    std::cout << "RESULT gemm_peak_gflops " << gemm_peak_gflops(bf16) << std::endl;
    return 0;
  }
  if (model_dir.empty() || config_file.empty() || batch < 1 || seq < 2 || steps < 1 || warmup < 0) return usage();

  try {
    std::cout << "RESULT rss_start_mb " << rss_mb() << "\n";
    torch::manual_seed(0);  // the same adapter initialisation in every run
    peft::models::LoadOptions lo;
    if (!load_4bit.empty()) {
      lo.load_in_4bit = true;
      lo.bnb_4bit_quant_type = load_4bit;
      lo.bnb_4bit_use_double_quant = true;
    }
    auto base = peft::models::load_model(model_dir, lo);
    if (lo.load_in_4bit) peft::models::prepare_model_for_kbit_training(*base, false);
    std::cout << "RESULT rss_model_mb " << rss_mb() << "\n";
    auto cfg = peft::load_peft_config(config_file);
    cfg->inference_mode = false;
    auto pm = peft::get_peft_model(base, *cfg);
    const auto counts = pm->get_nb_trainable_parameters();
    std::cout << "RESULT trainable_params " << counts.first << "\nRESULT all_params " << counts.second << "\n";

    // Same ids as bench/python/bench_train.py: id = (1 + 7919 * k + 104729 * row) mod vocab.
    const int64_t vocab = base->word_embeddings().size(0);
    peft::train::Dataset data;
    const int64_t rows = batch * (steps + warmup);
    for (int64_t r = 0; r < rows; ++r) {
      peft::train::Example ex;
      for (int64_t k = 0; k < seq; ++k) ex.input_ids.push_back((1 + 7919 * k + 104729 * r) % vocab);
      ex.labels = ex.input_ids;
      data.examples.push_back(std::move(ex));
    }

    peft::train::TrainingArguments args;
    args.output_dir = (std::filesystem::temp_directory_path() / ("peft_bench_train_" + std::to_string(getpid()))).string();
    args.learning_rate = 1e-3;
    args.max_steps = steps + warmup;
    args.per_device_train_batch_size = batch;
    args.shuffle = false;
    args.progress_bar = false;
    args.tensorboard = false;
    args.logging_steps = 1000000;
    args.bf16 = bf16;
    peft::train::Trainer trainer(pm, args, data, nullptr, 0);
    std::vector<double> step_s;
    double cpu_s = 0;  // process CPU time (every thread) over the timed steps
    auto last = std::chrono::steady_clock::now();
    double last_cpu = process_cpu_seconds();
    std::unique_ptr<torch::autograd::profiler::RecordProfile> recording;
    trainer.on_step = [&](int64_t step, double, double) {
      const auto now = std::chrono::steady_clock::now();
      const double now_cpu = process_cpu_seconds();
      if (step > warmup) {
        step_s.push_back(std::chrono::duration<double>(now - last).count());
        cpu_s += now_cpu - last_cpu;
      }
      if (step == warmup && !profile.empty())
        recording = std::make_unique<torch::autograd::profiler::RecordProfile>(profile);
      last = now;
      last_cpu = now_cpu;
    };
    if (warmup == 0 && !profile.empty())
      recording = std::make_unique<torch::autograd::profiler::RecordProfile>(profile);
    const auto result = trainer.train();
    recording.reset();  // writes the trace
    std::filesystem::remove_all(args.output_dir);
    double total = 0;
    for (double s : step_s) total += s;
    std::cout << "RESULT tokens_per_s " << static_cast<double>(batch * seq * step_s.size()) / total << "\n"
              << "RESULT tokens_per_cpu_s " << static_cast<double>(batch * seq * step_s.size()) / cpu_s << "\n"
              << "RESULT step_ms_median " << 1e3 * percentile(step_s, 0.5) << "\n"
              << "RESULT step_ms_p90 " << 1e3 * percentile(step_s, 0.9) << "\n"
              << "RESULT final_loss " << result.step_losses.back() << "\n"
              << "RESULT peak_rss_mb " << peft::peak_rss_mb() << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "bench_train: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
