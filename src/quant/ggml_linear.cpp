// The ggml block-type linear base. The tiling and autograd are shared with the 4-bit base
// (frozen_linear.h); the decoder is ggml_quants (bit-exact with gguf-py).
#include "peft/quant/ggml_linear.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "frozen_linear.h"
#include "peft/core/check.h"
#include "peft/quant/ggml_cpu.h"
#include "peft/quant/ggml_quants.h"

namespace peft::quant {

GgmlLinearWeight::GgmlLinearWeight(io::GgmlType type, std::vector<uint8_t> blocks, int64_t out, int64_t in)
    : type_(type), blocks_(std::move(blocks)), out_(out), in_(in) {
  PEFT_CHECK(ggml_can_dequantize(type), NotSupported, "[GgmlLinear] ", io::ggml_traits(type).name,
             " weights cannot be decoded here");
  row_bytes_ = io::ggml_row_bytes(type, in);
  PEFT_CHECK(static_cast<uint64_t>(blocks_.size()) == row_bytes_ * static_cast<uint64_t>(out), FormatError,
             "[GgmlLinear] ", blocks_.size(), " bytes for a ", out, "x", in, " ", io::ggml_traits(type).name,
             " weight, expected ", row_bytes_ * static_cast<uint64_t>(out));
}

at::ScalarType GgmlLinearWeight::compute_dtype() const { return at::kFloat; }

void GgmlLinearWeight::dequant_rows(int64_t r0, int64_t r1, float* dst) const {
  // Rows in parallel; each worker decodes whole rows (ggml blocks never straddle rows).
  at::parallel_for(r0, r1, std::max<int64_t>(1, 16384 / std::max<int64_t>(in_, 1)), [&](int64_t a, int64_t b) {
    ggml_dequantize(type_, blocks_.data() + static_cast<std::size_t>(a) * row_bytes_, dst + (a - r0) * in_,
                    (b - a) * in_);
  });
}

at::Tensor GgmlLinearWeight::dequantize() const {
  at::Tensor w = at::empty({out_, in_}, at::kFloat);
  dequant_rows(0, out_, w.data_ptr<float>());
  return w;
}

double GgmlLinearWeight::requantize(const at::Tensor& w_in) {
  PEFT_CHECK(w_in.dim() == 2 && w_in.size(0) == out_ && w_in.size(1) == in_, std::invalid_argument,
             "[GgmlLinear] requantize: expected [", out_, ", ", in_, "], got ", w_in.sizes());
  PEFT_CHECK(ggml_can_quantize(type_), NotSupported, "[GgmlLinear] cannot re-encode ", io::ggml_traits(type_).name,
             " weights (a merge into this base needs the model loaded with dequantize: true)");
  at::Tensor w = w_in.detach().to(at::kFloat).contiguous().cpu();
  at::parallel_for(0, out_, 16, [&](int64_t a, int64_t b) {
    for (int64_t r = a; r < b; ++r)
      ggml_quantize(type_, w.data_ptr<float>() + r * in_, blocks_.data() + static_cast<std::size_t>(r) * row_bytes_, in_);
  });
  return (dequantize() - w).abs().max().item<double>();
}

at::Tensor GgmlLinearWeight::matmul(const at::Tensor& x2) const {
  return detail::tiled_matmul(out_, in_, x2, [&](int64_t r0, int64_t r1, at::Tensor& tile) {
    dequant_rows(r0, r1, tile.data_ptr<float>());
  });
}

at::Tensor GgmlLinearWeight::matmul_t(const at::Tensor& g2) const {
  return detail::tiled_matmul_t(out_, in_, g2, [&](int64_t r0, int64_t r1, at::Tensor& tile) {
    dequant_rows(r0, r1, tile.data_ptr<float>());
  });
}

void GgmlLinearWeight::set_llamacpp_numerics(bool on) {
  PEFT_CHECK(!on || ggml_cpu::can_mul_mat(type_), NotSupported, "[GgmlLinear] llama.cpp's CPU matmul is not reproduced for ",
             io::ggml_traits(type_).name, " weights (supported: F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K)");
  llamacpp_ = on;
}

at::Tensor GgmlLinearWeight::forward(const at::Tensor& x) {
  if (llamacpp_ && !at::GradMode::is_enabled() && x.device().is_cpu()) {
    // llama.cpp's mul_mat: the activation rows quantised once, then output rows in parallel.
    auto sizes = x.sizes().vec();
    const at::Tensor x2 = x.reshape({-1, in_}).to(at::kFloat).contiguous();
    const int64_t n = x2.size(0);
    const std::vector<uint8_t> act = ggml_cpu::prepare_activations(type_, x2.data_ptr<float>(), n, in_);
    at::Tensor y = at::empty({n, out_}, at::kFloat);
    float* py = y.data_ptr<float>();
    at::parallel_for(0, out_, std::max<int64_t>(8, 65536 / std::max<int64_t>(in_ * n, 1)), [&](int64_t a, int64_t b) {
      ggml_cpu::mul_mat_range(type_, blocks_.data(), out_, in_, act.data(), n, a, b, py);
    });
    sizes.back() = out_;
    return y.view(sizes).to(x.scalar_type());
  }
  if (!x.device().is_cpu()) {
    // Device-agnostic path: decode once on the CPU, then a plain linear on x's device.
    const at::Tensor w = dequantize().to(x.device());
    return at::linear(x.to(at::kFloat), w).to(x.scalar_type());
  }
  return detail::FrozenLinearFn<GgmlLinearWeight>::apply(x, reinterpret_cast<int64_t>(this),
                                                         static_cast<int64_t>(compute_dtype()));
}

}  // namespace peft::quant
