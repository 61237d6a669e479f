#pragma once
// GPT-2 (GPT2Model / GPT2LMHeadModel / GPT2ForSequenceClassification /
// GPT2ForTokenClassification) hyper-parameters (tier 0: torch-free).
#include <cstdint>
#include <string>

#include "peft/models/model_config.h"

namespace peft::models {

/// config.json fields of transformers' GPT2Config (the JSON key is the field name; the
/// hidden_size / num_attention_heads / num_hidden_layers / max_position_embeddings aliases of its
/// attribute_map are accepted too).
struct GPT2Config {
  int64_t vocab_size = 50257, n_positions = 1024, n_embd = 768, n_layer = 12, n_head = 12,
          n_inner = 0,  ///< null in config.json -> 4 * n_embd
      num_labels = 2, pad_token_id = -1;
  std::string activation_function = "gelu_new", problem_type;
  double layer_norm_epsilon = 1e-5, resid_pdrop = 0.1, embd_pdrop = 0.1, attn_pdrop = 0.1,
         summary_first_dropout = 0.1,
         classifier_dropout = 0.1;  ///< GPT2ForTokenClassification: classifier_dropout, else hidden_dropout, else 0.1
  bool scale_attn_weights = true, scale_attn_by_inverse_layer_idx = false,
       reorder_and_upcast_attn = false, tie_word_embeddings = true;

  int64_t head_dim() const { return n_embd / n_head; }

  /// Parses and validates (n_embd not divisible by n_head, add_cross_attention -> ConfigError /
  /// NotSupported naming the fields).
  static GPT2Config from(const ModelConfig& cfg);
};

}  // namespace peft::models
