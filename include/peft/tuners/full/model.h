#pragma once
// FullModel: full fine-tuning behind the TunerModel interface (tier 2), so the trainer, checkpoints,
// resume, data parallelism and evaluation treat the baseline exactly as the PEFT methods. Every
// parameter of the base model is trainable; save_pretrained writes a model folder that
// load_model, `peft eval/generate` and transformers' from_pretrained read: config.json (with the
// trained head's architecture and labels), model.safetensors, and the base's tokenizer files.
#include <map>
#include <string>
#include <vector>

#include "peft/tuners/full/config.h"
#include "peft/tuners/tuner_model.h"

namespace peft::full {

class FullModel : public TunerModel {
 public:
  using TunerModel::TunerModel;

  /// Refuses a quantised base (4-bit or GGUF blocks have no gradient) and a second adapter.
  std::vector<std::string> inject(const std::string& name, PeftConfig& cfg) override;
  void remove(const std::string& name, bool keep_merged) override;
  std::size_t max_active_adapters() const override { return 1; }
  /// There is no adapter to switch off: the weights are the model's own.
  void set_disabled(bool disabled) override;
  void mark_trainable(const std::string& name) override;
  /// Every parameter and persistent buffer under its Hugging Face key.
  std::map<std::string, at::Tensor> state_dict(const std::string& name) const override;
  std::string key_prefix() const override { return ""; }
  std::string weights_file() const override { return "model.safetensors"; }
  bool saves_adapter_config() const override { return false; }
  /// config.json and the base's tokenizer files.
  void save_extra(const std::string& dir, const std::string& name) const override;
  /// Nothing to fold in: the trained weights are the model's.
  void merge(const std::vector<std::string>& names, bool safe_merge) override;

 private:
  std::string name_;
};

}  // namespace peft::full
