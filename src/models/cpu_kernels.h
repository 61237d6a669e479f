#pragma once
// Fused CPU loops for inference (no autograd graph): the plain-ATen paths in blocks.cpp stay the
// reference and the path for training, other dtypes and other devices.
#include <ATen/core/Tensor.h>

namespace peft::models::kernels {

/// False when the environment sets PEFT_FUSED_KERNELS=0 (read once): every op then takes the
/// plain-ATen path, for comparisons and benchmarks.
bool enabled();

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

}  // namespace peft::models::kernels
