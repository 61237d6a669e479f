#pragma once
// The Gemma family's hyper-parameters (tier 0: torch-free): Gemma ("gemma"), Gemma 2 ("gemma2")
// and Gemma 3's text model ("gemma3_text", Gemma3ForCausalLM /
// Gemma3TextForSequenceClassification). One config covers the three; `version` says which
// differences apply.
#include <string>
#include <vector>

#include "peft/models/model_config.h"

namespace peft::models {

struct GemmaConfig {
  /// 1: Gemma (Llama-shaped layer), 2: Gemma 2 (sandwich norms, soft-capping, sliding windows),
  /// 3: Gemma 3 text (Gemma 2's layer plus q_norm/k_norm and a local RoPE base for sliding layers).
  int version = 1;
  int64_t vocab_size = 256000, hidden_size = 2304, intermediate_size = 9216, num_hidden_layers = 26,
          num_attention_heads = 8, num_key_value_heads = 4, head_dim = 256, num_labels = 2, pad_token_id = 0;
  double rms_norm_eps = 1e-6, attention_dropout = 0.0;
  bool attention_bias = false, tie_word_embeddings = true;
  std::string hidden_activation = "gelu_pytorch_tanh", problem_type;
  /// Attention scale query_pre_attn_scalar ** -0.5 (Gemma 2/3); Gemma uses head_dim ** -0.5.
  double query_pre_attn_scalar = 256;
  /// 0 = off. Gemma 2 caps attention scores; Gemma 2/3 cap the LM logits.
  double attn_logit_softcapping = 0, final_logit_softcapping = 0;
  int64_t sliding_window = 0;
  /// Per layer: true = "sliding_attention", false = "full_attention".
  std::vector<bool> sliding;

  /// RoPE of the global ("full_attention") layers and, for Gemma 3, of the sliding ones.
  struct Rope {
    double theta = 10000.0;
    std::string type = "default";  ///< "default" | "linear"
    double factor = 1.0;
  };
  Rope rope, rope_local;

  /// Parses and validates config.json (ConfigError / NotSupported naming the field).
  static GemmaConfig from(const ModelConfig& cfg);
};

}  // namespace peft::models
