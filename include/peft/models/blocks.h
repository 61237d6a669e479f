#pragma once
// Building blocks shared by the architectures (tier 1: tensors in, tensors out).
#include <ATen/core/Tensor.h>

#include <functional>

#include "peft/models/model.h"

namespace peft::models {

/// Additive attention bias [B, 1, T, P + past + T]: 0 where attending is allowed, the dtype's
/// lowest value elsewhere (transformers' convention, so fully padded rows stay finite).
/// `attention_mask` is [B, past + T] or [B, P + past + T] (1 = keep) or undefined.
/// `sliding_window` > 0 (causal only) also hides keys `sliding_window` or more slots behind the
/// query, counting the prefix slots as the first positions (transformers' sliding-window mask with
/// the prefix held as cache).
at::Tensor attention_bias(const at::Tensor& attention_mask, int64_t batch, int64_t T, int64_t past,
                          int64_t prefix, bool causal, at::ScalarType dtype, c10::Device device,
                          int64_t sliding_window = 0);

/// [prefix ; cached ; new] keys and values for `layer`; appends the new ones to `cache`.
KeyValue extend_kv(const KeyValue* prefix, KVCache* cache, std::size_t layer, const at::Tensor& k,
                   const at::Tensor& v);

/// softmax(q·kᵀ·scale + bias)·v. q: [B, H, T, D]; k, v: [B, KVH, S, D] (KVH divides H).
/// `softcap` > 0 caps the scores before the bias: softcap·tanh(scores / softcap) (Gemma 2).
at::Tensor attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                  const at::Tensor& bias, double scale, double dropout, bool training,
                  double softcap = 0.0);

/// transformers' LlamaRMSNorm / T5LayerNorm: x * rsqrt(mean(x²) + eps) in fp32, then * weight.
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps);
/// Gemma's RMSNorm: x * rsqrt(mean(x²) + eps) * (1 + weight) in fp32, cast to x's dtype last.
at::Tensor gemma_rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps);

/// Rotary embedding (rotate-half form). cos/sin: [B, T, head_dim] for positions [B, T].
struct RotaryTables {
  at::Tensor cos, sin;
};
RotaryTables rotary_tables(const at::Tensor& inv_freq, const at::Tensor& position_ids,
                           at::ScalarType dtype, double attention_scaling = 1.0);
/// x: [B, H, T, D]; applies x*cos + rotate_half(x)*sin.
at::Tensor apply_rotary(const at::Tensor& x, const RotaryTables& t);

/// Positions past .. past+T-1 for every row: [B, T].
at::Tensor default_position_ids(int64_t batch, int64_t T, int64_t past, c10::Device device);

/// Mean next-token cross-entropy: logits[:, :-1] against labels[:, 1:], -100 ignored.
at::Tensor causal_lm_loss(const at::Tensor& logits, const at::Tensor& labels);
/// causal_lm_loss of the logits h·Wᵀ + b (h [B, T, D] final hidden states, W [V, D] the output
/// projection, b [V] or undefined) computed without the [B, T, V] logits or their gradient: the
/// positions that carry a label go through in chunks, and the gradients of h, W and b are made
/// in the forward. Undefined when that path does not apply (tensors other than fp32 contiguous
/// on the CPU, autocast on, fused kernels off): the caller computes the logits and causal_lm_loss.
at::Tensor causal_lm_loss_from_hidden(const at::Tensor& h, const at::Tensor& weight, const at::Tensor& bias,
                                      const at::Tensor& labels);
/// Mean cross-entropy over all positions, -100 ignored (token classification, seq2seq).
at::Tensor token_loss(const at::Tensor& logits, const at::Tensor& labels);
/// Sequence classification loss as transformers picks it: MSE when num_labels == 1
/// (regression), cross-entropy for integer labels, BCE-with-logits for float multi-label.
at::Tensor sequence_classification_loss(const at::Tensor& logits, const at::Tensor& labels,
                                        const std::string& problem_type);

/// at::linear(x, weight, bias) (weight [out, in]); on OpenBLAS builds under init_runtime's one
/// pool of threads a large fp32 product splits its rows across LibTorch's threads, forward and
/// backward (peft::gemm_rows_split). bias may be undefined.
at::Tensor linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias = {});

/// torch.nn.functional.dropout(x, p, training): x itself unless training and p > 0 (a p <= 0
/// from a config means no dropout). fp32 and
/// bf16 CPU tensors take one fused pass (a uint8 keep mask saved for the backward, the decisions
/// drawn from the default CPU generator); other dtypes, devices and PEFT_FUSED_KERNELS=0 take
/// at::dropout.
at::Tensor dropout(const at::Tensor& x, double p, bool training);

/// Gradient checkpointing: y = fn(x) computed without keeping fn's activations when `enabled`
/// and autograd is recording; backward reruns fn (with the CPU RNG state of the forward, so
/// dropout masks repeat) and accumulates the parameter gradients. `fn` must capture by value.
at::Tensor checkpoint(std::function<at::Tensor(const at::Tensor&)> fn, const at::Tensor& x, bool enabled);

/// Checks a tensor argument's rank/shape and throws std::invalid_argument naming it.
void check_shape(const at::Tensor& t, std::vector<int64_t> expected, const char* where,
                 const char* what);

}  // namespace peft::models

namespace peft::models {

/// transformers' ACT2FN for the names our architectures use: silu/swish, gelu, gelu_new,
/// gelu_pytorch_tanh, gelu_fast, relu, tanh. Throws NotSupported naming the activation otherwise.
at::Tensor activation(const std::string& name, const at::Tensor& x);
/// silu(g) * u, the SwiGLU product (g and u of one shape take the fused path on fp32 CPU).
at::Tensor silu_mul(const at::Tensor& g, const at::Tensor& u);
/// Validates an activation name early (at construction) with the same error.
void check_activation(const std::string& name, const std::string& source);

}  // namespace peft::models
