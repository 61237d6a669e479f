#pragma once
// ggml block types (llama.cpp's GGUF tensor encodings) to and from fp32, torch-free.
//
//   std::vector<float> w(rows * cols);
//   peft::quant::ggml_dequantize_rows(t.ggml_type(), t.data, w.data(), t.rows(), t.row_length());
//   std::vector<uint8_t> q(peft::io::ggml_row_bytes(GgmlType::Q8_0, n));
//   peft::quant::ggml_quantize(GgmlType::Q8_0, w.data(), q.data(), n);
//
// Every result is bit-identical to gguf-py's numpy reference (gguf.quants.dequantize /
// quantize), which for the quantisers is also ggml's C reference: same f16 rounding, same float
// operation order, no fused multiply-add. Dequantisation runs on Highway (runtime-dispatched
// SIMD) and has a scalar reference path.
#include <cstdint>

#include "peft/io/gguf.h"

namespace peft::quant {

/// True for the types ggml_dequantize handles: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
/// Q2_K, Q3_K, Q4_K, Q5_K, Q6_K.
bool ggml_can_dequantize(io::GgmlType type);

/// Decodes `n` elements (a multiple of the type's block size) from `src` into `dst`, on the
/// calling thread. Throws std::invalid_argument naming the type and `n` for an unsupported type
/// or a partial block.
void ggml_dequantize(io::GgmlType type, const void* src, float* dst, int64_t n);

/// `rows` rows of `row_len` elements each (row_len a multiple of the block size), split over
/// `threads` std::threads (0 = hardware concurrency, but at most one thread per 2 M values, so
/// small matrices stay on the calling thread).
void ggml_dequantize_rows(io::GgmlType type, const void* src, float* dst, int64_t rows,
                          int64_t row_len, int threads = 0);

/// The plain scalar decoder ggml_dequantize's SIMD path must agree with bit for bit (tests).
void ggml_dequantize_reference(io::GgmlType type, const void* src, float* dst, int64_t n);

/// True for the types ggml_quantize writes: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0.
bool ggml_can_quantize(io::GgmlType type);

/// Encodes `n` fp32 values (a multiple of the block size) into ggml_row_bytes(type, n) bytes at
/// `dst`, as gguf.quants.quantize does. Throws like ggml_dequantize.
void ggml_quantize(io::GgmlType type, const float* src, void* dst, int64_t n);

}  // namespace peft::quant
