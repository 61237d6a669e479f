#pragma once
// PromptEncoderConfig (P-Tuning, tier 0). Mirrors peft/tuners/p_tuning/config.py.
//
//   peft::PromptEncoderConfig c;  c.task_type = peft::TaskType::SeqCls;  c.num_virtual_tokens = 10;
//   c.encoder_reparameterization_type = "LSTM";  c.encoder_hidden_size = 64;
#include <optional>
#include <string>
#include <vector>

#include "peft/tuners/prompt_learning/config.h"

namespace peft {

struct PromptEncoderConfig : PromptLearningConfig {
  PromptEncoderConfig() { peft_type = PeftType::PTuning; }
  std::string encoder_reparameterization_type = "MLP";  ///< "MLP" | "LSTM"
  int64_t encoder_hidden_size = 0;                      ///< 0 -> token_dim
  int64_t encoder_num_layers = 2;                       ///< LSTM layers (ignored for MLP)
  double encoder_dropout = 0.0;                         ///< LSTM inter-layer dropout
  /// P-Tuning paper template (not a PEFT field; written only when set, and such an adapter is
  /// for peft.cpp only). Whitespace-separated items: `[x]` the input (exactly once), `[v]` a
  /// virtual token (num_virtual_tokens of them, all from the one LSTM/MLP encoder), `[v:word]`
  /// a virtual token initialised from the word's embedding, `[id:N]` an anchor token id, any
  /// other word an anchor: real, frozen token embeddings (tokenised with tokenizer_name_or_path).
  /// E.g. "[x] [v] [v] capital [v]". CAUSAL_LM: y follows the template (x ends at the first
  /// label that is not -100); SEQ_2_SEQ_LM: the template is the encoder input.
  std::string p_tuning_template;
  std::optional<std::string> tokenizer_name_or_path;  ///< for template words (written when set)

  void validate() const override;
  nlohmann::json to_json() const override;
  void fill_from_model(const models::ModelConfig& model) override;
  std::unique_ptr<PeftConfig> clone() const override { return std::make_unique<PromptEncoderConfig>(*this); }
  std::vector<std::string> optional_fields() const override { return {"p_tuning_template", "tokenizer_name_or_path"}; }
  static PromptEncoderConfig from_json(const nlohmann::json& j, const std::string& source = "adapter_config.json");
};

/// One item of a parsed P-Tuning template.
struct TemplateItem {
  enum Kind { Input, Virtual, Anchor } kind = Input;
  std::string word;           ///< anchor word, or the init word of a virtual token ("" = none)
  std::vector<int64_t> ids;   ///< anchor token ids (from [id:N] or, after tokenising, the word)
};
/// Parses `p_tuning_template`; throws ConfigError naming the bad item.
std::vector<TemplateItem> parse_p_tuning_template(const std::string& tmpl);

}  // namespace peft
