// 4-bit (NF4 + double quantisation) linear forward/backward throughput against the fp32 GEMM, and
// the weight bytes of a 4-bit model; compare with bench/python/bench_quant.py (bitsandbytes'
// Linear4bit on this CPU, same shapes), which also runs this binary and prints both.
//
//   bench_quant [rounds=7]
//
// Shapes: x [512, 768] through 768->3072 and 3072->768 (a GPT-2-small MLP), plus [1, 768] (one
// decoding row: fp32 forward takes the fused Highway GEMV). Forward = y = x·Wᵀ; backward = the
// input gradient grad·W (the weight is frozen).
// Each round times every variant once in turn; a figure is the median over the rounds.
// Output lines: "RESULT <metric> <value>".
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "peft/core/runtime.h"
#include "peft/models/model.h"
#include "peft/quant/linear4bit.h"

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double time_ms(const std::function<void()>& fn, int reps) {
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < reps; ++i) fn();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / reps;
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 7;
  const auto rt = peft::init_runtime();
  torch::NoGradGuard ng;
  torch::manual_seed(0);
  std::cout << "threads " << at::get_num_threads() << "\n";
  struct Shape {
    int64_t n, in, out;
  };
  for (const Shape s : {Shape{512, 768, 3072}, Shape{512, 3072, 768}, Shape{1, 768, 3072}}) {
    const at::Tensor W = torch::randn({s.out, s.in}) * 0.02;
    const at::Tensor x = torch::randn({s.n, s.in});
    const at::Tensor g = torch::randn({s.n, s.out});
    auto q = peft::quant::quantize_4bit(W.contiguous().data_ptr<float>(), {s.out, s.in},
                                        {peft::quant::QuantType::NF4, 64, true});
    peft::quant::Linear4bitWeight w4(std::move(q), "float32");
    peft::quant::Linear4bitWeight w4b(peft::quant::quantize_4bit(W.contiguous().data_ptr<float>(), {s.out, s.in},
                                                                 {peft::quant::QuantType::NF4, 64, true}),
                                      "bfloat16");
    const at::Tensor xb = x.to(at::kBFloat16), gb = g.to(at::kBFloat16);
    std::map<std::string, std::function<void()>> v = {
        {"fp32_fwd", [&] { at::linear(x, W); }},
        {"fp32_bwd", [&] { at::mm(g, W); }},
        {"nf4_fwd", [&] { w4.matmul(x); }},
        {"nf4_bwd", [&] { w4.matmul_t(g); }},
        {"nf4_bf16_fwd", [&] { w4b.matmul(xb); }},
        {"nf4_bf16_bwd", [&] { w4b.matmul_t(gb); }},
        {"dequant", [&] { w4.dequantize(); }},
    };
    const int reps = s.n == 1 ? 50 : 3;
    std::map<std::string, std::vector<double>> ms;
    for (auto& [k, f] : v) f();
    for (int r = 0; r < rounds; ++r)
      for (auto& [k, f] : v) ms[k].push_back(time_ms(f, reps));
    const std::string tag = std::to_string(s.n) + "x" + std::to_string(s.in) + "x" + std::to_string(s.out);
    const double flop = 2.0 * s.n * s.in * s.out;
    for (auto& [k, t] : ms) {
      const double m = median(t);
      std::cout << "RESULT " << tag << "." << k << "_ms " << m << "\n";
      if (k != "dequant") std::cout << "RESULT " << tag << "." << k << "_gflops " << flop / m / 1e6 << "\n";
    }
    std::cout << "RESULT " << tag << ".nf4_fwd_vs_fp32 " << median(ms["fp32_fwd"]) / median(ms["nf4_fwd"]) << "\n";
    std::cout << "RESULT " << tag << ".nf4_bwd_vs_fp32 " << median(ms["fp32_bwd"]) / median(ms["nf4_bwd"]) << "\n";
    std::cout << "RESULT " << tag << ".bytes_ratio " << double(w4.nbytes()) / (W.numel() * 4.0) << "\n";
  }
  // A whole model: GPT-2-small-shaped random Llama is not bundled; use stories260K if converted.
  const std::string model_dir = "build/models/stories260K";
  try {
    auto fp = peft::models::load_model(model_dir);
    peft::models::LoadOptions o;
    o.load_in_4bit = true;
    o.bnb_4bit_quant_type = "nf4";
    o.bnb_4bit_use_double_quant = true;
    auto m4 = peft::models::load_model(model_dir, o);
    const double a = peft::quant::weight_bytes(*fp), b = peft::quant::weight_bytes(*m4);
    std::cout << "RESULT stories260K.weight_bytes_fp32 " << a << "\nRESULT stories260K.weight_bytes_4bit " << b
              << "\nRESULT stories260K.bytes_ratio " << b / a << "\n";
    int64_t lin = 0, lin4 = 0;
    for (const auto& mod : m4->modules())
      if (auto* l = dynamic_cast<peft::models::AdaptableLinearImpl*>(mod.get()); l && l->quantized()) {
        lin += l->in_features() * l->out_features() * 4;
        lin4 += l->quantized()->nbytes();
      }
    std::cout << "RESULT stories260K.linear_bytes_ratio " << double(lin4) / lin << "\n";
  } catch (const std::exception& e) {
    std::cout << "(no " << model_dir << ": " << e.what() << ")\n";
  }
  (void)rt;
  return 0;
}
