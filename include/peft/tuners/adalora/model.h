#pragma once
// AdaLoraModel: AdaLoRA's TunerModel, PEFT's AdaLoraModel (tier 2): LoRA with SVD-form
// triplets, the orthogonal regularisation in the loss and the rank allocator after each step.
//
//   auto& ada = pm->tuner_as<peft::adalora::AdaLoraModel>();
//   ada.rank_allocator()->triplet_scores();
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "peft/tuners/adalora/config.h"
#include "peft/tuners/adalora/layer.h"
#include "peft/tuners/lora/model.h"

namespace peft::adalora {

class AdaLoraModel : public lora::LoraModel {
 public:
  using LoraModel::LoraModel;
  ~AdaLoraModel() override;

  void remove(const std::string& name, bool keep_merged) override;
  std::map<std::string, at::Tensor> saved_state_dict(const std::string& name) const override;
  void before_load(const std::string& name) override;
  at::Tensor extra_loss() override;
  std::vector<std::pair<std::string, double>> on_optimizer_step(int64_t global_step) override;
  std::map<std::string, at::Tensor> training_state() override;
  void load_training_state(const std::map<std::string, at::Tensor>& state) override;
  void add_weighted_adapter(const std::vector<std::string>& adapters, const std::vector<double>& weights,
                            const std::string& adapter_name, const std::string& combination_type = "svd",
                            int64_t svd_rank = 0) override;

  /// The rank allocator of the trainable adapter (created on first use; nullptr when every
  /// adapter is in inference mode).
  RankAllocator* rank_allocator();

 protected:
  void prepare(const std::string& name, LoraConfig& cfg) override;
  std::vector<std::string> default_targets(const std::string& model_type) const override;
  void attach(models::AdaptableLinearImpl& slot, const std::string& module, const std::string& name,
              const LoraConfig& cfg) override;
  void attach(models::AdaptableEmbeddingImpl& slot, const std::string& module, const std::string& name,
              const LoraConfig& cfg) override;
  void detach(models::AdaptableLinearImpl* linear, models::AdaptableEmbeddingImpl* embedding,
              const std::string& name) override;

 private:
  /// The one trainable adapter ("" when none).
  std::string trainable() const;
  std::unique_ptr<RankAllocator> allocator_;
};

}  // namespace peft::adalora
