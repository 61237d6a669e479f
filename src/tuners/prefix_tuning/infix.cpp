// Prefix Tuning's infix placement (see infix.h).
#include "infix.h"

#include <ATen/ATen.h>

#include "peft/core/check.h"
#include "peft/models/blocks.h"

namespace peft::prompt {

using models::ModelInputs;
using models::ModelOutput;

void append_to_cache(models::KVCache& cache, const std::vector<models::KeyValue>& kv) {
  if (cache.layers.size() < kv.size()) cache.layers.resize(kv.size());
  for (std::size_t l = 0; l < kv.size(); ++l) {
    auto& slot = cache.layers[l];
    slot.key = slot.key.defined() ? at::cat({slot.key, kv[l].key.to(slot.key.scalar_type())}, 2) : kv[l].key;
    slot.value = slot.value.defined() ? at::cat({slot.value, kv[l].value.to(slot.value.scalar_type())}, 2) : kv[l].value;
  }
}

ModelOutput infix_forward(models::PretrainedModel& base, const ModelInputs& in, const PrefixTuningConfig& pc,
                          PromptEncoder& enc) {
  PEFT_CHECK(in.cache == nullptr, NotSupported,
             "[PREFIX_TUNING] prefix_placement infix with a KV cache; use PeftModel::generate");
  const bool have_ids = in.input_ids.defined();
  const at::Tensor& src = have_ids ? in.input_ids : in.inputs_embeds;
  const int64_t B = src.size(0), T = src.size(1), P = pc.num_virtual_tokens;
  at::Tensor flat = enc.forward().unsqueeze(0).to(base.word_embeddings().scalar_type());
  if (pc.prefix_dropout > 0 && base.is_training()) flat = at::dropout(flat, pc.prefix_dropout, true);
  const auto kv = prefix_key_values(flat, pc.num_layers, pc.num_attention_heads, pc.token_dim, 1);
  const at::Tensor mask = in.attention_mask.defined() ? in.attention_mask.to(at::kLong)
                                                      : at::ones({B, T}, at::TensorOptions().dtype(at::kLong));
  std::vector<at::Tensor> logits;
  for (int64_t b = 0; b < B; ++b) {
    int64_t s = T;
    if (in.labels.defined()) {
      const at::Tensor nz = (in.labels[b] != -100).nonzero();
      if (nz.numel() > 0) s = nz[0][0].item<int64_t>();
    }
    const at::Tensor m = mask.narrow(0, b, 1);
    const at::Tensor pos = (m.cumsum(-1) - 1).clamp_min(0);
    auto segment = [&](int64_t a, int64_t e, const at::Tensor& seg_mask, const at::Tensor& seg_pos, models::KVCache& c) {
      ModelInputs si;
      if (have_ids) si.input_ids = in.input_ids.narrow(0, b, 1).narrow(1, a, e - a);
      else si.inputs_embeds = in.inputs_embeds.narrow(0, b, 1).narrow(1, a, e - a);
      si.attention_mask = seg_mask;
      si.position_ids = seg_pos;
      si.cache = &c;
      return base.forward(si).logits;
    };
    models::KVCache cache;
    std::vector<at::Tensor> parts;
    if (s > 0) parts.push_back(segment(0, s, m.narrow(1, 0, s), pos.narrow(1, 0, s), cache));
    append_to_cache(cache, kv);
    if (s < T) {
      const at::Tensor seg_mask = at::cat({m.narrow(1, 0, s), at::ones({1, P}, m.options()), m.narrow(1, s, T - s)}, 1);
      parts.push_back(segment(s, T, seg_mask, pos.narrow(1, s, T - s) + P, cache));
    }
    logits.push_back(at::cat(parts, 1));
  }
  ModelOutput out;
  out.logits = at::cat(logits, 0);
  if (in.labels.defined()) out.loss = models::causal_lm_loss(out.logits, in.labels);
  return out;
}

}  // namespace peft::prompt
