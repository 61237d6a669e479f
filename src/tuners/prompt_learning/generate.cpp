// PromptLearningModel::generate. Mirrors PeftModelForCausalLM.generate /
// prepare_inputs_for_generation and PeftModelForSeq2SeqLM.generate: the prompt or key/value
// prefix is added at prefill and the mask grows by P at every step.
#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include "../p_tuning/template.h"
#include "../prefix_tuning/infix.h"
#include "peft/core/check.h"
#include "peft/tuners/prefix_tuning/config.h"
#include "peft/tuners/prompt_learning/model.h"

namespace peft::prompt {

using models::ModelInputs;
using models::ModelOutput;

namespace {

/// What one generation call prepends, built once from the encoder.
struct Prepared {
  bool infix = false, prefix = false, templated = false;
  int64_t P = 0, B = 0, T = 0;
  at::Tensor mask0, onesP, prompts;
  std::vector<models::KeyValue> kv, enc_kv;
  Templated tmpl;
};

/// Greedy or sampled choice of the next token with transformers' logits processing.
struct Chooser {
  const models::GenerationConfig& gc;
  std::vector<int64_t> eos;
  int64_t pad;
  at::Generator gen;
  at::Tensor unfinished;
  Chooser(const models::GenerationConfig& g, int64_t batch)
      : gc(g), eos(g.eos_token_id), pad(g.pad_token_id >= 0 ? g.pad_token_id : (eos.empty() ? 0 : eos.front())),
        gen(at::detail::createCPUGenerator(g.seed)),
        unfinished(at::ones({batch}, at::TensorOptions().dtype(at::kBool))) {}
  at::Tensor operator()(const at::Tensor& logits, const at::Tensor& ids) {
    at::Tensor scores = models::process_logits(logits.to(at::kFloat), ids, gc);
    at::Tensor next =
        gc.do_sample ? at::multinomial(at::softmax(scores, -1), 1, false, gen).squeeze(1) : scores.argmax(-1);
    next = at::where(unfinished, next, at::full_like(next, pad));
    for (int64_t e : eos) unfinished = unfinished.logical_and(next != e);
    return next;
  }
  bool done() const { return !unfinished.any().item<bool>(); }
};

at::Tensor decoder_only(models::PretrainedModel& base, const Prepared& p, const at::Tensor& input_ids,
                        const models::GenerationConfig& gc) {
  PEFT_CHECK(base.head() == models::TaskHead::CausalLM, std::invalid_argument, "[generate] the model has no LM head");
  Chooser choose(gc, p.B);
  models::KVCache cache;
  at::Tensor ids = input_ids, mask = p.mask0;
  // transformers creates position ids from the mask once and counts on; PEFT adds P for a prefix
  // and drops them for prompt tuning (the model then counts cache positions).
  at::Tensor pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0);
  at::Tensor step_ids = input_ids;
  for (int64_t step = 0; step < gc.max_new_tokens; ++step) {
    ModelInputs in;
    in.cache = &cache;
    in.attention_mask = at::cat({p.onesP, mask}, 1);
    const at::Tensor step_pos = pos.narrow(1, pos.size(1) - step_ids.size(1), step_ids.size(1));
    if (p.infix) {
      // [x; INFIX; y]: the prompt runs without the infix, which then joins the cache after it.
      in.input_ids = step_ids;
      in.position_ids = step_pos + (step == 0 ? 0 : p.P);
      in.attention_mask = step == 0 ? mask
                                    : at::cat({mask.narrow(1, 0, p.T), p.onesP, mask.narrow(1, p.T, mask.size(1) - p.T)}, 1);
    } else if (p.prefix) {
      in.input_ids = step_ids;
      in.prefix_kv = p.kv;
      in.position_ids = step_pos + p.P;
    } else if (p.templated) {
      if (step == 0) in.inputs_embeds = p.tmpl.embeds;
      else in.input_ids = step_ids;
      in.attention_mask = at::cat({p.tmpl.mask, mask.narrow(1, p.T, mask.size(1) - p.T)}, 1);
    } else if (step == 0) {
      in.inputs_embeds = at::cat({p.prompts, base.embed(step_ids)}, 1);
    } else {
      in.input_ids = step_ids;
    }
    const at::Tensor next = choose(base.forward(in).logits.select(1, -1), ids);
    if (p.infix && step == 0) append_to_cache(cache, p.kv);
    ids = at::cat({ids, next.unsqueeze(1)}, 1);
    mask = at::cat({mask, at::ones({p.B, 1}, mask.options())}, 1);
    pos = at::cat({pos, pos.narrow(1, pos.size(1) - 1, 1) + 1}, 1);
    if (choose.done()) break;
    step_ids = next.unsqueeze(1);
  }
  return ids;
}

at::Tensor encoder_decoder(models::PretrainedModel& base, const Prepared& p, const at::Tensor& input_ids,
                           const models::GenerationConfig& gc) {
  int64_t start = gc.decoder_start_token_id;
  if (start < 0) start = base.config().get_int("decoder_start_token_id", -1);
  if (start < 0) start = base.config().get_int("bos_token_id", -1);
  PEFT_CHECK(start >= 0, ConfigError, "[generate] ", base.config().source(), ": no decoder_start_token_id");
  Chooser choose(gc, p.B);
  models::KVCache cache;
  const at::Tensor enc_mask = p.templated ? p.tmpl.mask : p.prefix ? p.mask0 : at::cat({p.onesP, p.mask0}, 1);
  at::Tensor ids = at::full({p.B, 1}, start, input_ids.options().dtype(at::kLong));
  at::Tensor step_ids = ids, encoder_outputs;
  for (int64_t step = 0; step < gc.max_new_tokens; ++step) {
    ModelInputs in;
    if (encoder_outputs.defined()) {
      in.encoder_outputs = encoder_outputs;
    } else if (p.templated) {
      in.inputs_embeds = p.tmpl.embeds;
    } else if (p.prefix) {
      in.input_ids = input_ids;
      in.prefix_kv = p.enc_kv;
    } else {
      in.inputs_embeds = at::cat({p.prompts, base.embed(input_ids)}, 1);
    }
    in.attention_mask = enc_mask;
    in.decoder_input_ids = step_ids;
    if (p.prefix) in.decoder_prefix_kv = p.kv;
    in.cache = &cache;
    const ModelOutput out = base.forward(in);
    encoder_outputs = out.encoder_last_hidden_state;
    const at::Tensor next = choose(out.logits.select(1, -1), ids);
    ids = at::cat({ids, next.unsqueeze(1)}, 1);
    if (choose.done()) break;
    step_ids = next.unsqueeze(1);
  }
  return ids;
}

}  // namespace

at::Tensor PromptLearningModel::generate(const at::Tensor& input_ids, const at::Tensor& attention_mask,
                                         const models::GenerationConfig& gc) {
  const std::string& name = owner_.active_adapters().front();
  const auto& cfg = dynamic_cast<const PromptLearningConfig&>(owner_.peft_config(name));
  auto& enc = encoder(name);
  PEFT_CHECK(cfg.task_type == TaskType::CausalLM || cfg.task_type == TaskType::Seq2SeqLM, std::invalid_argument,
             "[generate] generation needs a CAUSAL_LM or SEQ_2_SEQ_LM adapter, got ", to_string(cfg.task_type));
  PEFT_CHECK(input_ids.dim() == 2 && input_ids.size(1) > 0, std::invalid_argument,
             "[generate] input_ids must be [batch, length>0], got ", input_ids.sizes());
  const auto* pc = dynamic_cast<const PrefixTuningConfig*>(&cfg);
  Prepared p;
  p.infix = pc && pc->infix();
  p.prefix = pc && !pc->embedding_only() && !p.infix;
  p.P = cfg.num_virtual_tokens;
  p.B = input_ids.size(0);
  p.T = input_ids.size(1);
  torch::NoGradGuard ng;
  p.mask0 = attention_mask.defined() ? attention_mask.to(at::kLong) : at::ones_like(input_ids, at::kLong);
  p.onesP = at::ones({p.B, p.P}, p.mask0.options());
  const auto dtype = base().word_embeddings().scalar_type();
  if (p.prefix || p.infix) {
    at::Tensor flat = enc.forward().unsqueeze(0).expand({p.B, -1, -1}).to(dtype);
    if (pc->encoder_and_decoder()) {
      p.enc_kv = prefix_key_values(flat.narrow(1, p.P, p.P), cfg.num_layers, cfg.num_attention_heads, cfg.token_dim, 1);
      flat = flat.narrow(1, 0, p.P);
    }
    p.kv = prefix_key_values(flat, cfg.num_layers, cfg.num_attention_heads, cfg.token_dim,
                             p.infix ? 1 : cfg.num_transformer_submodules);
  } else {
    p.prompts = enc.forward().unsqueeze(0).expand({p.B, -1, -1}).to(dtype).narrow(1, 0, p.P);
  }
  // P-Tuning template: the prompt is x; the template's embeddings and mask replace [prompts; x].
  if (auto tp = templates_.find(name); tp != templates_.end()) {
    p.templated = true;
    p.tmpl = apply_template(base(), tp->second, enc.forward().narrow(0, 0, p.P).to(dtype), base().embed(input_ids),
                            p.mask0, at::Tensor(), std::vector<int64_t>(p.B, p.T));
  }
  return base().is_encoder_decoder() ? encoder_decoder(base(), p, input_ids, gc) : decoder_only(base(), p, input_ids, gc);
}

}  // namespace peft::prompt
