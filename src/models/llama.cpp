// Mirrors transformers/models/llama/modeling_llama.py (LlamaRotaryEmbedding, LlamaAttention,
// LlamaMLP, LlamaDecoderLayer, LlamaModel, LlamaFor{CausalLM,SequenceClassification,
// TokenClassification}) with eager attention. The options of LlamaConfig beyond Llama's
// (per-projection biases, per-head q/k RMSNorm, per-layer sliding windows) make the same decoder
// Qwen2, Qwen3 and Mistral (their config parsers: src/models/{qwen2,qwen3,mistral}.cpp).
#include "peft/models/llama.h"

#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>

#include <cmath>
#include <map>
#include <nlohmann/json.hpp>

#include "causal_lm_head.h"
#include "peft/core/check.h"
#include "peft/models/adaptable_linear.h"
#include "peft/models/architectures.h"
#include "peft/models/blocks.h"
#include "peft/models/gguf_model.h"
#include "peft/models/model.h"
#include "peft/quant/ggml_cpu.h"

namespace peft::models {

LlamaConfig LlamaConfig::from(const ModelConfig& cfg) {
  LlamaConfig c;
  c.vocab_size = cfg.get_positive("vocab_size", c.vocab_size);
  c.hidden_size = cfg.get_positive("hidden_size", c.hidden_size);
  c.intermediate_size = cfg.get_positive("intermediate_size", c.intermediate_size);
  c.num_hidden_layers = cfg.get_positive("num_hidden_layers", c.num_hidden_layers);
  c.num_attention_heads = cfg.get_positive("num_attention_heads", c.num_attention_heads);
  c.num_key_value_heads = cfg.get_positive("num_key_value_heads", c.num_attention_heads);
  PEFT_CHECK(c.num_attention_heads % c.num_key_value_heads == 0, ConfigError, "[config] ",
             cfg.source(), ": num_attention_heads (", c.num_attention_heads,
             ") must be a multiple of num_key_value_heads (", c.num_key_value_heads, ")");
  const bool explicit_hd = cfg.has("head_dim");
  c.head_dim = cfg.get_positive("head_dim", c.hidden_size / c.num_attention_heads);
  PEFT_CHECK(explicit_hd || c.hidden_size % c.num_attention_heads == 0, ConfigError, "[config] ",
             cfg.source(), ": hidden_size (", c.hidden_size,
             ") must be divisible by num_attention_heads (", c.num_attention_heads, ")");
  PEFT_CHECK(c.head_dim % 2 == 0, ConfigError, "[config] ", cfg.source(), ": head_dim ", c.head_dim,
             " must be even for rotary embeddings");
  c.max_position_embeddings = cfg.get_positive("max_position_embeddings", c.max_position_embeddings);
  c.rms_norm_eps = cfg.get_double("rms_norm_eps", c.rms_norm_eps);
  c.rope_theta = cfg.get_double("rope_theta", c.rope_theta);
  c.attention_dropout = cfg.get_double("attention_dropout", 0.0);
  const bool attention_bias = cfg.get_bool("attention_bias", false);
  c.q_bias = c.k_bias = c.v_bias = c.o_bias = attention_bias;
  c.mlp_bias = cfg.get_bool("mlp_bias", false);
  c.tie_word_embeddings = cfg.get_bool("tie_word_embeddings", false);
  c.hidden_act = cfg.get_string("hidden_act", "silu");
  check_activation(c.hidden_act, cfg.source());
  c.problem_type = cfg.get_string("problem_type", "");
  c.pad_token_id = cfg.get_int("pad_token_id", -1);
  if (cfg.has("id2label")) c.num_labels = static_cast<int64_t>(cfg.json()["id2label"].size());
  c.num_labels = cfg.get_positive("num_labels", c.num_labels);
  // transformers 4.x keeps rope_theta at top level and scaling in rope_scaling; 5.x may move
  // both into rope_parameters.
  for (const char* key : {"rope_scaling", "rope_parameters"}) {
    if (!cfg.has(key)) continue;
    const auto& rs = cfg.json()[key];
    PEFT_CHECK(rs.is_object(), ConfigError, "[config] ", cfg.source(), ": ", key, " must be an object");
    std::string type = rs.value("rope_type", rs.value("type", std::string("default")));
    if (rs.contains("rope_theta")) c.rope_theta = rs["rope_theta"].get<double>();
    PEFT_CHECK(type == "default" || type == "linear" || type == "llama3", NotSupported, "[config] ",
               cfg.source(), ": ", key, " type '", type, "' is not supported (default, linear, llama3)");
    c.rope_type = type;
    c.rope_factor = rs.value("factor", 1.0);
    c.rope_low_freq_factor = rs.value("low_freq_factor", 1.0);
    c.rope_high_freq_factor = rs.value("high_freq_factor", 4.0);
    c.rope_original_max_position = rs.value("original_max_position_embeddings", int64_t{8192});
  }
  if (!cfg.model_type().empty()) c.model_type = cfg.model_type();
  return c;
}

std::vector<int64_t> layer_windows(const ModelConfig& cfg, int64_t num_layers, int64_t window,
                                   int64_t max_window_layers) {
  std::vector<std::string> types;
  if (cfg.has("layer_types")) {
    const auto& lt = cfg.json()["layer_types"];
    PEFT_CHECK(lt.is_array() && static_cast<int64_t>(lt.size()) == num_layers, ConfigError, "[config] ",
               cfg.source(), ": layer_types must be a list of num_hidden_layers (", num_layers, ") strings");
    for (const auto& t : lt) {
      PEFT_CHECK(t.is_string() && (t == "full_attention" || t == "sliding_attention"), ConfigError, "[config] ",
                 cfg.source(), ": layer_types entry ", t.dump(), " is not 'full_attention' or 'sliding_attention'");
      types.push_back(t.get<std::string>());
    }
  } else {
    for (int64_t i = 0; i < num_layers; ++i)
      types.push_back(window > 0 && i >= max_window_layers ? "sliding_attention" : "full_attention");
  }
  std::vector<int64_t> w;
  for (const auto& t : types) w.push_back(t == "sliding_attention" ? window : 0);
  return w;
}

namespace {

// transformers' rope init functions: _compute_default/linear/llama3_parameters.
at::Tensor rope_inv_freq(const LlamaConfig& c) {
  const int64_t d = c.head_dim;
  at::Tensor inv = 1.0 / at::pow(c.rope_theta, at::arange(0, d, 2, at::kLong).to(at::kFloat) / static_cast<double>(d));
  if (c.rope_type == "linear") inv = inv / c.rope_factor;
  if (c.rope_type == "llama3") {
    const double low_wl = c.rope_original_max_position / c.rope_low_freq_factor;
    const double high_wl = c.rope_original_max_position / c.rope_high_freq_factor;
    at::Tensor wavelen = 2 * M_PI / inv;
    at::Tensor scaled = at::where(wavelen > low_wl, inv / c.rope_factor, inv);
    at::Tensor smooth = (c.rope_original_max_position / wavelen - c.rope_low_freq_factor) /
                        (c.rope_high_freq_factor - c.rope_low_freq_factor);
    at::Tensor smoothed = (1 - smooth) * scaled / c.rope_factor + smooth * scaled;
    at::Tensor medium = (wavelen >= high_wl).logical_and(wavelen <= low_wl);
    inv = at::where(medium, smoothed, scaled);
  }
  return inv;
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

class LlamaAttentionImpl : public torch::nn::Module {
 public:
  explicit LlamaAttentionImpl(const LlamaConfig& c) : c_(c) {
    const int64_t H = c.num_attention_heads, KV = c.num_key_value_heads, D = c.head_dim;
    q_proj = register_module("q_proj", AdaptableLinear(c.hidden_size, H * D, c.q_bias));
    k_proj = register_module("k_proj", AdaptableLinear(c.hidden_size, KV * D, c.k_bias));
    v_proj = register_module("v_proj", AdaptableLinear(c.hidden_size, KV * D, c.v_bias));
    o_proj = register_module("o_proj", AdaptableLinear(H * D, c.hidden_size, c.o_bias));
    if (c.qk_norm) {
      q_norm = register_module("q_norm", RMSNorm(D, c.rms_norm_eps));
      k_norm = register_module("k_norm", RMSNorm(D, c.rms_norm_eps));
    }
  }
  at::Tensor forward(const at::Tensor& x, const RotaryTables& rope, const at::Tensor& bias,
                     const KeyValue* prefix, KVCache* cache, std::size_t layer) {
    const int64_t B = x.size(0), T = x.size(1), D = c_.head_dim;
    at::Tensor q = q_proj->forward(x).view({B, T, -1, D});
    at::Tensor k = k_proj->forward(x).view({B, T, -1, D});
    if (q_norm) {
      q = q_norm->forward(q);
      k = k_norm->forward(k);
    }
    q = q.transpose(1, 2);
    k = k.transpose(1, 2);
    at::Tensor v = v_proj->forward(x).view({B, T, -1, D}).transpose(1, 2);
    q = apply_rotary(q, rope);
    k = apply_rotary(k, rope);
    const KeyValue kv = extend_kv(prefix, cache, layer, k, v);
    at::Tensor o = attend(q, kv.key, kv.value, bias, 1.0 / std::sqrt(static_cast<double>(D)),
                          c_.attention_dropout, is_training());
    return o_proj->forward(o.transpose(1, 2).reshape({B, T, -1}));
  }
  AdaptableLinear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  RMSNorm q_norm{nullptr}, k_norm{nullptr};

 private:
  LlamaConfig c_;
};
TORCH_MODULE(LlamaAttention);

class LlamaMLPImpl : public torch::nn::Module {
 public:
  explicit LlamaMLPImpl(const LlamaConfig& c) : act_(c.hidden_act) {
    gate_proj = register_module("gate_proj", AdaptableLinear(c.hidden_size, c.intermediate_size, c.mlp_bias));
    up_proj = register_module("up_proj", AdaptableLinear(c.hidden_size, c.intermediate_size, c.mlp_bias));
    down_proj = register_module("down_proj", AdaptableLinear(c.intermediate_size, c.hidden_size, c.mlp_bias));
  }
  at::Tensor forward(const at::Tensor& x) {
    const at::Tensor g = gate_proj->forward(x), u = up_proj->forward(x);
    if (act_ == "silu" || act_ == "swish") return down_proj->forward(silu_mul(g, u));
    return down_proj->forward(activation(act_, g) * u);
  }
  AdaptableLinear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};

 private:
  std::string act_;
};
TORCH_MODULE(LlamaMLP);

class LlamaDecoderLayerImpl : public torch::nn::Module {
 public:
  explicit LlamaDecoderLayerImpl(const LlamaConfig& c) {
    self_attn = register_module("self_attn", LlamaAttention(c));
    mlp = register_module("mlp", LlamaMLP(c));
    input_layernorm = register_module("input_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps));
    post_attention_layernorm =
        register_module("post_attention_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps));
  }
  at::Tensor forward(const at::Tensor& x, const RotaryTables& rope, const at::Tensor& bias,
                     const KeyValue* prefix, KVCache* cache, std::size_t layer) {
    at::Tensor h = x + self_attn->forward(input_layernorm->forward(x), rope, bias, prefix, cache, layer);
    return h + mlp->forward(post_attention_layernorm->forward(h));
  }
  LlamaAttention self_attn{nullptr};
  LlamaMLP mlp{nullptr};
  RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
};
TORCH_MODULE(LlamaDecoderLayer);

class Llama : public PretrainedModel {
 public:
  Llama(const ModelConfig& cfg, LlamaConfig c, TaskHead head)
      : cfg_(cfg), c_(std::move(c)), head_(head), tag_("[" + c_.model_type + "]") {
    PEFT_CHECK(head != TaskHead::Seq2SeqLM, NotSupported, tag_, " ", c_.model_type,
               " is decoder-only; a seq2seq head is not available");
    PEFT_CHECK(c_.sliding_window.empty() || static_cast<int64_t>(c_.sliding_window.size()) == c_.num_hidden_layers,
               std::invalid_argument, tag_, " sliding windows given for ", c_.sliding_window.size(), " layers; the model has ",
               c_.num_hidden_layers);
    // The base model's modules sit at the top level for LlamaModel and under "model." otherwise.
    torch::nn::Module& base = head == TaskHead::Base ? static_cast<torch::nn::Module&>(*this)
                                                     : *register_module("model", std::make_shared<torch::nn::Module>());
    std::optional<int64_t> pad;
    if (c_.pad_token_id >= 0 && c_.pad_token_id < c_.vocab_size) pad = c_.pad_token_id;
    embed_tokens = base.register_module("embed_tokens", AdaptableEmbedding(c_.vocab_size, c_.hidden_size, pad));
    layers = base.register_module("layers", torch::nn::ModuleList());
    for (int64_t i = 0; i < c_.num_hidden_layers; ++i) {
      decoder_layers.push_back(LlamaDecoderLayer(c_));
      layers->push_back(decoder_layers.back());
    }
    norm = base.register_module("norm", RMSNorm(c_.hidden_size, c_.rms_norm_eps));
    inv_freq_ = rope_inv_freq(c_);
    if (head == TaskHead::CausalLM && !c_.tie_word_embeddings)
      lm_head = register_module("lm_head", AdaptableLinear(c_.hidden_size, c_.vocab_size, false));
    // LlamaForSequenceClassification's score has no bias; LlamaForTokenClassification's has one.
    if (head == TaskHead::SeqCls || head == TaskHead::TokenCls)
      score = register_module("score", AdaptableLinear(c_.hidden_size, c_.num_labels, head == TaskHead::TokenCls));
  }

  ModelOutput forward(const ModelInputs& in) override {
    PEFT_CHECK(in.input_ids.defined() != in.inputs_embeds.defined(), std::invalid_argument,
               tag_, " give exactly one of input_ids and inputs_embeds");
    if (numerics_.enabled && !at::GradMode::is_enabled()) return forward_llamacpp(in);
    const ForwardStart start = start_forward(in, c_.model_type.c_str(), c_.hidden_size, c_.num_hidden_layers);
    at::Tensor h = start.hidden;
    const int64_t B = start.batch, T = start.length, past = start.past, P = start.prefix;
    at::Tensor pos = in.position_ids.defined() ? in.position_ids : default_position_ids(B, T, past, h.device());
    const RotaryTables rope = rotary_tables(inv_freq_.to(h.device()), pos, h.scalar_type());
    // One attention bias per distinct window (0 = full causal attention).
    std::map<int64_t, at::Tensor> biases;
    for (int64_t i = 0; i < c_.num_hidden_layers; ++i) {
      const int64_t w = c_.window(i);
      if (!biases.count(w))
        biases[w] = attention_bias(in.attention_mask, B, T, past, P, /*causal=*/true, h.scalar_type(), h.device(), w);
    }
    for (std::size_t i = 0; i < decoder_layers.size(); ++i) {
      const at::Tensor& bias = biases.at(c_.window(static_cast<int64_t>(i)));
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
      out.logits = score->forward(h);
      if (in.labels.defined()) out.loss = token_loss(out.logits, in.labels);
    } else if (head_ == TaskHead::SeqCls) {
      at::Tensor all = score->forward(h);
      at::Tensor idx;
      if (in.input_ids.defined()) {
        PEFT_CHECK(c_.pad_token_id >= 0 || B == 1, std::invalid_argument,
                   tag_, " cannot pool batches of more than one sequence without pad_token_id in config.json");
        idx = last_token_index(in.input_ids, in.attention_mask, c_.pad_token_id);
      } else {
        idx = at::full({B}, T - 1, at::TensorOptions().dtype(at::kLong).device(h.device()));
      }
      out.logits = all.index({at::arange(B, idx.options()), idx});
      if (in.labels.defined()) out.loss = sequence_classification_loss(out.logits, in.labels, c_.problem_type);
    }
    return out;
  }

  void set_llamacpp_numerics(const LlamaCppNumerics& n, const LlamaCppNumericsWeights& w) override {
    if (n.enabled) {
      // llama.cpp's Llama graph: none of the Qwen2/Qwen3/Mistral options.
      std::vector<std::string> unsupported;
      if (c_.model_type != "llama") unsupported.push_back("model_type '" + c_.model_type + "'");
      if (c_.qk_norm) unsupported.push_back("q_norm/k_norm");
      if (c_.q_bias != c_.o_bias || c_.k_bias != c_.o_bias || c_.v_bias != c_.o_bias)
        unsupported.push_back("q/k/v projection biases without an o_proj bias");
      for (int64_t i = 0; i < c_.num_hidden_layers; ++i)
        if (c_.window(i) > 0) {
          unsupported.push_back("sliding-window attention (layer " + std::to_string(i) + ")");
          break;
        }
      std::string list;
      for (const auto& u : unsupported) list += (list.empty() ? "" : ", ") + u;
      PEFT_CHECK(unsupported.empty(), NotSupported, tag_,
                 " llamacpp_numerics runs llama.cpp's Llama graph only; this model has ", list);
      PEFT_CHECK(head_ == TaskHead::CausalLM || head_ == TaskHead::Base, NotSupported,
                 "[llama] llamacpp_numerics: only the causal LM (and base) model runs as llama.cpp does");
      PEFT_CHECK(c_.hidden_act == "silu" || c_.hidden_act == "swish", NotSupported,
                 "[llama] llamacpp_numerics: activation '", c_.hidden_act, "' (llama.cpp's Llama graph uses SiLU)");
      PEFT_CHECK(c_.rope_type != "llama3" || static_cast<int64_t>(w.rope_freq_factors.size()) == c_.head_dim / 2,
                 NotSupported, "[llama] llamacpp_numerics: llama3 rope needs the GGUF's rope_freqs.weight");
      PEFT_CHECK(head_ != TaskHead::CausalLM || lm_head || w.tied_output, std::invalid_argument,
                 "[llama] llamacpp_numerics: a tied output needs the embedding's GGUF blocks");
    }
    numerics_ = n;
    tied_output_ = w.tied_output;
    rope_freq_factors_ = w.rope_freq_factors;
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
    std::vector<std::string> r = {R"(.*rotary_emb\.inv_freq)"};
    if (c_.tie_word_embeddings || head_ != TaskHead::CausalLM) r.push_back("lm_head\\.weight");
    return r;
  }

  AdaptableEmbedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  std::vector<LlamaDecoderLayer> decoder_layers;
  RMSNorm norm{nullptr};
  AdaptableLinear lm_head{nullptr}, score{nullptr};
  AutocastWeightCache tied_cast_;  // the tied output weight under autocast

 private:
  ModelConfig cfg_;
  LlamaConfig c_;
  TaskHead head_;
  std::string tag_;  // "[llama]", "[qwen2]", ...: names the model in errors
  at::Tensor inv_freq_;
  LlamaCppNumerics numerics_;
  std::shared_ptr<quant::QuantizedBase> tied_output_;
  std::vector<float> rope_freq_factors_;

  // ggml_rms_norm + ggml_mul, row by row ([1, T, hidden] fp32 contiguous).
  at::Tensor ggml_rms(const at::Tensor& x, const at::Tensor& w) const {
    const at::Tensor wc = w.to(at::kFloat).contiguous();
    at::Tensor y = at::empty_like(x);
    const int64_t n = x.size(-1), rows = x.numel() / n;
    for (int64_t r = 0; r < rows; ++r)
      quant::ggml_cpu::rms_norm_mul(x.data_ptr<float>() + r * n, wc.data_ptr<float>(), y.data_ptr<float>() + r * n, n,
                                    static_cast<float>(c_.rms_norm_eps));
    return y;
  }

  // llama.cpp's Llama graph (src/models/llama.cpp, llm_graph_context::build_attn / build_ffn) with
  // ggml's CPU rounding: the slots' matmuls run ggml_cpu::mul_mat (GgmlLinearWeight in that mode),
  // Q and K are taken to llama.cpp's RoPE pair order (the GGUF's row order) for RoPE and attention,
  // the KV cache holds what llama.cpp's does (F16-rounded by default), and only the kept positions
  // go through the last layer's feed-forward and the output (llama.cpp's inp_out_ids).
  ModelOutput forward_llamacpp(const ModelInputs& in) {
    namespace gc = quant::ggml_cpu;
    at::Tensor h = (in.inputs_embeds.defined() ? in.inputs_embeds : embed(in.input_ids)).to(at::kFloat).contiguous();
    PEFT_CHECK(h.dim() == 3 && h.size(0) == 1 && h.device().is_cpu(), NotSupported,
               "[llama] llamacpp_numerics runs one sequence at a time on the CPU, got input ", h.sizes(), " on ",
               h.device());
    PEFT_CHECK(in.prefix_kv.empty(), NotSupported, "[llama] llamacpp_numerics: key/value prefixes are not part of llama.cpp's graph");
    const int64_t T = h.size(1), H = c_.num_attention_heads, KVH = c_.num_key_value_heads, D = c_.head_dim;
    const int64_t past = in.cache ? in.cache->length() : 0;
    if (in.attention_mask.defined())
      PEFT_CHECK(in.attention_mask.size(-1) == past + T && in.attention_mask.ne(0).all().item<bool>(), NotSupported,
                 "[llama] llamacpp_numerics: padding (an attention mask with zeros) is not supported");
    if (in.position_ids.defined())
      PEFT_CHECK(at::equal(in.position_ids.reshape({-1}).cpu(), at::arange(past, past + T, at::kLong)), NotSupported,
                 "[llama] llamacpp_numerics: positions must follow the cache (", past, " .. ", past + T - 1, ")");
    // RoPE angles per position, as ggml_rope_cache_init.
    std::vector<float> cs(static_cast<std::size_t>(T * D));
    const float freq_scale = c_.rope_type == "linear" ? 1.0f / static_cast<float>(c_.rope_factor) : 1.0f;
    for (int64_t t = 0; t < T; ++t)
      gc::rope_cache(past + t, D, static_cast<float>(c_.rope_theta), freq_scale,
                     rope_freq_factors_.empty() ? nullptr : rope_freq_factors_.data(), cs.data() + t * D);
    // HF dimension r of a head is llama.cpp's dimension hf_to_llama[r].
    const std::vector<int64_t> from = gguf_unpermute_rows(D, 1);
    std::vector<int64_t> inv(static_cast<std::size_t>(D));
    for (int64_t r = 0; r < D; ++r) inv[static_cast<std::size_t>(from[static_cast<std::size_t>(r)])] = r;
    const at::Tensor to_llama = at::tensor(inv, at::kLong);
    auto rope = [&](const at::Tensor& x, int64_t heads) {
      at::Tensor y = x.view({T, heads, D}).index_select(2, to_llama).contiguous();
      float* p = y.data_ptr<float>();
      for (int64_t t = 0; t < T; ++t)
        for (int64_t hh = 0; hh < heads; ++hh) gc::rope_apply(p + (t * heads + hh) * D, cs.data() + t * D, D);
      return y;
    };
    auto f16 = [&](at::Tensor x) {
      if (numerics_.kv_cache_f16) {
        float* p = x.data_ptr<float>();
        for (int64_t i = 0; i < x.numel(); ++i) p[i] = gc::round_fp16(p[i]);
      }
      return x;
    };
    gc::AttentionConfig ac;
    ac.n_head = H;
    ac.n_head_kv = KVH;
    ac.head_dim = D;
    ac.scale = 1.0f / std::sqrt(static_cast<float>(D));
    ac.kv_f16 = numerics_.kv_cache_f16;
    ac.flash_attn = numerics_.flash_attn;
    const bool lm = head_ == TaskHead::CausalLM;
    const int64_t keep = lm && in.logits_to_keep > 0 ? std::min(in.logits_to_keep, T) : T;
    for (std::size_t i = 0; i < decoder_layers.size(); ++i) {
      auto& L = decoder_layers[i];
      auto& A = L->self_attn;
      const at::Tensor x = ggml_rms(h, L->input_layernorm->weight);
      const at::Tensor q = rope(A->q_proj->forward(x).to(at::kFloat).contiguous(), H);
      const at::Tensor k = f16(rope(A->k_proj->forward(x).to(at::kFloat).contiguous(), KVH));
      const at::Tensor v = f16(A->v_proj->forward(x).to(at::kFloat).contiguous().view({T, KVH, D}).clone());
      const KeyValue kv = extend_kv(nullptr, in.cache, i, k.view({1, T, KVH, D}).transpose(1, 2),
                                    v.view({1, T, KVH, D}).transpose(1, 2));
      const at::Tensor ks = kv.key[0].transpose(0, 1).contiguous(), vs = kv.value[0].transpose(0, 1).contiguous();
      at::Tensor o = at::empty({T, H, D}, at::kFloat);
      gc::attention(ac, q.data_ptr<float>(), ks.data_ptr<float>(), vs.data_ptr<float>(), T, past, o.data_ptr<float>());
      at::Tensor attn = A->o_proj->forward(o.view({1, T, H * D})).to(at::kFloat);
      at::Tensor res = h;
      if (i + 1 == decoder_layers.size() && keep < T) {
        attn = attn.narrow(1, T - keep, keep);
        res = res.narrow(1, T - keep, keep);
      }
      h = (attn + res).contiguous();
      const at::Tensor x2 = ggml_rms(h, L->post_attention_layernorm->weight);
      auto& M = L->mlp;
      const at::Tensor g = M->gate_proj->forward(x2).to(at::kFloat).contiguous();
      const at::Tensor u = M->up_proj->forward(x2).to(at::kFloat).contiguous();
      at::Tensor a = at::empty_like(g);
      const int64_t ff = g.size(-1);
      for (int64_t r = 0; r < g.numel() / ff; ++r)
        gc::swiglu(g.data_ptr<float>() + r * ff, u.data_ptr<float>() + r * ff, a.data_ptr<float>() + r * ff, ff);
      h = (M->down_proj->forward(a).to(at::kFloat) + h).contiguous();
    }
    h = ggml_rms(h, norm->weight);
    ModelOutput out;
    out.last_hidden_state = h;
    if (lm) out.logits = lm_head ? lm_head->forward(h) : tied_output_->forward(h);
    return out;
  }
};

}  // namespace

std::shared_ptr<PretrainedModel> make_llama_decoder(const ModelConfig& cfg, LlamaConfig c, TaskHead head) {
  return std::make_shared<Llama>(cfg, std::move(c), head);
}

std::shared_ptr<PretrainedModel> make_llama(const ModelConfig& cfg, TaskHead head) {
  return make_llama_decoder(cfg, LlamaConfig::from(cfg), head);
}

}  // namespace peft::models
