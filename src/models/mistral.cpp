// Mistral (transformers/models/mistral: MistralModel, MistralFor{CausalLM,SequenceClassification,
// TokenClassification}): the Llama decoder without biases and with sliding-window attention on
// every layer (sliding_window: a missing field is MistralConfig's default 4096, null means none).
#include <nlohmann/json.hpp>

#include "peft/models/architectures.h"
#include "peft/models/llama.h"

namespace peft::models {

LlamaConfig mistral_config(const ModelConfig& cfg) {
  LlamaConfig c = LlamaConfig::from(cfg);
  c.q_bias = c.k_bias = c.v_bias = c.o_bias = c.mlp_bias = false;
  int64_t window = 4096;
  if (cfg.json().contains("sliding_window")) window = cfg.has("sliding_window") ? cfg.get_positive("sliding_window") : 0;
  c.sliding_window.assign(static_cast<std::size_t>(c.num_hidden_layers), window);
  return c;
}

std::shared_ptr<PretrainedModel> make_mistral(const ModelConfig& cfg, TaskHead head) {
  return make_llama_decoder(cfg, mistral_config(cfg), head);
}

}  // namespace peft::models
