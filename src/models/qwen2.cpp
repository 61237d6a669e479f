// Qwen2 (transformers/models/qwen2: Qwen2Model, Qwen2For{CausalLM,SequenceClassification,
// TokenClassification}): the Llama decoder with biases on the q/k/v projections (none on o_proj or
// the MLP) and, when use_sliding_window is set, sliding-window attention on the layers layer_types
// names (without layer_types: the layers from max_window_layers on).
#include <nlohmann/json.hpp>

#include "peft/models/architectures.h"
#include "peft/models/llama.h"

namespace peft::models {

namespace {

// Qwen2Config / Qwen3Config: sliding_window counts only with use_sliding_window; a missing field
// takes the config class's default (4096), null means none.
int64_t qwen_window(const ModelConfig& cfg) {
  if (!cfg.get_bool("use_sliding_window", false)) return 0;
  if (!cfg.json().contains("sliding_window")) return 4096;
  return cfg.has("sliding_window") ? cfg.get_positive("sliding_window") : 0;
}

}  // namespace

LlamaConfig qwen2_config(const ModelConfig& cfg) {
  LlamaConfig c = LlamaConfig::from(cfg);
  c.q_bias = c.k_bias = c.v_bias = true;
  c.o_bias = c.mlp_bias = false;
  c.sliding_window = layer_windows(cfg, c.num_hidden_layers, qwen_window(cfg), cfg.get_int("max_window_layers", 28));
  return c;
}

std::shared_ptr<PretrainedModel> make_qwen2(const ModelConfig& cfg, TaskHead head) {
  return make_llama_decoder(cfg, qwen2_config(cfg), head);
}

}  // namespace peft::models
