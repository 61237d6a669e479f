// Mirrors transformers/models/phi3/modeling_phi3.py (Phi3RotaryEmbedding with the LongRoPE
// update of modeling_rope_utils.py, Phi3Attention, Phi3MLP, Phi3DecoderLayer, Phi3Model,
// Phi3For{CausalLM,SequenceClassification,TokenClassification}) with eager attention.
#include "peft/models/phi3.h"

#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "causal_lm_head.h"
#include "peft/core/check.h"
#include "peft/models/adaptable_linear.h"
#include "peft/models/architectures.h"
#include "peft/models/blocks.h"
#include "peft/models/model.h"

namespace peft::models {

namespace {

std::vector<double> factor_list(const nlohmann::json& rs, const char* key, const ModelConfig& cfg,
                                const char* where, int64_t expected) {
  PEFT_CHECK(rs.contains(key) && rs[key].is_array(), ConfigError, "[config] ", cfg.source(), ": ", where, ".", key,
             " must be a list of ", expected, " numbers for rope type 'longrope'");
  std::vector<double> f;
  for (const auto& x : rs[key]) {
    PEFT_CHECK(x.is_number(), ConfigError, "[config] ", cfg.source(), ": ", where, ".", key,
               " must hold numbers, got ", x.dump());
    f.push_back(x.get<double>());
  }
  PEFT_CHECK(static_cast<int64_t>(f.size()) == expected, ConfigError, "[config] ", cfg.source(), ": ", where, ".",
             key, " has ", f.size(), " entries; expected rotary_dim / 2 = ", expected);
  return f;
}

}  // namespace

Phi3Config Phi3Config::from(const ModelConfig& cfg) {
  Phi3Config c;
  c.vocab_size = cfg.get_positive("vocab_size", c.vocab_size);
  c.hidden_size = cfg.get_positive("hidden_size", c.hidden_size);
  c.intermediate_size = cfg.get_positive("intermediate_size", c.intermediate_size);
  c.num_hidden_layers = cfg.get_positive("num_hidden_layers", c.num_hidden_layers);
  c.num_attention_heads = cfg.get_positive("num_attention_heads", c.num_attention_heads);
  c.num_key_value_heads = cfg.get_positive("num_key_value_heads", c.num_attention_heads);
  PEFT_CHECK(c.num_attention_heads % c.num_key_value_heads == 0, ConfigError, "[config] ", cfg.source(),
             ": num_attention_heads (", c.num_attention_heads, ") must be a multiple of num_key_value_heads (",
             c.num_key_value_heads, ")");
  const bool explicit_hd = cfg.has("head_dim");
  c.head_dim = cfg.get_positive("head_dim", c.hidden_size / c.num_attention_heads);
  PEFT_CHECK(explicit_hd || c.hidden_size % c.num_attention_heads == 0, ConfigError, "[config] ", cfg.source(),
             ": hidden_size (", c.hidden_size, ") must be divisible by num_attention_heads (", c.num_attention_heads,
             ")");
  c.max_position_embeddings = cfg.get_positive("max_position_embeddings", c.max_position_embeddings);
  // Phi3Config always has this field; transformers gives it priority over the rope dictionary's.
  c.original_max_position_embeddings =
      cfg.get_positive("original_max_position_embeddings", c.original_max_position_embeddings);
  c.sliding_window = cfg.get_int("sliding_window", 0);
  PEFT_CHECK(c.sliding_window >= 0, ConfigError, "[config] ", cfg.source(), ": sliding_window must be positive or null, got ",
             c.sliding_window);
  c.rms_norm_eps = cfg.get_double("rms_norm_eps", c.rms_norm_eps);
  c.attention_dropout = cfg.get_double("attention_dropout", 0.0);
  c.resid_pdrop = cfg.get_double("resid_pdrop", 0.0);
  c.classifier_dropout = cfg.has("classifier_dropout") ? cfg.get_double("classifier_dropout", 0.1)
                                                       : cfg.get_double("hidden_dropout", 0.1);
  c.tie_word_embeddings = cfg.get_bool("tie_word_embeddings", false);
  c.hidden_act = cfg.get_string("hidden_act", "silu");
  check_activation(c.hidden_act, cfg.source());
  c.problem_type = cfg.get_string("problem_type", "");
  // Phi3Config's default when the key is absent; null means no padding token.
  c.pad_token_id = cfg.json().contains("pad_token_id") ? cfg.get_int("pad_token_id", -1) : 32000;
  if (cfg.has("id2label")) c.num_labels = static_cast<int64_t>(cfg.json()["id2label"].size());
  c.num_labels = cfg.get_positive("num_labels", c.num_labels);

  // transformers 4.x: rope_theta / partial_rotary_factor at top level, scaling in rope_scaling;
  // 5.x: all of it in rope_parameters. rope_scaling, when set, replaces rope_parameters.
  c.rope_theta = cfg.get_double("rope_theta", c.rope_theta);
  c.partial_rotary_factor = cfg.get_double("partial_rotary_factor", 1.0);
  const char* where = cfg.has("rope_scaling") ? "rope_scaling" : "rope_parameters";
  nlohmann::json rs = nlohmann::json::object();
  if (cfg.has(where)) {
    rs = cfg.json()[where];
    PEFT_CHECK(rs.is_object(), ConfigError, "[config] ", cfg.source(), ": ", where, " must be an object");
  }
  auto number = [&](const char* key, double dflt) {
    if (!rs.contains(key) || rs[key].is_null()) return dflt;
    PEFT_CHECK(rs[key].is_number(), ConfigError, "[config] ", cfg.source(), ": ", where, ".", key,
               " must be a number, got ", rs[key].dump());
    return rs[key].get<double>();
  };
  c.rope_theta = number("rope_theta", c.rope_theta);
  c.partial_rotary_factor = number("partial_rotary_factor", c.partial_rotary_factor);
  c.rotary_dim = static_cast<int64_t>(static_cast<double>(c.head_dim) * c.partial_rotary_factor);
  PEFT_CHECK(c.rotary_dim > 0 && c.rotary_dim <= c.head_dim && c.rotary_dim % 2 == 0, ConfigError, "[config] ",
             cfg.source(), ": partial_rotary_factor ", c.partial_rotary_factor, " gives rotary dimension ",
             c.rotary_dim, " of head_dim ", c.head_dim, "; expected an even number in 2..head_dim");
  std::string type = "default";
  if (rs.contains("rope_type") && rs["rope_type"].is_string()) type = rs["rope_type"].get<std::string>();
  else if (rs.contains("type") && rs["type"].is_string()) type = rs["type"].get<std::string>();
  // transformers takes original_max_position_embeddings from the top level (Phi3Config's field,
  // 4096 by default) for "longrope" / "yarn", but from the rope dictionary for the old name "su".
  if (type == "su") {
    PEFT_CHECK(rs.contains("original_max_position_embeddings") && rs["original_max_position_embeddings"].is_number_integer() &&
                   rs["original_max_position_embeddings"].get<int64_t>() > 0,
               ConfigError, "[config] ", cfg.source(), ": ", where,
               ".original_max_position_embeddings (a positive integer) is required for rope type 'su'");
    c.original_max_position_embeddings = rs["original_max_position_embeddings"].get<int64_t>();
  }
  if (type == "su" || type == "yarn") type = "longrope";
  PEFT_CHECK(type == "default" || type == "longrope", NotSupported, "[config] ", cfg.source(), ": ", where,
             " type '", type, "' is not supported for phi3 (default, longrope / su)");
  c.rope_type = type;
  if (type == "longrope") {
    c.short_factor = factor_list(rs, "short_factor", cfg, where, c.rotary_dim / 2);
    c.long_factor = factor_list(rs, "long_factor", cfg, where, c.rotary_dim / 2);
    const double omp = static_cast<double>(c.original_max_position_embeddings);
    const double factor = number("factor", static_cast<double>(c.max_position_embeddings) / omp);
    const double computed = factor <= 1.0 ? 1.0 : std::sqrt(1.0 + std::log(factor) / std::log(omp));
    c.attention_factor = number("attention_factor", computed);
  }
  return c;
}

namespace {

// 1 / (ext · θ^(2i/d)) over the rotary dimension d (ext = 1 for the default rope).
at::Tensor rope_inv_freq(const Phi3Config& c, const std::vector<double>& ext) {
  const int64_t d = c.rotary_dim;
  const at::Tensor shape = at::arange(0, d, 2, at::kLong).to(at::kFloat) / static_cast<double>(d);
  const at::Tensor base = at::pow(c.rope_theta, shape);
  if (ext.empty()) return 1.0 / base;
  return 1.0 / (at::tensor(ext, at::kDouble).to(at::kFloat) * base);
}

class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(int64_t n, double eps) : eps_(eps) { weight = register_parameter("weight", at::ones({n})); }
  at::Tensor forward(const at::Tensor& x) { return rms_norm(x, weight, eps_); }
  at::Tensor weight;

 private:
  double eps_;
};
TORCH_MODULE(RMSNorm);

// Rotary embedding on the first `rotary_dim` channels of each head; the rest passes through.
at::Tensor partial_rotary(const at::Tensor& x, const RotaryTables& rope, int64_t rotary_dim) {
  if (rotary_dim == x.size(-1)) return apply_rotary(x, rope);
  return at::cat({apply_rotary(x.narrow(-1, 0, rotary_dim), rope),
                  x.narrow(-1, rotary_dim, x.size(-1) - rotary_dim)}, -1);
}

class Phi3AttentionImpl : public torch::nn::Module {
 public:
  explicit Phi3AttentionImpl(const Phi3Config& c) : c_(c) {
    const int64_t H = c.num_attention_heads, KV = c.num_key_value_heads, D = c.head_dim;
    o_proj = register_module("o_proj", AdaptableLinear(H * D, c.hidden_size, false));
    qkv_proj = register_module("qkv_proj", AdaptableLinear(c.hidden_size, (H + 2 * KV) * D, false));
  }
  at::Tensor forward(const at::Tensor& x, const RotaryTables& rope, const at::Tensor& bias,
                     const KeyValue* prefix, KVCache* cache, std::size_t layer) {
    const int64_t B = x.size(0), T = x.size(1), D = c_.head_dim;
    const int64_t q_size = c_.num_attention_heads * D, kv_size = c_.num_key_value_heads * D;
    const at::Tensor qkv = qkv_proj->forward(x);
    at::Tensor q = qkv.narrow(-1, 0, q_size).view({B, T, -1, D}).transpose(1, 2);
    at::Tensor k = qkv.narrow(-1, q_size, kv_size).view({B, T, -1, D}).transpose(1, 2);
    at::Tensor v = qkv.narrow(-1, q_size + kv_size, kv_size).view({B, T, -1, D}).transpose(1, 2);
    q = partial_rotary(q, rope, c_.rotary_dim);
    k = partial_rotary(k, rope, c_.rotary_dim);
    const KeyValue kv = extend_kv(prefix, cache, layer, k, v);
    at::Tensor o = attend(q, kv.key, kv.value, bias, 1.0 / std::sqrt(static_cast<double>(D)), c_.attention_dropout,
                          is_training());
    return o_proj->forward(o.transpose(1, 2).reshape({B, T, -1}));
  }
  AdaptableLinear o_proj{nullptr}, qkv_proj{nullptr};

 private:
  Phi3Config c_;
};
TORCH_MODULE(Phi3Attention);

class Phi3MLPImpl : public torch::nn::Module {
 public:
  explicit Phi3MLPImpl(const Phi3Config& c) : act_(c.hidden_act), inter_(c.intermediate_size) {
    gate_up_proj = register_module("gate_up_proj", AdaptableLinear(c.hidden_size, 2 * c.intermediate_size, false));
    down_proj = register_module("down_proj", AdaptableLinear(c.intermediate_size, c.hidden_size, false));
  }
  at::Tensor forward(const at::Tensor& x) {
    const at::Tensor gu = gate_up_proj->forward(x);
    const at::Tensor gate = gu.narrow(-1, 0, inter_), up = gu.narrow(-1, inter_, inter_);
    return down_proj->forward(up * activation(act_, gate));
  }
  AdaptableLinear gate_up_proj{nullptr}, down_proj{nullptr};

 private:
  std::string act_;
  int64_t inter_;
};
TORCH_MODULE(Phi3MLP);

class Phi3DecoderLayerImpl : public torch::nn::Module {
 public:
  explicit Phi3DecoderLayerImpl(const Phi3Config& c) : resid_pdrop_(c.resid_pdrop) {
    self_attn = register_module("self_attn", Phi3Attention(c));
    mlp = register_module("mlp", Phi3MLP(c));
    input_layernorm = register_module("input_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps));
    post_attention_layernorm = register_module("post_attention_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps));
  }
  at::Tensor forward(const at::Tensor& x, const RotaryTables& rope, const at::Tensor& bias,
                     const KeyValue* prefix, KVCache* cache, std::size_t layer) {
    const bool train = is_training();
    at::Tensor a = self_attn->forward(input_layernorm->forward(x), rope, bias, prefix, cache, layer);
    at::Tensor h = x + models::dropout(a, resid_pdrop_, train);
    at::Tensor m = mlp->forward(post_attention_layernorm->forward(h));
    return h + models::dropout(m, resid_pdrop_, train);
  }
  Phi3Attention self_attn{nullptr};
  Phi3MLP mlp{nullptr};
  RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};

 private:
  double resid_pdrop_;
};
TORCH_MODULE(Phi3DecoderLayer);

class Phi3 : public PretrainedModel {
 public:
  Phi3(const ModelConfig& cfg, TaskHead head) : cfg_(cfg), c_(Phi3Config::from(cfg)), head_(head) {
    PEFT_CHECK(head != TaskHead::Seq2SeqLM, NotSupported, "[phi3] Phi-3 is decoder-only; a seq2seq head is not available");
    // The base model's modules sit at the top level for Phi3Model and under "model." otherwise.
    torch::nn::Module& base = head == TaskHead::Base ? static_cast<torch::nn::Module&>(*this)
                                                     : *register_module("model", std::make_shared<torch::nn::Module>());
    std::optional<int64_t> pad;
    if (c_.pad_token_id >= 0 && c_.pad_token_id < c_.vocab_size) pad = c_.pad_token_id;
    embed_tokens = base.register_module("embed_tokens", AdaptableEmbedding(c_.vocab_size, c_.hidden_size, pad));
    layers = base.register_module("layers", torch::nn::ModuleList());
    for (int64_t i = 0; i < c_.num_hidden_layers; ++i) {
      decoder_layers.push_back(Phi3DecoderLayer(c_));
      layers->push_back(decoder_layers.back());
    }
    norm = base.register_module("norm", RMSNorm(c_.hidden_size, c_.rms_norm_eps));
    if (c_.rope_type == "longrope") {
      short_inv_freq_ = rope_inv_freq(c_, c_.short_factor);
      long_inv_freq_ = rope_inv_freq(c_, c_.long_factor);
    } else {
      short_inv_freq_ = rope_inv_freq(c_, {});
    }
    if (head == TaskHead::CausalLM && !c_.tie_word_embeddings)
      lm_head = register_module("lm_head", AdaptableLinear(c_.hidden_size, c_.vocab_size, false));
    // GenericForSequenceClassification's score has no bias; GenericForTokenClassification's has one.
    if (head == TaskHead::SeqCls || head == TaskHead::TokenCls)
      score = register_module("score", AdaptableLinear(c_.hidden_size, c_.num_labels, head == TaskHead::TokenCls));
  }

  ModelOutput forward(const ModelInputs& in) override {
    PEFT_CHECK(in.input_ids.defined() != in.inputs_embeds.defined(), std::invalid_argument,
               "[phi3] give exactly one of input_ids and inputs_embeds");
    const ForwardStart start = start_forward(in, "phi3", c_.hidden_size, c_.num_hidden_layers);
    at::Tensor h = start.hidden;
    const int64_t B = start.batch, T = start.length, past = start.past, P = start.prefix;
    at::Tensor pos = in.position_ids.defined() ? in.position_ids : default_position_ids(B, T, past, h.device());
    // LongRoPE: the long factors for the whole forward once a position reaches
    // original_max_position_embeddings (transformers' longrope_frequency_update), else the short ones.
    const at::Tensor& inv_freq =
        long_inv_freq_.defined() && pos.max().item<int64_t>() + 1 > c_.original_max_position_embeddings
            ? long_inv_freq_
            : short_inv_freq_;
    const RotaryTables rope = rotary_tables(inv_freq.to(h.device()), pos, h.scalar_type(), c_.attention_factor);
    const at::Tensor bias = attention_bias(in.attention_mask, B, T, past, P, /*causal=*/true, h.scalar_type(),
                                           h.device(), c_.sliding_window);
    for (std::size_t i = 0; i < decoder_layers.size(); ++i) {
      if (!gradient_checkpointing() || in.cache) {
        h = decoder_layers[i]->forward(h, rope, bias, P ? &in.prefix_kv[i] : nullptr, in.cache, i);
        continue;
      }
      // Captured by value: backward may run after this forward has returned.
      const KeyValue prefix = P ? in.prefix_kv[i] : KeyValue{};
      auto layer = decoder_layers[i];
      h = checkpoint([layer, rope, bias, prefix, i, P](const at::Tensor& x) mutable {
        return layer->forward(x, rope, bias, P ? &prefix : nullptr, nullptr, i);
      }, h, true);
    }
    h = norm->forward(h);

    ModelOutput out;
    out.last_hidden_state = h;
    if (head_ == TaskHead::CausalLM) {
      if (in.logits_to_keep > 0 && in.logits_to_keep < T && !in.labels.defined())
        h = h.narrow(1, T - in.logits_to_keep, in.logits_to_keep);
      causal_lm_output(out, h, in, lm_head, embed_tokens->weight, true, [&](const at::Tensor& x) {
        return lm_head ? lm_head->forward(x) : models::linear(x, tied_cast_.get(embed_tokens->weight));
      });
    } else if (head_ == TaskHead::TokenCls) {
      out.logits = score->forward(models::dropout(h, c_.classifier_dropout, is_training()));
      if (in.labels.defined()) out.loss = token_loss(out.logits, in.labels);
    } else if (head_ == TaskHead::SeqCls) {
      at::Tensor all = score->forward(h);
      at::Tensor idx;
      if (in.input_ids.defined()) {
        PEFT_CHECK(c_.pad_token_id >= 0 || B == 1, std::invalid_argument,
                   "[phi3] cannot pool batches of more than one sequence without pad_token_id in config.json");
        idx = last_token_index(in.input_ids, in.attention_mask, c_.pad_token_id);
      } else {
        idx = at::full({B}, T - 1, at::TensorOptions().dtype(at::kLong).device(h.device()));
      }
      out.logits = all.index({at::arange(B, idx.options()), idx});
      if (in.labels.defined()) out.loss = sequence_classification_loss(out.logits, in.labels, c_.problem_type);
    }
    return out;
  }

  // Phi3ForCausalLM.prepare_inputs_for_generation: when the ids first reach
  // original_max_position_embeddings + 1 with a cache of at most that many positions, the cache is
  // dropped and the whole sequence runs again (LongRoPE may switch to the long factors there).
  bool rebuild_cache_for_generation(int64_t cached, int64_t total) const override {
    return cached > 0 && total >= c_.original_max_position_embeddings + 1 && cached <= c_.original_max_position_embeddings;
  }

  at::Tensor embed(const at::Tensor& ids) override { return embed_tokens->forward(ids); }
  at::Tensor word_embeddings() override { return embed_tokens->weight; }
  const ModelConfig& config() const override { return cfg_; }
  TaskHead head() const override { return head_; }
  int64_t num_layers() const override { return c_.num_hidden_layers; }
  int64_t num_kv_heads() const override { return c_.num_key_value_heads; }
  int64_t head_dim() const override { return c_.head_dim; }
  std::string base_model_prefix() const override { return "model"; }
  std::vector<std::pair<std::string, std::string>> tied_weights() const override {
    if (head_ == TaskHead::CausalLM && c_.tie_word_embeddings) return {{"lm_head.weight", "model.embed_tokens.weight"}};
    return {};
  }
  std::vector<std::string> ignored_checkpoint_keys() const override {
    std::vector<std::string> r = {R"(.*rotary_emb\.(inv_freq|original_inv_freq|long_inv_freq))"};
    if (c_.tie_word_embeddings || head_ != TaskHead::CausalLM) r.push_back("lm_head\\.weight");
    return r;
  }

  AdaptableEmbedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  std::vector<Phi3DecoderLayer> decoder_layers;
  RMSNorm norm{nullptr};
  AdaptableLinear lm_head{nullptr}, score{nullptr};
  AutocastWeightCache tied_cast_;  // the tied output weight under autocast

 private:
  ModelConfig cfg_;
  Phi3Config c_;
  TaskHead head_;
  at::Tensor short_inv_freq_, long_inv_freq_;
};

}  // namespace

std::shared_ptr<PretrainedModel> make_phi3(const ModelConfig& cfg, TaskHead head) {
  return std::make_shared<Phi3>(cfg, head);
}

}  // namespace peft::models
