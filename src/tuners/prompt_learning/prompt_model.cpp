// PeftModel's prompt-learning paths. Mirrors peft/peft_model.py: PeftModel._setup_prompt_encoder,
// get_prompt, get_prompt_embedding_to_save, _adjust_prompt_learning_kwargs, and the forward /
// generate / prepare_inputs_for_generation of PeftModelForCausalLM, ForSequenceClassification,
// ForTokenClassification and ForSeq2SeqLM; peft/utils/save_and_load.py for prompt_embeddings.
#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include <filesystem>
#include <iostream>

#include "peft/core/check.h"
#include "peft/io/safetensors.h"
#include "peft/io/tensor_bridge.h"
#include "peft/io/tokenizer.h"
#include "peft/models/blocks.h"
#include "peft/peft_model.h"
#include "peft/tuners/p_tuning/config.h"
#include "peft/tuners/prefix_tuning/config.h"
#include "peft/tuners/prompt_tuning/config.h"
#include "prompt_state.h"

namespace peft {

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

/// Appends the per-layer key/value block `kv` ([B, H, P, hd] each) to `cache`.
void append_to_cache(models::KVCache& cache, const std::vector<models::KeyValue>& kv) {
  if (cache.layers.size() < kv.size()) cache.layers.resize(kv.size());
  for (std::size_t l = 0; l < kv.size(); ++l) {
    auto& slot = cache.layers[l];
    slot.key = slot.key.defined() ? at::cat({slot.key, kv[l].key.to(slot.key.scalar_type())}, 2) : kv[l].key;
    slot.value = slot.value.defined() ? at::cat({slot.value, kv[l].value.to(slot.value.scalar_type())}, 2) : kv[l].value;
  }
}

/// Infix placement ([x; INFIX; y]) on a decoder-only model, one sample at a time: x runs first
/// and fills a KV cache, the infix keys/values are appended to the cache, then y runs over
/// [x; INFIX]. x ends at the first label that is not -100 (no labels: the whole input is x).
/// Tokens of x never see the infix; tokens of y see it at every layer; y's positions count on
/// after the P infix slots.
ModelOutput infix_forward(models::PretrainedModel& base, const ModelInputs& in, const PrefixTuningConfig& pc,
                          prompt::PromptEncoder& enc) {
  PEFT_CHECK(in.cache == nullptr, NotSupported,
             "[PREFIX_TUNING] prefix_placement infix with a KV cache; use PeftModel::generate");
  const bool have_ids = in.input_ids.defined();
  const at::Tensor& src = have_ids ? in.input_ids : in.inputs_embeds;
  const int64_t B = src.size(0), T = src.size(1), P = pc.num_virtual_tokens;
  at::Tensor flat = enc.forward().unsqueeze(0).to(base.word_embeddings().scalar_type());
  if (pc.prefix_dropout > 0 && base.is_training()) flat = at::dropout(flat, pc.prefix_dropout, true);
  const auto kv = prompt::prefix_key_values(flat, pc.num_layers, pc.num_attention_heads, pc.token_dim, 1);
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

/// Tokenises the template's words (anchors, [v:word] inits), checks the ids and initialises the
/// virtual tokens named [v:word] with the mean embedding of the word's tokens.
std::vector<TemplateItem> resolve_template(const PromptEncoderConfig& c, const at::Tensor& words,
                                           prompt::PromptEncoder& enc) {
  auto items = parse_p_tuning_template(c.p_tuning_template);
  std::optional<io::Tokenizer> tok;
  const int64_t V = words.size(0);
  int64_t v = 0;
  for (auto& it : items) {
    if (it.kind == TemplateItem::Input) continue;
    if (!it.word.empty()) {
      if (!tok) {
        PEFT_CHECK(c.tokenizer_name_or_path && fs::exists(*c.tokenizer_name_or_path), ConfigError,
                   "[P_TUNING] p_tuning_template word '", it.word, "' needs tokenizer_name_or_path (a model folder with "
                   "a tokenizer, or a tokenizer file); got '", c.tokenizer_name_or_path.value_or(""), "'");
        const std::string& path = *c.tokenizer_name_or_path;
        tok = fs::is_directory(path) ? io::Tokenizer::from_pretrained(path) : io::Tokenizer::from_file(path);
      }
      const auto enc_ids = tok->encode(it.word, /*add_special_tokens=*/false).ids;
      PEFT_CHECK(!enc_ids.empty(), ConfigError, "[P_TUNING] p_tuning_template word '", it.word, "' tokenises to nothing");
      it.ids.assign(enc_ids.begin(), enc_ids.end());
    }
    for (int64_t id : it.ids)
      PEFT_CHECK(id >= 0 && id < V, ConfigError, "[P_TUNING] p_tuning_template token id ", id,
                 " is outside the model's vocabulary (", V, ")");
    if (it.kind == TemplateItem::Virtual) {
      if (!it.ids.empty() && !c.inference_mode) {
        torch::NoGradGuard ng;
        const at::Tensor ids = at::tensor(it.ids, at::TensorOptions().dtype(at::kLong)).to(words.device());
        enc.table()[v].copy_(words.detach().index_select(0, ids).mean(0).to(enc.table().scalar_type()));
      }
      ++v;
    }
  }
  return items;
}

/// The input embeddings, mask and labels of a P-Tuning template: per sample, the template with
/// x (the first `split[b]` positions) at [x], then the rest of the sample (y). Virtual tokens come
/// from `virt` [P, d] in template order; anchors are frozen word embeddings. Labels of template
/// tokens are -100.
struct Templated {
  at::Tensor embeds, mask, labels;
};
Templated apply_template(models::PretrainedModel& base, const std::vector<TemplateItem>& items, const at::Tensor& virt,
                         const at::Tensor& embeds, const at::Tensor& mask, const at::Tensor& labels,
                         const std::vector<int64_t>& split) {
  const int64_t B = embeds.size(0), T = embeds.size(1);
  std::vector<at::Tensor> anchor_embeds;
  for (const auto& it : items)
    if (it.kind == TemplateItem::Anchor) {
      torch::NoGradGuard ng;  // anchors are real, frozen token embeddings
      anchor_embeds.push_back(base.embed(at::tensor(it.ids, at::TensorOptions().dtype(at::kLong)).unsqueeze(0).to(embeds.device()))[0].detach());
    }
  std::vector<at::Tensor> e_rows, m_rows, l_rows;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t s = split[b];
    std::vector<at::Tensor> e, m, l;
    int64_t v = 0, a = 0;
    auto fixed = [&](const at::Tensor& rows) {
      e.push_back(rows.to(embeds.scalar_type()));
      m.push_back(at::ones({rows.size(0)}, mask.options()));
      if (labels.defined()) l.push_back(at::full({rows.size(0)}, -100, labels.options()));
    };
    for (const auto& it : items) {
      if (it.kind == TemplateItem::Input) {
        e.push_back(embeds[b].narrow(0, 0, s));
        m.push_back(mask[b].narrow(0, 0, s));
        if (labels.defined()) l.push_back(labels[b].narrow(0, 0, s));
      } else if (it.kind == TemplateItem::Virtual) {
        fixed(virt.narrow(0, v++, 1));
      } else {
        fixed(anchor_embeds[a++]);
      }
    }
    e.push_back(embeds[b].narrow(0, s, T - s));
    m.push_back(mask[b].narrow(0, s, T - s));
    if (labels.defined()) l.push_back(labels[b].narrow(0, s, T - s));
    e_rows.push_back(at::cat(e, 0));
    m_rows.push_back(at::cat(m, 0));
    if (labels.defined()) l_rows.push_back(at::cat(l, 0));
  }
  Templated t;
  t.embeds = at::stack(e_rows);
  t.mask = at::stack(m_rows);
  if (labels.defined()) t.labels = at::stack(l_rows);
  return t;
}

}  // namespace

void PeftModel::inject_prompt(const std::string& name, PeftConfig& cfg_any) {
  auto& cfg = dynamic_cast<PromptLearningConfig&>(cfg_any);
  const std::string who = "[" + to_string(cfg.peft_type) + "] ";
  const TaskHead want = head_for(cfg.task_type);
  PEFT_CHECK(base_->head() == want, std::invalid_argument, who, "task_type ", to_string(cfg.task_type),
             " needs a model with the matching head; this model (", base_->config().source(), ") has another one");
  cfg.fill_from_model(base_->config());
  cfg.validate();
  const auto* pfx = dynamic_cast<const PrefixTuningConfig*>(&cfg);
  if (pfx && pfx->embedding_only()) {
    const int64_t hidden = base_->word_embeddings().size(1);
    PEFT_CHECK(cfg.token_dim == hidden, ConfigError, who, "prefix_placement: embedding needs token_dim ", cfg.token_dim,
               " equal to the model's embedding width ", hidden);
  } else if (cfg.peft_type == PeftType::PrefixTuning) {
    PEFT_CHECK(!gradient_checkpointing_on(*base_), ConfigError, who,
               "PREFIX_TUNING does not work with gradient checkpointing (turn it off in the model or trainer)");
    const int64_t H = cfg.num_attention_heads;
    PEFT_CHECK(cfg.num_layers == base_->num_layers() && H == base_->num_kv_heads() &&
                   cfg.token_dim / H == base_->head_dim(),
               ConfigError, who, "the prefix shape (num_layers=", cfg.num_layers, ", num_attention_heads=", H,
               ", head_dim=token_dim/heads=", cfg.token_dim / H, ") does not fit the model (", base_->num_layers(),
               " layers, ", base_->num_kv_heads(), " key/value heads of size ", base_->head_dim(), ")");
  } else {
    const int64_t hidden = base_->word_embeddings().size(1);
    PEFT_CHECK(cfg.token_dim == hidden, ConfigError, who, "token_dim ", cfg.token_dim,
               " differs from the model's embedding width ", hidden);
  }
  std::vector<int64_t> ids;
  if (auto* pt = dynamic_cast<PromptTuningConfig*>(&cfg); pt && pt->prompt_tuning_init == "TEXT" && !pt->inference_mode)
    ids = text_init_ids(*pt);
  if (!prompt_) prompt_ = std::make_shared<detail::PromptState>();
  auto enc = prompt::make_prompt_encoder(cfg, base_->word_embeddings(), ids);
  enc->to(base_->word_embeddings().device());
  prompt_->encoders[name] = enc;
  if (auto* pe = dynamic_cast<PromptEncoderConfig*>(&cfg); pe && !pe->p_tuning_template.empty())
    prompt_->templates[name] = resolve_template(*pe, base_->word_embeddings(), *enc);
}

void PeftModel::prompt_set_trainable(const std::string& name, bool trainable) {
  if (!prompt_) return;
  auto it = prompt_->encoders.find(name);
  if (it == prompt_->encoders.end()) return;
  for (auto& p : it->second->parameters()) p.set_requires_grad(trainable);
}

std::vector<at::Tensor> PeftModel::prompt_parameters() const {
  std::vector<at::Tensor> out;
  if (!prompt_) return out;
  for (const auto& n : order_) {
    auto it = prompt_->encoders.find(n);
    if (it == prompt_->encoders.end()) continue;
    for (const auto& p : it->second->parameters()) out.push_back(p);
  }
  return out;
}

at::Tensor PeftModel::prompt_embeddings(const std::string& name_in) const {
  const std::string name = name_in.empty() ? active_.front() : name_in;
  PEFT_CHECK(prompt_ && prompt_->encoders.count(name), std::invalid_argument, "[prompt learning] adapter '", name,
             "' is not a prompt-learning adapter");
  auto& enc = *prompt_->encoders.at(name);
  if (enc.is_training() != base_->is_training()) enc.train(base_->is_training());
  return enc.forward();
}

std::map<std::string, at::Tensor> PeftModel::prompt_encoder_state(const std::string& name_in) const {
  const std::string name = name_in.empty() ? active_.front() : name_in;
  PEFT_CHECK(prompt_ && prompt_->encoders.count(name), std::invalid_argument, "[prompt learning] adapter '", name,
             "' is not a prompt-learning adapter");
  std::map<std::string, at::Tensor> out;
  for (const auto& p : prompt_->encoders.at(name)->named_parameters(true)) out[p.key()] = p.value();
  return out;
}

void PeftModel::load_prompt_weights(const std::string& dir, const std::string& name, bool is_trainable) {
  auto& enc = *prompt_->encoders.at(name);
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

ModelOutput PeftModel::prompt_forward(const ModelInputs& in) {
  const std::string& name = active_.front();
  const auto& cfg = dynamic_cast<const PromptLearningConfig&>(*configs_.at(name));
  auto& enc = *prompt_->encoders.at(name);
  // The encoder's dropout (LSTM encoder_dropout) follows the model's train / eval mode.
  if (enc.is_training() != base_->is_training()) enc.train(base_->is_training());
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
  auto ones = [&](const at::Tensor& like) { return at::ones({B, P}, like.options()); };

  // _adjust_prompt_learning_kwargs: token_type_ids only survive for classification tasks.
  if ((task == TaskType::CausalLM || seq2seq) && x.token_type_ids.defined()) {
    if (!prompt_->warned_token_type_ids)
      std::cerr << "warning: Token type ids are not supported for parameter efficient tuning. Ignoring token type ids\n";
    prompt_->warned_token_type_ids = true;
    x.token_type_ids = at::Tensor();
  }

  if (cfg.peft_type == PeftType::PrefixTuning) {
    PEFT_CHECK(!base_->gradient_checkpointing(), ConfigError,
               "[PREFIX_TUNING] PREFIX_TUNING does not work with gradient checkpointing");
    const auto& pc = dynamic_cast<const PrefixTuningConfig&>(cfg);
    if (pc.infix()) return infix_forward(*base_, x, pc, enc);
    if (pc.embedding_only()) {
      // Embedding-only ablation: P trainable vectors at the input layer, nothing deeper.
      x.position_ids = at::Tensor();
      if (x.attention_mask.defined()) x.attention_mask = at::cat({ones(x.attention_mask), x.attention_mask}, 1);
      at::Tensor embeds = x.inputs_embeds.defined() ? x.inputs_embeds : base_->embed(x.input_ids);
      at::Tensor virt = enc.forward().unsqueeze(0).expand({B, -1, -1}).to(embeds.scalar_type());
      if (pc.prefix_dropout > 0 && base_->is_training()) virt = at::dropout(virt, pc.prefix_dropout, true);
      x.input_ids = at::Tensor();
      x.inputs_embeds = at::cat({virt, embeds}, 1);
      if (x.labels.defined()) x.labels = at::cat({at::full({B, P}, -100, x.labels.options()), x.labels}, 1);
      return base_->forward(x);
    }
    if (!seq2seq && x.attention_mask.defined()) x.attention_mask = at::cat({ones(x.attention_mask), x.attention_mask}, 1);
    if (seq2seq && x.decoder_attention_mask.defined())
      x.decoder_attention_mask = at::cat({ones(x.decoder_attention_mask), x.decoder_attention_mask}, 1);
    // The real tokens sit after the P cached prefix positions.
    if (x.position_ids.defined()) x.position_ids = x.position_ids + P;
    else if (!seq2seq)
      x.position_ids = at::arange(P + past, P + past + T, at::TensorOptions().dtype(at::kLong)).unsqueeze(0).expand({B, T});
    const auto dtype = base_->word_embeddings().scalar_type();
    at::Tensor flat = enc.forward().unsqueeze(0).expand({B, -1, -1}).to(dtype);
    if (pc.prefix_dropout > 0 && base_->is_training()) flat = at::dropout(flat, pc.prefix_dropout, true);
    if (pc.encoder_and_decoder()) {
      // Rows P..2P-1 prefix every encoder self-attention (PREFIX in [PREFIX; x; PREFIX'; y]).
      x.prefix_kv = prompt::prefix_key_values(flat.narrow(1, P, P), cfg.num_layers, cfg.num_attention_heads,
                                              cfg.token_dim, 1);
      flat = flat.narrow(1, 0, P);
    }
    auto kv = prompt::prefix_key_values(flat, cfg.num_layers, cfg.num_attention_heads, cfg.token_dim,
                                        cfg.num_transformer_submodules);
    if (seq2seq) x.decoder_prefix_kv = std::move(kv);
    else x.prefix_kv = std::move(kv);
    return base_->forward(x);
  }

  // P-Tuning with a template: virtual tokens and anchors around x.
  if (auto tp = prompt_->templates.find(name); tp != prompt_->templates.end()) {
    x.position_ids = at::Tensor();
    at::Tensor embeds = x.inputs_embeds.defined() ? x.inputs_embeds : base_->embed(x.input_ids);
    const at::Tensor mask = x.attention_mask.defined() ? x.attention_mask : at::ones({B, T}, at::TensorOptions().dtype(at::kLong));
    std::vector<int64_t> split(B, T);
    const bool causal = task == TaskType::CausalLM;
    if (causal && x.labels.defined())
      for (int64_t b = 0; b < B; ++b) {
        const at::Tensor nz = (x.labels[b] != -100).nonzero();
        if (nz.numel() > 0) split[b] = nz[0][0].item<int64_t>();
      }
    const at::Tensor virt = enc.forward().narrow(0, 0, P);
    const Templated t = apply_template(*base_, tp->second, virt, embeds, mask, causal ? x.labels : at::Tensor(), split);
    x.input_ids = at::Tensor();
    x.inputs_embeds = t.embeds;
    x.attention_mask = t.mask;
    if (causal && x.labels.defined()) x.labels = t.labels;
    return base_->forward(x);
  }

  // Prompt Tuning / P-Tuning: virtual-token embeddings before the real ones.
  if (x.position_ids.defined()) {
    if (!prompt_->warned_position_ids)
      std::cerr << "warning: Position ids are not supported for parameter efficient tuning. Ignoring position ids.\n";
    prompt_->warned_position_ids = true;
    x.position_ids = at::Tensor();
  }
  if (x.attention_mask.defined()) x.attention_mask = at::cat({ones(x.attention_mask), x.attention_mask}, 1);
  if ((task == TaskType::SeqCls || task == TaskType::TokenCls) && x.token_type_ids.defined())
    x.token_type_ids = at::cat({at::zeros({B, P}, x.token_type_ids.options()), x.token_type_ids}, 1);
  at::Tensor embeds = x.inputs_embeds.defined() ? x.inputs_embeds : base_->embed(x.input_ids);
  at::Tensor prompts = enc.forward().unsqueeze(0).expand({B, -1, -1}).to(embeds.scalar_type());
  if (seq2seq) prompts = prompts.narrow(1, 0, P);
  x.input_ids = at::Tensor();
  x.inputs_embeds = at::cat({prompts, embeds}, 1);
  if (x.labels.defined() && (task == TaskType::CausalLM || (task == TaskType::TokenCls && x.labels.size(1) == T)))
    x.labels = at::cat({at::full({B, P}, -100, x.labels.options()), x.labels}, 1);
  ModelOutput out = base_->forward(x);
  if (task == TaskType::TokenCls && trim_prompt_logits) out.logits = out.logits.narrow(1, P, T);
  return out;
}

// ---------------------------------------------------------------- generation

at::Tensor PeftModel::generate(const at::Tensor& input_ids, const at::Tensor& attention_mask,
                               const models::GenerationConfig& gc) {
  const bool prompt = prompt_ && !disabled_ && !active_.empty() && configs_.at(active_.front())->is_prompt_learning();
  if (!prompt) {
    return base_->is_encoder_decoder() ? models::generate_seq2seq(*base_, input_ids, attention_mask, gc)
                                       : models::generate(*base_, input_ids, attention_mask, gc);
  }
  const auto& cfg = dynamic_cast<const PromptLearningConfig&>(*configs_.at(active_.front()));
  auto& enc = *prompt_->encoders.at(active_.front());
  if (enc.is_training() != base_->is_training()) enc.train(base_->is_training());
  PEFT_CHECK(cfg.task_type == TaskType::CausalLM || cfg.task_type == TaskType::Seq2SeqLM, std::invalid_argument,
             "[generate] generation needs a CAUSAL_LM or SEQ_2_SEQ_LM adapter, got ", to_string(cfg.task_type));
  PEFT_CHECK(input_ids.dim() == 2 && input_ids.size(1) > 0, std::invalid_argument,
             "[generate] input_ids must be [batch, length>0], got ", input_ids.sizes());
  const auto* pc = dynamic_cast<const PrefixTuningConfig*>(&cfg);
  const bool infix = pc && pc->infix();
  const bool enc_prefix = pc && pc->encoder_and_decoder();
  const bool prefix = pc && !pc->embedding_only() && !infix;
  const int64_t P = cfg.num_virtual_tokens, B = input_ids.size(0), T = input_ids.size(1);
  torch::NoGradGuard ng;
  const at::Tensor mask0 = attention_mask.defined() ? attention_mask.to(at::kLong) : at::ones_like(input_ids, at::kLong);
  const at::Tensor onesP = at::ones({B, P}, mask0.options());
  std::vector<models::KeyValue> kv, enc_kv;
  at::Tensor prompts;
  const auto dtype = base_->word_embeddings().scalar_type();
  if (prefix || infix) {
    at::Tensor flat = enc.forward().unsqueeze(0).expand({B, -1, -1}).to(dtype);
    if (enc_prefix) {
      enc_kv = prompt::prefix_key_values(flat.narrow(1, P, P), cfg.num_layers, cfg.num_attention_heads, cfg.token_dim, 1);
      flat = flat.narrow(1, 0, P);
    }
    kv = prompt::prefix_key_values(flat, cfg.num_layers, cfg.num_attention_heads, cfg.token_dim,
                                   infix ? 1 : cfg.num_transformer_submodules);
  } else {
    prompts = enc.forward().unsqueeze(0).expand({B, -1, -1}).to(dtype).narrow(1, 0, P);
  }

  // P-Tuning template: the prompt is x; the template's embeddings and mask replace [prompts; x].
  Templated tmpl;
  const auto tp = prompt_->templates.find(active_.front());
  const bool templated = tp != prompt_->templates.end();
  if (templated)
    tmpl = apply_template(*base_, tp->second, enc.forward().narrow(0, 0, P).to(dtype), base_->embed(input_ids), mask0,
                          at::Tensor(), std::vector<int64_t>(B, T));
  std::vector<int64_t> eos = gc.eos_token_id;
  const int64_t pad = gc.pad_token_id >= 0 ? gc.pad_token_id : (eos.empty() ? 0 : eos.front());
  at::Generator gen = at::detail::createCPUGenerator(gc.seed);
  at::Tensor unfinished = at::ones({B}, at::TensorOptions().dtype(at::kBool));
  auto choose = [&](const at::Tensor& logits, const at::Tensor& ids) {
    at::Tensor scores = models::process_logits(logits.to(at::kFloat), ids, gc);
    at::Tensor next = gc.do_sample ? at::multinomial(at::softmax(scores, -1), 1, false, gen).squeeze(1)
                                   : scores.argmax(-1);
    next = at::where(unfinished, next, at::full_like(next, pad));
    for (int64_t e : eos) unfinished = unfinished.logical_and(next != e);
    return next;
  };

  models::KVCache cache;
  if (!base_->is_encoder_decoder()) {
    PEFT_CHECK(base_->head() == TaskHead::CausalLM, std::invalid_argument, "[generate] the model has no LM head");
    at::Tensor ids = input_ids, mask = mask0;
    // transformers creates position ids from the mask once and counts on; PEFT adds P for a prefix
    // and drops them for prompt tuning (the model then counts cache positions).
    at::Tensor pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0);
    at::Tensor step_ids = input_ids;
    for (int64_t step = 0; step < gc.max_new_tokens; ++step) {
      ModelInputs in;
      in.cache = &cache;
      in.attention_mask = at::cat({onesP, mask}, 1);
      if (infix) {
        // [x; INFIX; y]: the prompt runs without the infix, which then joins the cache after it.
        in.input_ids = step_ids;
        in.position_ids = pos.narrow(1, pos.size(1) - step_ids.size(1), step_ids.size(1)) + (step == 0 ? 0 : P);
        in.attention_mask = step == 0 ? mask
                                      : at::cat({mask.narrow(1, 0, T), onesP, mask.narrow(1, T, mask.size(1) - T)}, 1);
      } else if (prefix) {
        in.input_ids = step_ids;
        in.prefix_kv = kv;
        in.position_ids = pos.narrow(1, pos.size(1) - step_ids.size(1), step_ids.size(1)) + P;
      } else if (templated) {
        if (step == 0) in.inputs_embeds = tmpl.embeds;
        else in.input_ids = step_ids;
        in.attention_mask = at::cat({tmpl.mask, mask.narrow(1, T, mask.size(1) - T)}, 1);
      } else if (step == 0) {
        in.inputs_embeds = at::cat({prompts, base_->embed(step_ids)}, 1);
      } else {
        in.input_ids = step_ids;
      }
      const at::Tensor next = choose(base_->forward(in).logits.select(1, -1), ids);
      if (infix && step == 0) append_to_cache(cache, kv);
      ids = at::cat({ids, next.unsqueeze(1)}, 1);
      mask = at::cat({mask, at::ones({B, 1}, mask.options())}, 1);
      pos = at::cat({pos, pos.narrow(1, pos.size(1) - 1, 1) + 1}, 1);
      if (!unfinished.any().item<bool>()) break;
      step_ids = next.unsqueeze(1);
    }
    return ids;
  }

  int64_t start = gc.decoder_start_token_id;
  if (start < 0) start = base_->config().get_int("decoder_start_token_id", -1);
  if (start < 0) start = base_->config().get_int("bos_token_id", -1);
  PEFT_CHECK(start >= 0, ConfigError, "[generate] ", base_->config().source(), ": no decoder_start_token_id");
  const at::Tensor enc_mask = templated ? tmpl.mask : prefix ? mask0 : at::cat({onesP, mask0}, 1);
  at::Tensor ids = at::full({B, 1}, start, input_ids.options().dtype(at::kLong));
  at::Tensor step_ids = ids, encoder_outputs;
  for (int64_t step = 0; step < gc.max_new_tokens; ++step) {
    ModelInputs in;
    if (encoder_outputs.defined()) in.encoder_outputs = encoder_outputs;
    else if (templated) in.inputs_embeds = tmpl.embeds;
    else if (prefix) {
      in.input_ids = input_ids;
      in.prefix_kv = enc_kv;
    }
    else in.inputs_embeds = at::cat({prompts, base_->embed(input_ids)}, 1);
    in.attention_mask = enc_mask;
    in.decoder_input_ids = step_ids;
    if (prefix) in.decoder_prefix_kv = kv;
    in.cache = &cache;
    const ModelOutput out = base_->forward(in);
    encoder_outputs = out.encoder_last_hidden_state;
    const at::Tensor next = choose(out.logits.select(1, -1), ids);
    ids = at::cat({ids, next.unsqueeze(1)}, 1);
    if (!unfinished.any().item<bool>()) break;
    step_ids = next.unsqueeze(1);
  }
  (void)T;
  return ids;
}

}  // namespace peft

// ---------------------------------------------------------------- ensembling

#include "peft/tuners/prompt_learning/ensemble.h"

namespace peft::prompt {

EnsembleResult ensemble(PeftModel& pm, const std::vector<std::string>& adapters, const models::ModelInputs& in,
                        Combine combine) {
  PEFT_CHECK(!adapters.empty(), std::invalid_argument, "[ensemble] give at least one adapter");
  PEFT_CHECK(in.input_ids.defined() && !in.inputs_embeds.defined(), std::invalid_argument,
             "[ensemble] give input_ids");
  const auto& first = dynamic_cast<const PromptLearningConfig&>(pm.peft_config(adapters.front()));
  const int64_t P = first.num_virtual_tokens, K = static_cast<int64_t>(adapters.size());
  const int64_t B = in.input_ids.size(0), T = in.input_ids.size(1);
  const TaskType task = first.task_type;
  std::vector<at::Tensor> prompts;
  for (const auto& a : adapters) {
    const auto& c = pm.peft_config(a);
    PEFT_CHECK(c.peft_type == PeftType::PromptTuning || c.peft_type == PeftType::PTuning, NotSupported,
               "[ensemble] adapter '", a, "' is ", to_string(c.peft_type),
               "; ensembling takes Prompt Tuning / P-Tuning adapters");
    const auto& pc = dynamic_cast<const PromptLearningConfig&>(c);
    const auto* pe = dynamic_cast<const PromptEncoderConfig*>(&c);
    PEFT_CHECK(!pe || pe->p_tuning_template.empty(), NotSupported, "[ensemble] adapter '", a,
               "' has a p_tuning_template; ensembling prepends the virtual tokens and takes template-free adapters");
    PEFT_CHECK(pc.task_type == task && pc.num_virtual_tokens == P, std::invalid_argument, "[ensemble] adapter '", a,
               "' has task ", to_string(pc.task_type), " and ", pc.num_virtual_tokens, " virtual tokens; '",
               adapters.front(), "' has ", to_string(task), " and ", P);
    prompts.push_back(pm.prompt_embeddings(a).narrow(0, 0, P).unsqueeze(0).expand({B, P, -1}));
  }
  torch::NoGradGuard ng;
  auto& base = pm.base_model();
  auto rep = [&](const at::Tensor& t) { return t.defined() ? t.repeat({K, 1}) : t; };
  models::ModelInputs x;
  const at::Tensor embeds = base.embed(in.input_ids);
  x.inputs_embeds = at::cat({at::cat(prompts, 0).to(embeds.scalar_type()), embeds.repeat({K, 1, 1})}, 1);
  const at::Tensor mask = in.attention_mask.defined() ? in.attention_mask : at::ones_like(in.input_ids);
  x.attention_mask = at::cat({at::ones({K * B, P}, mask.options()), rep(mask)}, 1);
  if ((task == TaskType::SeqCls || task == TaskType::TokenCls) && in.token_type_ids.defined())
    x.token_type_ids = at::cat({at::zeros({K * B, P}, in.token_type_ids.options()), rep(in.token_type_ids)}, 1);
  x.decoder_input_ids = rep(in.decoder_input_ids);
  x.decoder_attention_mask = rep(in.decoder_attention_mask);
  at::Tensor logits = base.forward(x).logits;
  if (task == TaskType::CausalLM || task == TaskType::TokenCls) logits = logits.narrow(1, P, T);
  std::vector<int64_t> shape = {K, B};
  for (int64_t d = 1; d < logits.dim(); ++d) shape.push_back(logits.size(d));
  EnsembleResult r;
  r.probs = at::softmax(logits.to(at::kFloat), -1).view(shape);
  r.mean_probs = r.probs.mean(0);
  const int64_t C = logits.size(-1);
  r.votes = at::one_hot(r.probs.argmax(-1), C).sum(0);
  if (combine == Combine::MeanProbability) {
    r.prediction = r.mean_probs.argmax(-1);
  } else {
    // Most votes; a tie goes to the class with the higher mean probability (a fraction < 1).
    r.prediction = (r.votes.to(at::kFloat) + r.mean_probs * 0.5).argmax(-1);
  }
  return r;
}

}  // namespace peft::prompt
