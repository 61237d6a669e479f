// Mirrors transformers/models/bert/modeling_bert.py (BertEmbeddings, BertSelfAttention,
// BertSelfOutput, BertAttention, BertIntermediate, BertOutput, BertLayer, BertEncoder, BertPooler,
// BertModel, BertFor{SequenceClassification,TokenClassification}) as an encoder
// (is_decoder=False), eager attention. RoBERTa and XLM-RoBERTa (models/roberta/modeling_roberta.py,
// models/xlm_roberta) are the same modules with BertConfig::roberta(): padding-aware positions,
// RobertaClassificationHead, no pooler in the task models, keys under "roberta.".
#include "peft/models/bert.h"

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

BertConfig BertConfig::from(const ModelConfig& cfg) {
  BertConfig c;
  c.model_type = cfg.model_type().empty() ? "bert" : cfg.model_type();
  PEFT_CHECK(c.model_type == "bert" || c.model_type == "roberta" || c.model_type == "xlm-roberta", ConfigError,
             "[bert] ", cfg.source(), ": model_type '", c.model_type, "' is not one of bert, roberta, xlm-roberta");
  const std::string tag = "[" + c.model_type + "] ";
  c.vocab_size = cfg.get_positive("vocab_size", c.vocab_size);
  c.hidden_size = cfg.get_positive("hidden_size", c.hidden_size);
  c.num_hidden_layers = cfg.get_positive("num_hidden_layers", c.num_hidden_layers);
  c.num_attention_heads = cfg.get_positive("num_attention_heads", c.num_attention_heads);
  PEFT_CHECK(c.hidden_size % c.num_attention_heads == 0, ConfigError, tag, cfg.source(),
             ": hidden_size (", c.hidden_size, ") must be a multiple of num_attention_heads (",
             c.num_attention_heads, ")");
  c.intermediate_size = cfg.get_positive("intermediate_size", c.intermediate_size);
  c.hidden_act = cfg.get_string("hidden_act", c.hidden_act);
  check_activation(c.hidden_act, cfg.source());
  c.hidden_dropout_prob = cfg.get_double("hidden_dropout_prob", c.hidden_dropout_prob);
  c.attention_probs_dropout_prob = cfg.get_double("attention_probs_dropout_prob", c.attention_probs_dropout_prob);
  c.classifier_dropout = cfg.get_double("classifier_dropout", c.hidden_dropout_prob);
  for (double p : {c.hidden_dropout_prob, c.attention_probs_dropout_prob, c.classifier_dropout})
    PEFT_CHECK(p >= 0.0 && p <= 1.0, ConfigError, tag, cfg.source(),
               ": dropout probabilities must lie in [0, 1], got ", p);
  c.max_position_embeddings = cfg.get_positive("max_position_embeddings", c.max_position_embeddings);
  c.type_vocab_size = cfg.get_positive("type_vocab_size", c.type_vocab_size);
  c.layer_norm_eps = cfg.get_double("layer_norm_eps", c.layer_norm_eps);
  c.initializer_range = cfg.get_double("initializer_range", c.initializer_range);
  // pad_token_id: null means no padding row (transformers' padding_idx=None).
  const bool pad_null = cfg.json().contains("pad_token_id") && cfg.json()["pad_token_id"].is_null();
  c.pad_token_id = pad_null ? -1 : cfg.get_int("pad_token_id", c.roberta() ? 1 : c.pad_token_id);
  PEFT_CHECK(!c.roberta() || c.pad_token_id >= 0, ConfigError, tag, cfg.source(),
             ": pad_token_id must be set (RoBERTa numbers positions from it)");
  PEFT_CHECK(c.pad_token_id < c.vocab_size, ConfigError, tag, cfg.source(), ": pad_token_id (",
             c.pad_token_id, ") must be below vocab_size (", c.vocab_size, ")");
  c.position_embedding_type = cfg.get_string("position_embedding_type", "absolute");
  PEFT_CHECK(c.position_embedding_type == "absolute", NotSupported, tag, cfg.source(),
             ": position_embedding_type '", c.position_embedding_type,
             "' is not supported (only 'absolute')");
  PEFT_CHECK(!cfg.get_bool("is_decoder", false), NotSupported, tag, cfg.source(),
             ": is_decoder=true (the causal LM variant) is not supported; the model is built as an encoder");
  PEFT_CHECK(!cfg.get_bool("add_cross_attention", false), NotSupported, tag, cfg.source(),
             ": add_cross_attention=true is not supported");
  c.problem_type = cfg.get_string("problem_type", "");
  if (cfg.has("id2label")) c.num_labels = static_cast<int64_t>(cfg.json()["id2label"].size());
  c.num_labels = cfg.get_positive("num_labels", c.num_labels);
  return c;
}

namespace {

torch::nn::LayerNorm layer_norm(const BertConfig& c) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.hidden_size}).eps(c.layer_norm_eps));
}

class BertEmbeddingsImpl : public torch::nn::Module {
 public:
  explicit BertEmbeddingsImpl(const BertConfig& c) : c_(c) {
    torch::nn::EmbeddingOptions wo(c.vocab_size, c.hidden_size);
    if (c.pad_token_id >= 0) wo.padding_idx(c.pad_token_id);
    word_embeddings = register_module("word_embeddings", torch::nn::Embedding(wo));
    // RoBERTa's position table has a padding row too (the position of padding tokens).
    torch::nn::EmbeddingOptions po(c.max_position_embeddings, c.hidden_size);
    if (c.roberta()) po.padding_idx(c.pad_token_id);
    position_embeddings = register_module("position_embeddings", torch::nn::Embedding(po));
    token_type_embeddings =
        register_module("token_type_embeddings", torch::nn::Embedding(c.type_vocab_size, c.hidden_size));
    LayerNorm = register_module("LayerNorm", layer_norm(c));
    // transformers' _init_weights: normal(0, initializer_range), zero padding row.
    torch::NoGradGuard ng;
    for (auto* e : {&word_embeddings, &position_embeddings, &token_type_embeddings})
      (*e)->weight.normal_(0.0, c.initializer_range);
    if (c.pad_token_id >= 0) word_embeddings->weight[c.pad_token_id].zero_();
    if (c.roberta()) position_embeddings->weight[c.pad_token_id].zero_();
  }
  /// inputs_embeds + token_type_embeddings + position_embeddings -> LayerNorm -> dropout.
  at::Tensor forward(const at::Tensor& inputs_embeds, const at::Tensor& token_type_ids,
                     const at::Tensor& position_ids) {
    at::Tensor h = inputs_embeds + token_type_embeddings->forward(token_type_ids);
    h = h + position_embeddings->forward(position_ids);
    return models::dropout(LayerNorm->forward(h), c_.hidden_dropout_prob, is_training());
  }
  torch::nn::Embedding word_embeddings{nullptr}, position_embeddings{nullptr}, token_type_embeddings{nullptr};
  torch::nn::LayerNorm LayerNorm{nullptr};

 private:
  BertConfig c_;
};
TORCH_MODULE(BertEmbeddings);

class BertSelfAttentionImpl : public torch::nn::Module {
 public:
  explicit BertSelfAttentionImpl(const BertConfig& c) : c_(c), head_dim_(c.hidden_size / c.num_attention_heads) {
    query = register_module("query", AdaptableLinear(c.hidden_size, c.hidden_size, true));
    key = register_module("key", AdaptableLinear(c.hidden_size, c.hidden_size, true));
    value = register_module("value", AdaptableLinear(c.hidden_size, c.hidden_size, true));
  }
  at::Tensor forward(const at::Tensor& x, const at::Tensor& bias, const KeyValue* prefix, std::size_t layer) {
    const int64_t B = x.size(0), T = x.size(1), D = head_dim_;
    at::Tensor q = query->forward(x).view({B, T, -1, D}).transpose(1, 2);
    at::Tensor k = key->forward(x).view({B, T, -1, D}).transpose(1, 2);
    at::Tensor v = value->forward(x).view({B, T, -1, D}).transpose(1, 2);
    const KeyValue kv = extend_kv(prefix, nullptr, layer, k, v);
    at::Tensor o = attend(q, kv.key, kv.value, bias, 1.0 / std::sqrt(static_cast<double>(D)),
                          c_.attention_probs_dropout_prob, is_training());
    return o.transpose(1, 2).reshape({B, T, -1});
  }
  AdaptableLinear query{nullptr}, key{nullptr}, value{nullptr};

 private:
  BertConfig c_;
  int64_t head_dim_;
};
TORCH_MODULE(BertSelfAttention);

/// BertSelfOutput and BertOutput: LayerNorm(dropout(dense(x)) + residual).
class BertResidualOutputImpl : public torch::nn::Module {
 public:
  BertResidualOutputImpl(const BertConfig& c, int64_t in_features) : p_(c.hidden_dropout_prob) {
    dense = register_module("dense", AdaptableLinear(in_features, c.hidden_size, true));
    LayerNorm = register_module("LayerNorm", layer_norm(c));
  }
  at::Tensor forward(const at::Tensor& x, const at::Tensor& residual) {
    return LayerNorm->forward(models::dropout(dense->forward(x), p_, is_training()) + residual);
  }
  AdaptableLinear dense{nullptr};
  torch::nn::LayerNorm LayerNorm{nullptr};

 private:
  double p_;
};
TORCH_MODULE(BertResidualOutput);

class BertAttentionImpl : public torch::nn::Module {
 public:
  explicit BertAttentionImpl(const BertConfig& c) {
    self = register_module("self", BertSelfAttention(c));
    output = register_module("output", BertResidualOutput(c, c.hidden_size));
  }
  at::Tensor forward(const at::Tensor& x, const at::Tensor& bias, const KeyValue* prefix, std::size_t layer) {
    return output->forward(self->forward(x, bias, prefix, layer), x);
  }
  BertSelfAttention self{nullptr};
  BertResidualOutput output{nullptr};
};
TORCH_MODULE(BertAttention);

class BertIntermediateImpl : public torch::nn::Module {
 public:
  explicit BertIntermediateImpl(const BertConfig& c) : act_(c.hidden_act) {
    dense = register_module("dense", AdaptableLinear(c.hidden_size, c.intermediate_size, true));
  }
  at::Tensor forward(const at::Tensor& x) { return activation(act_, dense->forward(x)); }
  AdaptableLinear dense{nullptr};

 private:
  std::string act_;
};
TORCH_MODULE(BertIntermediate);

class BertLayerImpl : public torch::nn::Module {
 public:
  explicit BertLayerImpl(const BertConfig& c) {
    attention = register_module("attention", BertAttention(c));
    intermediate = register_module("intermediate", BertIntermediate(c));
    output = register_module("output", BertResidualOutput(c, c.intermediate_size));
  }
  at::Tensor forward(const at::Tensor& x, const at::Tensor& bias, const KeyValue* prefix, std::size_t layer) {
    at::Tensor a = attention->forward(x, bias, prefix, layer);
    return output->forward(intermediate->forward(a), a);
  }
  BertAttention attention{nullptr};
  BertIntermediate intermediate{nullptr};
  BertResidualOutput output{nullptr};
};
TORCH_MODULE(BertLayer);

class BertEncoderImpl : public torch::nn::Module {
 public:
  explicit BertEncoderImpl(const BertConfig& c) {
    layer = register_module("layer", torch::nn::ModuleList());
    for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
      layers.push_back(BertLayer(c));
      layer->push_back(layers.back());
    }
  }
  at::Tensor forward(at::Tensor h, const at::Tensor& bias, const std::vector<KeyValue>& prefix_kv,
                     bool checkpointed = false) {
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
  std::vector<BertLayer> layers;
};
TORCH_MODULE(BertEncoder);

class BertPoolerImpl : public torch::nn::Module {
 public:
  explicit BertPoolerImpl(const BertConfig& c) {
    dense = register_module("dense", AdaptableLinear(c.hidden_size, c.hidden_size, true));
  }
  /// tanh(dense(h[:, 0])): the first token's hidden state.
  at::Tensor forward(const at::Tensor& h) { return at::tanh(dense->forward(h.select(1, 0))); }
  AdaptableLinear dense{nullptr};
};
TORCH_MODULE(BertPooler);

/// RobertaClassificationHead: out_proj(dropout(tanh(dense(dropout(h[:, 0]))))).
class RobertaClassificationHeadImpl : public torch::nn::Module {
 public:
  explicit RobertaClassificationHeadImpl(const BertConfig& c) : p_(c.classifier_dropout) {
    dense = register_module("dense", AdaptableLinear(c.hidden_size, c.hidden_size, true));
    out_proj = register_module("out_proj", AdaptableLinear(c.hidden_size, c.num_labels, true));
  }
  at::Tensor forward(const at::Tensor& h) {
    at::Tensor x = models::dropout(h.select(1, 0), p_, is_training());
    x = models::dropout(at::tanh(dense->forward(x)), p_, is_training());
    return out_proj->forward(x);
  }
  AdaptableLinear dense{nullptr}, out_proj{nullptr};

 private:
  double p_;
};
TORCH_MODULE(RobertaClassificationHead);

/// RoBERTa's positions: pad_token_id + 1 + past, ... over the non-padding tokens (counted
/// cumulatively), pad_token_id at padding (create_position_ids_from_input_ids).
at::Tensor roberta_position_ids(const at::Tensor& input_ids, int64_t pad, int64_t past) {
  const at::Tensor mask = input_ids.ne(pad).to(at::kLong);
  return (at::cumsum(mask, 1) + past) * mask + pad;
}

class Bert : public PretrainedModel {
 public:
  Bert(const ModelConfig& cfg, TaskHead head)
      : cfg_(cfg), c_(BertConfig::from(cfg)), head_(head), tag_("[" + c_.model_type + "]"),
        prefix_(c_.roberta() ? "roberta" : "bert") {
    const std::string cls = c_.roberta() ? (c_.model_type == "roberta" ? "Roberta" : "XLMRoberta") : "Bert";
    PEFT_CHECK(head == TaskHead::Base || head == TaskHead::SeqCls || head == TaskHead::TokenCls,
               NotSupported, tag_, " task head ",
               head == TaskHead::CausalLM ? "CausalLM" : "Seq2SeqLM", " is not available for ", c_.model_type, " (",
               cls, "Model, ", cls, "ForSequenceClassification, ", cls, "ForTokenClassification are)");
    // The base model's modules sit at the top level; the task models keep them under the prefix.
    torch::nn::Module& base = head == TaskHead::Base ? static_cast<torch::nn::Module&>(*this)
                                                     : *register_module(prefix_, std::make_shared<torch::nn::Module>());
    embeddings = base.register_module("embeddings", BertEmbeddings(c_));
    encoder = base.register_module("encoder", BertEncoder(c_));
    // Token classification builds the base model with add_pooling_layer=False; so does RoBERTa's
    // sequence classification (its head reads the first token itself).
    if (head == TaskHead::Base || (head == TaskHead::SeqCls && !c_.roberta()))
      pooler = base.register_module("pooler", BertPooler(c_));
    if (head == TaskHead::SeqCls && c_.roberta())
      roberta_head = register_module("classifier", RobertaClassificationHead(c_));
    else if (head == TaskHead::SeqCls || head == TaskHead::TokenCls)
      classifier = register_module("classifier", AdaptableLinear(c_.hidden_size, c_.num_labels, true));
    // transformers' _init_weights: every Linear normal(0, initializer_range), bias zero.
    torch::NoGradGuard ng;
    for (auto& m : modules(/*include_self=*/false))
      if (auto* l = dynamic_cast<AdaptableLinearImpl*>(m.get())) l->weight.normal_(0.0, c_.initializer_range);
  }

  ModelOutput forward(const ModelInputs& in) override {
    const char* tag = c_.model_type.c_str();
    PEFT_CHECK(in.cache == nullptr, std::invalid_argument, tag_, " ", c_.model_type,
               " is an encoder: a KV cache is not supported (use prefix_kv for a key/value prefix)");
    const ForwardStart start = start_forward(in, tag, c_.hidden_size, c_.num_hidden_layers);
    const at::Tensor& x = start.hidden;
    const int64_t B = start.batch, T = start.length, P = start.prefix;

    at::Tensor pos = in.position_ids;
    if (pos.defined()) {
      check_shape(pos, {-1, T}, tag, "position_ids");
      PEFT_CHECK(pos.numel() == 0 || pos.max().item<int64_t>() < c_.max_position_embeddings, std::invalid_argument,
                 tag_, " position_ids go up to ", pos.max().item<int64_t>(),
                 "; max_position_embeddings is ", c_.max_position_embeddings);
    } else {
      PEFT_CHECK(c_.roberta() || T <= c_.max_position_embeddings, std::invalid_argument, tag_, " sequence length ", T,
                 " exceeds max_position_embeddings (", c_.max_position_embeddings, ")");
      if (!c_.roberta()) pos = default_position_ids(B, T, 0, x.device());
      // RoBERTa: after the prefix's P positions, as transformers numbers them with a cache of length P;
      // from inputs_embeds simply pad + 1, pad + 2, ... (padding is not visible there).
      else if (in.input_ids.defined()) pos = roberta_position_ids(in.input_ids, c_.pad_token_id, P);
      else pos = default_position_ids(B, T, c_.pad_token_id + 1, x.device());
      PEFT_CHECK(pos.numel() == 0 || pos.max().item<int64_t>() < c_.max_position_embeddings, std::invalid_argument,
                 tag_, " sequence length ", T, " (positions from pad_token_id + 1 = ", c_.pad_token_id + 1,
                 ", after a prefix of ", P, ") exceeds max_position_embeddings (", c_.max_position_embeddings, ")");
    }
    at::Tensor types = in.token_type_ids;
    if (types.defined()) {
      check_shape(types, {B, T}, tag, "token_type_ids");
      PEFT_CHECK(types.numel() == 0 || (types.min().item<int64_t>() >= 0 &&
                                        types.max().item<int64_t>() < c_.type_vocab_size),
                 std::invalid_argument, tag_, " token_type_ids must lie in [0, ", c_.type_vocab_size, "), got values in [",
                 types.min().item<int64_t>(), ", ", types.max().item<int64_t>(), "]");
    } else {
      types = at::zeros({B, T}, at::TensorOptions().dtype(at::kLong).device(x.device()));
    }

    at::Tensor h = embeddings->forward(x, types.to(x.device()), pos.to(x.device()));
    const at::Tensor bias = attention_bias(in.attention_mask, B, T, 0, P, /*causal=*/false, h.scalar_type(), h.device());
    h = encoder->forward(h, bias, in.prefix_kv, gradient_checkpointing());

    ModelOutput out;
    out.last_hidden_state = h;
    if (pooler) out.pooler_output = pooler->forward(h);
    if (roberta_head) {
      out.logits = roberta_head->forward(h);
      if (in.labels.defined()) out.loss = sequence_classification_loss(out.logits, in.labels, c_.problem_type);
    } else if (head_ == TaskHead::SeqCls) {
      out.logits = classifier->forward(models::dropout(out.pooler_output, c_.classifier_dropout, is_training()));
      if (in.labels.defined()) out.loss = sequence_classification_loss(out.logits, in.labels, c_.problem_type);
    } else if (head_ == TaskHead::TokenCls) {
      out.logits = classifier->forward(models::dropout(h, c_.classifier_dropout, is_training()));
      if (in.labels.defined()) out.loss = token_loss(out.logits, in.labels);
    }
    return out;
  }

  at::Tensor embed(const at::Tensor& ids) override { return embeddings->word_embeddings->forward(ids); }
  at::Tensor word_embeddings() override { return embeddings->word_embeddings->weight; }
  const ModelConfig& config() const override { return cfg_; }
  TaskHead head() const override { return head_; }
  int64_t num_layers() const override { return c_.num_hidden_layers; }
  int64_t num_kv_heads() const override { return c_.num_attention_heads; }
  int64_t head_dim() const override { return c_.hidden_size / c_.num_attention_heads; }
  std::string base_model_prefix() const override { return prefix_; }
  std::vector<std::string> ignored_checkpoint_keys() const override {
    // Non-persistent buffers that older checkpoints still carry.
    std::vector<std::string> r = {"(" + prefix_ + R"(\.)?embeddings\.(position_ids|token_type_ids))"};
    // Models built with add_pooling_layer=False; transformers drops the pooler of other checkpoints.
    if (!pooler) r.push_back("(" + prefix_ + R"(\.)?pooler\..*)");
    return r;
  }

  BertEmbeddings embeddings{nullptr};
  BertEncoder encoder{nullptr};
  BertPooler pooler{nullptr};
  AdaptableLinear classifier{nullptr};
  RobertaClassificationHead roberta_head{nullptr};  ///< "classifier" of RoBERTa's sequence classification

 private:
  ModelConfig cfg_;
  BertConfig c_;
  TaskHead head_;
  std::string tag_, prefix_;
};

}  // namespace

std::shared_ptr<PretrainedModel> make_bert(const ModelConfig& cfg, TaskHead head) {
  return std::make_shared<Bert>(cfg, head);
}

std::shared_ptr<PretrainedModel> make_roberta(const ModelConfig& cfg, TaskHead head) {
  return std::make_shared<Bert>(cfg, head);
}

}  // namespace peft::models
