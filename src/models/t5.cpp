// Mirrors transformers/models/t5/modeling_t5.py (T5LayerNorm, T5DenseActDense,
// T5DenseGatedActDense, T5Attention, T5LayerSelfAttention, T5LayerCrossAttention, T5Block,
// T5Stack, T5Model, T5ForConditionalGeneration, T5EncoderModel) and configuration_t5.py.
#include "peft/models/t5.h"

#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "peft/core/check.h"
#include "peft/models/adaptable_linear.h"
#include "peft/models/architectures.h"
#include "peft/models/blocks.h"

namespace peft::models {

T5Config T5Config::from(const ModelConfig& cfg) {
  T5Config c;
  const std::string& src = cfg.source();
  c.vocab_size = cfg.get_positive("vocab_size", c.vocab_size);
  c.d_model = cfg.get_positive("d_model", c.d_model);
  c.d_kv = cfg.get_positive("d_kv", c.d_kv);
  c.d_ff = cfg.get_positive("d_ff", c.d_ff);
  c.num_layers = cfg.get_positive("num_layers", c.num_layers);
  c.num_decoder_layers = cfg.get_positive("num_decoder_layers", c.num_layers);
  c.num_heads = cfg.get_positive("num_heads", c.num_heads);
  c.relative_attention_num_buckets =
      cfg.get_positive("relative_attention_num_buckets", c.relative_attention_num_buckets);
  c.relative_attention_max_distance =
      cfg.get_positive("relative_attention_max_distance", c.relative_attention_max_distance);
  // The encoder's bidirectional buckets use num_buckets/4 exact positions; the log-spaced rest needs
  // max_distance above the decoder's num_buckets/2 exact positions.
  PEFT_CHECK(c.relative_attention_num_buckets >= 4 &&
                 c.relative_attention_max_distance > c.relative_attention_num_buckets / 2,
             ConfigError, "[t5] ", src, ": relative_attention_num_buckets (",
             c.relative_attention_num_buckets, ") must be >= 4 and relative_attention_max_distance (",
             c.relative_attention_max_distance, ") greater than relative_attention_num_buckets / 2");
  c.dropout_rate = cfg.get_double("dropout_rate", c.dropout_rate);
  PEFT_CHECK(c.dropout_rate >= 0 && c.dropout_rate < 1, ConfigError, "[t5] ", src,
             ": dropout_rate must be in [0, 1), got ", c.dropout_rate);
  c.layer_norm_epsilon = cfg.get_double("layer_norm_epsilon", c.layer_norm_epsilon);
  PEFT_CHECK(c.layer_norm_epsilon >= 0, ConfigError, "[t5] ", src,
             ": layer_norm_epsilon must be >= 0, got ", c.layer_norm_epsilon);

  // T5Config.__post_init__ / validate_architecture.
  c.feed_forward_proj = cfg.get_string("feed_forward_proj", c.feed_forward_proj);
  const std::string& ffp = c.feed_forward_proj;
  const auto dash = ffp.find('-');
  const bool gated = dash != std::string::npos;
  PEFT_CHECK(!ffp.empty() && (!gated || (ffp.substr(0, dash) == "gated" &&
                                         ffp.find('-', dash + 1) == std::string::npos && dash + 1 < ffp.size())),
             ConfigError, "[t5] ", src, ": feed_forward_proj '", ffp,
             "' is not a valid activation of the dense layer; use 'gated-{ACT_FN}' or '{ACT_FN}', "
             "e.g. 'gated-gelu' or 'relu'");
  c.is_gated_act = gated;
  c.dense_act_fn = gated ? ffp.substr(dash + 1) : ffp;
  if (ffp == "gated-gelu") c.dense_act_fn = "gelu_new";
  try {
    check_activation(c.dense_act_fn, src);
  } catch (const NotSupported&) {
    throw NotSupported("[t5] " + src + ": feed_forward_proj '" + ffp + "' uses activation '" +
                       c.dense_act_fn +
                       "', which is not supported (silu, gelu, gelu_new, gelu_pytorch_tanh, "
                       "gelu_fast, relu, tanh, quick_gelu)");
  }

  // transformers 5.x moves the user's tie_word_embeddings into scale_decoder_outputs and always ties;
  // checkpoints with their own lm_head.weight (tie_word_embeddings false) stay untied on load.
  c.tie_word_embeddings = cfg.get_bool("tie_word_embeddings", true);
  c.scale_decoder_outputs = cfg.get_bool("scale_decoder_outputs", c.tie_word_embeddings);

  c.pad_token_id = cfg.get_int("pad_token_id", c.pad_token_id);
  c.decoder_start_token_id = cfg.get_int("decoder_start_token_id", -1);
  if (cfg.has("eos_token_id")) {
    const auto& e = cfg.json()["eos_token_id"];
    c.eos_token_id.clear();
    if (e.is_number_integer()) c.eos_token_id.push_back(e.get<int64_t>());
    else if (e.is_array())
      for (const auto& v : e) {
        PEFT_CHECK(v.is_number_integer(), ConfigError, "[t5] ", src,
                   ": eos_token_id must be an integer or a list of integers, got ", e.dump());
        c.eos_token_id.push_back(v.get<int64_t>());
      }
    else
      PEFT_CHECK(false, ConfigError, "[t5] ", src,
                 ": eos_token_id must be an integer or a list of integers, got ", e.dump());
  }
  auto in_vocab = [&](const char* field, int64_t id) {
    PEFT_CHECK(id < c.vocab_size, ConfigError, "[t5] ", src, ": ", field, " (", id,
               ") must be below vocab_size (", c.vocab_size, ")");
  };
  in_vocab("pad_token_id", c.pad_token_id);
  in_vocab("decoder_start_token_id", c.decoder_start_token_id);
  for (int64_t e : c.eos_token_id) in_vocab("eos_token_id", e);
  return c;
}

namespace {

// Additive cross-attention mask [B, 1, 1, S] from an encoder mask [B, S] (undefined: no mask).
at::Tensor cross_attention_bias(const at::Tensor& mask, int64_t batch, int64_t S, at::ScalarType dtype,
                                c10::Device device) {
  if (!mask.defined()) return {};
  PEFT_CHECK(mask.dim() == 2 && mask.size(0) == batch && mask.size(1) == S, std::invalid_argument,
             "[t5] attention_mask must be [batch=", batch, ", encoder length=", S, "], got ", mask.sizes());
  const double lowest = dtype == at::kBFloat16 ? -3.3895313892515355e38
                        : dtype == at::kHalf   ? -65504.0
                        : dtype == at::kDouble ? std::numeric_limits<double>::lowest()
                                               : static_cast<double>(std::numeric_limits<float>::lowest());
  const at::Tensor drop = (mask.to(device) == 0).view({batch, 1, 1, S});
  return at::zeros({batch, 1, 1, S}, at::TensorOptions().dtype(dtype).device(device)).masked_fill(drop, lowest);
}

// ACT2FN[dense_act_fn]; gelu_new is transformers' NewGELUActivation formula op for op (T5 v1.1's
// gated-gelu), which rounds differently from the fused tanh GELU in low precision.
at::Tensor act(const std::string& name, const at::Tensor& x) {
  if (name != "gelu_new") return activation(name, x);
  return 0.5 * x * (1.0 + at::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * at::pow(x, 3.0))));
}

// T5Block: "clamp inf values to enable fp16 training".
at::Tensor clamp_fp16(const at::Tensor& h) {
  if (h.scalar_type() != at::kHalf) return h;
  const double max = 65504.0;
  const double v = h.isinf().any().item<bool>() ? max - 1000 : max;
  return h.clamp(-v, v);
}

// T5Attention._relative_position_bucket (same ops, so the same float rounding).
at::Tensor relative_position_bucket(at::Tensor rel, bool bidirectional, int64_t num_buckets,
                                    int64_t max_distance) {
  at::Tensor buckets = at::zeros_like(rel);
  if (bidirectional) {
    num_buckets /= 2;
    buckets = buckets + (rel > 0).to(at::kLong) * num_buckets;
    rel = rel.abs();
  } else {
    rel = -at::min(rel, at::zeros_like(rel));
  }
  const int64_t max_exact = num_buckets / 2;
  const at::Tensor is_small = rel < max_exact;
  at::Tensor large = (at::log(rel.to(at::kFloat) / max_exact) /
                      std::log(static_cast<double>(max_distance) / static_cast<double>(max_exact)) *
                      (num_buckets - max_exact))
                         .to(at::kLong) +
                     max_exact;
  large = at::min(large, at::full_like(large, num_buckets - 1));
  return buckets + at::where(is_small, rel, large);
}

class T5LayerNormImpl : public torch::nn::Module {
 public:
  T5LayerNormImpl(int64_t n, double eps) : eps_(eps) { weight = register_parameter("weight", at::ones({n})); }
  at::Tensor forward(const at::Tensor& x) { return rms_norm(x, weight, eps_); }
  at::Tensor weight;

 private:
  double eps_;
};
TORCH_MODULE(T5LayerNorm);

// T5DenseActDense (wi, wo) or T5DenseGatedActDense (wi_0, wi_1, wo).
class T5DenseImpl : public torch::nn::Module {
 public:
  explicit T5DenseImpl(const T5Config& c) : gated_(c.is_gated_act), act_(c.dense_act_fn), p_(c.dropout_rate) {
    if (gated_) {
      wi_0 = register_module("wi_0", AdaptableLinear(c.d_model, c.d_ff, false));
      wi_1 = register_module("wi_1", AdaptableLinear(c.d_model, c.d_ff, false));
    } else {
      wi = register_module("wi", AdaptableLinear(c.d_model, c.d_ff, false));
    }
    wo = register_module("wo", AdaptableLinear(c.d_ff, c.d_model, false));
  }
  at::Tensor forward(const at::Tensor& x) {
    at::Tensor h = gated_ ? act(act_, wi_0->forward(x)) * wi_1->forward(x) : act(act_, wi->forward(x));
    h = models::dropout(h, p_, is_training());
    // transformers keeps wo in float32 for 8-bit/half models and casts its input to wo's dtype.
    if (h.scalar_type() != wo->weight.scalar_type()) h = h.to(wo->weight.scalar_type());
    return wo->forward(h);
  }
  AdaptableLinear wi{nullptr}, wi_0{nullptr}, wi_1{nullptr}, wo{nullptr};

 private:
  bool gated_;
  std::string act_;
  double p_;
};
TORCH_MODULE(T5Dense);

class T5AttentionImpl : public torch::nn::Module {
 public:
  T5AttentionImpl(const T5Config& c, bool has_relative_attention_bias, bool is_decoder)
      : c_(c), is_decoder_(is_decoder) {
    const int64_t inner = c.num_heads * c.d_kv;
    q = register_module("q", AdaptableLinear(c.d_model, inner, false));
    k = register_module("k", AdaptableLinear(c.d_model, inner, false));
    v = register_module("v", AdaptableLinear(c.d_model, inner, false));
    o = register_module("o", AdaptableLinear(inner, c.d_model, false));
    if (has_relative_attention_bias)
      relative_attention_bias = register_module(
          "relative_attention_bias", torch::nn::Embedding(c.relative_attention_num_buckets, c.num_heads));
  }

  /// Position bias [1, H, T, S] for queries at positions past.. and keys at 0..S-1.
  at::Tensor compute_bias(int64_t T, int64_t S, int64_t past, c10::Device device) {
    const auto opts = at::TensorOptions().dtype(at::kLong).device(device);
    at::Tensor context = at::arange(T, opts).unsqueeze(1) + past;
    at::Tensor memory = at::arange(S, opts).unsqueeze(0);
    at::Tensor bucket = relative_position_bucket(memory - context, /*bidirectional=*/!is_decoder_,
                                                 c_.relative_attention_num_buckets,
                                                 c_.relative_attention_max_distance);
    return relative_attention_bias->forward(bucket).permute({2, 0, 1}).unsqueeze(0);
  }

  /// Self-attention over [prefix ; cached ; x] (cache appended), or cross-attention over `kv_states`
  /// (keys/values read from / stored in `cross` when given). `bias`: position bias + mask.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& kv_states, const at::Tensor& bias,
                     const KeyValue* prefix, KVCache* cache, std::size_t layer) {
    const int64_t B = x.size(0), T = x.size(1), D = c_.d_kv;
    at::Tensor qs = q->forward(x).view({B, T, -1, D}).transpose(1, 2);
    KeyValue kv;
    if (kv_states.defined()) {
      std::vector<KeyValue>* cross = cache ? &cache->cross_layers : nullptr;
      if (cross && cross->size() > layer && (*cross)[layer].key.defined()) {
        kv = (*cross)[layer];
      } else {
        const int64_t S = kv_states.size(1);
        kv.key = k->forward(kv_states).view({B, S, -1, D}).transpose(1, 2);
        kv.value = v->forward(kv_states).view({B, S, -1, D}).transpose(1, 2);
        if (cross) {
          if (cross->size() <= layer) cross->resize(layer + 1);
          (*cross)[layer] = kv;
        }
      }
    } else {
      at::Tensor ks = k->forward(x).view({B, T, -1, D}).transpose(1, 2);
      at::Tensor vs = v->forward(x).view({B, T, -1, D}).transpose(1, 2);
      kv = extend_kv(prefix, cache, layer, ks, vs);
    }
    // T5 folds the scale into its initialisation: no 1/sqrt(d) on the scores.
    at::Tensor out = attend(qs, kv.key, kv.value, bias, 1.0, c_.dropout_rate, is_training());
    return o->forward(out.transpose(1, 2).reshape({B, T, -1}));
  }

  AdaptableLinear q{nullptr}, k{nullptr}, v{nullptr}, o{nullptr};
  torch::nn::Embedding relative_attention_bias{nullptr};

 private:
  T5Config c_;
  bool is_decoder_;
};
TORCH_MODULE(T5Attention);

class T5LayerSelfAttentionImpl : public torch::nn::Module {
 public:
  T5LayerSelfAttentionImpl(const T5Config& c, bool has_bias, bool is_decoder) : p_(c.dropout_rate) {
    SelfAttention = register_module("SelfAttention", T5Attention(c, has_bias, is_decoder));
    layer_norm = register_module("layer_norm", T5LayerNorm(c.d_model, c.layer_norm_epsilon));
  }
  at::Tensor forward(const at::Tensor& h, const at::Tensor& bias, const KeyValue* prefix, KVCache* cache,
                     std::size_t layer) {
    at::Tensor a = SelfAttention->forward(layer_norm->forward(h), {}, bias, prefix, cache, layer);
    return h + models::dropout(a, p_, is_training());
  }
  T5Attention SelfAttention{nullptr};
  T5LayerNorm layer_norm{nullptr};

 private:
  double p_;
};
TORCH_MODULE(T5LayerSelfAttention);

class T5LayerCrossAttentionImpl : public torch::nn::Module {
 public:
  explicit T5LayerCrossAttentionImpl(const T5Config& c) : p_(c.dropout_rate) {
    EncDecAttention = register_module("EncDecAttention", T5Attention(c, false, true));
    layer_norm = register_module("layer_norm", T5LayerNorm(c.d_model, c.layer_norm_epsilon));
  }
  at::Tensor forward(const at::Tensor& h, const at::Tensor& enc, const at::Tensor& bias, KVCache* cache,
                     std::size_t layer) {
    at::Tensor a = EncDecAttention->forward(layer_norm->forward(h), enc, bias, nullptr, cache, layer);
    return h + models::dropout(a, p_, is_training());
  }
  T5Attention EncDecAttention{nullptr};
  T5LayerNorm layer_norm{nullptr};

 private:
  double p_;
};
TORCH_MODULE(T5LayerCrossAttention);

class T5LayerFFImpl : public torch::nn::Module {
 public:
  explicit T5LayerFFImpl(const T5Config& c) : p_(c.dropout_rate) {
    DenseReluDense = register_module("DenseReluDense", T5Dense(c));
    layer_norm = register_module("layer_norm", T5LayerNorm(c.d_model, c.layer_norm_epsilon));
  }
  at::Tensor forward(const at::Tensor& h) {
    return h + models::dropout(DenseReluDense->forward(layer_norm->forward(h)), p_, is_training());
  }
  T5Dense DenseReluDense{nullptr};
  T5LayerNorm layer_norm{nullptr};

 private:
  double p_;
};
TORCH_MODULE(T5LayerFF);

class T5BlockImpl : public torch::nn::Module {
 public:
  T5BlockImpl(const T5Config& c, bool has_bias, bool is_decoder) {
    layer = register_module("layer", torch::nn::ModuleList());
    self_attn = T5LayerSelfAttention(c, has_bias, is_decoder);
    layer->push_back(self_attn);
    if (is_decoder) {
      cross_attn = T5LayerCrossAttention(c);
      layer->push_back(cross_attn);
    }
    ff = T5LayerFF(c);
    layer->push_back(ff);
  }
  at::Tensor forward(at::Tensor h, const at::Tensor& self_bias, const KeyValue* prefix, KVCache* cache,
                     std::size_t i, const at::Tensor& enc, const at::Tensor& cross_bias) {
    h = clamp_fp16(self_attn->forward(h, self_bias, prefix, cache, i));
    if (cross_attn && enc.defined()) h = clamp_fp16(cross_attn->forward(h, enc, cross_bias, cache, i));
    return clamp_fp16(ff->forward(h));
  }
  torch::nn::ModuleList layer{nullptr};
  T5LayerSelfAttention self_attn{nullptr};
  T5LayerCrossAttention cross_attn{nullptr};
  T5LayerFF ff{nullptr};
};
TORCH_MODULE(T5Block);

class T5StackImpl : public torch::nn::Module {
 public:
  T5StackImpl(const T5Config& c, bool is_decoder) : c_(c), is_decoder_(is_decoder) {
    block = register_module("block", torch::nn::ModuleList());
    const int64_t n = is_decoder ? c.num_decoder_layers : c.num_layers;
    for (int64_t i = 0; i < n; ++i) {
      blocks.push_back(T5Block(c, /*has_bias=*/i == 0, is_decoder));
      block->push_back(blocks.back());
    }
    final_layer_norm = register_module("final_layer_norm", T5LayerNorm(c.d_model, c.layer_norm_epsilon));
  }

  /// h: [B, T, d_model] embeddings. mask: [B, past + T] or [B, P + past + T]. For the decoder,
  /// `enc`/`enc_mask` are the encoder states and mask, `cache` the self-/cross-attention cache.
  at::Tensor forward(at::Tensor h, const at::Tensor& mask, const std::vector<KeyValue>& prefix,
                     KVCache* cache, const at::Tensor& enc, const at::Tensor& enc_mask, bool checkpointed = false) {
    const int64_t B = h.size(0), T = h.size(1);
    const char* what = is_decoder_ ? "decoder_prefix_kv" : "prefix_kv";
    PEFT_CHECK(prefix.empty() || prefix.size() == blocks.size(), std::invalid_argument, "[t5] ", what,
               " has ", prefix.size(), " layers; the ", is_decoder_ ? "decoder" : "encoder", " has ",
               blocks.size());
    const int64_t P = prefix.empty() ? 0 : prefix[0].key.size(2);
    const int64_t past = is_decoder_ && cache ? cache->length() : 0;
    KVCache* self_cache = is_decoder_ ? cache : nullptr;
    // As T5Attention with a cache of P + past entries: the bias covers every key, the queries sit
    // at positions P + past.. (the prefix takes the first P positions).
    at::Tensor bias = blocks[0]->self_attn->SelfAttention->compute_bias(T, P + past + T, P + past, h.device());
    at::Tensor mask_bias = attention_bias(mask, B, T, past, P, /*causal=*/is_decoder_, h.scalar_type(), h.device());
    if (mask_bias.defined()) bias = bias + mask_bias;
    at::Tensor cross_bias;
    if (enc.defined()) cross_bias = cross_attention_bias(enc_mask, B, enc.size(1), h.scalar_type(), h.device());

    h = models::dropout(h, c_.dropout_rate, is_training());
    for (std::size_t i = 0; i < blocks.size(); ++i) {
      // Only encoder blocks are recomputed: a decoder block's recompute would backpropagate into
      // the encoder output once per block.
      if (!checkpointed || is_decoder_) {
        h = blocks[i]->forward(h, bias, prefix.empty() ? nullptr : &prefix[i], self_cache, i, enc, cross_bias);
        continue;
      }
      const KeyValue pk = prefix.empty() ? KeyValue{} : prefix[i];
      const bool has_prefix = !prefix.empty();
      auto b = blocks[i];
      h = checkpoint([b, bias, pk, has_prefix, i](const at::Tensor& x) mutable {
        return b->forward(x, bias, has_prefix ? &pk : nullptr, nullptr, i, at::Tensor(), at::Tensor());
      }, h, true);
    }
    return models::dropout(final_layer_norm->forward(h), c_.dropout_rate, is_training());
  }

  torch::nn::ModuleList block{nullptr};
  std::vector<T5Block> blocks;
  T5LayerNorm final_layer_norm{nullptr};

 private:
  T5Config c_;
  bool is_decoder_;
};
TORCH_MODULE(T5Stack);

bool is_encoder_model(const ModelConfig& cfg) {
  const auto& j = cfg.json();
  auto it = j.find("architectures");
  return it != j.end() && it->is_array() && !it->empty() && (*it)[0].is_string() &&
         (*it)[0].get<std::string>() == "T5EncoderModel";
}

class T5 : public PretrainedModel {
 public:
  T5(const ModelConfig& cfg, TaskHead head)
      : cfg_(cfg), c_(T5Config::from(cfg)), head_(head),
        encoder_only_(head == TaskHead::Base && is_encoder_model(cfg)) {
    PEFT_CHECK(head == TaskHead::Base || head == TaskHead::Seq2SeqLM, NotSupported,
               "[t5] only T5Model, T5EncoderModel and T5ForConditionalGeneration are supported; "
               "the requested task head is not");
    shared = register_module("shared", torch::nn::Embedding(c_.vocab_size, c_.d_model));
    {
      torch::NoGradGuard ng;
      shared->weight.normal_(0.0, 1.0);
    }
    encoder = register_module("encoder", T5Stack(c_, false));
    if (!encoder_only_) decoder = register_module("decoder", T5Stack(c_, true));
    if (head == TaskHead::Seq2SeqLM && !c_.tie_word_embeddings)
      lm_head = register_module("lm_head", AdaptableLinear(c_.d_model, c_.vocab_size, false));
  }

  ModelOutput forward(const ModelInputs& in) override {
    ModelOutput out;
    at::Tensor enc = in.encoder_outputs;
    if (enc.defined()) {
      check_shape(enc, {-1, -1, c_.d_model}, "t5", "encoder_outputs");
    } else {
      PEFT_CHECK(in.input_ids.defined() != in.inputs_embeds.defined(), std::invalid_argument,
                 "[t5] give exactly one of input_ids and inputs_embeds (or encoder_outputs)");
      at::Tensor h = in.inputs_embeds.defined() ? in.inputs_embeds : embed(in.input_ids);
      check_shape(h, {-1, -1, c_.d_model}, "t5", "inputs_embeds");
      enc = encoder->forward(h, in.attention_mask, in.prefix_kv, nullptr, {}, {}, gradient_checkpointing());
    }
    out.encoder_last_hidden_state = enc;
    if (encoder_only_) {
      out.last_hidden_state = enc;
      return out;
    }

    at::Tensor dec_ids = in.decoder_input_ids;
    if (!dec_ids.defined() && !in.decoder_inputs_embeds.defined()) {
      PEFT_CHECK(head_ == TaskHead::Seq2SeqLM && in.labels.defined(), std::invalid_argument,
                 "[t5] give decoder_input_ids or decoder_inputs_embeds",
                 head_ == TaskHead::Seq2SeqLM ? " (or labels, shifted right)" : "");
      dec_ids = shift_right(in.labels);
    }
    PEFT_CHECK(!(dec_ids.defined() && in.decoder_inputs_embeds.defined()), std::invalid_argument,
               "[t5] give exactly one of decoder_input_ids and decoder_inputs_embeds");
    at::Tensor dh = in.decoder_inputs_embeds.defined() ? in.decoder_inputs_embeds : embed(dec_ids);
    check_shape(dh, {enc.size(0), -1, c_.d_model}, "t5", "decoder_inputs_embeds");
    // The cross-attention mask covers the encoder tokens (drop the prefix columns if given).
    at::Tensor enc_mask = in.attention_mask;
    if (enc_mask.defined() && enc_mask.dim() == 2 && enc_mask.size(1) > enc.size(1))
      enc_mask = enc_mask.narrow(1, enc_mask.size(1) - enc.size(1), enc.size(1));
    at::Tensor h = decoder->forward(dh, in.decoder_attention_mask, in.decoder_prefix_kv, in.cache, enc, enc_mask);
    out.last_hidden_state = h;
    if (head_ == TaskHead::Seq2SeqLM) {
      at::Tensor s = c_.scale_decoder_outputs ? h * std::pow(static_cast<double>(c_.d_model), -0.5) : h;
      out.logits = lm_head ? lm_head->forward(s) : models::linear(s, shared->weight);
      if (in.labels.defined()) out.loss = token_loss(out.logits, in.labels);
    }
    return out;
  }

  // T5PreTrainedModel._shift_right.
  at::Tensor shift_right(const at::Tensor& labels) const {
    PEFT_CHECK(c_.decoder_start_token_id >= 0, ConfigError, "[t5] ", cfg_.source(),
               ": decoder_start_token_id is not set; it is needed to shift labels into decoder_input_ids "
               "(T5 uses the pad_token_id, usually 0)");
    PEFT_CHECK(labels.dim() == 2, std::invalid_argument, "[t5] labels must be [batch, length], got ",
               labels.sizes());
    at::Tensor s = at::zeros_like(labels);
    const int64_t T = labels.size(1);
    if (T > 1) s.narrow(1, 1, T - 1).copy_(labels.narrow(1, 0, T - 1));
    s.select(1, 0).fill_(c_.decoder_start_token_id);
    return s.masked_fill(s == -100, c_.pad_token_id);
  }

  at::Tensor embed(const at::Tensor& ids) override { return shared->forward(ids); }
  at::Tensor word_embeddings() override { return shared->weight; }
  const ModelConfig& config() const override { return cfg_; }
  TaskHead head() const override { return head_; }
  bool is_encoder_decoder() const override { return !encoder_only_; }
  int64_t num_layers() const override { return c_.num_layers; }
  int64_t num_kv_heads() const override { return c_.num_heads; }
  int64_t head_dim() const override { return c_.d_kv; }
  std::string base_model_prefix() const override { return "transformer"; }
  std::vector<std::pair<std::string, std::string>> tied_weights() const override {
    std::vector<std::pair<std::string, std::string>> r = {{"encoder.embed_tokens.weight", "shared.weight"}};
    if (!encoder_only_) r.push_back({"decoder.embed_tokens.weight", "shared.weight"});
    if (head_ == TaskHead::Seq2SeqLM && c_.tie_word_embeddings) r.push_back({"lm_head.weight", "shared.weight"});
    return r;
  }
  std::vector<std::string> ignored_checkpoint_keys() const override {
    std::vector<std::string> r = {R"((encoder|decoder)\.embed_tokens\.weight)",
                                  R"(decoder\.block\.0\.layer\.1\.EncDecAttention\.relative_attention_bias\.weight)"};
    if (head_ != TaskHead::Seq2SeqLM || c_.tie_word_embeddings) r.push_back(R"(lm_head\.weight)");
    if (encoder_only_) r.push_back(R"(decoder\..*)");
    return r;
  }

  torch::nn::Embedding shared{nullptr};
  T5Stack encoder{nullptr}, decoder{nullptr};
  AdaptableLinear lm_head{nullptr};

 private:
  ModelConfig cfg_;
  T5Config c_;
  TaskHead head_;
  bool encoder_only_;
};

}  // namespace

std::shared_ptr<PretrainedModel> make_t5(const ModelConfig& cfg, TaskHead head) {
  return std::make_shared<T5>(cfg, head);
}

}  // namespace peft::models
