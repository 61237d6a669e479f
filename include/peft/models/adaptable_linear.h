#pragma once
// AdaptableLinear: every projection of our models. Registers `weight`/`bias` under the HF names,
// so checkpoints load with no renaming, and adds the output of attached adapters (LoRA, AdaLoRA)
// to the base output, with no module surgery (tier 2).
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace peft::models {

/// What a tuner attaches to a slot. Implementations register their parameters on themselves;
/// the slot registers the adapter as a child module under the adapter's chosen name.
class LinearAdapter : public torch::nn::Module {
 public:
  /// The term added to the base output for input x ([..., in] -> [..., out]).
  virtual at::Tensor delta(const at::Tensor& x) = 0;
  /// The same term as a weight update in [out, in] layout (for merging).
  virtual at::Tensor delta_weight() = 0;
};

class AdaptableLinearImpl : public torch::nn::Module {
 public:
  /// fan_in_fan_out: the weight is stored [in, out] (GPT-2 Conv1D), as PEFT's flag of that name.
  AdaptableLinearImpl(int64_t in_features, int64_t out_features, bool bias,
                      bool fan_in_fan_out = false);

  /// x: [..., in] -> [..., out] = base(x) + Σ active adapters' delta(x) (unless disabled/merged).
  at::Tensor forward(const at::Tensor& x);
  /// The base projection alone.
  at::Tensor base_forward(const at::Tensor& x);

  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return out_features_; }
  bool fan_in_fan_out() const { return fan_in_fan_out_; }
  /// The weight in [out, in] layout whatever the storage layout (a view, no copy).
  at::Tensor weight_out_in() const;

  /// Adapter slots, in insertion order. `name` is the adapter name ("default").
  void add_adapter(const std::string& name, std::shared_ptr<LinearAdapter> adapter);
  void delete_adapter(const std::string& name);
  std::shared_ptr<LinearAdapter> adapter(const std::string& name) const;
  std::vector<std::string> adapter_names() const;
  /// Which adapters forward() sums (default: the ones added, in order).
  void set_active_adapters(std::vector<std::string> names);
  const std::vector<std::string>& active_adapters() const { return active_; }
  /// When true forward() is the base projection only.
  void set_adapters_disabled(bool disabled) { disabled_ = disabled; }
  bool adapters_disabled() const { return disabled_; }

  at::Tensor weight;  ///< [out, in], or [in, out] when fan_in_fan_out
  at::Tensor bias;    ///< [out] or undefined

 private:
  int64_t in_features_, out_features_;
  bool fan_in_fan_out_;
  bool disabled_ = false;
  std::vector<std::pair<std::string, std::shared_ptr<LinearAdapter>>> adapters_;
  std::vector<std::string> active_;
};
TORCH_MODULE(AdaptableLinear);

}  // namespace peft::models
