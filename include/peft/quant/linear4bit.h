#pragma once
// A 4-bit (NF4/FP4) base weight for the adaptable linear slot, in bitsandbytes' format (tier 1).
// Quantising a whole model, bitsandbytes checkpoints and k-bit training: models/quantized_model.h.
//
//   auto q = peft::quant::quantize_4bit(w.data_ptr<float>(), {out, in}, {peft::quant::QuantType::NF4, 64, true});
//   slot->set_quantized(std::make_shared<peft::quant::Linear4bitWeight>(std::move(q), "float32"));
#include <ATen/core/Tensor.h>

#include <string>

#include "peft/quant/quantize.h"
#include "peft/quant/quantized_base.h"

namespace peft::quant {

/// "float32"/"fp32" or "bfloat16"/"bf16" as a dtype; ConfigError otherwise.
at::ScalarType parse_compute_dtype(const std::string& d);

/// Packed 4-bit weight [out, in] + its bitsandbytes quant state. forward(x) = x · dequant(W)ᵀ in
/// the compute dtype; the input gradient is grad · dequant(W); the weight itself is frozen.
/// CPU: tiles of rows are dequantised into a small reused buffer (in parallel) and multiplied by
/// BLAS/oneDNN; other devices: plain ATen ops (dequantise, then linear).
class Linear4bitWeight : public QuantizedBase {
 public:
  /// compute_dtype: "float32" or "bfloat16".
  Linear4bitWeight(Quantized4 q, const std::string& compute_dtype = "float32");

  at::Tensor forward(const at::Tensor& x) override;
  at::Tensor dequantize() const override;
  int64_t nbytes() const override;
  /// Quantises `w` ([out, in], any float dtype) with the same options; returns max |w - dequant|.
  double requantize(const at::Tensor& w) override;

  const Quantized4& quantized() const { return q_; }
  at::ScalarType compute_dtype() const { return compute_; }
  /// x2: [N, in] contiguous in the compute dtype -> [N, out] (no autograd).
  at::Tensor matmul(const at::Tensor& x2) const;
  /// g2: [N, out] in the compute dtype -> [N, in] = g2 · dequant(W).
  at::Tensor matmul_t(const at::Tensor& g2) const;
  /// The device-agnostic dequantisation (ATen ops on `device`), fp32 [out, in].
  at::Tensor dequantize_aten(const c10::Device& device) const;

 private:
  void refresh();
  Quantized4 q_;
  at::ScalarType compute_;
  at::Tensor packed_;  ///< uint8 [(out*in+1)/2]
  at::Tensor scales_;  ///< fp32 per block (double quantisation resolved once)
  int64_t out_, in_;
};

}  // namespace peft::quant
