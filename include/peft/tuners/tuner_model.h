#pragma once
// TunerModel: what one PEFT method does to a base model, PEFT's BaseTuner (tier 2).
//
// PeftModel (peft/peft_model.h) keeps what PEFT's PeftModel keeps: the adapter names and their
// configs, which are active, disabling, modules_to_save, save/load and parameter counts. Every
// method-specific step goes through one TunerModel, made by the method's registry row
// (tuners/registry.h). A method implements this interface in its own folder:
//
//   tuners/lora/model.cpp             LoraModel   (a LayerTuner: adapters on the model's slots)
//   tuners/adalora/model.cpp          AdaLoraModel (LoraModel + rank allocation)
//   tuners/ia3/model.cpp              Ia3Model    (a LayerTuner)
//   tuners/prompt_learning/model.cpp  PromptLearningModel (virtual tokens or a key/value prefix)
//   tuners/full/model.cpp             FullModel   (not PEFT: every parameter, the baseline)
//
// docs/architecture.md walks through adding a method.
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "peft/config/peft_config.h"
#include "peft/core/check.h"
#include "peft/models/generation.h"
#include "peft/models/model.h"

namespace peft {

class PeftModel;

class TunerModel {
 public:
  explicit TunerModel(PeftModel& owner) : owner_(owner) {}
  virtual ~TunerModel() = default;
  TunerModel(const TunerModel&) = delete;
  TunerModel& operator=(const TunerModel&) = delete;

  // ---- adapters
  /// Adds adapter `name` from `cfg` (validated, owned by the PeftModel for the adapter's life; the
  /// tuner may fill in model-derived fields, e.g. default target modules). Returns the names of
  /// the base-model modules it adapted (empty when it changes none). The new adapter is inactive.
  virtual std::vector<std::string> inject(const std::string& name, PeftConfig& cfg) = 0;
  /// Removes adapter `name`'s layers or encoder. With `keep_merged`, weights it merged into the
  /// base stay there (merge_and_unload); otherwise it must not be merged.
  virtual void remove(const std::string& name, bool keep_merged) = 0;
  /// At most this many adapters may be active together (0: no limit).
  virtual std::size_t max_active_adapters() const { return 0; }
  /// The active set changed (PeftModel::set_adapters) or the model was disabled / enabled again.
  virtual void set_active(const std::vector<std::string>& names) { (void)names; }
  virtual void set_disabled(bool disabled) { (void)disabled; }
  /// Turns requires_grad on for adapter `name`'s own parameters (PeftModel froze everything first).
  virtual void mark_trainable(const std::string& name) = 0;
  /// Parameters that live outside the base model (prompt encoders), by name.
  virtual std::vector<std::pair<std::string, at::Tensor>> own_parameters(const std::string& name) const {
    (void)name;
    return {};
  }

  // ---- saved form (PEFT's get_peft_model_state_dict / set_peft_model_state_dict)
  /// Adapter `name`'s live tensors under PEFT's saved keys, modules_to_save excluded (PeftModel
  /// adds those under key_prefix()). Loading writes into these tensors.
  virtual std::map<std::string, at::Tensor> state_dict(const std::string& name) const = 0;
  /// What save_pretrained writes (default: state_dict; AdaLoRA keeps only the kept ranks).
  virtual std::map<std::string, at::Tensor> saved_state_dict(const std::string& name) const { return state_dict(name); }
  /// PEFT's key prefix of base-model modules in the adapter file.
  virtual std::string key_prefix() const { return "base_model.model."; }
  /// The file save_pretrained writes the tensors to, and checkpoints resume from.
  virtual std::string weights_file() const { return "adapter_model.safetensors"; }
  /// Whether save_pretrained writes adapter_config.json (full fine-tuning writes a model folder).
  virtual bool saves_adapter_config() const { return true; }
  /// Whether a file that lacks state_dict key `key` is incomplete (biases and base weights saved
  /// alongside may be absent).
  virtual bool required_key(const std::string& key) const { (void)key; return true; }
  /// A note for a shape mismatch of `key` (why an adapter of this method may not fit), or "".
  virtual std::string mismatch_hint(const std::string& key, const std::string& name) const {
    (void)key;
    (void)name;
    return "";
  }
  /// Before the tensors of a saved adapter are copied in (AdaLoRA: shrink to the saved ranks).
  virtual void before_load(const std::string& name) { (void)name; }
  /// After they were: side files of the adapter folder `dir` (the full prompt encoder).
  virtual void after_load(const std::string& dir, const std::string& name, bool is_trainable) {
    (void)dir;
    (void)name;
    (void)is_trainable;
  }
  /// Side files written next to adapter_model.safetensors.
  virtual void save_extra(const std::string& dir, const std::string& name) const {
    (void)dir;
    (void)name;
  }

  // ---- running
  /// Forward with the active adapters (the model is not disabled). `adapter_names` (one per row)
  /// asks for a mixed-adapter batch; tuners that cannot route rows refuse it.
  virtual models::ModelOutput forward(const models::ModelInputs& in, const std::vector<std::string>& adapter_names);
  /// A term added to the training loss (AdaLoRA's orthogonal regularisation); undefined for none.
  virtual at::Tensor extra_loss() { return {}; }
  /// Generation with the active adapters (the model is not disabled).
  virtual at::Tensor generate(const at::Tensor& input_ids, const at::Tensor& attention_mask,
                              const models::GenerationConfig& cfg);

  // ---- training
  /// Work after each optimizer step (before zero_grad) with the 1-based step; named scalars to log.
  virtual std::vector<std::pair<std::string, double>> on_optimizer_step(int64_t global_step) {
    (void)global_step;
    return {};
  }
  /// What a checkpoint needs besides the saved adapter to continue exactly; empty for most.
  virtual std::map<std::string, at::Tensor> training_state() { return {}; }
  virtual void load_training_state(const std::map<std::string, at::Tensor>& state);

  // ---- merging
  /// Folds adapters `names` into the base weights (refused by methods that cannot be merged).
  virtual void merge(const std::vector<std::string>& names, bool safe_merge);
  virtual void unmerge() {}

 protected:
  models::PretrainedModel& base() const;
  /// The config of adapter `name` as the method's own type (a clear error otherwise).
  template <typename Config>
  Config& config_of(const std::string& name) const;

  PeftModel& owner_;
};

}  // namespace peft

#include "peft/peft_model.h"

namespace peft {

inline models::PretrainedModel& TunerModel::base() const { return owner_.base_model(); }

template <typename Config>
Config& TunerModel::config_of(const std::string& name) const {
  auto* c = dynamic_cast<Config*>(&owner_.mutable_config(name));
  PEFT_CHECK(c != nullptr, std::logic_error, "[PeftModel] adapter '", name, "' has peft_type ",
             to_string(owner_.peft_config(name).peft_type), ", not the tuner's own");
  return *c;
}

}  // namespace peft
