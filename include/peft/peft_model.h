#pragma once
// PeftModel: a base model plus named adapters, with PEFT's verbs (tier 2).
// Mirrors peft/peft_model.py (PeftModel) and peft/mapping_func.py (get_peft_model).
//
//   peft::LoraConfig cfg;  cfg.r = 8;  cfg.lora_alpha = 16;  cfg.task_type = peft::TaskType::CausalLM;
//   auto pm = peft::get_peft_model(base, cfg);           // adapter "default", trainable
//   ... train ...
//   pm->save_pretrained("out/adapter");                  // adapter_config.json + adapter_model.safetensors
//   auto again = peft::PeftModel::from_pretrained(base2, "out/adapter");   // frozen
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "peft/config/peft_config.h"
#include "peft/core/check.h"
#include "peft/models/generation.h"
#include "peft/models/model.h"

namespace peft {

namespace detail {
struct ModulesToSave;
}
class TunerModel;

class PeftModel {
 public:
  /// Wraps `base` and adds `config` as adapter `adapter_name` (trainable unless inference_mode).
  PeftModel(std::shared_ptr<models::PretrainedModel> base, const PeftConfig& config,
            const std::string& adapter_name = "default");
  ~PeftModel();

  /// Loads a PEFT adapter folder (adapter_config.json + adapter_model.safetensors). Frozen
  /// unless is_trainable. Every missing, unexpected or mis-shaped tensor is an error.
  static std::shared_ptr<PeftModel> from_pretrained(std::shared_ptr<models::PretrainedModel> base,
                                                    const std::string& dir,
                                                    const std::string& adapter_name = "default",
                                                    bool is_trainable = false);
  /// Adds another saved adapter under a new name (same peft_type).
  void load_adapter(const std::string& dir, const std::string& adapter_name, bool is_trainable = false);
  /// Adds a new, untrained adapter; it is not activated.
  void add_adapter(const std::string& adapter_name, const PeftConfig& config);
  /// Makes `name` the only active adapter (trainable unless its config is in inference mode).
  void set_adapter(const std::string& name);
  /// Several active adapters (LoRA: summed; (IA)³: multiplied).
  void set_adapters(const std::vector<std::string>& names);
  void delete_adapter(const std::string& name);
  const std::vector<std::string>& active_adapters() const { return active_; }
  std::vector<std::string> adapter_names() const;
  const PeftConfig& peft_config(const std::string& name = "") const;

  /// Base-model forward while the guard lives (adapters bypassed, merged ones unmerged).
  class DisableGuard {
   public:
    explicit DisableGuard(PeftModel& m);
    ~DisableGuard();
    DisableGuard(const DisableGuard&) = delete;
    DisableGuard& operator=(const DisableGuard&) = delete;

   private:
    PeftModel& m_;
  };
  DisableGuard disable_adapter() { return DisableGuard(*this); }

  /// Forward with the active adapters; `adapter_names` (one per row, "__base__" for none) runs a
  /// mixed-adapter batch (inference only).
  models::ModelOutput forward(const models::ModelInputs& in, const std::vector<std::string>& adapter_names = {});

  void merge_adapter(const std::vector<std::string>& names = {}, bool safe_merge = false);
  void unmerge_adapter();
  /// Merges the adapters into the base weights and removes them; returns the plain base model.
  std::shared_ptr<models::PretrainedModel> merge_and_unload(bool safe_merge = false,
                                                            const std::vector<std::string>& names = {});
  /// Removes every adapter without merging; returns the plain base model.
  std::shared_ptr<models::PretrainedModel> unload();

  /// Writes adapter "default" into `dir` and any other adapter into `dir/<name>/` (PEFT layout).
  void save_pretrained(const std::string& dir, const std::vector<std::string>& selected = {}) const;
  /// The tensors save_pretrained writes for one adapter, under PEFT's keys.
  std::map<std::string, at::Tensor> adapter_state_dict(const std::string& name) const;

  /// {trainable, all} parameter counts (PEFT's get_nb_trainable_parameters).
  std::pair<int64_t, int64_t> get_nb_trainable_parameters() const;
  /// "trainable params: X || all params: Y || trainable%: Z" (also printed to stdout).
  std::string print_trainable_parameters() const;
  std::vector<at::Tensor> trainable_parameters() const;
  /// The trainable parameters by name: the base model's, then the tuner's own (prompt encoders).
  std::vector<std::pair<std::string, at::Tensor>> named_trainable_parameters() const;
  /// Names of the modules that carry adapter `name`.
  std::vector<std::string> adapted_modules(const std::string& name) const;

  /// Copies a PEFT adapter_model.safetensors into adapter `name` (same checks as from_pretrained).
  void load_adapter_weights(const std::string& file, const std::string& name);

  /// Tuner work after each optimizer step, before zero_grad, with the 1-based step (AdaLoRA:
  /// update_and_allocate: importance scores, budget, masking). Returns named scalars to log
  /// (AdaLoRA: "adalora/budget" and "adalora/rank/<module>"); empty for tuners with no such step.
  std::vector<std::pair<std::string, double>> on_optimizer_step(int64_t global_step);
  /// What a training checkpoint needs besides the saved adapter to continue exactly (AdaLoRA: the
  /// full-rank tensors, the rank pattern, the allocator's scores); empty for other tuners.
  std::map<std::string, at::Tensor> training_state();
  /// Restores training_state() into the trainable adapter (shapes checked).
  void load_training_state(const std::map<std::string, at::Tensor>& state);
  /// Greedy or sampled generation with the active adapter (prompt learning: the prompt or
  /// key/value prefix is added at prefill and the mask grows by P at every step, as PEFT's
  /// generate). Returns [B, T + n] (decoder-only) or the decoder ids [B, 1 + n] (encoder-decoder).
  at::Tensor generate(const at::Tensor& input_ids, const at::Tensor& attention_mask,
                      const models::GenerationConfig& cfg);
  /// TOKEN_CLS with Prompt Tuning / P-Tuning: drop the P virtual-token positions from the logits
  /// so they line up with the user's labels (PEFT issue #1974). Labels of length T are always
  /// padded with -100 for the virtual tokens.
  bool trim_prompt_logits = false;

  /// The method's model (PEFT's peft_model.base_model: LoraModel, AdaLoraModel, ...), for what
  /// only that method has (add_weighted_adapter, the rank allocator, the prompt encoders).
  TunerModel& tuner() const;
  template <typename T>
  T& tuner_as() const {
    auto* t = dynamic_cast<T*>(&tuner());
    PEFT_CHECK(t != nullptr, std::invalid_argument, "[PeftModel] this model's adapters are ",
               to_string(peft_config(order_.front()).peft_type), "; the requested tuner model does not apply");
    return *t;
  }
  /// For tuners: the stored config of adapter `name`, mutable (AdaLoRA's rank pattern).
  PeftConfig& mutable_config(const std::string& name);
  bool disabled() const { return disabled_ > 0; }
  /// One parameter of a modules_to_save module for adapter `name`: its full name, module, the
  /// adapter's value and the frozen original.
  struct SavedModuleParam {
    std::string module, param;
    at::Tensor value, original;
  };
  std::vector<SavedModuleParam> modules_to_save_params(const std::string& name) const;

  models::PretrainedModel& base_model() { return *base_; }
  std::shared_ptr<models::PretrainedModel> base_model_ptr() { return base_; }

 private:
  void inject(const std::string& name, const PeftConfig& cfg);
  void update_trainable();
  void remove_all_adapters();
  void setup_modules_to_save(const std::string& name, std::optional<std::vector<std::string>> modules, TaskType task);

  std::shared_ptr<models::PretrainedModel> base_;
  std::unique_ptr<TunerModel> tuner_;  ///< made by the first adapter's registry row
  std::map<std::string, std::unique_ptr<PeftConfig>> configs_;
  std::vector<std::string> order_;     ///< adapters in creation order
  std::vector<std::string> active_;
  std::map<std::string, std::vector<std::string>> targets_;  ///< adapter -> adapted module names
  std::unique_ptr<detail::ModulesToSave> mts_;
  int disabled_ = 0;
};

/// PEFT's get_peft_model.
std::shared_ptr<PeftModel> get_peft_model(std::shared_ptr<models::PretrainedModel> base, const PeftConfig& config,
                                          const std::string& adapter_name = "default");

}  // namespace peft
