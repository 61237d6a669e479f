#pragma once
// Highway kernels of ggml_quants.cpp (ggml_quants_hwy.cpp), internal.
#include <cstdint>

#include "peft/io/gguf.h"

namespace peft::quant {

/// Decodes `blocks` whole blocks of `type` with the best SIMD target; false (nothing written)
/// when the type has no SIMD kernel. Bit-identical to the scalar decoder.
bool ggml_dequantize_simd(io::GgmlType type, const uint8_t* src, float* dst, int64_t blocks);

}  // namespace peft::quant
