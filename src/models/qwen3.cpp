// Qwen3 (transformers/models/qwen3: Qwen3Model, Qwen3For{CausalLM,SequenceClassification,
// TokenClassification}): Qwen2 (its modular source derives from it) with an RMSNorm over head_dim on
// every query and key head before RoPE (q_norm / k_norm), attention_bias deciding the biases of all
// four attention projections, and an explicit head_dim.
#include "peft/models/architectures.h"
#include "peft/models/llama.h"

namespace peft::models {

LlamaConfig qwen3_config(const ModelConfig& cfg) {
  LlamaConfig c = qwen2_config(cfg);  // sliding windows as Qwen2's
  c.q_bias = c.k_bias = c.v_bias = c.o_bias = cfg.get_bool("attention_bias", false);
  c.qk_norm = true;
  if (!cfg.has("head_dim")) c.head_dim = 128;  // Qwen3Config's default
  return c;
}

std::shared_ptr<PretrainedModel> make_qwen3(const ModelConfig& cfg, TaskHead head) {
  return make_llama_decoder(cfg, qwen3_config(cfg), head);
}

}  // namespace peft::models
