#pragma once
// Ia3Model: (IA)³'s TunerModel, PEFT's IA3Model (tier 2). One learned vector per targeted linear
// slot (tuners/ia3/layer.h): it scales the input of feedforward modules and the output of the
// others; several active adapters multiply.
//
//   peft::Ia3Config cfg;  cfg.task_type = peft::TaskType::Seq2SeqLM;   // default targets: k, v, wo
//   auto pm = peft::get_peft_model(base, cfg);
//   pm->tuner_as<peft::ia3::Ia3Model>().add_weighted_adapter({"a", "b"}, {0.5, 0.5}, "ab");
#include <map>
#include <string>
#include <vector>

#include "peft/tuners/ia3/config.h"
#include "peft/tuners/layer_tuner.h"

namespace peft::ia3 {

class Ia3Model : public LayerTuner {
 public:
  using LayerTuner::LayerTuner;

  std::vector<std::string> inject(const std::string& name, PeftConfig& cfg) override;
  void mark_trainable(const std::string& name) override;
  std::map<std::string, at::Tensor> state_dict(const std::string& name) const override;
  std::string mismatch_hint(const std::string& key, const std::string& name) const override;
  void merge(const std::vector<std::string>& names, bool safe_merge) override;

  /// New adapter `adapter_name` whose vectors are Σ weight_i · vector_i over `adapters`, on the
  /// union of their target and feedforward modules (PEFT's IA3Model.add_weighted_adapter; nothing
  /// happens when the name exists already). It is added, not activated.
  void add_weighted_adapter(const std::vector<std::string>& adapters, const std::vector<double>& weights,
                            const std::string& adapter_name);

  /// Our parameter name -> PEFT's saved key for adapter `name` ("" when not the adapter's).
  static std::string saved_key(const std::string& param, const std::string& name);

 protected:
  void detach(models::AdaptableLinearImpl* linear, models::AdaptableEmbeddingImpl* embedding,
              const std::string& name) override;
};

}  // namespace peft::ia3
