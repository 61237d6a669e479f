#pragma once
// Phi-3 (Phi3Model / Phi3ForCausalLM / Phi3ForSequenceClassification / Phi3ForTokenClassification;
// Phi-3 / Phi-3.5-mini, Phi-4-mini) hyper-parameters (tier 0: torch-free).
#include <string>
#include <vector>

#include "peft/models/model_config.h"

namespace peft::models {

struct Phi3Config {
  int64_t vocab_size = 32064, hidden_size = 3072, intermediate_size = 8192, num_hidden_layers = 32,
          num_attention_heads = 32, num_key_value_heads = 32, head_dim = 96, max_position_embeddings = 4096,
          original_max_position_embeddings = 4096, num_labels = 2, pad_token_id = 32000;
  /// 0 = no sliding window.
  int64_t sliding_window = 0;
  double rms_norm_eps = 1e-5, rope_theta = 10000.0, attention_dropout = 0.0, resid_pdrop = 0.0,
         classifier_dropout = 0.1;
  bool tie_word_embeddings = false;
  std::string hidden_act = "silu", problem_type;
  /// Rotary embedding on the first `rotary_dim` (= int(head_dim * partial_rotary_factor)) of
  /// each head; the rest passes through.
  double partial_rotary_factor = 1.0;
  int64_t rotary_dim = 96;
  /// rope_parameters / rope_scaling: "default" | "longrope" (also read from "su" and "yarn", as
  /// transformers' Phi3Config does).
  std::string rope_type = "default";
  std::vector<double> short_factor, long_factor;
  /// LongRoPE's cos/sin scaling: rope_parameters.attention_factor, else
  /// sqrt(1 + ln(factor) / ln(original_max_position_embeddings)) for factor > 1 (factor:
  /// rope_parameters.factor, else max_position_embeddings / original_max_position_embeddings).
  double attention_factor = 1.0;

  /// Parses and validates (inconsistent head counts, rope factors of the wrong length, unknown
  /// rope type -> ConfigError / NotSupported naming the field).
  static Phi3Config from(const ModelConfig& cfg);
};

}  // namespace peft::models
