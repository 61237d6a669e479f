#pragma once
// PromptLearningConfig: the fields Prompt Tuning, P-Tuning and Prefix Tuning share (tier 0).
// Mirrors peft/config.py (PromptLearningConfig) and peft/utils/other.py
// (_prepare_prompt_learning_config).
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "peft/config/peft_config.h"

namespace peft {

namespace models {
class ModelConfig;
}

/// Fields left at 0 are filled from the model's config.json by fill_from_model (PEFT's None).
struct PromptLearningConfig : PeftConfig {
  int64_t num_virtual_tokens = 0;          ///< P; required, > 0
  int64_t token_dim = 0;                   ///< hidden_size / n_embd / d_model
  int64_t num_transformer_submodules = 0;  ///< 2 for SEQ_2_SEQ_LM, else 1
  int64_t num_attention_heads = 0;         ///< num_attention_heads / n_head / num_heads
  int64_t num_layers = 0;                  ///< num_hidden_layers / num_layers / n_layer
  std::optional<std::vector<std::string>> modules_to_save;

  void validate() const override;
  std::optional<std::vector<std::string>>* modules_to_save_field() override { return &modules_to_save; }
  nlohmann::json to_json() const override;
  /// Total virtual tokens of the prompt table: P × num_transformer_submodules.
  int64_t total_virtual_tokens() const { return num_virtual_tokens * num_transformer_submodules; }
  /// Fills the unset model-derived fields as PEFT does at get_peft_model (GQA override for prefix
  /// tuning, encoder_hidden_size = token_dim). Throws ConfigError naming the missing field.
  virtual void fill_from_model(const models::ModelConfig& model);

 protected:
  void read_prompt_fields(nlohmann::json& rest, const std::string& source);
};

namespace detail {
/// The PEFT-default-valued encoder_hidden_size / token_dim as JSON (0 -> null).
nlohmann::json int_or_null(int64_t v);
}  // namespace detail

}  // namespace peft
