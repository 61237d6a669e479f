#pragma once
// Adapter slots: every projection of our models is an AdaptableLinear and every token embedding
// an AdaptableEmbedding. They register `weight`/`bias` under the HF names, so checkpoints load
// with no renaming, and add the output of attached adapters (LoRA, AdaLoRA) to the base output,
// with no module surgery (tier 2).
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "peft/quant/quantized_base.h"

namespace peft::models {

/// What a tuner attaches to a linear slot. The tuner registers the adapter's parameters on the
/// slot under PEFT's names (e.g. `lora_A.<adapter>.weight`); this interface is the math.
class LinearAdapter {
 public:
  virtual ~LinearAdapter() = default;
  /// The term added to the base output for x: [..., in] -> [..., out]. `base_out` is x·Wᵀ
  /// without the bias (DoRA rescales it); it may be used, never modified. Undefined: nothing is
  /// added (multiplicative adapters).
  virtual at::Tensor delta(const at::Tensor& x, const at::Tensor& base_out) = 0;
  /// Multiplicative adapters ((IA)³): a vector [in] multiplied into the input before the base
  /// projection, or a vector [out] multiplied into the whole output (bias included) after it.
  /// Undefined for additive adapters.
  virtual at::Tensor input_scale() { return {}; }
  virtual at::Tensor output_scale() { return {}; }
  /// The weight update in [out, in] layout.
  virtual at::Tensor delta_weight() = 0;
  /// The bias update (undefined when the adapter has none).
  virtual at::Tensor delta_bias() { return {}; }
  /// Merged weight from the current one ([out, in]); DoRA and (IA)³ override.
  virtual at::Tensor merge_into(const at::Tensor& w) { return w + delta_weight().to(w.scalar_type()); }
  virtual at::Tensor unmerge_from(const at::Tensor& w) { return w - delta_weight().to(w.scalar_type()); }
  /// Merged bias from the current one (undefined: the bias is left alone).
  virtual at::Tensor merge_bias_into(const at::Tensor& b) {
    const at::Tensor d = delta_bias();
    return d.defined() ? b + d.to(b.scalar_type()) : at::Tensor();
  }
  virtual at::Tensor unmerge_bias_from(const at::Tensor& b) {
    const at::Tensor d = delta_bias();
    return d.defined() ? b - d.to(b.scalar_type()) : at::Tensor();
  }
  /// Plain low-rank form s·B·A (A: [r, in], B: [out, r]) for batched mixed-adapter routing;
  /// false when the adapter is not of that form or has active dropout.
  virtual bool low_rank_factors(at::Tensor& A, at::Tensor& B, double& scaling) { return false; }
};

/// Per-row adapter routing for mixed-adapter batches ("__base__" = no adapter), set for the
/// duration of a forward by ScopedAdapterRouting. Inference only.
class ScopedAdapterRouting {
 public:
  explicit ScopedAdapterRouting(std::vector<std::string> per_row);
  ~ScopedAdapterRouting();
  ScopedAdapterRouting(const ScopedAdapterRouting&) = delete;
  ScopedAdapterRouting& operator=(const ScopedAdapterRouting&) = delete;
  /// The routing in effect on this thread, or nullptr.
  static const std::vector<std::string>* current();

 private:
  const std::vector<std::string>* previous_;
  std::vector<std::string> rows_;
};

/// Bookkeeping shared by both slot kinds: adapters by name, which are active, merged, disabled.
template <typename Adapter>
class AdapterSet {
 public:
  void add(const std::string& name, std::shared_ptr<Adapter> a);
  void remove(const std::string& name);
  std::shared_ptr<Adapter> get(const std::string& name) const;
  std::vector<std::string> names() const;
  void set_active(std::vector<std::string> names);
  const std::vector<std::string>& active() const { return active_; }
  const std::vector<std::string>& merged() const { return merged_; }
  bool is_merged(const std::string& n) const;
  void mark_merged(const std::string& n) { merged_.push_back(n); }
  /// The adapters a merge of `names` (default: the active ones) still has to fold in, in order;
  /// throws naming an adapter this layer does not hold.
  std::vector<std::pair<std::string, std::shared_ptr<Adapter>>> pending_merge(const std::vector<std::string>& names) const;
  void clear_merged() { merged_.clear(); }
  bool disabled = false;

 private:
  std::vector<std::pair<std::string, std::shared_ptr<Adapter>>> items_;
  std::vector<std::string> active_, merged_;
};

/// A frozen weight as CPU autocast computes with it: the autocast-dtype copy, cast once and
/// reused while the weight is unchanged (same storage and version); the weight itself when
/// autocast is off, the weight requires grad (autocast caches those casts itself) or it is not
/// floating point. Autocast re-casts a weight that needs no gradient in every op, which a frozen
/// base would pay in every forward and recomputation.
class AutocastWeightCache {
 public:
  const at::Tensor& get(const at::Tensor& weight);

 private:
  at::Tensor cast_;
  const void* source_ = nullptr;
  int64_t version_ = -1;
};

class AdaptableLinearImpl : public torch::nn::Module {
 public:
  /// fan_in_fan_out: the weight is stored [in, out] (GPT-2 Conv1D), as PEFT's flag of that name.
  AdaptableLinearImpl(int64_t in_features, int64_t out_features, bool bias, bool fan_in_fan_out = false);

  /// x: [..., in] -> [..., out] = base(x) + Σ active, unmerged adapters' delta(x) (unless disabled).
  at::Tensor forward(const at::Tensor& x);
  /// The base projection alone.
  at::Tensor base_forward(const at::Tensor& x);

  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return out_features_; }
  bool fan_in_fan_out() const { return fan_in_fan_out_; }
  /// The weight in [out, in] layout whatever the storage layout (a view, no copy).
  at::Tensor weight_out_in() const;
  /// weight_out_in() when forward(x) is x·Wᵀ + bias and nothing else (a full-precision weight, no
  /// active unmerged adapter, no per-row routing); undefined otherwise.
  at::Tensor plain_weight() const;

  AdapterSet<LinearAdapter> adapters;

  /// Adds the named adapters (default: the active ones) into the weight. With safe_merge the
  /// result is computed on a copy and checked for NaN/Inf first (PEFT's safe_merge).
  void merge(const std::vector<std::string>& names = {}, bool safe_merge = false);
  /// Subtracts every merged adapter, newest first.
  void unmerge();

  at::Tensor weight;  ///< [out, in], or [in, out] when fan_in_fan_out; undefined when quantised
  at::Tensor bias;    ///< [out] or undefined

  /// Makes `q` the base weight (drops the `weight` parameter); nullptr restores a full-precision
  /// fp32 `weight` parameter from the quantised one.
  void set_quantized(std::shared_ptr<quant::QuantizedBase> q);
  const std::shared_ptr<quant::QuantizedBase>& quantized() const { return quantized_; }
  /// Largest |merged - requantised| of the last merge/unmerge into a quantised base (PEFT #1080).
  double last_requant_error() const { return last_requant_error_; }

 private:
  at::Tensor routed_delta(const at::Tensor& x, const at::Tensor& base_out,
                          const std::vector<std::string>& rows);
  int64_t in_features_, out_features_;
  bool fan_in_fan_out_;
  std::shared_ptr<quant::QuantizedBase> quantized_;
  double last_requant_error_ = 0.0;
  AutocastWeightCache autocast_weight_;
};
TORCH_MODULE(AdaptableLinear);

/// What a tuner attaches to an embedding slot.
class EmbeddingAdapter {
 public:
  virtual ~EmbeddingAdapter() = default;
  /// [..] ids -> [.., dim] term added to the looked-up embeddings.
  virtual at::Tensor delta(const at::Tensor& ids) = 0;
  /// The table update [num_embeddings, dim].
  virtual at::Tensor delta_weight() = 0;
};

class AdaptableEmbeddingImpl : public torch::nn::Module {
 public:
  AdaptableEmbeddingImpl(int64_t num_embeddings, int64_t dim, std::optional<int64_t> padding_idx = std::nullopt);
  at::Tensor forward(const at::Tensor& ids);
  int64_t num_embeddings() const { return weight.size(0); }
  int64_t embedding_dim() const { return weight.size(1); }
  std::optional<int64_t> padding_idx() const { return padding_idx_; }

  AdapterSet<EmbeddingAdapter> adapters;
  void merge(const std::vector<std::string>& names = {}, bool safe_merge = false);
  void unmerge();

  at::Tensor weight;  ///< [num_embeddings, dim]

 private:
  std::optional<int64_t> padding_idx_;
};
TORCH_MODULE(AdaptableEmbedding);

}  // namespace peft::models
