#pragma once
// Fused CPU loops: for inference (no autograd graph), and for training the element-wise ops with
// their backward loops (blocks.cpp wraps them in autograd Functions). The plain-ATen paths in
// blocks.cpp stay the reference and the path for other dtypes and other devices.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>
#include <utility>

namespace peft::models::kernels {

/// False when the environment sets PEFT_FUSED_KERNELS=0 (read once; every op then takes the
/// plain-ATen path, for comparisons and benchmarks) or inside a ScopedPlainAten on this thread.
bool enabled();

/// How many threads an at::parallel_for over n single-element tasks, as the kernels issue it,
/// actually ran on: at most at::get_num_threads(), and 1 if the library was built without
/// OpenMP (the loop then runs serially whatever the setting says).
int parallel_for_threads(int64_t n);

/// Plain-ATen paths on this thread while alive: gradient checkpointing runs a layer's forward
/// without autograd and recomputes it with autograd, and both runs must round identically.
struct ScopedPlainAten {
  ScopedPlainAten();
  ~ScopedPlainAten();
  ScopedPlainAten(const ScopedPlainAten&) = delete;
  ScopedPlainAten& operator=(const ScopedPlainAten&) = delete;
};

/// The plain-ATen attention on this thread while alive (the element-wise kernels stay on): the
/// no-grad forward of a checkpointed layer then rounds as its recomputation with autograd does,
/// where attention has no fused path and the element-wise ops run the same loops.
struct ScopedPlainAttention {
  ScopedPlainAttention();
  ~ScopedPlainAttention();
  ScopedPlainAttention(const ScopedPlainAttention&) = delete;
  ScopedPlainAttention& operator=(const ScopedPlainAttention&) = delete;
};

/// Additive attention bias below kMaskedBias marks a key that cannot be attended; a row whose
/// largest bias is below kDeadRowBias attends nowhere (zero output, as attend() gives).
inline constexpr float kMaskedBias = -1e30f;
inline constexpr float kDeadRowBias = -1e4f;

/// For each row of a [B, heads, T, S] fp32 bias (row strides s0, s1, s2; 0 for a broadcast dim),
/// the first and one-past-last key that is not masked, into lo/hi (B * heads * T entries each);
/// lo > hi (1, 0) for a row that attends nowhere. One scan serves every head of a [B, 1, T, S] bias.
void bias_key_spans(const float* bias, int64_t B, int64_t heads, int64_t T, int64_t S, int64_t s0, int64_t s1,
                    int64_t s2, std::vector<int32_t>& lo, std::vector<int32_t>& hi);

/// True when attention_f32 may replace the ATen chain: fp32 CPU tensors, no gradient wanted,
/// head_dim rows contiguous, bias (if any) fp32 and broadcastable as [B, 1 or H, T, S].
bool attention_f32_applicable(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                              const at::Tensor& bias);

/// softmax(q·kᵀ·scale + bias)·v in one pass per query row, in the operation order of the ATen
/// chain (product, scale, bias, max-subtracted exp, normalise, weighted sum of values). Keys whose
/// bias is a masking value (< -1e30) are skipped; a row whose largest bias is < -1e4 (it may
/// attend nowhere) gives zeros, as attend() does. q: [B, H, T, D]; k, v: [B, KVH, S, D].
/// Returns [B, H, T, D] as a view of [B, T, H, D] storage, so transpose(1, 2) is contiguous.
at::Tensor attention_f32(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                         const at::Tensor& bias, double scale);

/// True when the element-wise kernels below may replace ATen: every tensor defined, fp32, on the
/// CPU, and none needing a gradient while autograd records.
bool elementwise_f32_applicable(std::initializer_list<const at::Tensor*> ts);

/// LlamaRMSNorm: weight * (x * rsqrt(mean(x², -1) + eps)) in one pass per row. x: [..., n].
at::Tensor rms_norm_f32(const at::Tensor& x, const at::Tensor& weight, double eps);

/// silu(g) * u (the SwiGLU product) in one pass; g and u of the same shape.
at::Tensor silu_mul_f32(const at::Tensor& g, const at::Tensor& u);

/// x·cos + rotate_half(x)·sin for x [B, H, T, D] and cos/sin [B or 1, T, D]; returns [B, H, T, D]
/// as a view of [B, T, H, D] storage.
at::Tensor rotary_f32(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);
/// rotary_f32's result before the view: contiguous [B, T, H, D].
at::Tensor rotary_f32_bthd(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

/// at::gelu(x, "tanh") in one vectorised pass.
at::Tensor gelu_tanh_f32(const at::Tensor& x);

/// True when attention_train_f32 may replace the ATen chain: fp32 CPU tensors, bias (if any) fp32
/// without a gradient and broadcastable as [B, 1 or H, T, S], and either autograd recording with
/// some of q, k, v needing a gradient or `dropout` (training with dropout on the probabilities:
/// then also without autograd, so that a checkpointed layer's no-grad forward and its
/// recomputation draw the same mask and round alike). Soft-capping is the caller's to rule out.
bool attention_train_f32_applicable(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                    const at::Tensor& bias, bool dropout = false);

/// True when bf16 training attention may take attention_train_f32 on fp32 copies: fused kernels
/// on, bf16 CPU q, k and v, and autograd recording with some of them needing a gradient, or
/// `dropout` as in attention_train_f32_applicable. The caller still asks
/// attention_train_f32_applicable of the copies.
bool attention_train_bf16_candidate(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                    bool dropout = false);

/// attention_f32 as an autograd op: the forward keeps q, k, v, bias, the output and each row's
/// log-sum-exp; the backward recomputes the probabilities from them (no [B, H, T, S] tensor is
/// kept) and gives gradients to the inputs that need them (never to the bias). Shapes and the
/// treatment of masked keys and dead rows as attention_f32.
///
/// dropout > 0 (training): each probability is kept with probability 1 - dropout and scaled by
/// 1/(1 - dropout), as at::dropout on the probabilities before the product with V; the keep mask
/// (dropout_keep_mask over [B, H, T, S], one byte per probability) is kept for the backward.
at::Tensor attention_train_f32(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                               const at::Tensor& bias, double scale, double dropout = 0.0);

/// True when linear_rows should serve a linear layer: fused kernels on, gemm_rows_split(), fp32
/// CPU x and w, a bias (if any) fp32, and a product large enough to be worth splitting.
bool linear_rows_applicable(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias);

/// x·wᵀ + bias (w [N, K]) or, with w_in_out, x·w + bias (w [K, N]: GPT-2's Conv1D), x [..., K],
/// as an autograd op whose forward and backward products go through mm_rows. bias may be
/// undefined.
at::Tensor linear_rows(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias, bool w_in_out);

/// The instruction-set copies of attention_train_f32's loops this CPU can run, best first
/// ("avx512", "avx2", "portable"), and a switch to one of them ("" restores the best): for tests
/// that check every copy on one machine.
std::vector<std::string> attention_train_isas();
void use_attention_train_isa(const std::string& isa);

// ---- training: the same forward loops (so a result rounds as at inference) plus the backward ----

/// True when the training kernels below may replace ATen: every tensor defined, fp32, on the CPU,
/// autograd recording and some tensor needing a gradient.
bool elementwise_f32_trainable(std::initializer_list<const at::Tensor*> ts);

/// rms_norm_f32 that also returns the per-row 1/sqrt(mean(x²) + eps), shape [rows], for the backward.
std::pair<at::Tensor, at::Tensor> rms_norm_f32_rstd(const at::Tensor& x, const at::Tensor& weight, double eps);

/// Gradients of rms_norm_f32 given dy (shape of x) and the forward's rstd: {dx, dweight}, each
/// undefined unless asked for. dweight sums over rows per block of 64 rows, then over the blocks
/// in order, whatever the number of threads.
std::pair<at::Tensor, at::Tensor> rms_norm_backward_f32(const at::Tensor& dy, const at::Tensor& x,
                                                        const at::Tensor& weight, const at::Tensor& rstd,
                                                        bool need_dx, bool need_dw);

/// Gradients of silu_mul_f32: {dg, du} = {dy·u·silu'(g), dy·silu(g)}.
std::pair<at::Tensor, at::Tensor> silu_mul_backward_f32(const at::Tensor& dy, const at::Tensor& g,
                                                        const at::Tensor& u);

/// Gradient of rotary_f32 with respect to x: dy is [B, T, H, D] (the layout rotary_f32 writes;
/// any strides); returns dx [B, H, T, D] as a view of [B, T, H, D] storage.
at::Tensor rotary_backward_f32(const at::Tensor& dy, const at::Tensor& cos, const at::Tensor& sin);

/// Gradient of gelu_tanh_f32: dy · d/dx gelu_tanh(x).
at::Tensor gelu_tanh_backward_f32(const at::Tensor& dy, const at::Tensor& x);

// ---- bf16 (autocast training): the fp32 loops on values widened to fp32, results rounded to
// nearest even as c10::BFloat16 rounds; ATen 1.13's bf16 GELU runs ~10x slower ----

/// True when cross_entropy_rows applies: [B, R, V] fp32 or bf16 CPU logits with a contiguous
/// last dimension and [B, R] int64 targets.
bool cross_entropy_applicable(const at::Tensor& logits, const at::Tensor& targets);
/// Σ over rows with target ≠ -100 of logsumexp(row) − row[target], in fp32 per row and summed in
/// double in row order, and the number of such rows; `lse` gets each row's log-sum-exp ([B·R]
/// fp32, 0 for skipped rows). A target outside [0, V) other than -100 is an error.
std::pair<double, int64_t> cross_entropy_rows(const at::Tensor& logits, const at::Tensor& targets, at::Tensor& lse);
/// Its gradient times `scale`: (softmax(row) − onehot(target))·scale per counted row, 0 for
/// skipped rows; contiguous [B, R, V] in the logits' dtype.
at::Tensor cross_entropy_rows_backward(const at::Tensor& logits, const at::Tensor& targets, const at::Tensor& lse,
                                       double scale);

/// Mean cross-entropy of the logits h·Wᵀ + b against `targets` without the [N, V] logits: the
/// counted rows (target ≠ -100) go through in chunks of at most `chunk_rows` rows (0: equal chunks
/// whose logits fill at most 64 MB), each chunk's logits computed, reduced to its losses and
/// turned in place into (softmax − onehot)/count, then multiplied into the gradients asked for.
/// `sum` and `count` are as cross_entropy_rows gives them; dh [N, D] (0 for skipped rows), dw
/// [V, D] and db [V] are the gradients of sum/count, undefined when not asked for.
struct LinearCrossEntropy {
  double sum = 0.0;
  int64_t count = 0;
  at::Tensor dh, dw, db;
};
/// True when linear_cross_entropy applies: h [N, D], w [V, D] (and b [V] when defined) fp32 CPU
/// contiguous tensors, targets [N] int64.
bool linear_cross_entropy_applicable(const at::Tensor& h, const at::Tensor& w, const at::Tensor& b,
                                     const at::Tensor& targets);
LinearCrossEntropy linear_cross_entropy(const at::Tensor& h, const at::Tensor& w, const at::Tensor& b,
                                        const at::Tensor& targets, bool need_dh, bool need_dw, bool need_db,
                                        int64_t chunk_rows = 0);

/// elementwise_f32_trainable for bf16 CPU tensors.
bool elementwise_bf16_trainable(std::initializer_list<const at::Tensor*> ts);

// ---- dropout (fp32 and bf16 CPU tensors, with or without autograd)

/// True when dropout_cpu applies: x fp32 or bf16 on the CPU and 0 < p < 1.
bool dropout_applicable(const at::Tensor& x, double p);
/// Inverted dropout: each element kept with probability 1 - p and multiplied by 1/(1 - p) rounded
/// to x's dtype (at::dropout's mask value), else 0. The keep decisions come from one 64-bit draw
/// of the default CPU generator, expanded by a counter-based hash, so they do not depend on the
/// number of threads and repeat when the generator's state is restored. Returns {y contiguous,
/// mask: uint8 of x's shape, 1 = kept}.
std::pair<at::Tensor, at::Tensor> dropout_cpu(const at::Tensor& x, double p);
/// The keep decisions (uint8, 1 = kept) of dropout_cpu on n elements, drawn alike: the same
/// generator state gives the same mask. The storage holds 16 zero bytes past the n entries, so
/// 16-lane loops may read a whole chunk at the end.
at::Tensor dropout_keep_mask(int64_t n, double p);
/// dy · mask / (1 - p), in dy's dtype (fp32 or bf16), as at::dropout's backward.
at::Tensor dropout_backward_cpu(const at::Tensor& dy, const at::Tensor& mask, double p);
/// at::gelu(x, "tanh") of a bf16 tensor, computed in fp32.
at::Tensor gelu_tanh_bf16(const at::Tensor& x);
/// Its gradient (bf16 dy and x; computed in fp32, rounded once).
at::Tensor gelu_tanh_backward_bf16(const at::Tensor& dy, const at::Tensor& x);

}  // namespace peft::models::kernels
