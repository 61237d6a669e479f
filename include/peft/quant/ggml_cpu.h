#pragma once
// llama.cpp's CPU arithmetic, reproduced: what ggml's CPU backend computes for the ops of a Llama
// layer, rounding for rounding, so peft.cpp can run a GGUF model exactly as llama.cpp does
// (LoadOptions::llamacpp_numerics). Torch-free, portable scalar code.
//
// The reference is the llama.cpp build of tools/llamacpp (ggml-cpu for x86-64 with AVX2, FMA and
// F16C, no AVX-512, GCC 12): its SIMD kernels fix the rounding, so each function below names the
// ggml routine it mirrors and follows that routine's lanes, fused multiply-adds and reduction
// order. In particular a matmul with block-quantised weights first quantises each activation row
// to the weight type's "vec_dot type" (Q8_0, Q8_1 or Q8_K) and sums integer block dot products
// scaled in float; which kernel runs (vec_dot, the repacked Q4_0 / Q4_K kernels, the tiled K-quant
// kernel) depends on the type, the number of rows and the number of activation rows, as in ggml.
//
//   std::vector<float> y(rows * out);
//   peft::quant::ggml_cpu::mul_mat(GgmlType::Q4_1, w_bytes, out, in, x, rows, y.data());
#include <cstdint>
#include <vector>

#include "peft/io/gguf.h"

namespace peft::quant::ggml_cpu {

// ------------------------------------------------------------------------------------ matmul

/// ggml's type_traits_cpu[type].vec_dot_type: Q8_0 for Q4_0/Q5_0/Q8_0, Q8_1 for Q4_1/Q5_1, Q8_K for
/// the K-quants, F16 for F16, F32 for F32.
io::GgmlType vec_dot_type(io::GgmlType weight);

/// True for the weight types mul_mat reproduces: F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K,
/// Q5_K, Q6_K.
bool can_mul_mat(io::GgmlType weight);

/// One activation row of `n` floats in `act_type` (ggml's block layout, ggml_row_bytes(act_type, n)
/// bytes): quantize_row_q8_0 / quantize_row_q8_1 as their AVX2 code rounds (x·(127/amax) to
/// nearest even), quantize_row_q8_K_ref, ggml_cpu_fp32_to_fp16, or a copy for F32.
void quantize_row(io::GgmlType act_type, const float* x, void* dst, int64_t n);

/// ggml_vec_dot_<weight>_<vec_dot type> (AVX2): one weight row of `n` elements with one prepared
/// activation row.
float vec_dot(io::GgmlType weight, int64_t n, const void* w_row, const void* act_row);

/// The activation rows of a matmul as ggml prepares them (`rows` rows of `in` floats converted to
/// vec_dot_type(weight), back to back).
std::vector<uint8_t> prepare_activations(io::GgmlType weight, const float* x, int64_t rows, int64_t in);

/// Outputs [o0, o1) of ggml_mul_mat(W, x) for prepared activations: y[r * out + o] for every
/// activation row r. W holds `out` rows of `in` elements of `weight`; `rows` is the number of
/// activation rows of the whole matmul (it picks the kernel as ggml does).
void mul_mat_range(io::GgmlType weight, const uint8_t* w, int64_t out, int64_t in, const uint8_t* act,
                   int64_t rows, int64_t o0, int64_t o1, float* y);

/// y [rows, out] = ggml_mul_mat(W, x) for x [rows, in] (single-threaded).
void mul_mat(io::GgmlType weight, const uint8_t* w, int64_t out, int64_t in, const float* x, int64_t rows,
             float* y);

// ----------------------------------------------------------------------------------- float ops

/// F16C conversions (round to nearest even).
uint16_t fp32_to_fp16(float x);
float fp16_to_fp32(uint16_t h);
/// x rounded through F16.
inline float round_fp16(float x) { return fp16_to_fp32(fp32_to_fp16(x)); }

/// ggml_rms_norm followed by ggml_mul with the norm weight: y = (x · 1/sqrt(mean(x²) + eps)) · w,
/// the sum of squares in double.
void rms_norm_mul(const float* x, const float* w, float* y, int64_t n, float eps);

/// ggml's RoPE cache for one position (ggml_rope_cache_init, no YaRN): cos_sin[2i], cos_sin[2i+1]
/// for i < n_dims / 2, theta multiplied by base^(-2/n_dims) pair after pair, divided by
/// freq_factors[i] when given, times freq_scale.
void rope_cache(int64_t pos, int64_t n_dims, float freq_base, float freq_scale, const float* freq_factors,
                float* cos_sin);
/// GGML_ROPE_TYPE_NORMAL: rotates the adjacent pairs (x[2i], x[2i+1]) of one head in place.
void rope_apply(float* x, const float* cos_sin, int64_t n_dims);

/// ggml_v_expf / ggml_v_silu (AVX2, one lane).
float v_expf(float x);
float v_silu(float x);
/// ggml_vec_swiglu_f32: y = silu(g) · u.
void swiglu(const float* g, const float* u, float* y, int64_t n);

/// ggml_vec_dot_f32 (AVX2: four 8-lane accumulators, then the scalar tail as GCC compiled it).
float vec_dot_f32(int64_t n, const float* x, const float* y);
/// ggml_vec_dot_f16 (F16C: as vec_dot_f32 on the widened values, the tail summed in double).
float vec_dot_f16(int64_t n, const uint16_t* x, const uint16_t* y);

/// One self-attention call of llama.cpp's graph (llm_graph_context::build_attn_mha) for one
/// sequence. q: [T, n_head, head_dim] for positions past .. past+T-1; k, v: the cache,
/// [past + T, n_head_kv, head_dim] (K rows in llama.cpp's RoPE pair order, as the GGUF stores
/// the Q/K weights; values already rounded to F16 when kv_f16); out: [T, n_head, head_dim].
struct AttentionConfig {
  int64_t n_head = 0, n_head_kv = 0, head_dim = 0;
  float scale = 1.0f;       ///< kq_scale (1/sqrt(head_dim) as a float)
  bool kv_f16 = true;       ///< KV cache type F16 (llama.cpp's default) or F32
  bool flash_attn = true;   ///< ggml_flash_attn_ext (on by default on CPU) or mul_mat + soft_max
};
void attention(const AttentionConfig& c, const float* q, const float* k, const float* v, int64_t T, int64_t past,
               float* out);

/// The number of KV cells llama.cpp's graph spans for `n_cells` used ones (llama_kv_cache::get_n_kv:
/// padded to 256).
int64_t kv_cells_spanned(int64_t n_cells);

}  // namespace peft::quant::ggml_cpu
