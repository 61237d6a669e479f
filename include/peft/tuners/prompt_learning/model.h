#pragma once
// PromptLearningModel: the TunerModel of Prompt Tuning, P-Tuning and Prefix Tuning / P-Tuning v2
// (tier 2). Mirrors the prompt-learning half of peft/peft_model.py: _setup_prompt_encoder,
// get_prompt, get_prompt_embedding_to_save, and the forward / generate of PeftModelForCausalLM,
// ForSequenceClassification, ForTokenClassification and ForSeq2SeqLM. The adapters leave the base
// model untouched: a prompt encoder per adapter gives virtual-token embeddings prepended to the
// input, or a per-layer key/value prefix.
//
//   auto& prompts = pm->tuner_as<peft::prompt::PromptLearningModel>();
//   at::Tensor table = prompts.prompt_embeddings();   // what PEFT saves as prompt_embeddings
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "peft/tuners/p_tuning/config.h"
#include "peft/tuners/prompt_learning/config.h"
#include "peft/tuners/prompt_learning/encoder.h"
#include "peft/tuners/tuner_model.h"

namespace peft::prompt {

class PromptLearningModel : public TunerModel {
 public:
  using TunerModel::TunerModel;

  std::vector<std::string> inject(const std::string& name, PeftConfig& cfg) override;
  void remove(const std::string& name, bool keep_merged) override;
  std::size_t max_active_adapters() const override { return 1; }
  void mark_trainable(const std::string& name) override;
  std::vector<std::pair<std::string, at::Tensor>> own_parameters(const std::string& name) const override;
  std::map<std::string, at::Tensor> state_dict(const std::string& name) const override;
  std::string key_prefix() const override { return "base_model."; }
  bool required_key(const std::string& key) const override { return key == "prompt_embeddings"; }
  std::string mismatch_hint(const std::string& key, const std::string& name) const override;
  void after_load(const std::string& dir, const std::string& name, bool is_trainable) override;
  void save_extra(const std::string& dir, const std::string& name) const override;
  models::ModelOutput forward(const models::ModelInputs& in, const std::vector<std::string>& adapter_names) override;
  at::Tensor generate(const at::Tensor& input_ids, const at::Tensor& attention_mask,
                      const models::GenerationConfig& cfg) override;
  void merge(const std::vector<std::string>& names, bool safe_merge) override;

  /// What PEFT saves as `prompt_embeddings` for adapter `name` (default: the active one): the
  /// encoder output.
  at::Tensor prompt_embeddings(const std::string& name = "") const;
  /// The parameters of the adapter's full encoder (what prompt_encoder.safetensors holds), under
  /// PEFT's module names (embedding.weight, mlp_head.0.weight, ...).
  std::map<std::string, at::Tensor> prompt_encoder_state(const std::string& name = "") const;

 private:
  const std::string& resolve(const std::string& name) const;
  PromptEncoder& encoder(const std::string& name) const;
  models::ModelOutput prefix_forward(models::ModelInputs x, const std::string& name);
  models::ModelOutput template_forward(models::ModelInputs x, const std::string& name);

  std::map<std::string, std::shared_ptr<PromptEncoder>> encoders_;   ///< adapter -> encoder
  std::map<std::string, std::vector<TemplateItem>> templates_;      ///< adapter -> P-Tuning template (ids resolved)
  bool warned_position_ids_ = false;
  bool warned_token_type_ids_ = false;
};

}  // namespace peft::prompt
