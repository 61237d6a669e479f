// Mirrors transformers: modeling_attn_mask_utils (additive masks), modeling_llama
// (LlamaRMSNorm, rotate_half, repeat_kv, eager_attention_forward), loss_utils.
#include "peft/models/blocks.h"

#include <ATen/ATen.h>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/version.h>

#include <array>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <map>
#include <memory>
#include <mutex>

#include "cpu_kernels.h"
#include "peft/core/check.h"
#include "peft/quant/quantized_base.h"

namespace peft::models {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Training versions of the fused element-wise kernels: the forward runs the inference loops (so
// a value rounds the same with and without autograd) and keeps only what its backward reads.

// y = weight * (x * rstd); saves x, weight and the per-row rstd.
struct RmsNormFn : public torch::autograd::Function<RmsNormFn> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight, double eps) {
    auto [y, rstd] = kernels::rms_norm_f32_rstd(x, weight, eps);
    ctx->save_for_backward({x, weight, rstd});
    return {y};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    auto [dx, dw] = kernels::rms_norm_backward_f32(grads[0], saved[0], saved[1], saved[2], ctx->needs_input_grad(0),
                                                   ctx->needs_input_grad(1));
    return {dx, dw, at::Tensor()};
  }
};

// silu(g) * u; saves g and u.
struct SiluMulFn : public torch::autograd::Function<SiluMulFn> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& g, const at::Tensor& u) {
    ctx->save_for_backward({g, u});
    return {kernels::silu_mul_f32(g, u)};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    auto [dg, du] = kernels::silu_mul_backward_f32(grads[0], saved[0], saved[1]);
    return {dg, du};
  }
};

// x [B, H, T, D] -> x·cos + rotate_half(x)·sin as contiguous [B, T, H, D] (the caller permutes it,
// so the Function's output is not a view); saves the tables only.
struct RotaryFn : public torch::autograd::Function<RotaryFn> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& cos,
                               const at::Tensor& sin) {
    ctx->save_for_backward({cos, sin});
    return {kernels::rotary_f32_bthd(x, cos, sin)};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    return {kernels::rotary_backward_f32(grads[0], saved[0], saved[1]), at::Tensor(), at::Tensor()};
  }
};

// gelu(x, "tanh"); saves x.
struct GeluTanhFn : public torch::autograd::Function<GeluTanhFn> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x) {
    ctx->save_for_backward({x});
    return {kernels::gelu_tanh_f32(x)};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    return {kernels::gelu_tanh_backward_f32(grads[0], saved[0])};
  }
};

// Dropout with its uint8 keep mask saved (a quarter of at::dropout's fp32 mask).
struct DropoutFn : public torch::autograd::Function<DropoutFn> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, double p) {
    auto [y, mask] = kernels::dropout_cpu(x, p);
    ctx->save_for_backward({mask});
    ctx->saved_data["p"] = p;
    return {y};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    return {kernels::dropout_backward_cpu(grads[0], saved[0], ctx->saved_data["p"].toDouble()), at::Tensor()};
  }
};

// gelu(x, "tanh") of a bf16 tensor (autocast training); saves x.
struct GeluTanhBf16Fn : public torch::autograd::Function<GeluTanhBf16Fn> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x) {
    ctx->save_for_backward({x});
    return {kernels::gelu_tanh_bf16(x)};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    at::Tensor dy = grads[0].scalar_type() == at::kBFloat16 ? grads[0] : grads[0].to(at::kBFloat16);
    return {kernels::gelu_tanh_backward_bf16(dy, saved[0])};
  }
};

// The fused path (inference or training) applies to these shapes.
bool rms_norm_fusable(const at::Tensor& x, const at::Tensor& weight) {
  return weight.dim() == 1 && x.dim() >= 1 && weight.size(0) == x.size(-1);
}

at::Tensor fused_rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  if (!rms_norm_fusable(x, weight)) return {};
  if (kernels::elementwise_f32_applicable({&x, &weight})) return kernels::rms_norm_f32(x, weight, eps);
  if (kernels::elementwise_f32_trainable({&x, &weight})) return RmsNormFn::apply(x, weight, eps)[0];
  return {};
}

}  // namespace

at::Tensor attention_bias(const at::Tensor& attention_mask, int64_t batch, int64_t T, int64_t past,
                          int64_t prefix, bool causal, at::ScalarType dtype, c10::Device device,
                          int64_t sliding_window) {
  PEFT_CHECK(sliding_window >= 0 && (sliding_window == 0 || causal), std::invalid_argument,
             "[attention] sliding_window ", sliding_window, " needs causal attention and a value >= 0");
  const int64_t S = prefix + past + T;
  if (!causal && !attention_mask.defined()) return {};
  const auto opts = at::TensorOptions().device(device);
  at::Tensor keep;  // [B, 1, T, S] bool
  if (causal) {
    // Query i (absolute position past + i) sees every prefix slot and keys j <= prefix + past + i.
    auto q = at::arange(T, opts.dtype(at::kLong)).unsqueeze(1) + (prefix + past);
    auto k = at::arange(S, opts.dtype(at::kLong)).unsqueeze(0);
    at::Tensor allowed = k <= q;
    if (sliding_window > 0) allowed = allowed.logical_and(k > q - sliding_window);
    keep = allowed.view({1, 1, T, S}).expand({batch, 1, T, S});
  }
  if (attention_mask.defined()) {
    PEFT_CHECK(attention_mask.dim() == 2 && attention_mask.size(0) == batch, std::invalid_argument,
               "[attention] attention_mask must be [batch=", batch, ", keys], got ",
               attention_mask.sizes());
    at::Tensor m = attention_mask.to(device);
    if (m.size(1) == past + T && prefix > 0)
      m = at::cat({at::ones({batch, prefix}, m.options()), m}, 1);
    PEFT_CHECK(m.size(1) == S, std::invalid_argument, "[attention] attention_mask covers ",
               attention_mask.size(1), " positions; expected ", past + T, " (cached + new) or ", S,
               " (prefix + cached + new)");
    auto pad = (m != 0).view({batch, 1, 1, S});
    keep = keep.defined() ? keep.logical_and(pad) : pad.expand({batch, 1, T, S});
  }
  const double lowest = dtype == at::kBFloat16 ? -3.3895313892515355e38
                        : dtype == at::kHalf   ? -65504.0
                        : dtype == at::kDouble ? std::numeric_limits<double>::lowest()
                                               : static_cast<double>(std::numeric_limits<float>::lowest());
  return at::zeros({batch, 1, T, S}, opts.dtype(dtype)).masked_fill(keep.logical_not(), lowest);
}

KeyValue extend_kv(const KeyValue* prefix, KVCache* cache, std::size_t layer, const at::Tensor& k,
                   const at::Tensor& v) {
  at::Tensor kk = k, vv = v;
  if (cache != nullptr) {
    if (cache->layers.size() <= layer) cache->layers.resize(layer + 1);
    auto& slot = cache->layers[layer];
    if (slot.key.defined()) {
      slot.key = at::cat({slot.key, k}, 2);
      slot.value = at::cat({slot.value, v}, 2);
    } else {
      slot.key = k;
      slot.value = v;
    }
    kk = slot.key;
    vv = slot.value;
  }
  if (prefix != nullptr && prefix->key.defined()) {
    PEFT_CHECK(prefix->key.dim() == 4 && prefix->key.size(0) == k.size(0) &&
                   prefix->key.size(1) == k.size(1) && prefix->key.size(3) == k.size(3) &&
                   prefix->value.sizes() == prefix->key.sizes(),
               std::invalid_argument, "[attention] layer ", layer, ": key/value prefix must be [B=",
               k.size(0), ", kv_heads=", k.size(1), ", P, head_dim=", k.size(3), "], got ",
               prefix->key.sizes(), " / ", prefix->value.sizes());
    kk = at::cat({prefix->key.to(kk.scalar_type()), kk}, 2);
    vv = at::cat({prefix->value.to(vv.scalar_type()), vv}, 2);
  }
  return {kk, vv};
}

at::Tensor attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                  const at::Tensor& bias, double scale, double dropout, bool training, double softcap) {
  // Inference on fp32 CPU tensors: one fused pass per query row (same operation order, no
  // [B, H, T, S] intermediates, masked keys skipped).
  if (!(training && dropout > 0) && softcap <= 0 && kernels::attention_f32_applicable(q, k, v, bias))
    return kernels::attention_f32(q, k, v, bias, scale);
  const int64_t H = q.size(1), KVH = k.size(1);
  // Training in fp32: fused attention whose backward recomputes the probabilities from each
  // row's log-sum-exp instead of keeping [B, H, T, S] of them. On LibTorch 2.x only for small
  // heads: at head_dim 8 (stories260K) it trains 1.6-1.9x faster than SDPA, at 64 (GPT-2) SDPA
  // is 3% ahead (docs/benchmarks.md).
  // With dropout on the probabilities (GPT-2's attn_pdrop) it is ours on every LibTorch: PyTorch's
  // fused CPU attention takes no dropout and falls back to its plain chain.
  const double p = training ? dropout : 0.0;
#if TORCH_VERSION_MAJOR >= 2
  const bool ours = q.size(3) <= 32 || p > 0;
#else
  const bool ours = true;
#endif
  if (ours && softcap <= 0 && kernels::attention_train_f32_applicable(q, k, v, bias, p > 0))
    return kernels::attention_train_f32(q, k, v, bias, scale, p);
  // Training in bf16 (autocast, or a bf16 model), where the fp32 kernel is ours: the same kernel
  // on fp32 copies of q, k and v, its output rounded once to bf16. PyTorch's fused attention
  // (transformers' default) also keeps scores, softmax and sums in fp32, though it rounds the
  // probabilities to bf16 for the product with V; 1.13's bf16 chain below is slower and rounds
  // the scores and probabilities to bf16.
  if (ours && softcap <= 0 && kernels::attention_train_bf16_candidate(q, k, v, p > 0)) {
    const at::Tensor qf = q.to(at::kFloat), kf = k.to(at::kFloat), vf = v.to(at::kFloat);
    const at::Tensor bf = bias.defined() ? bias.to(at::kFloat) : bias;
    if (kernels::attention_train_f32_applicable(qf, kf, vf, bf, p > 0))
      return kernels::attention_train_f32(qf, kf, vf, bf, scale, p).to(q.scalar_type());
  }
#if TORCH_VERSION_MAJOR >= 2
  // Training and fp32 on LibTorch 2.x: PyTorch's fused attention (SDPA: flash attention on the
  // CPU, whose backward recomputes the probabilities instead of keeping [B, H, T, S] of them), as
  // transformers' default attention. The plain chain below stays for tanh soft-capping (Gemma 2),
  // 1.13, bf16/fp16 inference (SDPA keeps fp32 scores and probabilities there, eager attention
  // rounds them to the dtype: transformers' low-precision fixtures follow eager) and
  // kernels::ScopedPlainAten (checkpointed layers must round alike in their forward and their
  // recomputation).
  if (softcap <= 0 && kernels::enabled() && (q.scalar_type() == at::kFloat || at::GradMode::is_enabled())) {
    at::Tensor o = at::scaled_dot_product_attention(
        q, k, v, bias.defined() ? c10::optional<at::Tensor>(bias) : c10::nullopt,
        training ? dropout : 0.0, /*is_causal=*/false, scale, /*enable_gqa=*/KVH != H);
    // Rows that may attend nowhere: zeros, as below.
    if (bias.defined()) {
      const at::Tensor dead = bias.amax(-1, true) < kernels::kDeadRowBias;
      if (dead.any().item<bool>()) o = o.masked_fill(dead, 0);
    }
    return o;
  }
#endif
  at::Tensor kk = k, vv = v;
  if (KVH != H) {
    const int64_t rep = H / KVH;
    auto expand = [&](const at::Tensor& t) {
      return t.unsqueeze(2).expand({t.size(0), KVH, rep, t.size(2), t.size(3)})
          .reshape({t.size(0), H, t.size(2), t.size(3)});
    };
    kk = expand(k);
    vv = expand(v);
  }
  // In place where autograd allows it (a product's and a sum's backward keep no output): each
  // [B, H, T, S] temporary saved is one allocation and one pass less per layer.
  at::Tensor scores = at::matmul(q, kk.transpose(2, 3));
  scores.mul_(scale);
  if (softcap > 0) scores = at::tanh(scores / softcap) * softcap;
  if (bias.defined()) scores.add_(bias);
  at::Tensor probs = at::softmax(scores, -1, at::kFloat).to(q.scalar_type());
  if (bias.defined()) {
    // Queries that may attend nowhere (left-padding rows) get a zero output, as PyTorch's SDPA
    // (transformers' default attention) gives them, rather than eager attention's uniform average.
    // Masked entries hold the dtype's lowest value (<= -65504); allowed ones a small bias.
    const at::Tensor dead = bias.amax(-1, true) < kernels::kDeadRowBias;
    if (dead.any().item<bool>()) probs = probs.masked_fill(dead, 0);
  }
  probs = models::dropout(probs, dropout, training);
  return at::matmul(probs, vv);
}

at::Tensor linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  if (kernels::linear_rows_applicable(x, weight, bias)) return kernels::linear_rows(x, weight, bias, false);
  return at::linear(x, weight, bias.defined() ? c10::optional<at::Tensor>(bias) : c10::nullopt);
}

at::Tensor dropout(const at::Tensor& x, double p, bool training) {
  if (!training || p <= 0) return x;
  if (!kernels::dropout_applicable(x, p)) return at::dropout(x, p, true);
  if (at::GradMode::is_enabled() && x.requires_grad()) return DropoutFn::apply(x, p)[0];
  return kernels::dropout_cpu(x, p).first;
}

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  if (at::Tensor y = fused_rms_norm(x, weight, eps); y.defined()) return y;
  const auto in_dtype = x.scalar_type();
  at::Tensor h = x.to(at::kFloat);
  h = h * at::rsqrt(h.pow(2).mean(-1, true) + eps);
  return weight * h.to(in_dtype);
}

at::Tensor gemma_rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  // fp32: (1 + weight) is rounded once either way, so the fused kernel takes it as its weight
  // (and autograd carries dweight through the addition).
  if (x.scalar_type() == at::kFloat && weight.scalar_type() == at::kFloat && x.device().is_cpu() &&
      rms_norm_fusable(x, weight) && kernels::enabled()) {
    const at::Tensor scale = 1.0 + weight;
    if (at::Tensor y = fused_rms_norm(x, scale, eps); y.defined()) return y;
  }
  at::Tensor h = x.to(at::kFloat);
  h = h * at::rsqrt(h.pow(2).mean(-1, true) + eps);
  return (h * (1.0 + weight.to(at::kFloat))).to(x.scalar_type());
}

RotaryTables rotary_tables(const at::Tensor& inv_freq, const at::Tensor& position_ids,
                           at::ScalarType dtype, double attention_scaling) {
  // freqs [B, T, D/2] in fp32, then cat(freqs, freqs).
  at::Tensor freqs = position_ids.to(at::kFloat).unsqueeze(-1) * inv_freq.to(at::kFloat).view({1, 1, -1});
  at::Tensor emb = at::cat({freqs, freqs}, -1);
  return {(emb.cos() * attention_scaling).to(dtype), (emb.sin() * attention_scaling).to(dtype)};
}

at::Tensor apply_rotary(const at::Tensor& x, const RotaryTables& t) {
  const bool fusable = x.dim() == 4 && x.size(3) % 2 == 0 && t.cos.dim() == 3 && t.cos.sizes() == t.sin.sizes() &&
                       (t.cos.size(0) == x.size(0) || t.cos.size(0) == 1) && t.cos.size(1) == x.size(2) &&
                       t.cos.size(2) == x.size(3);
  if (fusable && kernels::elementwise_f32_applicable({&x, &t.cos, &t.sin})) return kernels::rotary_f32(x, t.cos, t.sin);
  // The tables never need a gradient here (they come from positions); a trainable table takes
  // the ATen path.
  if (fusable && !t.cos.requires_grad() && !t.sin.requires_grad() &&
      kernels::elementwise_f32_trainable({&x, &t.cos, &t.sin}))
    return RotaryFn::apply(x, t.cos, t.sin)[0].permute({0, 2, 1, 3});
  const int64_t half = x.size(-1) / 2;
  at::Tensor x1 = x.narrow(-1, 0, half), x2 = x.narrow(-1, half, half);
  at::Tensor rot = at::cat({-x2, x1}, -1);
  return x * t.cos.unsqueeze(1) + rot * t.sin.unsqueeze(1);
}

at::Tensor default_position_ids(int64_t batch, int64_t T, int64_t past, c10::Device device) {
  return at::arange(past, past + T, at::TensorOptions().dtype(at::kLong).device(device))
      .unsqueeze(0)
      .expand({batch, T});
}

namespace {

// Mean cross-entropy of [B, R, V] logits (fp32 or bf16) against [B, R] targets (-100 skipped),
// computed in fp32 as cross_entropy_loss(logits.float(), ...) computes it, without the fp32 copy
// or the [B, R, V] log-probabilities: the forward keeps each row's log-sum-exp and the backward
// writes (softmax − onehot)·g/n in the logits' dtype. No counted row gives NaN, as ATen.
struct CrossEntropyFn : public torch::autograd::Function<CrossEntropyFn> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& logits, const at::Tensor& targets) {
    at::Tensor lse;
    const auto [sum, count] = kernels::cross_entropy_rows(logits, targets, lse);
    ctx->save_for_backward({logits, targets, lse});
    ctx->saved_data["count"] = count;
    return {at::scalar_tensor(count ? sum / static_cast<double>(count) : std::nan(""),
                              logits.options().dtype(at::kFloat))};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const int64_t count = ctx->saved_data["count"].toInt();
    const double g = grads[0].item<double>();
    return {kernels::cross_entropy_rows_backward(saved[0], saved[1], saved[2], count ? g / static_cast<double>(count) : 0.0),
            at::Tensor()};
  }
};

// logits [B, R, V] against targets [B, R]: the fused loss when it applies, ATen's otherwise.
at::Tensor mean_cross_entropy(const at::Tensor& logits, const at::Tensor& targets) {
  if (kernels::cross_entropy_applicable(logits, targets)) return CrossEntropyFn::apply(logits, targets)[0];
  return at::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}).to(at::kFloat), targets.reshape({-1}), {},
                                at::Reduction::Mean, -100);
}

// Mean cross-entropy of h·Wᵀ + b against targets without the logits: the forward computes the
// loss and, for the inputs that need one, the gradient of the mean (kernels::linear_cross_entropy,
// chunk by chunk), which the backward only scales by the incoming gradient. What autograd would
// keep otherwise, the [N, V] logits and their gradient, never exists.
struct LinearCrossEntropyFn : public torch::autograd::Function<LinearCrossEntropyFn> {
  // `b` is [V], or empty for no bias (an undefined tensor cannot be a Function's input on 1.13);
  // `need` says which of h, w, b get a gradient (ctx->needs_input_grad fails when none does).
  static variable_list forward(AutogradContext* ctx, const at::Tensor& h, const at::Tensor& w, const at::Tensor& b,
                               const at::Tensor& targets, std::array<bool, 3> need) {
    const at::Tensor bias = b.numel() > 0 ? b : at::Tensor();
    auto r = kernels::linear_cross_entropy(h, w, bias, targets, need[0], need[1], bias.defined() && need[2]);
    if (r.dh.defined()) ctx->saved_data["dh"] = r.dh;
    if (r.dw.defined()) ctx->saved_data["dw"] = r.dw;
    if (r.db.defined()) ctx->saved_data["db"] = r.db;
    return {at::scalar_tensor(r.count ? r.sum / static_cast<double>(r.count) : std::nan(""),
                              h.options().dtype(at::kFloat))};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const at::Tensor& g = grads[0];
    auto scaled = [&](const char* k) {
      const auto it = ctx->saved_data.find(k);
      return it == ctx->saved_data.end() ? at::Tensor() : it->second.toTensor() * g;
    };
    return {scaled("dh"), scaled("dw"), scaled("db"), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor causal_lm_loss(const at::Tensor& logits, const at::Tensor& labels) {
  PEFT_CHECK(labels.dim() == 2 && labels.size(0) == logits.size(0) && labels.size(1) == logits.size(1),
             std::invalid_argument, "[causal_lm_loss] labels must be [B, T] = ",
             logits.sizes().slice(0, 2), ", got ", labels.sizes());
  const int64_t T = logits.size(1);
  // Position t predicts label t + 1; the last position predicts nothing.
  at::Tensor y = at::full({labels.size(0), T}, -100, labels.options().dtype(at::kLong).device(logits.device()));
  y.narrow(1, 0, T - 1).copy_(labels.narrow(1, 1, T - 1));
  return mean_cross_entropy(logits, y);
}

at::Tensor causal_lm_loss_from_hidden(const at::Tensor& h, const at::Tensor& weight, const at::Tensor& bias,
                                      const at::Tensor& labels) {
  if (!h.defined() || h.dim() != 3 || !labels.defined() || labels.dim() != 2 || labels.size(0) != h.size(0) ||
      labels.size(1) != h.size(1) || quant::cpu_autocast_dtype())
    return {};
  const int64_t B = h.size(0), T = h.size(1);
  const at::Tensor h2 = h.reshape({B * T, h.size(2)});
  at::Tensor y = at::full({B, T}, -100, labels.options().dtype(at::kLong).device(h.device()));
  y.narrow(1, 0, T - 1).copy_(labels.narrow(1, 1, T - 1));
  y = y.view({B * T});
  if (!kernels::linear_cross_entropy_applicable(h2, weight, bias, y)) return {};
  const bool grad = at::GradMode::is_enabled();
  const std::array<bool, 3> need = {grad && h2.requires_grad(), grad && weight.requires_grad(),
                                    grad && bias.defined() && bias.requires_grad()};
  return LinearCrossEntropyFn::apply(h2, weight, bias.defined() ? bias : at::empty({0}, weight.options()), y, need)[0];
}

at::Tensor token_loss(const at::Tensor& logits, const at::Tensor& labels) {
  return mean_cross_entropy(logits, labels.to(logits.device()).to(at::kLong));
}

at::Tensor sequence_classification_loss(const at::Tensor& logits, const at::Tensor& labels,
                                        const std::string& problem_type) {
  const int64_t n = logits.size(-1);
  std::string kind = problem_type;
  if (kind.empty()) {
    if (n == 1) kind = "regression";
    else if (labels.scalar_type() == at::kLong || labels.scalar_type() == at::kInt) kind = "single_label_classification";
    else kind = "multi_label_classification";
  }
  if (kind == "regression") {
    return n == 1 ? at::mse_loss(logits.squeeze().to(at::kFloat), labels.squeeze().to(at::kFloat))
                  : at::mse_loss(logits.to(at::kFloat), labels.to(at::kFloat));
  }
  if (kind == "single_label_classification")
    return at::cross_entropy_loss(logits.view({-1, n}).to(at::kFloat), labels.view({-1}).to(at::kLong),
                                  {}, at::Reduction::Mean, -100);
  PEFT_CHECK(kind == "multi_label_classification", ConfigError,
             "[sequence_classification_loss] problem_type '", problem_type,
             "' is not one of regression, single_label_classification, multi_label_classification");
  return at::binary_cross_entropy_with_logits(logits.to(at::kFloat), labels.to(at::kFloat));
}

namespace {

// Reentrant checkpoint (torch.utils.checkpoint with use_reentrant=True): the layer function lives
// in a table until its backward has run.
std::mutex g_ckpt_mu;
std::map<int64_t, std::function<at::Tensor(const at::Tensor&)>> g_ckpt_fns;
int64_t g_ckpt_next = 0;

struct CheckpointFn : public torch::autograd::Function<CheckpointFn> {
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, at::Tensor x, int64_t id) {
    ctx->saved_data["id"] = id;
    ctx->saved_data["rng"] = at::detail::getDefaultCPUGenerator().get_state();
    ctx->save_for_backward({x});
    std::function<at::Tensor(const at::Tensor&)> fn;
    {
      std::lock_guard<std::mutex> lock(g_ckpt_mu);
      fn = g_ckpt_fns.at(id);
    }
    torch::NoGradGuard ng;
    kernels::ScopedPlainAttention same_rounding_as_recompute;
    return {fn(x)};
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const int64_t id = ctx->saved_data["id"].toInt();
    std::function<at::Tensor(const at::Tensor&)> fn;
    {
      std::lock_guard<std::mutex> lock(g_ckpt_mu);
      fn = g_ckpt_fns.at(id);
      g_ckpt_fns.erase(id);
    }
    at::Tensor x = ctx->get_saved_variables()[0].detach().requires_grad_(true);
    at::Generator gen = at::detail::getDefaultCPUGenerator();
    const at::Tensor now = gen.get_state();
    gen.set_state(ctx->saved_data["rng"].toTensor());
    at::Tensor y;
    {
      torch::AutoGradMode on(true);
      y = fn(x);
    }
    gen.set_state(now);
    torch::autograd::backward({y}, {grads[0]});
    return {x.grad(), at::Tensor()};
  }
};

}  // namespace

at::Tensor checkpoint(std::function<at::Tensor(const at::Tensor&)> fn, const at::Tensor& x, bool enabled) {
  if (!enabled || !at::GradMode::is_enabled()) return fn(x);
  int64_t id;
  {
    std::lock_guard<std::mutex> lock(g_ckpt_mu);
    id = g_ckpt_next++;
    g_ckpt_fns.emplace(id, std::move(fn));
  }
  // With frozen embeddings the input carries no grad, and the node would be dropped from the
  // graph with the adapter gradients inside it (PEFT's enable_input_require_grads problem).
  const at::Tensor xin = x.requires_grad() ? x : x.detach().requires_grad_(true);
  return CheckpointFn::apply(xin, id)[0];
}

void check_shape(const at::Tensor& t, std::vector<int64_t> expected, const char* where,
                 const char* what) {
  bool ok = t.dim() == static_cast<int64_t>(expected.size());
  for (std::size_t i = 0; ok && i < expected.size(); ++i)
    ok = expected[i] < 0 || t.size(static_cast<int64_t>(i)) == expected[i];
  if (!ok) {
    std::ostringstream os;
    os << "[" << where << "] " << what << " must have shape [";
    for (std::size_t i = 0; i < expected.size(); ++i)
      os << (i ? ", " : "") << (expected[i] < 0 ? std::string("*") : std::to_string(expected[i]));
    os << "], got " << t.sizes();
    throw std::invalid_argument(os.str());
  }
}

}  // namespace peft::models

namespace peft::models {

namespace {
const char* const kActivations[] = {"silu", "swish", "gelu", "gelu_new", "gelu_pytorch_tanh",
                                    "gelu_fast", "relu", "tanh", "quick_gelu"};
}

at::Tensor silu_mul(const at::Tensor& g, const at::Tensor& u) {
  if (g.sizes() == u.sizes()) {
    if (kernels::elementwise_f32_applicable({&g, &u})) return kernels::silu_mul_f32(g, u);
    if (kernels::elementwise_f32_trainable({&g, &u})) return SiluMulFn::apply(g, u)[0];
  }
  return at::silu(g) * u;
}

void check_activation(const std::string& name, const std::string& source) {
  for (const char* a : kActivations)
    if (name == a) return;
  throw NotSupported("[config] " + source + ": activation '" + name +
                     "' is not supported (silu, gelu, gelu_new, gelu_pytorch_tanh, gelu_fast, relu, tanh, quick_gelu)");
}

at::Tensor activation(const std::string& name, const at::Tensor& x) {
  if (name == "silu" || name == "swish") return at::silu(x);
  if (name == "gelu") return at::gelu(x);
  if (name == "gelu_new" || name == "gelu_pytorch_tanh" || name == "gelu_fast") {
    if (kernels::elementwise_f32_applicable({&x})) return kernels::gelu_tanh_f32(x);
    if (kernels::elementwise_f32_trainable({&x})) return GeluTanhFn::apply(x)[0];
    if (kernels::elementwise_bf16_trainable({&x})) return GeluTanhBf16Fn::apply(x)[0];
    return at::gelu(x, "tanh");
  }
  if (name == "relu") return at::relu(x);
  if (name == "tanh") return at::tanh(x);
  if (name == "quick_gelu") return x * at::sigmoid(1.702 * x);
  check_activation(name, "model");
  return x;
}

}  // namespace peft::models
