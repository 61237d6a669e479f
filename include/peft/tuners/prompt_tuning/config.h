#pragma once
// PromptTuningConfig (tier 0). Mirrors peft/tuners/prompt_tuning/config.py.
//
//   peft::PromptTuningConfig c;  c.task_type = peft::TaskType::CausalLM;  c.num_virtual_tokens = 8;
//   c.prompt_tuning_init = "TEXT";  c.prompt_tuning_init_text = "Classify:";
//   c.tokenizer_name_or_path = "models/stories260K";
#include <optional>
#include <string>

#include "peft/tuners/prompt_learning/config.h"

namespace peft {

struct PromptTuningConfig : PromptLearningConfig {
  PromptTuningConfig() { peft_type = PeftType::PromptTuning; }
  std::string prompt_tuning_init = "RANDOM";  ///< "RANDOM" | "TEXT" | "SAMPLE_VOCAB"
  std::optional<std::string> prompt_tuning_init_text;
  std::optional<std::string> tokenizer_name_or_path;
  nlohmann::json tokenizer_kwargs = nullptr;  ///< only valid with TEXT

  void validate() const override;
  nlohmann::json to_json() const override;
  std::unique_ptr<PeftConfig> clone() const override { return std::make_unique<PromptTuningConfig>(*this); }
  static PromptTuningConfig from_json(const nlohmann::json& j, const std::string& source = "adapter_config.json");
};

}  // namespace peft
