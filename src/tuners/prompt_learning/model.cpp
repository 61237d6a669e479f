// Mirrors peft/peft_model.py: PeftModel._setup_prompt_encoder, get_prompt,
// get_prompt_embedding_to_save, _adjust_prompt_learning_kwargs, and the forward / generate /
// prepare_inputs_for_generation of PeftModelForCausalLM, ForSequenceClassification,
// ForTokenClassification and ForSeq2SeqLM; peft/utils/save_and_load.py for prompt_embeddings.
#include "peft/tuners/prompt_learning/model.h"

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include <filesystem>
#include <iostream>
#include <sstream>

#include "../p_tuning/template.h"
#include "../prefix_tuning/infix.h"
#include "peft/core/check.h"
#include "peft/io/safetensors.h"
#include "peft/io/tensor_bridge.h"
#include "peft/io/tokenizer.h"
#include "peft/models/blocks.h"
#include "peft/tuners/prefix_tuning/config.h"
#include "peft/tuners/prompt_tuning/config.h"

namespace peft::prompt {

namespace fs = std::filesystem;
using models::ModelInputs;
using models::ModelOutput;
using models::TaskHead;

namespace {

const char* kSidecar = "prompt_encoder.safetensors";

TaskHead head_for(TaskType t) {
  switch (t) {
    case TaskType::CausalLM: return TaskHead::CausalLM;
    case TaskType::SeqCls: return TaskHead::SeqCls;
    case TaskType::TokenCls: return TaskHead::TokenCls;
    case TaskType::Seq2SeqLM: return TaskHead::Seq2SeqLM;
    default:
      throw NotSupported("[prompt learning] task_type '" + to_string(t) +
                         "' is not supported; use CAUSAL_LM, SEQ_CLS, TOKEN_CLS or SEQ_2_SEQ_LM");
  }
}

std::vector<int64_t> text_init_ids(const PromptTuningConfig& c) {
  const std::string& path = *c.tokenizer_name_or_path;
  PEFT_CHECK(fs::exists(path), ConfigError, "[PROMPT_TUNING] tokenizer_name_or_path '", path,
             "' does not exist (give a model folder with a tokenizer, or a tokenizer file)");
  const io::Tokenizer tok = fs::is_directory(path) ? io::Tokenizer::from_pretrained(path) : io::Tokenizer::from_file(path);
  const auto enc = tok.encode(*c.prompt_tuning_init_text, /*add_special_tokens=*/true);
  return std::vector<int64_t>(enc.ids.begin(), enc.ids.end());
}

bool gradient_checkpointing_on(models::PretrainedModel& m) {
  const bool was = m.is_training();
  m.train(true);
  const bool on = m.gradient_checkpointing();
  m.train(was);
  return on;
}

/// The model-shape checks of _setup_prompt_encoder for one config.
void check_fits(models::PretrainedModel& base, const PromptLearningConfig& cfg) {
  const std::string who = "[" + to_string(cfg.peft_type) + "] ";
  const auto* pfx = dynamic_cast<const PrefixTuningConfig*>(&cfg);
  const int64_t hidden = base.word_embeddings().size(1);
  if (pfx && pfx->embedding_only()) {
    PEFT_CHECK(cfg.token_dim == hidden, ConfigError, who, "prefix_placement: embedding needs token_dim ", cfg.token_dim,
               " equal to the model's embedding width ", hidden);
  } else if (pfx) {
    PEFT_CHECK(!gradient_checkpointing_on(base), ConfigError, who,
               "PREFIX_TUNING does not work with gradient checkpointing (turn it off in the model or trainer)");
    const int64_t H = cfg.num_attention_heads;
    PEFT_CHECK(cfg.num_layers == base.num_layers() && H == base.num_kv_heads() && cfg.token_dim / H == base.head_dim(),
               ConfigError, who, "the prefix shape (num_layers=", cfg.num_layers, ", num_attention_heads=", H,
               ", head_dim=token_dim/heads=", cfg.token_dim / H, ") does not fit the model (", base.num_layers(),
               " layers, ", base.num_kv_heads(), " key/value heads of size ", base.head_dim(), ")");
  } else {
    PEFT_CHECK(cfg.token_dim == hidden, ConfigError, who, "token_dim ", cfg.token_dim,
               " differs from the model's embedding width ", hidden);
  }
}

}  // namespace

// ---------------------------------------------------------------- adapters

std::vector<std::string> PromptLearningModel::inject(const std::string& name, PeftConfig& any) {
  auto* pc = dynamic_cast<PromptLearningConfig*>(&any);
  PEFT_CHECK(pc != nullptr, std::invalid_argument, "[prompt learning] adapter '", name, "' has peft_type ",
             to_string(any.peft_type), ", not a prompt-learning config");
  auto& cfg = *pc;
  PEFT_CHECK(base().head() == head_for(cfg.task_type), std::invalid_argument, "[", to_string(cfg.peft_type),
             "] task_type ", to_string(cfg.task_type), " needs a model with the matching head; this model (",
             base().config().source(), ") has another one");
  cfg.fill_from_model(base().config());
  cfg.validate();
  check_fits(base(), cfg);
  std::vector<int64_t> ids;
  if (auto* pt = dynamic_cast<PromptTuningConfig*>(&cfg); pt && pt->prompt_tuning_init == "TEXT" && !pt->inference_mode)
    ids = text_init_ids(*pt);
  // TEXT / SAMPLE_VOCAB rows through the model's input embedding, as PEFT's word_embeddings(ids).
  auto enc = make_prompt_encoder(cfg, base().word_embeddings(), ids,
                                 [this](const at::Tensor& i) { return base().embed(i); });
  enc->to(base().word_embeddings().device());
  encoders_[name] = enc;
  if (auto* pe = dynamic_cast<PromptEncoderConfig*>(&cfg); pe && !pe->p_tuning_template.empty())
    templates_[name] = resolve_template(*pe, base().word_embeddings(), *enc);
  return {};
}

void PromptLearningModel::remove(const std::string& name, bool) {
  encoders_.erase(name);
  templates_.erase(name);
}

const std::string& PromptLearningModel::resolve(const std::string& name) const {
  const std::string& n = name.empty() ? owner_.active_adapters().front() : name;
  PEFT_CHECK(encoders_.count(n), std::invalid_argument, "[prompt learning] adapter '", n,
             "' is not a prompt-learning adapter");
  return n;
}

PromptEncoder& PromptLearningModel::encoder(const std::string& name) const {
  auto& enc = *encoders_.at(resolve(name));
  // The encoder's dropout (LSTM encoder_dropout) follows the model's train / eval mode.
  if (enc.is_training() != base().is_training()) enc.train(base().is_training());
  return enc;
}

void PromptLearningModel::mark_trainable(const std::string& name) {
  for (auto& p : encoders_.at(name)->parameters()) p.set_requires_grad(true);
}

std::vector<std::pair<std::string, at::Tensor>> PromptLearningModel::own_parameters(const std::string& name) const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  auto it = encoders_.find(name);
  if (it == encoders_.end()) return out;
  for (const auto& p : it->second->named_parameters(true)) out.emplace_back(p.key(), p.value());
  return out;
}

at::Tensor PromptLearningModel::prompt_embeddings(const std::string& name) const { return encoder(name).forward(); }

std::map<std::string, at::Tensor> PromptLearningModel::prompt_encoder_state(const std::string& name) const {
  std::map<std::string, at::Tensor> out;
  for (const auto& p : encoders_.at(resolve(name))->named_parameters(true)) out[p.key()] = p.value();
  return out;
}

void PromptLearningModel::merge(const std::vector<std::string>& names, bool) {
  throw NotSupported("[merge_adapter] " + to_string(owner_.peft_config(names.empty() ? "" : names.front()).peft_type) +
                     " adapters add virtual tokens or a key/value prefix and cannot be merged into the weights");
}

// ---------------------------------------------------------------- saved form

std::map<std::string, at::Tensor> PromptLearningModel::state_dict(const std::string& name) const {
  return {{"prompt_embeddings", prompt_embeddings(name).detach()}};
}

std::string PromptLearningModel::mismatch_hint(const std::string& key, const std::string& name) const {
  if (key != "prompt_embeddings" || owner_.peft_config(name).peft_type != PeftType::PrefixTuning) return "";
  return " (a prefix saved with prefix_on: encoder_and_decoder has 2·num_virtual_tokens rows, one with "
         "prefix_placement: embedding has token_dim columns; such an adapter_config.json must keep that field)";
}

void PromptLearningModel::save_extra(const std::string& dir, const std::string& name) const {
  if (encoders_.at(name)->table_only()) return;
  // The full encoder (MLP / LSTM / projection), so training can resume (PEFT issue #1247).
  std::map<std::string, at::Tensor> enc;
  for (const auto& [k, v] : prompt_encoder_state(name)) enc[k] = v.detach().contiguous().clone();
  io::save_safetensors((fs::path(dir) / kSidecar).string(), enc, {{"format", "pt"}});
}

void PromptLearningModel::after_load(const std::string& dir, const std::string& name, bool is_trainable) {
  auto& enc = *encoders_.at(name);
  if (enc.table_only()) return;  // prompt_embeddings went straight into the table
  const std::string side = (fs::path(dir) / kSidecar).string();
  PEFT_CHECK(fs::exists(side), FormatError, "[from_pretrained] ", dir, ": is_trainable=", is_trainable,
             " needs the full prompt encoder, but ", kSidecar,
             " is missing (PEFT saves only its output; load with is_trainable=false to use the adapter)");
  const auto f = io::SafetensorsFile::open(side);
  auto params = enc.named_parameters(true);
  std::vector<std::string> problems;
  torch::NoGradGuard ng;
  for (const auto& p : params) {
    if (!f.contains(p.key())) {
      problems.push_back("missing " + p.key());
      continue;
    }
    const at::Tensor t = io::to_tensor(f, p.key());
    if (t.sizes() != p.value().sizes()) {
      std::ostringstream os;
      os << p.key() << ": file " << t.sizes() << " vs encoder " << p.value().sizes();
      problems.push_back(os.str());
      continue;
    }
    p.value().copy_(t);
  }
  for (const auto& k : f.names())
    if (!params.contains(k)) problems.push_back("unexpected " + k);
  std::string msg;
  for (const auto& p : problems) msg += "\n  " + p;
  PEFT_CHECK(problems.empty(), FormatError, "[from_pretrained] ", side, " does not fit this adapter's encoder:", msg);
}

// ---------------------------------------------------------------- forward

ModelOutput PromptLearningModel::prefix_forward(ModelInputs x, const std::string& name) {
  PEFT_CHECK(!base().gradient_checkpointing(), ConfigError,
             "[PREFIX_TUNING] PREFIX_TUNING does not work with gradient checkpointing");
  const auto& pc = dynamic_cast<const PrefixTuningConfig&>(owner_.peft_config(name));
  auto& enc = encoder(name);
  if (pc.infix()) return infix_forward(base(), x, pc, enc);
  const bool seq2seq = pc.task_type == TaskType::Seq2SeqLM;
  const int64_t P = pc.num_virtual_tokens;
  const at::Tensor& src = x.input_ids.defined() ? x.input_ids : x.inputs_embeds;
  const int64_t B = src.size(0), T = src.size(1);
  const int64_t past = x.cache ? x.cache->length() : 0;
  auto ones = [&](const at::Tensor& like) { return at::ones({B, P}, like.options()); };
  if (pc.embedding_only()) {
    // Embedding-only ablation: P trainable vectors at the input layer, nothing deeper.
    x.position_ids = at::Tensor();
    if (x.attention_mask.defined()) x.attention_mask = at::cat({ones(x.attention_mask), x.attention_mask}, 1);
    at::Tensor embeds = x.inputs_embeds.defined() ? x.inputs_embeds : base().embed(x.input_ids);
    at::Tensor virt = enc.forward().unsqueeze(0).expand({B, -1, -1}).to(embeds.scalar_type());
    if (pc.prefix_dropout > 0 && base().is_training()) virt = at::dropout(virt, pc.prefix_dropout, true);
    x.input_ids = at::Tensor();
    x.inputs_embeds = at::cat({virt, embeds}, 1);
    if (x.labels.defined()) x.labels = at::cat({at::full({B, P}, -100, x.labels.options()), x.labels}, 1);
    return base().forward(x);
  }
  if (!seq2seq && x.attention_mask.defined()) x.attention_mask = at::cat({ones(x.attention_mask), x.attention_mask}, 1);
  if (seq2seq && x.decoder_attention_mask.defined())
    x.decoder_attention_mask = at::cat({ones(x.decoder_attention_mask), x.decoder_attention_mask}, 1);
  // The real tokens sit after the P cached prefix positions. RoBERTa numbers its positions from
  // the padding id over the non-padding tokens and DistilBERT never moves them: both number them
  // themselves after a prefix, as transformers does with a cache of length P.
  const std::string mt = base().config().model_type();
  const bool own_positions = mt == "roberta" || mt == "xlm-roberta" || mt == "distilbert";
  if (x.position_ids.defined()) x.position_ids = x.position_ids + P;
  else if (!seq2seq && !own_positions)
    x.position_ids = at::arange(P + past, P + past + T, at::TensorOptions().dtype(at::kLong)).unsqueeze(0).expand({B, T});
  at::Tensor flat = enc.forward().unsqueeze(0).expand({B, -1, -1}).to(base().word_embeddings().scalar_type());
  if (pc.prefix_dropout > 0 && base().is_training()) flat = at::dropout(flat, pc.prefix_dropout, true);
  if (pc.encoder_and_decoder()) {
    // Rows P..2P-1 prefix every encoder self-attention (PREFIX in [PREFIX; x; PREFIX'; y]).
    x.prefix_kv = prefix_key_values(flat.narrow(1, P, P), pc.num_layers, pc.num_attention_heads, pc.token_dim, 1);
    flat = flat.narrow(1, 0, P);
  }
  auto kv = prefix_key_values(flat, pc.num_layers, pc.num_attention_heads, pc.token_dim, pc.num_transformer_submodules);
  if (seq2seq) x.decoder_prefix_kv = std::move(kv);
  else x.prefix_kv = std::move(kv);
  return base().forward(x);
}

// P-Tuning with a template: virtual tokens and anchors around x.
ModelOutput PromptLearningModel::template_forward(ModelInputs x, const std::string& name) {
  const auto& cfg = dynamic_cast<const PromptLearningConfig&>(owner_.peft_config(name));
  const int64_t B = x.input_ids.defined() ? x.input_ids.size(0) : x.inputs_embeds.size(0);
  const int64_t T = x.input_ids.defined() ? x.input_ids.size(1) : x.inputs_embeds.size(1);
  x.position_ids = at::Tensor();
  at::Tensor embeds = x.inputs_embeds.defined() ? x.inputs_embeds : base().embed(x.input_ids);
  const at::Tensor mask =
      x.attention_mask.defined() ? x.attention_mask : at::ones({B, T}, at::TensorOptions().dtype(at::kLong));
  std::vector<int64_t> split(B, T);
  const bool causal = cfg.task_type == TaskType::CausalLM;
  if (causal && x.labels.defined())
    for (int64_t b = 0; b < B; ++b) {
      const at::Tensor nz = (x.labels[b] != -100).nonzero();
      if (nz.numel() > 0) split[b] = nz[0][0].item<int64_t>();
    }
  const at::Tensor virt = encoder(name).forward().narrow(0, 0, cfg.num_virtual_tokens);
  const Templated t =
      apply_template(base(), templates_.at(name), virt, embeds, mask, causal ? x.labels : at::Tensor(), split);
  x.input_ids = at::Tensor();
  x.inputs_embeds = t.embeds;
  x.attention_mask = t.mask;
  if (causal && x.labels.defined()) x.labels = t.labels;
  return base().forward(x);
}

ModelOutput PromptLearningModel::forward(const ModelInputs& in, const std::vector<std::string>& adapter_names) {
  PEFT_CHECK(adapter_names.empty(), NotSupported,
             "[PeftModel::forward] mixed-adapter batches are for LoRA; prompt learning runs one adapter");
  const std::string& name = owner_.active_adapters().front();
  const auto& cfg = dynamic_cast<const PromptLearningConfig&>(owner_.peft_config(name));
  auto& enc = encoder(name);
  const int64_t P = cfg.num_virtual_tokens;
  PEFT_CHECK(in.input_ids.defined() || in.inputs_embeds.defined(), std::invalid_argument,
             "[PeftModel::forward] give input_ids or inputs_embeds");
  const int64_t B = in.input_ids.defined() ? in.input_ids.size(0) : in.inputs_embeds.size(0);
  const int64_t T = in.input_ids.defined() ? in.input_ids.size(1) : in.inputs_embeds.size(1);
  const TaskType task = cfg.task_type;
  const bool seq2seq = task == TaskType::Seq2SeqLM;
  const int64_t past = in.cache ? in.cache->length() : 0;
  PEFT_CHECK(past == 0 || cfg.peft_type == PeftType::PrefixTuning, NotSupported, "[PeftModel::forward] ",
             to_string(cfg.peft_type), " with a filled KV cache would prepend the prompt again; use PeftModel::generate");
  ModelInputs x = in;
  // _adjust_prompt_learning_kwargs: token_type_ids only survive for classification tasks.
  if ((task == TaskType::CausalLM || seq2seq) && x.token_type_ids.defined()) {
    if (!warned_token_type_ids_)
      std::cerr << "warning: Token type ids are not supported for parameter efficient tuning. Ignoring token type ids\n";
    warned_token_type_ids_ = true;
    x.token_type_ids = at::Tensor();
  }
  if (cfg.peft_type == PeftType::PrefixTuning) return prefix_forward(std::move(x), name);
  if (templates_.count(name)) return template_forward(std::move(x), name);

  // Prompt Tuning / P-Tuning: virtual-token embeddings before the real ones.
  if (x.position_ids.defined()) {
    if (!warned_position_ids_)
      std::cerr << "warning: Position ids are not supported for parameter efficient tuning. Ignoring position ids.\n";
    warned_position_ids_ = true;
    x.position_ids = at::Tensor();
  }
  if (x.attention_mask.defined())
    x.attention_mask = at::cat({at::ones({B, P}, x.attention_mask.options()), x.attention_mask}, 1);
  if ((task == TaskType::SeqCls || task == TaskType::TokenCls) && x.token_type_ids.defined())
    x.token_type_ids = at::cat({at::zeros({B, P}, x.token_type_ids.options()), x.token_type_ids}, 1);
  at::Tensor embeds = x.inputs_embeds.defined() ? x.inputs_embeds : base().embed(x.input_ids);
  at::Tensor prompts = enc.forward().unsqueeze(0).expand({B, -1, -1}).to(embeds.scalar_type());
  if (seq2seq) prompts = prompts.narrow(1, 0, P);
  x.input_ids = at::Tensor();
  x.inputs_embeds = at::cat({prompts, embeds}, 1);
  if (x.labels.defined() && (task == TaskType::CausalLM || (task == TaskType::TokenCls && x.labels.size(1) == T)))
    x.labels = at::cat({at::full({B, P}, -100, x.labels.options()), x.labels}, 1);
  ModelOutput out = base().forward(x);
  if (task == TaskType::TokenCls && owner_.trim_prompt_logits) out.logits = out.logits.narrow(1, P, T);
  return out;
}

}  // namespace peft::prompt
