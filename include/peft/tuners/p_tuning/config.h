#pragma once
// PromptEncoderConfig (P-Tuning, tier 0). Mirrors peft/tuners/p_tuning/config.py.
//
//   peft::PromptEncoderConfig c;  c.task_type = peft::TaskType::SeqCls;  c.num_virtual_tokens = 10;
//   c.encoder_reparameterization_type = "LSTM";  c.encoder_hidden_size = 64;
#include <string>

#include "peft/tuners/prompt_learning/config.h"

namespace peft {

struct PromptEncoderConfig : PromptLearningConfig {
  PromptEncoderConfig() { peft_type = PeftType::PTuning; }
  std::string encoder_reparameterization_type = "MLP";  ///< "MLP" | "LSTM"
  int64_t encoder_hidden_size = 0;                      ///< 0 -> token_dim
  int64_t encoder_num_layers = 2;                       ///< LSTM layers (ignored for MLP)
  double encoder_dropout = 0.0;                         ///< LSTM inter-layer dropout

  void validate() const override;
  nlohmann::json to_json() const override;
  void fill_from_model(const models::ModelConfig& model) override;
  std::unique_ptr<PeftConfig> clone() const override { return std::make_unique<PromptEncoderConfig>(*this); }
  static PromptEncoderConfig from_json(const nlohmann::json& j, const std::string& source = "adapter_config.json");
};

}  // namespace peft
