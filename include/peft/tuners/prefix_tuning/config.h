#pragma once
// PrefixTuningConfig (Prefix Tuning and P-Tuning v2, tier 0). Mirrors
// peft/tuners/prefix_tuning/config.py.
//
//   peft::PrefixTuningConfig c;  c.task_type = peft::TaskType::CausalLM;  c.num_virtual_tokens = 10;
//   c.prefix_projection = true;  c.encoder_hidden_size = 128;
#include <optional>
#include <string>

#include "peft/tuners/prompt_learning/config.h"

namespace peft {

struct PrefixTuningConfig : PromptLearningConfig {
  PrefixTuningConfig() { peft_type = PeftType::PrefixTuning; }
  int64_t encoder_hidden_size = 0;        ///< 0 -> token_dim
  bool prefix_projection = false;         ///< train the prefix through embedding -> MLP
  std::optional<std::string> init_weights;  ///< unset (random) or "zero"
  /// Dropout on the prefix keys/values while training, as THUDM/P-tuning-v2's get_prompt
  /// (hidden_dropout_prob). Not a PEFT field: written only when non-zero; PEFT ignores it.
  double prefix_dropout = 0.0;

  void validate() const override;
  nlohmann::json to_json() const override;
  void fill_from_model(const models::ModelConfig& model) override;
  std::unique_ptr<PeftConfig> clone() const override { return std::make_unique<PrefixTuningConfig>(*this); }
  static PrefixTuningConfig from_json(const nlohmann::json& j, const std::string& source = "adapter_config.json");
};

/// The `p_tuning_v2` preset: prefix tuning of every layer of an encoder for SEQ_CLS / TOKEN_CLS
/// with a trainable classifier, the original code's defaults (no projection, prefix dropout 0.1
/// when `with_dropout`). Saved as PREFIX_TUNING.
PrefixTuningConfig p_tuning_v2_config(TaskType task, int64_t num_virtual_tokens, bool with_dropout = true);

}  // namespace peft
