#pragma once
// LayerTuner: the TunerModel of methods whose adapters sit on the model's adapter slots
// (models/adaptable_linear.h) — LoRA, AdaLoRA, (IA)³ — as PEFT's BaseTuner with BaseTunerLayer
// layers (tier 2). It routes the active set, disabling, merging and removal to the slots; a method
// adds its layers in inject() and says how to take them off again in detach().
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "peft/models/adaptable_linear.h"
#include "peft/tuners/target_match.h"
#include "peft/tuners/tuner_model.h"

namespace peft {

class LayerTuner : public TunerModel {
 public:
  using TunerModel::TunerModel;

  void set_active(const std::vector<std::string>& names) override;
  void set_disabled(bool disabled) override;
  void merge(const std::vector<std::string>& names, bool safe_merge) override;
  void unmerge() override;
  void remove(const std::string& name, bool keep_merged) override;

 protected:
  using SlotFn = std::function<void(const std::string& module, models::AdaptableLinearImpl* linear,
                                    models::AdaptableEmbeddingImpl* embedding)>;
  /// Every adapter slot of the base model in model order (exactly one of the two pointers is set).
  void for_each_slot(const SlotFn& f) const;

  /// The candidate modules of a target resolution (tuners/target_match.h).
  struct Candidates {
    std::vector<std::string> all, linear, embedding;
    std::map<std::string, models::AdaptableLinearImpl*> linear_slots;
    std::map<std::string, models::AdaptableEmbeddingImpl*> embedding_slots;
    std::string output_layer;  ///< the LM head / classifier that "all-linear" leaves out
  };
  Candidates candidates(TaskType task) const;

  /// Takes adapter `name`'s layers off one slot (called for every slot that holds it).
  virtual void detach(models::AdaptableLinearImpl* linear, models::AdaptableEmbeddingImpl* embedding,
                      const std::string& name) = 0;

  /// The base parameters named `<module>.bias` of the adapted modules (`targets`) or of every
  /// module (`all`): PEFT's bias="lora_only" / "all" training and saving.
  void mark_biases_trainable(const std::string& bias, const std::vector<std::string>& targets) const;
};

}  // namespace peft
