#pragma once
// Fused CPU loops for inference (no autograd graph): the plain-ATen paths in blocks.cpp stay the
// reference and the path for training, other dtypes and other devices.
#include <ATen/core/Tensor.h>

#include <initializer_list>

namespace peft::models::kernels {

/// False when the environment sets PEFT_FUSED_KERNELS=0 (read once; every op then takes the
/// plain-ATen path, for comparisons and benchmarks) or inside a ScopedPlainAten on this thread.
bool enabled();

/// Plain-ATen paths on this thread while alive: gradient checkpointing runs a layer's forward
/// without autograd and recomputes it with autograd, and both runs must round identically.
struct ScopedPlainAten {
  ScopedPlainAten();
  ~ScopedPlainAten();
  ScopedPlainAten(const ScopedPlainAten&) = delete;
  ScopedPlainAten& operator=(const ScopedPlainAten&) = delete;
};

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

/// at::gelu(x, "tanh") in one vectorised pass.
at::Tensor gelu_tanh_f32(const at::Tensor& x);

/// True when attention_train_f32 may replace the ATen chain while autograd records: fp32 CPU
/// tensors, some of q, k, v needing a gradient, bias (if any) fp32 without one and broadcastable
/// as [B, 1 or H, T, S]. Dropout and soft-capping are the caller's to rule out.
bool attention_train_f32_applicable(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                    const at::Tensor& bias);

/// attention_f32 as an autograd op: the forward keeps q, k, v, bias, the output and each row's
/// log-sum-exp; the backward recomputes the probabilities from them (no [B, H, T, S] tensor is
/// kept) and gives gradients to the inputs that need them (never to the bias). Shapes and the
/// treatment of masked keys and dead rows as attention_f32.
at::Tensor attention_train_f32(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                               const at::Tensor& bias, double scale);

}  // namespace peft::models::kernels
