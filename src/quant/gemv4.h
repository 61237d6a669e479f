#pragma once
// Fused 4-bit matrix-vector product (Highway, runtime-dispatched SIMD), torch-free and internal.
#include <cstdint>

namespace peft::quant {

/// y[r] = Σ_k x[k] · code[q(r, k)] · scale(r, k) for rows [r0, r1) of a packed [out, in] weight,
/// straight from the packed bytes (no dequantised weight). Needs in % blocksize == 0 and
/// blocksize % 32 == 0 (gemv_4bit_supported); code: the 16 code values; scales: one per block.
void gemv_4bit(const uint8_t* packed, const float* scales, const float* code, int64_t blocksize, int64_t in,
               int64_t r0, int64_t r1, const float* x, float* y);
/// Rows [r0, r1) dequantised into dst ([r1 - r0, in], fp32), code[q] * scale exactly; same
/// shape requirement as gemv_4bit.
void dequant_4bit_rows(const uint8_t* packed, const float* scales, const float* code, int64_t blocksize, int64_t in,
                       int64_t r0, int64_t r1, float* dst);
inline bool gemv_4bit_supported(int64_t in, int64_t blocksize) {
  return blocksize % 32 == 0 && in % blocksize == 0;
}

}  // namespace peft::quant
