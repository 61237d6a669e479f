// 4-bit (NF4 + double quantisation) linear forward/backward throughput against the fp32 GEMM, and
// the weight bytes of a 4-bit model; compare with bench/python/bench_quant.py (bitsandbytes'
// Linear4bit on this CPU, same shapes), which also runs this binary and prints both.
//
//   bench_quant [rounds=7]
//
// Shapes: x [512, 768] through 768->3072 and 3072->768 (a GPT-2-small MLP), plus [1, 768] (one
// decoding row: fp32 forward takes the fused Highway GEMV). Forward = y = x·Wᵀ; backward = the
// input gradient grad·W (the weight is frozen).
// GGUF block types: dequantising a 576x1536 Q4_1 / Q4_K / Q6_K / Q8_0 matrix (SmolLM2-135M's MLP
// shape) to fp32 on 1 and 2 threads, in GB/s of fp32 output (torch-free ggml_dequantize_rows).
// Each round times every variant once in turn; a figure is the median over the rounds.
// Output lines: "RESULT <metric> <value>".
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <iostream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "peft/core/runtime.h"
#include "peft/io/gguf.h"
#include "peft/models/adaptable_linear.h"
#include "peft/models/model.h"
#include "peft/models/quantized_model.h"
#include "peft/quant/ggml_quants.h"
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

// GB/s of fp32 output for dequantising one GGUF matrix per type, 1 and 2 threads. Q4_1 / Q8_0
// are quantised from N(0, 0.02) weights; the K-quants (no encoder) are random bytes with f16
// scales of 2^-7 (speed does not depend on the values, only subnormals would slow it down).
void bench_gguf_dequant(int rounds) {
  using peft::io::GgmlType;
  const int64_t rows = 576, cols = 1536;
  std::mt19937 rng(0);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::vector<float> w(rows * cols), out(rows * cols);
  for (auto& v : w) v = normal(rng);
  for (const GgmlType t : {GgmlType::Q4_1, GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q8_0}) {
    const auto& tr = peft::io::ggml_traits(t);
    std::vector<uint8_t> q(rows * peft::io::ggml_row_bytes(t, cols));
    if (peft::quant::ggml_can_quantize(t)) {
      peft::quant::ggml_quantize(t, w.data(), q.data(), rows * cols);
    } else {
      for (auto& b : q) b = static_cast<uint8_t>(rng());
      const std::vector<int> f16_at =
          t == GgmlType::Q6_K ? std::vector<int>{208} : std::vector<int>{0, 2};
      for (std::size_t b = 0; b < q.size(); b += tr.type_size)
        for (const int o : f16_at) q[b + o] = 0x00, q[b + o + 1] = 0x20;  // 2^-7
    }
    for (const int threads : {1, 2}) {
      auto fn = [&] {
        peft::quant::ggml_dequantize_rows(t, q.data(), out.data(), rows, cols, threads);
      };
      fn();
      std::vector<double> ms;
      for (int r = 0; r < rounds; ++r) ms.push_back(time_ms(fn, 20));
      std::cout << "RESULT gguf_dequant_576x1536." << tr.name << "_t" << threads << "_gbps "
                << rows * cols * 4.0 / median(ms) / 1e6 << "\n";
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  peft::restart_with_suitable_blas(argv);  // OpenBLAS's right kernels on CPUs it does not recognise
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
  bench_gguf_dequant(rounds);
  // A whole model: GPT-2-small-shaped random Llama is not bundled; use stories260K if converted.
  const std::string model_dir = "build/models/stories260K";
  try {
    auto fp = peft::models::load_model(model_dir);
    peft::models::LoadOptions o;
    o.load_in_4bit = true;
    o.bnb_4bit_quant_type = "nf4";
    o.bnb_4bit_use_double_quant = true;
    auto m4 = peft::models::load_model(model_dir, o);
    const double a = peft::models::weight_bytes(*fp), b = peft::models::weight_bytes(*m4);
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
