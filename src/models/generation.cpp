// Mirrors transformers/generation/utils.py (_sample) and logits_process.py
// (RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper).
#include "peft/models/generation.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/nn/module.h>

#include <limits>
#include <nlohmann/json.hpp>

#include "peft/core/check.h"

namespace peft::models {

GenerationConfig generation_config_from(const ModelConfig& cfg) {
  GenerationConfig g;
  const auto& j = cfg.json();
  if (auto it = j.find("eos_token_id"); it != j.end()) {
    if (it->is_number_integer()) g.eos_token_id = {it->get<int64_t>()};
    if (it->is_array())
      for (const auto& e : *it) g.eos_token_id.push_back(e.get<int64_t>());
  }
  g.pad_token_id = cfg.get_int("pad_token_id", -1);
  g.max_new_tokens = cfg.get_int("max_new_tokens", g.max_new_tokens);
  g.do_sample = cfg.get_bool("do_sample", g.do_sample);
  g.temperature = cfg.get_double("temperature", g.temperature);
  g.top_k = cfg.get_int("top_k", g.top_k);
  g.top_p = cfg.get_double("top_p", g.top_p);
  g.repetition_penalty = cfg.get_double("repetition_penalty", g.repetition_penalty);
  g.decoder_start_token_id = cfg.get_int("decoder_start_token_id", g.decoder_start_token_id);
  return g;
}

at::Tensor process_logits(const at::Tensor& scores_in, const at::Tensor& ids, const GenerationConfig& cfg) {
  at::Tensor scores = scores_in.to(at::kFloat);
  if (cfg.repetition_penalty != 1.0) {
    at::Tensor s = scores.gather(1, ids);
    s = at::where(s < 0, s * cfg.repetition_penalty, s / cfg.repetition_penalty);
    scores = scores.scatter(1, ids, s);
  }
  if (!cfg.do_sample) return scores;
  const float neg_inf = -std::numeric_limits<float>::infinity();
  if (cfg.temperature != 1.0) scores = scores / cfg.temperature;
  if (cfg.top_k > 0) {
    const int64_t k = std::min<int64_t>(cfg.top_k, scores.size(-1));
    at::Tensor kth = std::get<0>(scores.topk(k, -1)).narrow(-1, k - 1, 1);
    scores = scores.masked_fill(scores < kth, neg_inf);
  }
  if (cfg.top_p < 1.0) {
    auto [sorted, idx] = scores.sort(-1, /*descending=*/false);
    at::Tensor cum = sorted.softmax(-1).cumsum(-1);
    at::Tensor remove = cum <= (1 - cfg.top_p);
    remove.narrow(-1, remove.size(-1) - 1, 1).fill_(false);  // keep at least one token
    scores = scores.masked_fill(remove.scatter(1, idx, remove), neg_inf);
  }
  return scores;
}

namespace {

// What both decoding loops share: settings checks, the pad/EOS rules, the sampling RNG, and one
// step of token choice (process_logits, argmax or sampling, padding of finished rows).
class TokenChooser {
 public:
  TokenChooser(const GenerationConfig& cfg, int64_t batch, const at::TensorOptions& opts, const char* where)
      : cfg_(cfg), gen_(at::make_generator<at::CPUGeneratorImpl>(cfg.seed)) {
    PEFT_CHECK(cfg.max_new_tokens >= 0 && cfg.temperature > 0 && cfg.top_p > 0 && cfg.top_p <= 1 &&
                   cfg.repetition_penalty > 0,
               ConfigError, "[", where, "] invalid settings: max_new_tokens ", cfg.max_new_tokens,
               ", temperature ", cfg.temperature, ", top_p ", cfg.top_p, ", repetition_penalty ",
               cfg.repetition_penalty, " (need >= 0, > 0, (0, 1], > 0)");
    pad_ = cfg.pad_token_id >= 0 ? cfg.pad_token_id : (cfg.eos_token_id.empty() ? 0 : cfg.eos_token_id[0]);
    unfinished_ = at::ones({batch}, opts.dtype(at::kBool));
    if (!cfg.eos_token_id.empty()) eos_ = at::tensor(cfg.eos_token_id, opts.dtype(at::kLong));
  }
  /// The next token per row from last-position logits [B, V] given the ids so far [B, S].
  at::Tensor next(const at::Tensor& logits, const at::Tensor& ids) {
    const at::Tensor scores = process_logits(logits, ids, cfg_);
    at::Tensor t = cfg_.do_sample ? at::multinomial(scores.softmax(-1), 1, false, gen_).squeeze(1) : scores.argmax(-1);
    t = at::where(unfinished_, t, at::full_like(t, pad_));
    if (eos_.defined()) unfinished_ = unfinished_.logical_and(at::isin(t, eos_).logical_not());
    return t;
  }
  /// True once every row has produced an EOS.
  bool done() const { return !unfinished_.any().item<bool>(); }

 private:
  const GenerationConfig& cfg_;
  at::Generator gen_;
  int64_t pad_ = 0;
  at::Tensor unfinished_, eos_;
};

}  // namespace

at::Tensor generate(PretrainedModel& model, const at::Tensor& input_ids, const at::Tensor& attention_mask_in,
                    const GenerationConfig& cfg, const std::vector<KeyValue>& prefix_kv) {
  PEFT_CHECK(!model.is_encoder_decoder(), NotSupported,
             "[generate] encoder-decoder models use generate_seq2seq");
  PEFT_CHECK(model.head() == TaskHead::CausalLM, std::invalid_argument,
             "[generate] the model has no language-modelling head");
  PEFT_CHECK(input_ids.dim() == 2 && input_ids.size(1) > 0, std::invalid_argument,
             "[generate] input_ids must be [batch, length>0], got ", input_ids.sizes());
  const int64_t B = input_ids.size(0);
  TokenChooser chooser(cfg, B, input_ids.options(), "generate");
  torch::NoGradGuard ng;
  at::Tensor mask = attention_mask_in.defined() ? attention_mask_in.to(at::kLong) : at::ones_like(input_ids, at::kLong);

  KVCache cache;
  at::Tensor ids = input_ids;
  at::Tensor step_ids = input_ids;
  for (int64_t step = 0; step < cfg.max_new_tokens; ++step) {
    if (model.rebuild_cache_for_generation(cache.length(), ids.size(1))) {
      cache.clear();
      step_ids = ids;
    }
    // Positions count only real tokens (left padding aware), as prepare_inputs_for_generation does.
    at::Tensor pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1);
    ModelInputs in;
    in.input_ids = step_ids;
    in.attention_mask = mask;
    in.position_ids = pos.narrow(1, pos.size(1) - step_ids.size(1), step_ids.size(1));
    in.prefix_kv = prefix_kv;
    in.cache = &cache;
    in.logits_to_keep = 1;
    const at::Tensor next = chooser.next(model.forward(in).logits.select(1, -1), ids);
    ids = at::cat({ids, next.unsqueeze(1)}, 1);
    mask = at::cat({mask, at::ones({B, 1}, mask.options())}, 1);
    if (chooser.done()) break;
    step_ids = next.unsqueeze(1);
  }
  return ids;
}

at::Tensor generate_seq2seq(PretrainedModel& model, const at::Tensor& input_ids,
                            const at::Tensor& attention_mask_in, const GenerationConfig& cfg,
                            const std::vector<KeyValue>& prefix_kv,
                            const std::vector<KeyValue>& decoder_prefix_kv) {
  // Mirrors GenerationMixin.generate for encoder-decoder models: _prepare_encoder_decoder_kwargs_for_generation,
  // _prepare_decoder_input_ids_for_generation (_get_decoder_start_token_id), then _sample.
  PEFT_CHECK(model.is_encoder_decoder() && model.head() == TaskHead::Seq2SeqLM, std::invalid_argument,
             "[generate_seq2seq] the model is not an encoder-decoder with a language-modelling head; "
             "decoder-only models use generate");
  PEFT_CHECK(input_ids.dim() == 2 && input_ids.size(1) > 0, std::invalid_argument,
             "[generate_seq2seq] input_ids must be [batch, length>0], got ", input_ids.sizes());
  int64_t start = cfg.decoder_start_token_id;
  if (start < 0) start = model.config().get_int("decoder_start_token_id", -1);
  if (start < 0) start = model.config().get_int("bos_token_id", -1);
  PEFT_CHECK(start >= 0, ConfigError, "[generate_seq2seq] ", model.config().source(),
             ": no decoder_start_token_id (GenerationConfig or config.json) and no bos_token_id");
  const int64_t B = input_ids.size(0);
  TokenChooser chooser(cfg, B, input_ids.options(), "generate_seq2seq");
  torch::NoGradGuard ng;
  const at::Tensor mask =
      attention_mask_in.defined() ? attention_mask_in.to(at::kLong) : at::ones_like(input_ids, at::kLong);

  KVCache cache;
  at::Tensor ids = at::full({B, 1}, start, input_ids.options().dtype(at::kLong));
  at::Tensor step_ids = ids;
  at::Tensor encoder_outputs;
  for (int64_t step = 0; step < cfg.max_new_tokens; ++step) {
    ModelInputs in;
    if (encoder_outputs.defined()) {
      in.encoder_outputs = encoder_outputs;
    } else {
      in.input_ids = input_ids;
      in.prefix_kv = prefix_kv;
    }
    in.attention_mask = mask;
    in.decoder_input_ids = step_ids;
    in.decoder_prefix_kv = decoder_prefix_kv;
    in.cache = &cache;
    const ModelOutput out = model.forward(in);
    encoder_outputs = out.encoder_last_hidden_state;
    const at::Tensor next = chooser.next(out.logits.select(1, -1), ids);
    ids = at::cat({ids, next.unsqueeze(1)}, 1);
    if (chooser.done()) break;
    step_ids = next.unsqueeze(1);
  }
  return ids;
}

}  // namespace peft::models
