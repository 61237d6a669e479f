#pragma once
// Text generation with a KV cache (tier 1), following transformers' GenerationMixin: greedy or
// sampling with temperature, top-k, top-p and repetition penalty; batched prompts with left
// padding; rows that hit EOS are padded afterwards.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "peft/models/model.h"

namespace peft::models {

/// Generation settings (field names as in transformers' GenerationConfig).
struct GenerationConfig {
  int64_t max_new_tokens = 20;
  bool do_sample = false;
  double temperature = 1.0;
  int64_t top_k = 50;   ///< used when sampling; 0 = off
  double top_p = 1.0;   ///< used when sampling; 1 = off
  double repetition_penalty = 1.0;
  std::vector<int64_t> eos_token_id;  ///< stop tokens (empty = run to max_new_tokens)
  int64_t pad_token_id = -1;          ///< fill after EOS; default: the first eos id
  uint64_t seed = 0;                  ///< sampling RNG seed
};

/// Reads bos/eos/pad ids and sampling defaults from a generation_config.json / config.json.
GenerationConfig generation_config_from(const ModelConfig& cfg);

/// Decoder-only generation. input_ids: [B, T] (left-padded when rows differ in length),
/// attention_mask: [B, T] or undefined (all ones). `prefix_kv`: per-layer key/value prefix
/// given to every step (prefix tuning). Returns [B, T + n] (prompt followed by new tokens).
at::Tensor generate(PretrainedModel& model, const at::Tensor& input_ids,
                    const at::Tensor& attention_mask, const GenerationConfig& cfg,
                    const std::vector<KeyValue>& prefix_kv = {});

/// The logits processing of one step (repetition penalty, temperature, top-k, top-p) applied to
/// scores [B, V] given the ids so far [B, S]; exposed for tests.
at::Tensor process_logits(const at::Tensor& scores, const at::Tensor& ids, const GenerationConfig& cfg);

}  // namespace peft::models
