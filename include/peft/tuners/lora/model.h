#pragma once
// LoraModel: LoRA's TunerModel, PEFT's LoraModel (tier 2). Adapters sit on the model's linear
// and embedding slots (tuners/lora/layer.h); AdaLoraModel (tuners/adalora/model.h) builds on it.
//
//   auto pm = peft::get_peft_model(base, lora_cfg);
//   pm->tuner_as<peft::lora::LoraModel>().add_weighted_adapter({"a", "b"}, {0.5, 0.5}, "ab", "linear");
#include <map>
#include <string>
#include <vector>

#include "peft/tuners/layer_tuner.h"
#include "peft/tuners/lora/config.h"

namespace peft::lora {

class LoraModel : public LayerTuner {
 public:
  using LayerTuner::LayerTuner;

  std::vector<std::string> inject(const std::string& name, PeftConfig& cfg) override;
  void mark_trainable(const std::string& name) override;
  std::map<std::string, at::Tensor> state_dict(const std::string& name) const override;
  bool required_key(const std::string& key) const override;
  models::ModelOutput forward(const models::ModelInputs& in, const std::vector<std::string>& adapter_names) override;

  /// New adapter from weighted existing ones: "linear", "cat" or "svd" (PEFT's
  /// add_weighted_adapter; svd_rank 0 = max rank of the inputs). It is added, not activated.
  virtual void add_weighted_adapter(const std::vector<std::string>& adapters, const std::vector<double>& weights,
                                    const std::string& adapter_name, const std::string& combination_type = "svd",
                                    int64_t svd_rank = 0);

  /// Our parameter name -> PEFT's saved key for adapter `name` ("" when not the adapter's).
  static std::string saved_key(const std::string& param, const std::string& name);

 protected:
  /// Per-method steps of inject: checks and defaults before targets are resolved, the default
  /// targets of an architecture, and what goes onto one slot.
  virtual void prepare(const std::string& name, LoraConfig& cfg) { (void)name; (void)cfg; }
  virtual std::vector<std::string> default_targets(const std::string& model_type) const;
  virtual void attach(models::AdaptableLinearImpl& slot, const std::string& module, const std::string& name,
                      const LoraConfig& cfg);
  virtual void attach(models::AdaptableEmbeddingImpl& slot, const std::string& module, const std::string& name,
                      const LoraConfig& cfg);
  void detach(models::AdaptableLinearImpl* linear, models::AdaptableEmbeddingImpl* embedding,
              const std::string& name) override;
};

}  // namespace peft::lora
