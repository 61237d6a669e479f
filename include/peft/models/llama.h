#pragma once
// Llama (LlamaModel / LlamaForCausalLM / LlamaForSequenceClassification /
// LlamaForTokenClassification) hyper-parameters (tier 0: torch-free). The same decoder runs the
// Llama-family architectures (Qwen2, Qwen3, Mistral): their config.json parsers
// (src/models/<arch>.cpp) fill the options below.
#include <string>
#include <vector>

#include "peft/models/model_config.h"

namespace peft::models {

struct LlamaConfig {
  int64_t vocab_size = 32000, hidden_size = 4096, intermediate_size = 11008,
          num_hidden_layers = 32, num_attention_heads = 32, num_key_value_heads = 32, head_dim = 128,
          max_position_embeddings = 2048, num_labels = 2, pad_token_id = -1;
  double rms_norm_eps = 1e-6, rope_theta = 10000.0, attention_dropout = 0.0;
  bool mlp_bias = false, tie_word_embeddings = false;
  // Biases of the attention projections (Llama's attention_bias sets all four; Qwen2 has them on
  // q/k/v only).
  bool q_bias = false, k_bias = false, v_bias = false, o_bias = false;
  // Qwen3: RMSNorm over head_dim of every query and key head (q_norm / k_norm), before RoPE.
  bool qk_norm = false;
  // Per layer: the sliding window (keys at most this many slots back, the query's own included),
  // 0 = full causal attention. Empty = every layer full.
  std::vector<int64_t> sliding_window;
  // The config.json model_type this config came from (names the model in errors).
  std::string model_type = "llama";
  std::string hidden_act = "silu", problem_type;
  // rope_scaling: "default" | "linear" | "llama3"
  std::string rope_type = "default";
  double rope_factor = 1.0, rope_low_freq_factor = 1.0, rope_high_freq_factor = 4.0;
  int64_t rope_original_max_position = 8192;

  /// Parses and validates (inconsistent head counts, unknown rope_scaling -> ConfigError).
  static LlamaConfig from(const ModelConfig& cfg);
  /// The sliding window of layer `i` (0 = full attention).
  int64_t window(int64_t i) const {
    return sliding_window.empty() ? 0 : sliding_window[static_cast<std::size_t>(i)];
  }
};

/// Per-layer sliding windows from config.json's layer_types ("full_attention" -> 0,
/// "sliding_attention" -> `window`); without layer_types, layers from `max_window_layers` on slide
/// when `window` > 0 (Qwen2/Qwen3's default). ConfigError for a list of the wrong length or kind.
std::vector<int64_t> layer_windows(const ModelConfig& cfg, int64_t num_layers, int64_t window,
                                   int64_t max_window_layers);

/// Llama-family config.json parsers (src/models/<arch>.cpp): LlamaConfig::from plus the
/// architecture's own fields, validated (ConfigError naming the field).
LlamaConfig qwen2_config(const ModelConfig& cfg);
LlamaConfig qwen3_config(const ModelConfig& cfg);
LlamaConfig mistral_config(const ModelConfig& cfg);

}  // namespace peft::models
