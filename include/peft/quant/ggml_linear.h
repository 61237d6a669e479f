#pragma once
// A frozen base weight kept in ggml's block encoding (Q4_0, Q4_1, Q8_0, Q4_K, Q6_K, ... as read
// from a GGUF file) behind the adaptable linear slot, so LoRA trains on a quantised GGUF base with
// memory close to the file size (tier 1).
//
//   auto w = std::make_shared<peft::quant::GgmlLinearWeight>(io::GgmlType::Q4_K, bytes, out, in);
//   slot->set_quantized(w);     // forward: tiles of rows dequantised + GEMM; input gradient too
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "peft/io/gguf.h"
#include "peft/quant/quantized_base.h"

namespace peft::quant {

/// [out, in] weight as `out` rows of ggml blocks (row r = bytes [r * row_bytes, (r+1) * row_bytes)).
/// forward(x) = x · dequant(W)ᵀ in fp32; the input gradient is grad · dequant(W); no weight
/// gradient. CPU: tiles of rows are dequantised (Highway, in parallel) into a reused buffer and
/// multiplied by BLAS; other devices: dequantise with the CPU decoder, then a plain linear.
/// With llamacpp_numerics on and no gradient recorded, forward is llama.cpp's CPU matmul instead
/// (quant/ggml_cpu.h: activations quantised to the vec_dot type, block dot products).
class GgmlLinearWeight : public QuantizedBase {
 public:
  GgmlLinearWeight(io::GgmlType type, std::vector<uint8_t> blocks, int64_t out, int64_t in);

  at::Tensor forward(const at::Tensor& x) override;
  at::Tensor dequantize() const override;
  int64_t nbytes() const override { return static_cast<int64_t>(blocks_.size()); }
  /// Re-encodes w in the same type (types ggml_quantize writes: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
  /// F16, BF16); NotSupported for K-quants (merge into a dequantised model instead).
  double requantize(const at::Tensor& w) override;

  io::GgmlType type() const { return type_; }
  const std::vector<uint8_t>& blocks() const { return blocks_; }
  int64_t out_features() const { return out_; }
  int64_t in_features() const { return in_; }
  at::ScalarType compute_dtype() const;
  /// llama.cpp's CPU matmul arithmetic for inference (LoadOptions::llamacpp_numerics); throws
  /// NotSupported for a type ggml_cpu::mul_mat does not reproduce.
  void set_llamacpp_numerics(bool on);
  bool llamacpp_numerics() const { return llamacpp_; }
  /// x2: [N, in] fp32 contiguous -> [N, out] (no autograd).
  at::Tensor matmul(const at::Tensor& x2) const;
  /// g2: [N, out] fp32 contiguous -> [N, in].
  at::Tensor matmul_t(const at::Tensor& g2) const;

 private:
  void dequant_rows(int64_t r0, int64_t r1, float* dst) const;
  io::GgmlType type_;
  std::vector<uint8_t> blocks_;
  int64_t out_, in_;
  uint64_t row_bytes_;
  bool llamacpp_ = false;
};

}  // namespace peft::quant
