#pragma once
// The interface of a compressed base weight (tier 1): what a model's linear slot
// (models::AdaptableLinear::set_quantized) calls instead of its full-precision weight.
// Implemented by the 4-bit weight (quant/linear4bit.h) and the ggml block weight (quant/ggml_linear.h).
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>

namespace peft::quant {

/// A base weight kept in a compressed form. When a slot holds one, its `weight` parameter is
/// dropped and the base projection goes through it.
class QuantizedBase {
 public:
  virtual ~QuantizedBase() = default;
  /// x: [..., in] -> x·Wᵀ [..., out] (no bias), differentiable w.r.t. x; output in x's dtype.
  virtual at::Tensor forward(const at::Tensor& x) = 0;
  /// The weight as fp32 [out, in].
  virtual at::Tensor dequantize() const = 0;
  /// Bytes held (packed weight + quantisation state).
  virtual int64_t nbytes() const = 0;
  /// Replaces the weight by the quantisation of w ([out, in]); returns max |w - dequantize()|.
  virtual double requantize(const at::Tensor& w) = 0;
};

/// The dtype CPU autocast casts matrix products to, while it is on (LibTorch 1.13 and 2.x).
std::optional<at::ScalarType> cpu_autocast_dtype();

}  // namespace peft::quant
