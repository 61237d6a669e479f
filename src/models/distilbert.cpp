// Mirrors transformers/models/distilbert/modeling_distilbert.py (Embeddings,
// DistilBertSelfAttention, FFN, TransformerBlock, Transformer, DistilBertModel,
// DistilBertFor{SequenceClassification,TokenClassification}), eager attention. transformers'
// DistilBERT takes no key/value cache; the prefix_kv seam is added the way BERT's is (keys and
// values before the softmax, the mask extended by P, positions unchanged).
#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/normalization.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "peft/core/check.h"
#include "peft/models/adaptable_linear.h"
#include "peft/models/architectures.h"
#include "peft/models/blocks.h"

namespace peft::models {
namespace {

/// DistilBertConfig (config.json's names: dim, n_layers, n_heads, hidden_dim, ...).
struct DistilBertConfig {
  int64_t vocab_size = 30522, max_position_embeddings = 512, n_layers = 6, n_heads = 12, dim = 768,
          hidden_dim = 4 * 768, pad_token_id = 0, num_labels = 2;
  bool sinusoidal_pos_embds = false;
  double dropout = 0.1, attention_dropout = 0.1, seq_classif_dropout = 0.2, initializer_range = 0.02;
  std::string activation = "gelu", problem_type;

  static DistilBertConfig from(const ModelConfig& cfg) {
    DistilBertConfig c;
    const std::string tag = "[distilbert] ";
    c.vocab_size = cfg.get_positive("vocab_size", c.vocab_size);
    c.max_position_embeddings = cfg.get_positive("max_position_embeddings", c.max_position_embeddings);
    c.n_layers = cfg.get_positive("n_layers", c.n_layers);
    c.n_heads = cfg.get_positive("n_heads", c.n_heads);
    c.dim = cfg.get_positive("dim", c.dim);
    PEFT_CHECK(c.dim % c.n_heads == 0, ConfigError, tag, cfg.source(), ": dim (", c.dim,
               ") must be a multiple of n_heads (", c.n_heads, ")");
    c.hidden_dim = cfg.get_positive("hidden_dim", c.hidden_dim);
    c.sinusoidal_pos_embds = cfg.get_bool("sinusoidal_pos_embds", false);
    c.dropout = cfg.get_double("dropout", c.dropout);
    c.attention_dropout = cfg.get_double("attention_dropout", c.attention_dropout);
    c.seq_classif_dropout = cfg.get_double("seq_classif_dropout", c.seq_classif_dropout);
    for (double p : {c.dropout, c.attention_dropout, c.seq_classif_dropout})
      PEFT_CHECK(p >= 0.0 && p <= 1.0, ConfigError, tag, cfg.source(), ": dropout probabilities must lie in [0, 1], got ", p);
    c.activation = cfg.get_string("activation", c.activation);
    check_activation(c.activation, cfg.source());
    c.initializer_range = cfg.get_double("initializer_range", c.initializer_range);
    const bool pad_null = cfg.json().contains("pad_token_id") && cfg.json()["pad_token_id"].is_null();
    c.pad_token_id = pad_null ? -1 : cfg.get_int("pad_token_id", c.pad_token_id);
    PEFT_CHECK(c.pad_token_id < c.vocab_size, ConfigError, tag, cfg.source(), ": pad_token_id (", c.pad_token_id,
               ") must be below vocab_size (", c.vocab_size, ")");
    c.problem_type = cfg.get_string("problem_type", "");
    if (cfg.has("id2label")) c.num_labels = static_cast<int64_t>(cfg.json()["id2label"].size());
    c.num_labels = cfg.get_positive("num_labels", c.num_labels);
    return c;
  }
};

// DistilBERT's LayerNorms have eps 1e-12 whatever the config says.
torch::nn::LayerNorm layer_norm(int64_t dim) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(1e-12));
}

/// sin at even columns, cos at odd ones, of pos / 10000^(2 * (j / 2) / dim), computed in double.
at::Tensor sinusoidal_table(int64_t n_pos, int64_t dim) {
  at::Tensor pos = at::arange(n_pos, at::kDouble).unsqueeze(1);
  at::Tensor j = at::arange(dim, at::kDouble);
  at::Tensor angle = pos / at::pow(10000.0, 2.0 * at::floor_divide(j, 2) / static_cast<double>(dim));
  at::Tensor out = at::empty({n_pos, dim}, at::kDouble);
  out.slice(1, 0, dim, 2).copy_(at::sin(angle.slice(1, 0, dim, 2)));
  out.slice(1, 1, dim, 2).copy_(at::cos(angle.slice(1, 1, dim, 2)));
  return out.to(at::kFloat);
}

class EmbeddingsImpl : public torch::nn::Module {
 public:
  explicit EmbeddingsImpl(const DistilBertConfig& c) : p_(c.dropout) {
    torch::nn::EmbeddingOptions wo(c.vocab_size, c.dim);
    if (c.pad_token_id >= 0) wo.padding_idx(c.pad_token_id);
    word_embeddings = register_module("word_embeddings", torch::nn::Embedding(wo));
    position_embeddings =
        register_module("position_embeddings", torch::nn::Embedding(c.max_position_embeddings, c.dim));
    LayerNorm = register_module("LayerNorm", layer_norm(c.dim));
    torch::NoGradGuard ng;
    word_embeddings->weight.normal_(0.0, c.initializer_range);
    if (c.pad_token_id >= 0) word_embeddings->weight[c.pad_token_id].zero_();
    if (c.sinusoidal_pos_embds) position_embeddings->weight.copy_(sinusoidal_table(c.max_position_embeddings, c.dim));
    else position_embeddings->weight.normal_(0.0, c.initializer_range);
  }
  at::Tensor forward(const at::Tensor& inputs_embeds, const at::Tensor& position_ids) {
    at::Tensor h = inputs_embeds + position_embeddings->forward(position_ids);
    return models::dropout(LayerNorm->forward(h), p_, is_training());
  }
  torch::nn::Embedding word_embeddings{nullptr}, position_embeddings{nullptr};
  torch::nn::LayerNorm LayerNorm{nullptr};

 private:
  double p_;
};
TORCH_MODULE(Embeddings);

class SelfAttentionImpl : public torch::nn::Module {
 public:
  explicit SelfAttentionImpl(const DistilBertConfig& c) : p_(c.attention_dropout), head_dim_(c.dim / c.n_heads) {
    q_lin = register_module("q_lin", AdaptableLinear(c.dim, c.dim, true));
    k_lin = register_module("k_lin", AdaptableLinear(c.dim, c.dim, true));
    v_lin = register_module("v_lin", AdaptableLinear(c.dim, c.dim, true));
    out_lin = register_module("out_lin", AdaptableLinear(c.dim, c.dim, true));
  }
  at::Tensor forward(const at::Tensor& x, const at::Tensor& bias, const KeyValue* prefix, std::size_t layer) {
    const int64_t B = x.size(0), T = x.size(1), D = head_dim_;
    at::Tensor q = q_lin->forward(x).view({B, T, -1, D}).transpose(1, 2);
    at::Tensor k = k_lin->forward(x).view({B, T, -1, D}).transpose(1, 2);
    at::Tensor v = v_lin->forward(x).view({B, T, -1, D}).transpose(1, 2);
    const KeyValue kv = extend_kv(prefix, nullptr, layer, k, v);
    at::Tensor o = attend(q, kv.key, kv.value, bias, 1.0 / std::sqrt(static_cast<double>(D)), p_, is_training());
    return out_lin->forward(o.transpose(1, 2).reshape({B, T, -1}));
  }
  AdaptableLinear q_lin{nullptr}, k_lin{nullptr}, v_lin{nullptr}, out_lin{nullptr};

 private:
  double p_;
  int64_t head_dim_;
};
TORCH_MODULE(SelfAttention);

class FFNImpl : public torch::nn::Module {
 public:
  explicit FFNImpl(const DistilBertConfig& c) : p_(c.dropout), act_(c.activation) {
    lin1 = register_module("lin1", AdaptableLinear(c.dim, c.hidden_dim, true));
    lin2 = register_module("lin2", AdaptableLinear(c.hidden_dim, c.dim, true));
  }
  at::Tensor forward(const at::Tensor& x) {
    return models::dropout(lin2->forward(activation(act_, lin1->forward(x))), p_, is_training());
  }
  AdaptableLinear lin1{nullptr}, lin2{nullptr};

 private:
  double p_;
  std::string act_;
};
TORCH_MODULE(FFN);

class TransformerBlockImpl : public torch::nn::Module {
 public:
  explicit TransformerBlockImpl(const DistilBertConfig& c) {
    attention = register_module("attention", SelfAttention(c));
    sa_layer_norm = register_module("sa_layer_norm", layer_norm(c.dim));
    ffn = register_module("ffn", FFN(c));
    output_layer_norm = register_module("output_layer_norm", layer_norm(c.dim));
  }
  at::Tensor forward(const at::Tensor& x, const at::Tensor& bias, const KeyValue* prefix, std::size_t layer) {
    at::Tensor a = sa_layer_norm->forward(attention->forward(x, bias, prefix, layer) + x);
    return output_layer_norm->forward(ffn->forward(a) + a);
  }
  SelfAttention attention{nullptr};
  torch::nn::LayerNorm sa_layer_norm{nullptr};
  FFN ffn{nullptr};
  torch::nn::LayerNorm output_layer_norm{nullptr};
};
TORCH_MODULE(TransformerBlock);

class TransformerImpl : public torch::nn::Module {
 public:
  explicit TransformerImpl(const DistilBertConfig& c) {
    layer = register_module("layer", torch::nn::ModuleList());
    for (int64_t i = 0; i < c.n_layers; ++i) {
      layers.push_back(TransformerBlock(c));
      layer->push_back(layers.back());
    }
  }
  at::Tensor forward(at::Tensor h, const at::Tensor& bias, const std::vector<KeyValue>& prefix_kv, bool checkpointed) {
    for (std::size_t i = 0; i < layers.size(); ++i) {
      const KeyValue prefix = prefix_kv.empty() ? KeyValue{} : prefix_kv[i];
      const bool has_prefix = !prefix_kv.empty();
      auto l = layers[i];
      h = checkpoint([l, bias, prefix, has_prefix, i](const at::Tensor& x) mutable {
        return l->forward(x, bias, has_prefix ? &prefix : nullptr, i);
      }, h, checkpointed);
    }
    return h;
  }
  torch::nn::ModuleList layer{nullptr};
  std::vector<TransformerBlock> layers;
};
TORCH_MODULE(Transformer);

class DistilBert : public PretrainedModel {
 public:
  DistilBert(const ModelConfig& cfg, TaskHead head) : cfg_(cfg), c_(DistilBertConfig::from(cfg)), head_(head) {
    PEFT_CHECK(head == TaskHead::Base || head == TaskHead::SeqCls || head == TaskHead::TokenCls, NotSupported,
               "[distilbert] task head ", head == TaskHead::CausalLM ? "CausalLM" : "Seq2SeqLM",
               " is not available for distilbert (DistilBertModel, DistilBertForSequenceClassification, "
               "DistilBertForTokenClassification are)");
    torch::nn::Module& base = head == TaskHead::Base ? static_cast<torch::nn::Module&>(*this)
                                                     : *register_module("distilbert", std::make_shared<torch::nn::Module>());
    embeddings = base.register_module("embeddings", Embeddings(c_));
    transformer = base.register_module("transformer", Transformer(c_));
    if (head == TaskHead::SeqCls) pre_classifier = register_module("pre_classifier", AdaptableLinear(c_.dim, c_.dim, true));
    if (head != TaskHead::Base) classifier = register_module("classifier", AdaptableLinear(c_.dim, c_.num_labels, true));
    torch::NoGradGuard ng;
    for (auto& m : modules(/*include_self=*/false))
      if (auto* l = dynamic_cast<AdaptableLinearImpl*>(m.get())) l->weight.normal_(0.0, c_.initializer_range);
  }

  ModelOutput forward(const ModelInputs& in) override {
    PEFT_CHECK(in.cache == nullptr, std::invalid_argument,
               "[distilbert] distilbert is an encoder: a KV cache is not supported (use prefix_kv for a key/value prefix)");
    // in.token_type_ids are ignored: DistilBERT has no segment embeddings (its tokenizer gives none,
    // the data pipeline may still fill zeros).
    const ForwardStart start = start_forward(in, "distilbert", c_.dim, c_.n_layers);
    const at::Tensor& x = start.hidden;
    const int64_t B = start.batch, T = start.length, P = start.prefix;
    at::Tensor pos = in.position_ids;
    if (pos.defined()) check_shape(pos, {-1, T}, "distilbert", "position_ids");
    else pos = default_position_ids(B, T, 0, x.device());
    PEFT_CHECK(pos.numel() == 0 || pos.max().item<int64_t>() < c_.max_position_embeddings, std::invalid_argument,
               "[distilbert] positions go up to ", pos.numel() ? pos.max().item<int64_t>() : 0,
               " (sequence length ", T, "); max_position_embeddings is ", c_.max_position_embeddings);

    at::Tensor h = embeddings->forward(x, pos.to(x.device()));
    const at::Tensor bias = attention_bias(in.attention_mask, B, T, 0, P, /*causal=*/false, h.scalar_type(), h.device());
    h = transformer->forward(h, bias, in.prefix_kv, gradient_checkpointing());

    ModelOutput out;
    out.last_hidden_state = h;
    if (head_ == TaskHead::SeqCls) {
      // pre_classifier + ReLU on the first token, dropout, classifier.
      at::Tensor pooled = at::relu(pre_classifier->forward(h.select(1, 0)));
      out.logits = classifier->forward(models::dropout(pooled, c_.seq_classif_dropout, is_training()));
      if (in.labels.defined()) out.loss = sequence_classification_loss(out.logits, in.labels, c_.problem_type);
    } else if (head_ == TaskHead::TokenCls) {
      out.logits = classifier->forward(models::dropout(h, c_.dropout, is_training()));
      if (in.labels.defined()) out.loss = token_loss(out.logits, in.labels);
    }
    return out;
  }

  at::Tensor embed(const at::Tensor& ids) override { return embeddings->word_embeddings->forward(ids); }
  at::Tensor word_embeddings() override { return embeddings->word_embeddings->weight; }
  const ModelConfig& config() const override { return cfg_; }
  TaskHead head() const override { return head_; }
  int64_t num_layers() const override { return c_.n_layers; }
  int64_t num_kv_heads() const override { return c_.n_heads; }
  int64_t head_dim() const override { return c_.dim / c_.n_heads; }
  std::string base_model_prefix() const override { return "distilbert"; }
  std::vector<std::string> ignored_checkpoint_keys() const override {
    return {R"((distilbert\.)?embeddings\.position_ids)"};
  }

  Embeddings embeddings{nullptr};
  Transformer transformer{nullptr};
  AdaptableLinear pre_classifier{nullptr}, classifier{nullptr};

 private:
  ModelConfig cfg_;
  DistilBertConfig c_;
  TaskHead head_;
};

}  // namespace

std::shared_ptr<PretrainedModel> make_distilbert(const ModelConfig& cfg, TaskHead head) {
  return std::make_shared<DistilBert>(cfg, head);
}

}  // namespace peft::models
