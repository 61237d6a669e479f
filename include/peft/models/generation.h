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
  /// Encoder-decoder models: the first decoder token; default (-1): config.json's
  /// decoder_start_token_id, else bos_token_id.
  int64_t decoder_start_token_id = -1;
};

/// Reads bos/eos/pad ids and sampling defaults from a generation_config.json / config.json.
GenerationConfig generation_config_from(const ModelConfig& cfg);

/// Decoder-only generation. input_ids: [B, T] (left-padded when rows differ in length),
/// attention_mask: [B, T] or undefined (all ones). `prefix_kv`: per-layer key/value prefix
/// given to every step (prefix tuning). Returns [B, T + n] (prompt followed by new tokens).
at::Tensor generate(PretrainedModel& model, const at::Tensor& input_ids,
                    const at::Tensor& attention_mask, const GenerationConfig& cfg,
                    const std::vector<KeyValue>& prefix_kv = {});

/// Encoder-decoder generation (T5): encodes input_ids once ([B, S], padded rows masked by
/// attention_mask, undefined = all ones), then decodes from decoder_start_token_id with a KV cache,
/// greedy or sampling with the same logits processing as generate(); rows that hit EOS are padded.
/// `prefix_kv` / `decoder_prefix_kv`: encoder / decoder self-attention prefixes given to every step.
/// Returns the decoder ids [B, 1 + n], starting with the start token (as transformers).
at::Tensor generate_seq2seq(PretrainedModel& model, const at::Tensor& input_ids,
                            const at::Tensor& attention_mask, const GenerationConfig& cfg,
                            const std::vector<KeyValue>& prefix_kv = {},
                            const std::vector<KeyValue>& decoder_prefix_kv = {});

/// The logits processing of one step (repetition penalty, temperature, top-k, top-p) applied to
/// scores [B, V] given the ids so far [B, S]; exposed for tests.
at::Tensor process_logits(const at::Tensor& scores, const at::Tensor& ids, const GenerationConfig& cfg);

}  // namespace peft::models
