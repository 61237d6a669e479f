#pragma once
// T5 (T5Model / T5ForConditionalGeneration / T5EncoderModel) hyper-parameters (tier 0: torch-free).
#include <cstdint>
#include <string>
#include <vector>

#include "peft/models/model_config.h"

namespace peft::models {

/// Mirrors transformers/models/t5/configuration_t5.py (field names as in config.json).
///   auto c = T5Config::from(ModelConfig(json));  // c.d_model, c.is_gated_act, ...
struct T5Config {
  int64_t vocab_size = 32128, d_model = 512, d_kv = 64, d_ff = 2048, num_layers = 6,
          num_decoder_layers = 6, num_heads = 8, relative_attention_num_buckets = 32,
          relative_attention_max_distance = 128;
  double dropout_rate = 0.1, layer_norm_epsilon = 1e-6;
  /// "relu", "gelu", ... or "gated-<act>" (T5 v1.1: "gated-gelu" -> gelu_new, "gated-silu").
  std::string feed_forward_proj = "relu";
  std::string dense_act_fn = "relu";  ///< derived: the activation name
  bool is_gated_act = false;          ///< derived: wi_0/wi_1/wo instead of wi/wo
  /// lm_head shares `shared.weight` (no lm_head.weight parameter).
  bool tie_word_embeddings = true;
  /// Decoder output * d_model**-0.5 before the lm_head. transformers 5.x stores the user's
  /// tie_word_embeddings here; default: tie_word_embeddings.
  bool scale_decoder_outputs = true;
  int64_t decoder_start_token_id = -1;  ///< -1: not set
  int64_t pad_token_id = 0;
  std::vector<int64_t> eos_token_id = {1};

  /// Parses and validates (bad feed_forward_proj, bucket/distance combinations, token ids outside
  /// the vocabulary -> ConfigError naming the fields; unknown activation -> NotSupported).
  static T5Config from(const ModelConfig& cfg);
};

}  // namespace peft::models
