// LoRA inference overhead on a random GPT-2-124M (fp32); compare with bench/python/bench_lora.py
// (same workloads in Python PEFT), which also runs this binary and prints the figures side by side.
//
//   bench_lora [rounds=7]
//
// Workloads (eval, no grad, peft::init_runtime() threads):
//   [4, 128]: base forward; unmerged LoRA r=8 on c_attn and on all-linear (overhead vs base);
//             merged (merge_adapter) c_attn and all-linear adapters (vs base).
//   [8, 128]: one active adapter (r=8, c_attn) vs mixed-adapter batches whose adapter_names cycle
//             over 1, 4 and 8 distinct adapters (throughput relative to the single adapter).
//   adapter load: load_adapter of a saved c_attn r=8 folder into the live model (median).
// Each round times every variant once, in turn, so load from other processes hits all of them
// alike; a figure is the median over the rounds and a ratio the median of the per-round ratios.
// Output lines: "RESULT <metric> <value>".
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iomanip>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "peft/core/runtime.h"
#include "peft/models/model.h"
#include "peft/peft_model.h"
#include "peft/tuners/lora/config.h"

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double time_ms(const std::function<void()>& fn) {
  const auto t0 = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

std::string loadavg() {
  std::ifstream f("/proc/loadavg");
  std::string a, b, c;
  f >> a >> b >> c;
  return a + " " + b + " " + c;
}

// Times named variants in rounds (each variant once per round, in order, after one warm-up each).
struct Rounds {
  std::vector<std::pair<std::string, std::function<void()>>> variants;
  std::map<std::string, std::vector<double>> ms;
  void add(const std::string& name, std::function<void()> fn) { variants.emplace_back(name, std::move(fn)); }
  void run(int rounds) {
    for (auto& [n, fn] : variants) fn();  // warm-up
    for (int r = 0; r < rounds; ++r)
      for (auto& [n, fn] : variants) ms[n].push_back(time_ms(fn));
  }
  double med(const std::string& n) const { return median(ms.at(n)); }
  /// Median over rounds of a[i] / b[i].
  double ratio(const std::string& a, const std::string& b) const {
    std::vector<double> r;
    for (std::size_t i = 0; i < ms.at(a).size(); ++i) r.push_back(ms.at(a)[i] / ms.at(b)[i]);
    return median(r);
  }
};

peft::LoraConfig lora(peft::TargetSpec targets) {
  peft::LoraConfig c;
  c.r = 8;
  c.lora_alpha = 16;
  c.task_type = peft::TaskType::CausalLM;
  c.target_modules = std::move(targets);
  c.fan_in_fan_out = true;          // GPT-2 Conv1D
  c.init_lora_weights = "false";    // random A and B: merged weights really differ from base
  c.inference_mode = true;
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  peft::restart_with_suitable_blas(argv);  // OpenBLAS's right kernels on CPUs it does not recognise
  const int rounds = argc > 1 ? std::max(1, std::atoi(argv[1])) : 7;
  const auto rt = peft::init_runtime();
  std::cout << "threads " << rt.intra_op_threads << ", BLAS " << rt.blas_library << ", rounds " << rounds
            << ", loadavg " << loadavg() << "\n";
  torch::NoGradGuard ng;
  torch::manual_seed(0);
  const nlohmann::json j = {{"model_type", "gpt2"}, {"n_embd", 768},       {"n_layer", 12},
                            {"n_head", 12},         {"vocab_size", 50257}, {"n_positions", 1024}};
  auto base = peft::models::create_model(peft::models::ModelConfig(j), peft::models::TaskHead::CausalLM);
  base->eval();

  auto inputs = [](int64_t b) {
    peft::models::ModelInputs in;
    in.input_ids = torch::randint(50257, {b, 128}, torch::kLong);
    in.attention_mask = torch::ones({b, 128}, torch::kLong);
    return in;
  };
  const auto in4 = inputs(4);
  const auto in8 = inputs(8);

  // Adapters: a0..a7 on c_attn (a0 is the c_attn adapter of part 1), "all" on all-linear.
  auto pm = peft::get_peft_model(base, lora(std::vector<std::string>{"c_attn"}), "a0");
  for (int k = 1; k < 8; ++k) pm->add_adapter("a" + std::to_string(k), lora(std::vector<std::string>{"c_attn"}));
  pm->add_adapter("all", lora(peft::TargetSpec("all-linear")));
  pm->base_model().eval();
  std::cout << "adapted modules: c_attn " << pm->adapted_modules("a0").size() << ", all-linear "
            << pm->adapted_modules("all").size() << "\n";

  // ---- part 1: [4, 128] overhead
  Rounds p1;
  p1.add("base", [&] {
    auto g = pm->disable_adapter();
    pm->forward(in4);
  });
  p1.add("lora_c_attn", [&] {
    pm->set_adapter("a0");
    pm->forward(in4);
  });
  p1.add("lora_all_linear", [&] {
    pm->set_adapter("all");
    pm->forward(in4);
  });
  // Merge/unmerge happen outside the timed region.
  std::map<std::string, std::vector<double>> merged_ms;
  auto merged = [&](const std::string& name) {
    pm->set_adapter(name);
    pm->merge_adapter();
    const double t = time_ms([&] { pm->forward(in4); });
    pm->unmerge_adapter();
    return t;
  };
  for (auto& [n, fn] : p1.variants) fn();  // warm-up
  merged("a0");
  merged("all");
  for (int r = 0; r < rounds; ++r) {
    for (auto& [n, fn] : p1.variants) p1.ms[n].push_back(time_ms(fn));
    p1.ms["merged_c_attn"].push_back(merged("a0"));
    p1.ms["merged_all_linear"].push_back(merged("all"));
  }
  std::cout << "loadavg after part 1: " << loadavg() << "\n";

  // ---- part 2: [8, 128] mixed-adapter batches (only c_attn adapters present)
  pm->delete_adapter("all");
  pm->set_adapter("a0");
  auto names = [](int k) {
    std::vector<std::string> v;
    for (int i = 0; i < 8; ++i) v.push_back("a" + std::to_string(i % k));
    return v;
  };
  {
    // Sanity: routing every row to a0 must reproduce the single-adapter forward.
    const at::Tensor single = pm->forward(in8).logits;
    const at::Tensor routed = pm->forward(in8, names(1)).logits;
    std::cout << "check: mixed(1 adapter) vs single max |diff| = "
              << (single - routed).abs().max().item<double>() << "\n";
  }
  Rounds p2;
  p2.add("single_adapter", [&] { pm->forward(in8); });
  for (int k : {1, 4, 8}) {
    const auto v = names(k);
    p2.add("mixed_" + std::to_string(k), [&pm, &in8, v] { pm->forward(in8, v); });
  }
  p2.run(rounds);
  std::cout << "loadavg after part 2: " << loadavg() << "\n";

  // ---- part 3: adapter load time: a saved c_attn r=8 adapter folder (adapter_config.json +
  // adapter_model.safetensors) read and injected into the live model, then deleted again.
  const std::string dir =
      (std::filesystem::temp_directory_path() / ("peft_bench_lora_" + std::to_string(::getpid()))).string();
  pm->save_pretrained(dir, {"a0"});
  const std::string adir = std::filesystem::exists(dir + "/a0/adapter_config.json") ? dir + "/a0" : dir;
  std::vector<double> load_ms;
  for (int r = 0; r <= rounds; ++r) {  // the first load is a warm-up
    const std::string n = "load" + std::to_string(r);
    const double t = time_ms([&] { pm->load_adapter(adir, n); });
    pm->delete_adapter(n);
    if (r > 0) load_ms.push_back(t);
  }
  std::filesystem::remove_all(dir);
  std::cout << "\n";

  // ---- report
  std::cout << std::fixed << std::setprecision(1);
  const double b = p1.med("base");
  std::cout << "[4, 128] forward (median of " << rounds << ")\n";
  std::cout << "  base                     " << std::setw(8) << b << " ms\n";
  auto line1 = [&](const std::string& label, const std::string& key, const char* what) {
    const double r = p1.ratio(key, "base");
    std::cout << "  " << std::left << std::setw(25) << label << std::right << std::setw(8) << p1.med(key) << " ms  "
              << std::showpos << std::setprecision(2) << (r - 1) * 100 << std::noshowpos << std::setprecision(1)
              << "% " << what << "\n";
    std::cout << "RESULT " << key << "_ms " << p1.med(key) << "\nRESULT " << key << "_vs_base "
              << std::setprecision(4) << r << std::setprecision(1) << "\n";
  };
  std::cout << "RESULT base_ms " << b << "\n";
  line1("unmerged LoRA c_attn", "lora_c_attn", "overhead (target <= 5%)");
  line1("unmerged LoRA all-linear", "lora_all_linear", "overhead");
  line1("merged c_attn", "merged_c_attn", "vs base (target ~0)");
  line1("merged all-linear", "merged_all_linear", "vs base (target ~0)");
  const double s = p2.med("single_adapter");
  std::cout << "[8, 128] mixed-adapter batches (median of " << rounds << ")\n";
  std::cout << "  single active adapter    " << std::setw(8) << s << " ms  (" << std::setprecision(0)
            << 1024 / s * 1e3 << " tok/s)\n" << std::setprecision(1);
  std::cout << "RESULT single_adapter_ms " << s << "\n";
  for (int k : {1, 4, 8}) {
    const std::string key = "mixed_" + std::to_string(k);
    const double thr = 1.0 / p2.ratio(key, "single_adapter");  // throughput relative to single
    std::cout << "  mixed, " << k << " adapter" << (k > 1 ? "s " : "  ") << "       " << std::setw(8)
              << p2.med(key) << " ms  " << std::setprecision(3) << thr << "x single (target >= 0.9)\n"
              << std::setprecision(1);
    std::cout << "RESULT " << key << "_ms " << p2.med(key) << "\nRESULT " << key << "_rel_throughput "
              << std::setprecision(4) << thr << std::setprecision(1) << "\n";
  }
  std::cout << "adapter load (c_attn r=8, 12 modules)  " << median(load_ms) << " ms\n"
            << "RESULT adapter_load_ms " << median(load_ms) << "\n";
  return 0;
}
