// Mirrors transformers/models/gemma/modeling_gemma.py, gemma2/modeling_gemma2.py and
// gemma3/modeling_gemma3.py (the text model): Gemma*RMSNorm, Gemma*TextScaledWordEmbedding,
// Gemma*MLP, Gemma*Attention, Gemma*DecoderLayer, Gemma*Model and the CausalLM /
// SequenceClassification / TokenClassification heads.
#include "peft/models/gemma.h"

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

// One RoPE description: {"rope_type"/"type", "rope_theta", "factor"}; keys absent keep `r`.
GemmaConfig::Rope parse_rope(const nlohmann::json& j, GemmaConfig::Rope r, const ModelConfig& cfg,
                             const std::string& key) {
  PEFT_CHECK(j.is_object(), ConfigError, "[config] ", cfg.source(), ": ", key, " must be an object");
  r.type = j.value("rope_type", j.value("type", r.type));
  PEFT_CHECK(r.type == "default" || r.type == "linear", NotSupported, "[config] ", cfg.source(), ": ", key,
             " type '", r.type, "' is not supported for Gemma (default, linear)");
  if (j.contains("rope_theta") && !j["rope_theta"].is_null()) r.theta = j["rope_theta"].get<double>();
  if (j.contains("factor") && !j["factor"].is_null()) r.factor = j["factor"].get<double>();
  PEFT_CHECK(r.theta > 0 && r.factor > 0, ConfigError, "[config] ", cfg.source(), ": ", key,
             " needs rope_theta > 0 and factor > 0, got ", r.theta, " and ", r.factor);
  return r;
}

}  // namespace

GemmaConfig GemmaConfig::from(const ModelConfig& cfg) {
  GemmaConfig c;
  const std::string mt = cfg.model_type();
  c.version = mt == "gemma" ? 1 : mt == "gemma2" ? 2 : mt == "gemma3_text" ? 3 : 0;
  PEFT_CHECK(c.version != 0, NotSupported, "[config] ", cfg.source(), ": model_type '", mt,
             "' is not a Gemma text model (gemma, gemma2, gemma3_text)");
  c.vocab_size = cfg.get_positive("vocab_size", c.vocab_size);
  c.hidden_size = cfg.get_positive("hidden_size", c.hidden_size);
  c.intermediate_size = cfg.get_positive("intermediate_size", c.intermediate_size);
  c.num_hidden_layers = cfg.get_positive("num_hidden_layers", c.num_hidden_layers);
  c.num_attention_heads = cfg.get_positive("num_attention_heads", c.num_attention_heads);
  c.num_key_value_heads = cfg.get_positive("num_key_value_heads", c.num_attention_heads);
  PEFT_CHECK(c.num_attention_heads % c.num_key_value_heads == 0, ConfigError, "[config] ", cfg.source(),
             ": num_attention_heads (", c.num_attention_heads, ") must be a multiple of num_key_value_heads (",
             c.num_key_value_heads, ")");
  c.head_dim = cfg.get_positive("head_dim", c.hidden_size / c.num_attention_heads);
  PEFT_CHECK(c.head_dim % 2 == 0, ConfigError, "[config] ", cfg.source(), ": head_dim ", c.head_dim,
             " must be even for rotary embeddings");
  c.rms_norm_eps = cfg.get_double("rms_norm_eps", c.rms_norm_eps);
  c.attention_dropout = cfg.get_double("attention_dropout", 0.0);
  c.attention_bias = cfg.get_bool("attention_bias", false);
  c.tie_word_embeddings = cfg.get_bool("tie_word_embeddings", true);
  // Gemma's MLP reads hidden_act; Gemma 2/3 read hidden_activation.
  const char* act_key = c.version == 1 ? "hidden_act" : "hidden_activation";
  const char* other = c.version == 1 ? "hidden_activation" : "hidden_act";
  c.hidden_activation = cfg.get_string(act_key, cfg.get_string(other, "gelu_pytorch_tanh"));
  check_activation(c.hidden_activation, cfg.source());
  c.problem_type = cfg.get_string("problem_type", "");
  c.pad_token_id = cfg.get_int("pad_token_id", -1);
  if (cfg.has("id2label")) c.num_labels = static_cast<int64_t>(cfg.json()["id2label"].size());
  c.num_labels = cfg.get_positive("num_labels", c.num_labels);
  PEFT_CHECK(!cfg.get_bool("use_bidirectional_attention", false), NotSupported, "[config] ", cfg.source(),
             ": use_bidirectional_attention is not supported (causal Gemma only)");

  if (c.version >= 2) {
    c.query_pre_attn_scalar = cfg.get_double("query_pre_attn_scalar", 256.0);
    PEFT_CHECK(c.query_pre_attn_scalar > 0, ConfigError, "[config] ", cfg.source(),
               ": query_pre_attn_scalar must be > 0, got ", c.query_pre_attn_scalar);
    c.final_logit_softcapping = cfg.get_double("final_logit_softcapping", c.version == 2 && !cfg.json().contains("final_logit_softcapping") ? 30.0 : 0.0);
    // Gemma 3's attention does not pass attn_logit_softcapping on (transformers ignores it).
    if (c.version == 2)
      c.attn_logit_softcapping = cfg.get_double("attn_logit_softcapping", cfg.json().contains("attn_logit_softcapping") ? 0.0 : 50.0);
    const bool no_window = cfg.json().contains("sliding_window") && cfg.json()["sliding_window"].is_null();
    c.sliding_window = no_window ? 0 : cfg.get_positive("sliding_window", 4096);
    if (cfg.json().contains("layer_types") && !cfg.json()["layer_types"].is_null()) {
      const auto& lt = cfg.json()["layer_types"];
      PEFT_CHECK(lt.is_array() && static_cast<int64_t>(lt.size()) == c.num_hidden_layers, ConfigError, "[config] ",
                 cfg.source(), ": layer_types must list num_hidden_layers (", c.num_hidden_layers, ") entries");
      for (const auto& t : lt) {
        const std::string s = t.is_string() ? t.get<std::string>() : std::string("?");
        PEFT_CHECK(s == "sliding_attention" || s == "full_attention", ConfigError, "[config] ", cfg.source(),
                   ": layer_types entry '", s, "' is not sliding_attention or full_attention");
        c.sliding.push_back(s == "sliding_attention");
      }
    } else {
      // Gemma 2 alternates (sliding first); Gemma 3 has one global layer every sliding_window_pattern.
      const int64_t pattern = c.version == 2 ? 2 : cfg.get_positive("sliding_window_pattern", 6);
      for (int64_t i = 0; i < c.num_hidden_layers; ++i) c.sliding.push_back((i + 1) % pattern != 0);
    }
  } else {
    c.query_pre_attn_scalar = static_cast<double>(c.head_dim);
    c.sliding.assign(static_cast<std::size_t>(c.num_hidden_layers), false);
  }

  // RoPE. transformers 4.x: rope_theta (+ rope_local_base_freq, Gemma 3) at top level and
  // rope_scaling; 5.x: rope_parameters, per layer type for Gemma 3.
  c.rope.theta = cfg.get_double("rope_theta", c.version == 3 ? 1e6 : 10000.0);
  c.rope_local.theta = cfg.get_double("rope_local_base_freq", 10000.0);
  if (cfg.has("rope_scaling")) c.rope = parse_rope(cfg.json()["rope_scaling"], c.rope, cfg, "rope_scaling");
  if (cfg.has("rope_parameters")) {
    const auto& rp = cfg.json()["rope_parameters"];
    if (c.version == 3 && rp.is_object() && (rp.contains("full_attention") || rp.contains("sliding_attention"))) {
      if (rp.contains("full_attention") && !rp["full_attention"].is_null())
        c.rope = parse_rope(rp["full_attention"], c.rope, cfg, "rope_parameters.full_attention");
      if (rp.contains("sliding_attention") && !rp["sliding_attention"].is_null())
        c.rope_local = parse_rope(rp["sliding_attention"], c.rope_local, cfg, "rope_parameters.sliding_attention");
    } else {
      c.rope = parse_rope(rp, c.rope, cfg, "rope_parameters");
    }
  }
  // Only Gemma 3 gives sliding layers their own RoPE.
  if (c.version != 3) c.rope_local = c.rope;
  return c;
}

namespace {

at::Tensor rope_inv_freq(const GemmaConfig::Rope& r, int64_t d) {
  at::Tensor inv = 1.0 / at::pow(r.theta, at::arange(0, d, 2, at::kLong).to(at::kFloat) / static_cast<double>(d));
  return r.type == "linear" ? inv / r.factor : inv;
}

// Gemma's RMSNorm: normalise and scale by (1 + weight) in fp32, cast to the input dtype last
// (Llama casts before the weight; the order shows in bfloat16).
class GemmaRMSNormImpl : public torch::nn::Module {
 public:
  GemmaRMSNormImpl(int64_t n, double eps) : eps_(eps) { weight = register_parameter("weight", at::zeros({n})); }
  at::Tensor forward(const at::Tensor& x) { return gemma_rms_norm(x, weight, eps_); }
  at::Tensor weight;

 private:
  double eps_;
};
TORCH_MODULE(GemmaRMSNorm);

class GemmaAttentionImpl : public torch::nn::Module {
 public:
  GemmaAttentionImpl(const GemmaConfig& c, bool sliding) : c_(c), sliding_(sliding) {
    const int64_t H = c.num_attention_heads, KV = c.num_key_value_heads, D = c.head_dim;
    q_proj = register_module("q_proj", AdaptableLinear(c.hidden_size, H * D, c.attention_bias));
    k_proj = register_module("k_proj", AdaptableLinear(c.hidden_size, KV * D, c.attention_bias));
    v_proj = register_module("v_proj", AdaptableLinear(c.hidden_size, KV * D, c.attention_bias));
    o_proj = register_module("o_proj", AdaptableLinear(H * D, c.hidden_size, c.attention_bias));
    if (c.version == 3) {
      q_norm = register_module("q_norm", GemmaRMSNorm(D, c.rms_norm_eps));
      k_norm = register_module("k_norm", GemmaRMSNorm(D, c.rms_norm_eps));
    }
  }
  at::Tensor forward(const at::Tensor& x, const RotaryTables& rope, const at::Tensor& bias, const KeyValue* prefix,
                     KVCache* cache, std::size_t layer) {
    const int64_t B = x.size(0), T = x.size(1), D = c_.head_dim;
    at::Tensor q = q_proj->forward(x).view({B, T, -1, D}).transpose(1, 2);
    at::Tensor k = k_proj->forward(x).view({B, T, -1, D}).transpose(1, 2);
    at::Tensor v = v_proj->forward(x).view({B, T, -1, D}).transpose(1, 2);
    if (q_norm) {
      q = q_norm->forward(q);
      k = k_norm->forward(k);
    }
    q = apply_rotary(q, rope);
    k = apply_rotary(k, rope);
    const KeyValue kv = extend_kv(prefix, cache, layer, k, v);
    const double scale = 1.0 / std::sqrt(c_.query_pre_attn_scalar);
    at::Tensor o;
    if (c_.version == 2) {
      // transformers runs Gemma 2 with eager attention: a query that may attend nowhere (a
      // left-padding row) averages every value uniformly, and its gradient still reaches the
      // scores through the softmax; so the scores are formed here exactly as there.
      const int64_t rep = q.size(1) / kv.key.size(1);
      const at::Tensor kk = kv.key.repeat_interleave(rep, 1), vv = kv.value.repeat_interleave(rep, 1);
      at::Tensor s = at::matmul(q, kk.transpose(2, 3)) * scale;
      if (c_.attn_logit_softcapping > 0)
        s = at::tanh(s / c_.attn_logit_softcapping) * c_.attn_logit_softcapping;
      if (bias.defined()) s = s + bias;
      at::Tensor p = at::softmax(s, -1, at::kFloat).to(q.scalar_type());
      p = models::dropout(p, c_.attention_dropout, is_training());
      o = at::matmul(p, vv);
    } else {
      o = attend(q, kv.key, kv.value, bias, scale, c_.attention_dropout, is_training());
    }
    return o_proj->forward(o.transpose(1, 2).reshape({B, T, -1}));
  }
  bool sliding() const { return sliding_; }
  AdaptableLinear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  GemmaRMSNorm q_norm{nullptr}, k_norm{nullptr};

 private:
  GemmaConfig c_;
  bool sliding_;
};
TORCH_MODULE(GemmaAttention);

class GemmaMLPImpl : public torch::nn::Module {
 public:
  explicit GemmaMLPImpl(const GemmaConfig& c) : act_(c.hidden_activation) {
    gate_proj = register_module("gate_proj", AdaptableLinear(c.hidden_size, c.intermediate_size, false));
    up_proj = register_module("up_proj", AdaptableLinear(c.hidden_size, c.intermediate_size, false));
    down_proj = register_module("down_proj", AdaptableLinear(c.intermediate_size, c.hidden_size, false));
  }
  at::Tensor forward(const at::Tensor& x) {
    return down_proj->forward(activation(act_, gate_proj->forward(x)) * up_proj->forward(x));
  }
  AdaptableLinear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};

 private:
  std::string act_;
};
TORCH_MODULE(GemmaMLP);

class GemmaDecoderLayerImpl : public torch::nn::Module {
 public:
  GemmaDecoderLayerImpl(const GemmaConfig& c, bool sliding) : sandwich_(c.version >= 2) {
    self_attn = register_module("self_attn", GemmaAttention(c, sliding));
    mlp = register_module("mlp", GemmaMLP(c));
    input_layernorm = register_module("input_layernorm", GemmaRMSNorm(c.hidden_size, c.rms_norm_eps));
    // Gemma: the norm before the MLP. Gemma 2/3: the norm of the attention output.
    post_attention_layernorm = register_module("post_attention_layernorm", GemmaRMSNorm(c.hidden_size, c.rms_norm_eps));
    if (sandwich_) {
      pre_feedforward_layernorm = register_module("pre_feedforward_layernorm", GemmaRMSNorm(c.hidden_size, c.rms_norm_eps));
      post_feedforward_layernorm =
          register_module("post_feedforward_layernorm", GemmaRMSNorm(c.hidden_size, c.rms_norm_eps));
    }
  }
  at::Tensor forward(const at::Tensor& x, const RotaryTables& rope, const at::Tensor& bias, const KeyValue* prefix,
                     KVCache* cache, std::size_t layer) {
    const at::Tensor a = self_attn->forward(input_layernorm->forward(x), rope, bias, prefix, cache, layer);
    if (!sandwich_) {
      const at::Tensor h = x + a;
      return h + mlp->forward(post_attention_layernorm->forward(h));
    }
    const at::Tensor h = x + post_attention_layernorm->forward(a);
    return h + post_feedforward_layernorm->forward(mlp->forward(pre_feedforward_layernorm->forward(h)));
  }
  GemmaAttention self_attn{nullptr};
  GemmaMLP mlp{nullptr};
  GemmaRMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr}, pre_feedforward_layernorm{nullptr},
      post_feedforward_layernorm{nullptr};

 private:
  bool sandwich_;
};
TORCH_MODULE(GemmaDecoderLayer);

class Gemma : public PretrainedModel {
 public:
  Gemma(const ModelConfig& cfg, TaskHead head) : cfg_(cfg), c_(GemmaConfig::from(cfg)), head_(head) {
    name_ = cfg.model_type();
    PEFT_CHECK(head != TaskHead::Seq2SeqLM, NotSupported, "[", name_, "] Gemma is decoder-only; a seq2seq head is not available");
    PEFT_CHECK(!(c_.version == 3 && head == TaskHead::TokenCls), NotSupported,
               "[", name_, "] transformers has no token-classification head for Gemma 3");
    torch::nn::Module& base = head == TaskHead::Base ? static_cast<torch::nn::Module&>(*this)
                                                     : *register_module("model", std::make_shared<torch::nn::Module>());
    std::optional<int64_t> pad;
    if (c_.pad_token_id >= 0 && c_.pad_token_id < c_.vocab_size) pad = c_.pad_token_id;
    embed_tokens = base.register_module("embed_tokens", AdaptableEmbedding(c_.vocab_size, c_.hidden_size, pad));
    layers = base.register_module("layers", torch::nn::ModuleList());
    for (int64_t i = 0; i < c_.num_hidden_layers; ++i) {
      decoder_layers.push_back(GemmaDecoderLayer(c_, c_.sliding[static_cast<std::size_t>(i)]));
      layers->push_back(decoder_layers.back());
    }
    norm = base.register_module("norm", GemmaRMSNorm(c_.hidden_size, c_.rms_norm_eps));
    inv_freq_ = rope_inv_freq(c_.rope, c_.head_dim);
    inv_freq_local_ = rope_inv_freq(c_.rope_local, c_.head_dim);
    if (head == TaskHead::CausalLM && !c_.tie_word_embeddings)
      lm_head = register_module("lm_head", AdaptableLinear(c_.hidden_size, c_.vocab_size, false));
    // GenericForSequenceClassification's score has no bias; GenericForTokenClassification's has one.
    if (head == TaskHead::SeqCls || head == TaskHead::TokenCls)
      score = register_module("score", AdaptableLinear(c_.hidden_size, c_.num_labels, head == TaskHead::TokenCls));
  }

  ModelOutput forward(const ModelInputs& in) override {
    const ForwardStart start = start_forward(in, name_.c_str(), c_.hidden_size, c_.num_hidden_layers);
    at::Tensor h = start.hidden;
    const int64_t B = start.batch, T = start.length, past = start.past, P = start.prefix;
    const at::Tensor pos = in.position_ids.defined() ? in.position_ids : default_position_ids(B, T, past, h.device());
    const RotaryTables rope = rotary_tables(inv_freq_.to(h.device()), pos, h.scalar_type());
    const RotaryTables rope_local =
        c_.version == 3 ? rotary_tables(inv_freq_local_.to(h.device()), pos, h.scalar_type()) : rope;
    const at::Tensor bias = attention_bias(in.attention_mask, B, T, past, P, true, h.scalar_type(), h.device());
    at::Tensor bias_sliding;
    for (const auto& l : decoder_layers)
      if (l->self_attn->sliding() && !bias_sliding.defined())
        bias_sliding = attention_bias(in.attention_mask, B, T, past, P, true, h.scalar_type(), h.device(), c_.sliding_window);
    for (std::size_t i = 0; i < decoder_layers.size(); ++i) {
      const bool sl = decoder_layers[i]->self_attn->sliding();
      const RotaryTables& r = sl ? rope_local : rope;
      const at::Tensor& b = sl ? bias_sliding : bias;
      if (!gradient_checkpointing() || in.cache) {
        h = decoder_layers[i]->forward(h, r, b, P ? &in.prefix_kv[i] : nullptr, in.cache, i);
        continue;
      }
      // Captured by value: backward may run after this forward has returned.
      const KeyValue prefix = P ? in.prefix_kv[i] : KeyValue{};
      auto layer = decoder_layers[i];
      const RotaryTables rr = r;
      const at::Tensor bb = b;
      h = checkpoint([layer, rr, bb, prefix, i, P](const at::Tensor& x) mutable {
        return layer->forward(x, rr, bb, P ? &prefix : nullptr, nullptr, i);
      }, h, true);
    }
    h = norm->forward(h);

    ModelOutput out;
    out.last_hidden_state = h;
    if (head_ == TaskHead::CausalLM) {
      if (in.logits_to_keep > 0 && in.logits_to_keep < T && !in.labels.defined())
        h = h.narrow(1, T - in.logits_to_keep, in.logits_to_keep);
      // Soft-capped logits (Gemma 2) are not a plain projection: they take the logits path.
      const double cap = c_.final_logit_softcapping;
      causal_lm_output(out, h, in, lm_head, embed_tokens->weight, cap <= 0, [&](const at::Tensor& x) {
        const at::Tensor logits = lm_head ? lm_head->forward(x) : models::linear(x, tied_cast_.get(embed_tokens->weight));
        return cap > 0 ? at::tanh(logits / cap) * cap : logits;
      });
    } else if (head_ == TaskHead::TokenCls) {
      out.logits = score->forward(h);
      if (in.labels.defined()) out.loss = token_loss(out.logits, in.labels);
    } else if (head_ == TaskHead::SeqCls) {
      const at::Tensor all = score->forward(h);
      at::Tensor idx;
      if (in.input_ids.defined()) {
        PEFT_CHECK(c_.pad_token_id >= 0 || B == 1, std::invalid_argument, "[", name_,
                   "] cannot pool batches of more than one sequence without pad_token_id in config.json");
        idx = last_token_index(in.input_ids, in.attention_mask, c_.pad_token_id);
      } else {
        idx = at::full({B}, T - 1, at::TensorOptions().dtype(at::kLong).device(h.device()));
      }
      out.logits = all.index({at::arange(B, idx.options()), idx});
      if (in.labels.defined()) out.loss = sequence_classification_loss(out.logits, in.labels, c_.problem_type);
    }
    return out;
  }

  // transformers' Gemma*TextScaledWordEmbedding: the looked-up rows times sqrt(hidden_size), the
  // factor a float32 scalar cast to the weights' dtype. This is what get_input_embeddings()
  // returns in transformers, so prompt methods prepend to scaled embeddings too.
  at::Tensor embed(const at::Tensor& ids) override {
    const at::Tensor e = embed_tokens->forward(ids);
    const at::Tensor scale = at::scalar_tensor(std::sqrt(static_cast<double>(c_.hidden_size)), at::kFloat)
                                 .to(embed_tokens->weight.scalar_type()).to(e.device());
    return e * scale;
  }
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
    std::vector<std::string> r = {R"(.*rotary_emb\..*inv_freq)", R"(.*embed_tokens\.embed_scale)"};
    if (c_.tie_word_embeddings || head_ != TaskHead::CausalLM) r.push_back("lm_head\\.weight");
    return r;
  }

  AdaptableEmbedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  std::vector<GemmaDecoderLayer> decoder_layers;
  GemmaRMSNorm norm{nullptr};
  AdaptableLinear lm_head{nullptr}, score{nullptr};
  AutocastWeightCache tied_cast_;  // the tied output weight under autocast

 private:
  ModelConfig cfg_;
  GemmaConfig c_;
  TaskHead head_;
  std::string name_;
  at::Tensor inv_freq_, inv_freq_local_;
};

}  // namespace

std::shared_ptr<PretrainedModel> make_gemma(const ModelConfig& cfg, TaskHead head) {
  return std::make_shared<Gemma>(cfg, head);
}

std::shared_ptr<PretrainedModel> make_gemma3_multimodal(const ModelConfig& cfg, TaskHead) {
  throw NotSupported("[load_model] " + cfg.source() +
                     ": model_type 'gemma3' is Gemma 3's multimodal model (Gemma3ForConditionalGeneration), which is "
                     "not supported; use its text model instead: a config.json with model_type 'gemma3_text' (the "
                     "text_config) and the language model's weights (Gemma3ForCausalLM)");
}

}  // namespace peft::models
