#pragma once
// Prefix Tuning's infix placement ([x; INFIX; y], the seed's ablation) on a decoder-only model
// (private to src/tuners).
#include <vector>

#include "peft/models/model.h"
#include "peft/tuners/prefix_tuning/config.h"
#include "peft/tuners/prompt_learning/encoder.h"

namespace peft::prompt {

/// Appends the per-layer key/value block `kv` ([B, H, P, hd] each) to `cache`.
void append_to_cache(models::KVCache& cache, const std::vector<models::KeyValue>& kv);

/// The forward of the infix placement, one sample at a time: x runs first and fills a KV cache,
/// the infix keys/values are appended to the cache, then y runs over [x; INFIX]. x ends at the
/// first label that is not -100 (no labels: the whole input is x). Tokens of x never see the
/// infix; tokens of y see it at every layer; y's positions count on after the P infix slots.
models::ModelOutput infix_forward(models::PretrainedModel& base, const models::ModelInputs& in,
                                  const PrefixTuningConfig& pc, PromptEncoder& enc);

}  // namespace peft::prompt
