#pragma once
// Llama (LlamaModel / LlamaForCausalLM / LlamaForSequenceClassification /
// LlamaForTokenClassification) hyper-parameters (tier 0: torch-free).
#include <string>

#include "peft/models/model_config.h"

namespace peft::models {

struct LlamaConfig {
  int64_t vocab_size = 32000, hidden_size = 4096, intermediate_size = 11008,
          num_hidden_layers = 32, num_attention_heads = 32, num_key_value_heads = 32, head_dim = 128,
          max_position_embeddings = 2048, num_labels = 2, pad_token_id = -1;
  double rms_norm_eps = 1e-6, rope_theta = 10000.0, attention_dropout = 0.0;
  bool attention_bias = false, mlp_bias = false, tie_word_embeddings = false;
  std::string hidden_act = "silu", problem_type;
  // rope_scaling: "default" | "linear" | "llama3"
  std::string rope_type = "default";
  double rope_factor = 1.0, rope_low_freq_factor = 1.0, rope_high_freq_factor = 4.0;
  int64_t rope_original_max_position = 8192;

  /// Parses and validates (inconsistent head counts, unknown rope_scaling -> ConfigError).
  static LlamaConfig from(const ModelConfig& cfg);
};

}  // namespace peft::models
