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
  /// Where the prefix goes on an encoder-decoder model (not PEFT fields; written only when not
  /// the default, and an adapter using them is readable by peft.cpp only):
  ///   "peft" (default): decoder self-attention only, as PEFT does;
  ///   "encoder_and_decoder": the paper's z = [PREFIX; x; PREFIX'; y] -- a second block of P
  ///   virtual tokens (rows P..2P-1 of the prefix table) prefixes every encoder self-attention.
  std::string prefix_on = "peft";
  /// Placement on decoder-only models (Prefix-Tuning paper ablations, not PEFT fields):
  ///   "prefix" (default): key/value prefix at every layer;
  ///   "embedding": P trainable vectors at the input layer only (rows of width token_dim);
  ///   "infix": key/value activations at every layer placed after x ([x; INFIX; y]), where x
  ///   ends at the first position whose label is not -100 (training) or at the end of the
  ///   prompt (generation).
  std::string prefix_placement = "prefix";

  bool encoder_and_decoder() const { return prefix_on == "encoder_and_decoder"; }
  bool embedding_only() const { return prefix_placement == "embedding"; }
  bool infix() const { return prefix_placement == "infix"; }
  /// Rows of the prefix table: 2P with encoder_and_decoder, else P.
  int64_t prefix_rows() const { return num_virtual_tokens * (encoder_and_decoder() ? 2 : 1); }
  /// Width of one prefix row: token_dim (embedding-only) or 2·num_layers·token_dim.
  int64_t prefix_width() const { return embedding_only() ? token_dim : 2 * num_layers * token_dim; }

  void validate() const override;
  nlohmann::json to_json() const override;
  void fill_from_model(const models::ModelConfig& model) override;
  std::unique_ptr<PeftConfig> clone() const override { return std::make_unique<PrefixTuningConfig>(*this); }
  std::vector<std::string> optional_fields() const override { return {"prefix_dropout", "prefix_on", "prefix_placement"}; }
  static PrefixTuningConfig from_json(const nlohmann::json& j, const std::string& source = "adapter_config.json");
};

/// The `p_tuning_v2` preset: prefix tuning of every layer of an encoder for SEQ_CLS / TOKEN_CLS
/// with a trainable classifier, the original code's defaults (no projection, prefix dropout 0.1
/// when `with_dropout`). Saved as PREFIX_TUNING.
PrefixTuningConfig p_tuning_v2_config(TaskType task, int64_t num_virtual_tokens, bool with_dropout = true);

}  // namespace peft
