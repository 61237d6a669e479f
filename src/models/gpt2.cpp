// Mirrors transformers/models/gpt2/modeling_gpt2.py (GPT2Attention, GPT2MLP, GPT2Block, GPT2Model,
// GPT2LMHeadModel, GPT2ForSequenceClassification, GPT2ForTokenClassification) with the default
// (SDPA-equivalent) attention. Conv1D weights are stored [in, out]: AdaptableLinear's
// fan_in_fan_out flag is the one place that layout is handled.
#include "peft/models/gpt2.h"

#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "causal_lm_head.h"
#include "peft/core/check.h"
#include "peft/models/adaptable_linear.h"
#include "peft/models/architectures.h"
#include "peft/models/blocks.h"

namespace peft::models {

namespace {

// GPT2Config.attribute_map: the canonical n_* key, or its alias when only that one is present.
std::string field(const ModelConfig& cfg, const char* key, const char* alias) {
  return !cfg.has(key) && cfg.has(alias) ? alias : key;
}

}  // namespace

GPT2Config GPT2Config::from(const ModelConfig& cfg) {
  GPT2Config c;
  const std::string embd = field(cfg, "n_embd", "hidden_size"), head = field(cfg, "n_head", "num_attention_heads");
  c.vocab_size = cfg.get_positive("vocab_size", c.vocab_size);
  c.n_positions = cfg.get_positive(field(cfg, "n_positions", "max_position_embeddings"), c.n_positions);
  c.n_embd = cfg.get_positive(embd, c.n_embd);
  c.n_layer = cfg.get_positive(field(cfg, "n_layer", "num_hidden_layers"), c.n_layer);
  c.n_head = cfg.get_positive(head, c.n_head);
  PEFT_CHECK(c.n_embd % c.n_head == 0, ConfigError, "[gpt2] ", cfg.source(), ": ", embd, " (", c.n_embd,
             ") must be divisible by ", head, " (", c.n_head, ")");
  c.n_inner = cfg.get_positive("n_inner", 4 * c.n_embd);
  c.activation_function = cfg.get_string("activation_function", c.activation_function);
  check_activation(c.activation_function, cfg.source());
  c.layer_norm_epsilon = cfg.get_double("layer_norm_epsilon", c.layer_norm_epsilon);
  c.resid_pdrop = cfg.get_double("resid_pdrop", c.resid_pdrop);
  c.embd_pdrop = cfg.get_double("embd_pdrop", c.embd_pdrop);
  c.attn_pdrop = cfg.get_double("attn_pdrop", c.attn_pdrop);
  c.summary_first_dropout = cfg.get_double("summary_first_dropout", c.summary_first_dropout);
  c.classifier_dropout = cfg.get_double("classifier_dropout", cfg.get_double("hidden_dropout", 0.1));
  for (const auto& [name, v] : {std::pair<const char*, double>{"resid_pdrop", c.resid_pdrop},
                                 {"embd_pdrop", c.embd_pdrop}, {"attn_pdrop", c.attn_pdrop},
                                 {"classifier_dropout", c.classifier_dropout}})
    PEFT_CHECK(v >= 0.0 && v < 1.0, ConfigError, "[gpt2] ", cfg.source(), ": ", name, " must be in [0, 1), got ", v);
  c.scale_attn_weights = cfg.get_bool("scale_attn_weights", true);
  c.scale_attn_by_inverse_layer_idx = cfg.get_bool("scale_attn_by_inverse_layer_idx", false);
  c.reorder_and_upcast_attn = cfg.get_bool("reorder_and_upcast_attn", false);
  c.tie_word_embeddings = cfg.get_bool("tie_word_embeddings", true);
  PEFT_CHECK(!cfg.get_bool("add_cross_attention", false), NotSupported, "[gpt2] ", cfg.source(),
             ": add_cross_attention = true (GPT-2 as a decoder with cross-attention) is not supported");
  c.problem_type = cfg.get_string("problem_type", "");
  c.pad_token_id = cfg.get_int("pad_token_id", -1);
  if (cfg.has("id2label")) c.num_labels = static_cast<int64_t>(cfg.json()["id2label"].size());
  c.num_labels = cfg.get_positive("num_labels", c.num_labels);
  return c;
}

namespace {

class LayerNormImpl : public torch::nn::Module {
 public:
  LayerNormImpl(int64_t n, double eps) : n_(n), eps_(eps) {
    weight = register_parameter("weight", at::ones({n}));
    bias = register_parameter("bias", at::zeros({n}));
  }
  at::Tensor forward(const at::Tensor& x) { return at::layer_norm(x, {n_}, weight, bias, eps_); }
  at::Tensor weight, bias;

 private:
  int64_t n_;
  double eps_;
};
TORCH_MODULE(LayerNorm);

class GPT2AttentionImpl : public torch::nn::Module {
 public:
  GPT2AttentionImpl(const GPT2Config& c, int64_t layer_idx) : c_(c) {
    c_attn = register_module("c_attn", AdaptableLinear(c.n_embd, 3 * c.n_embd, true, /*fan_in_fan_out=*/true));
    c_proj = register_module("c_proj", AdaptableLinear(c.n_embd, c.n_embd, true, /*fan_in_fan_out=*/true));
    scaling_ = c.scale_attn_weights ? 1.0 / std::sqrt(static_cast<double>(c.head_dim())) : 1.0;
    if (c.scale_attn_by_inverse_layer_idx) scaling_ /= static_cast<double>(layer_idx + 1);
  }
  at::Tensor forward(const at::Tensor& x, const at::Tensor& bias, const KeyValue* prefix, KVCache* cache,
                     std::size_t layer) {
    const int64_t B = x.size(0), T = x.size(1), D = c_.head_dim();
    const auto qkv = c_attn->forward(x).split(c_.n_embd, -1);
    auto heads = [&](const at::Tensor& t) { return t.view({B, T, -1, D}).transpose(1, 2); };
    const KeyValue kv = extend_kv(prefix, cache, layer, heads(qkv[1]), heads(qkv[2]));
    // reorder_and_upcast_attn only changes eager attention's rounding; attend() already takes
    // the softmax in fp32.
    at::Tensor o = attend(heads(qkv[0]), kv.key, kv.value, bias, scaling_, c_.attn_pdrop, is_training());
    o = c_proj->forward(o.transpose(1, 2).reshape({B, T, c_.n_embd}));
    return models::dropout(o, c_.resid_pdrop, is_training());
  }
  AdaptableLinear c_attn{nullptr}, c_proj{nullptr};

 private:
  GPT2Config c_;
  double scaling_;
};
TORCH_MODULE(GPT2Attention);

class GPT2MLPImpl : public torch::nn::Module {
 public:
  explicit GPT2MLPImpl(const GPT2Config& c) : act_(c.activation_function), pdrop_(c.resid_pdrop) {
    c_fc = register_module("c_fc", AdaptableLinear(c.n_embd, c.n_inner, true, /*fan_in_fan_out=*/true));
    c_proj = register_module("c_proj", AdaptableLinear(c.n_inner, c.n_embd, true, /*fan_in_fan_out=*/true));
  }
  at::Tensor forward(const at::Tensor& x) {
    return models::dropout(c_proj->forward(activation(act_, c_fc->forward(x))), pdrop_, is_training());
  }
  AdaptableLinear c_fc{nullptr}, c_proj{nullptr};

 private:
  std::string act_;
  double pdrop_;
};
TORCH_MODULE(GPT2MLP);

class GPT2BlockImpl : public torch::nn::Module {
 public:
  GPT2BlockImpl(const GPT2Config& c, int64_t layer_idx) {
    ln_1 = register_module("ln_1", LayerNorm(c.n_embd, c.layer_norm_epsilon));
    attn = register_module("attn", GPT2Attention(c, layer_idx));
    ln_2 = register_module("ln_2", LayerNorm(c.n_embd, c.layer_norm_epsilon));
    mlp = register_module("mlp", GPT2MLP(c));
  }
  at::Tensor forward(const at::Tensor& x, const at::Tensor& bias, const KeyValue* prefix, KVCache* cache,
                     std::size_t layer) {
    at::Tensor h = x + attn->forward(ln_1->forward(x), bias, prefix, cache, layer);
    return h + mlp->forward(ln_2->forward(h));
  }
  LayerNorm ln_1{nullptr}, ln_2{nullptr};
  GPT2Attention attn{nullptr};
  GPT2MLP mlp{nullptr};
};
TORCH_MODULE(GPT2Block);

class GPT2 : public PretrainedModel {
 public:
  GPT2(const ModelConfig& cfg, TaskHead head) : cfg_(cfg), c_(GPT2Config::from(cfg)), head_(head) {
    PEFT_CHECK(head != TaskHead::Seq2SeqLM, NotSupported,
               "[gpt2] GPT-2 is decoder-only; a seq2seq head is not available");
    // The base model's modules sit at the top level for GPT2Model and under "transformer." otherwise.
    torch::nn::Module& base = head == TaskHead::Base
                                  ? static_cast<torch::nn::Module&>(*this)
                                  : *register_module("transformer", std::make_shared<torch::nn::Module>());
    wte = base.register_module("wte", torch::nn::Embedding(c_.vocab_size, c_.n_embd));
    wpe = base.register_module("wpe", torch::nn::Embedding(c_.n_positions, c_.n_embd));
    h = base.register_module("h", torch::nn::ModuleList());
    for (int64_t i = 0; i < c_.n_layer; ++i) {
      blocks.push_back(GPT2Block(c_, i));
      h->push_back(blocks.back());
    }
    ln_f = base.register_module("ln_f", LayerNorm(c_.n_embd, c_.layer_norm_epsilon));
    if (head == TaskHead::CausalLM && !c_.tie_word_embeddings)
      lm_head = register_module("lm_head", AdaptableLinear(c_.n_embd, c_.vocab_size, false));
    if (head == TaskHead::SeqCls) score = register_module("score", AdaptableLinear(c_.n_embd, c_.num_labels, false));
    if (head == TaskHead::TokenCls)
      classifier = register_module("classifier", AdaptableLinear(c_.n_embd, c_.num_labels, true));
    // GPT2PreTrainedModel._init_weights: N(0, 0.02), residual projections scaled by 1/sqrt(2 n_layer).
    torch::NoGradGuard ng;
    wte->weight.normal_(0.0, 0.02);
    wpe->weight.normal_(0.0, 0.02);
    const double proj_std = 0.02 / std::sqrt(2.0 * static_cast<double>(c_.n_layer));
    for (auto& b : blocks) {
      b->attn->c_proj->weight.normal_(0.0, proj_std);
      b->mlp->c_proj->weight.normal_(0.0, proj_std);
    }
  }

  ModelOutput forward(const ModelInputs& in) override {
    const ForwardStart start = start_forward(in, "gpt2", c_.n_embd, c_.n_layer);
    at::Tensor x = start.hidden;
    const int64_t B = start.batch, T = start.length, past = start.past, P = start.prefix;
    const at::Tensor pos = in.position_ids.defined() ? in.position_ids.to(x.device())
                                                     : default_position_ids(B, T, past, x.device());
    const int64_t max_pos = pos.numel() ? pos.max().item<int64_t>() : 0;
    PEFT_CHECK(max_pos < c_.n_positions, std::invalid_argument, "[gpt2] position ", max_pos,
               " is beyond the model's n_positions (", c_.n_positions, ")");
    x = x + wpe->forward(pos).to(x.scalar_type());
    if (in.token_type_ids.defined()) x = x + embed(in.token_type_ids);
    x = models::dropout(x, c_.embd_pdrop, is_training());
    const at::Tensor bias = attention_bias(in.attention_mask, B, T, past, P, /*causal=*/true, x.scalar_type(), x.device());
    for (std::size_t i = 0; i < blocks.size(); ++i) {
      if (!gradient_checkpointing() || in.cache) {
        x = blocks[i]->forward(x, bias, P ? &in.prefix_kv[i] : nullptr, in.cache, i);
        continue;
      }
      const KeyValue prefix = P ? in.prefix_kv[i] : KeyValue{};
      auto block = blocks[i];
      x = checkpoint([block, bias, prefix, i, P](const at::Tensor& h) mutable {
        return block->forward(h, bias, P ? &prefix : nullptr, nullptr, i);
      }, x, true);
    }
    x = ln_f->forward(x);

    ModelOutput out;
    out.last_hidden_state = x;
    if (head_ == TaskHead::CausalLM) {
      causal_lm_output(out, x, in, lm_head, wte->weight, true, [&](const at::Tensor& y) {
        return lm_head ? lm_head->forward(y) : tied_lm_head(y);
      });
    } else if (head_ == TaskHead::TokenCls) {
      out.logits = classifier->forward(models::dropout(x, c_.classifier_dropout, is_training()));
      if (in.labels.defined()) out.loss = token_loss(out.logits, in.labels);
    } else if (head_ == TaskHead::SeqCls) {
      PEFT_CHECK(c_.pad_token_id >= 0 || B == 1, std::invalid_argument,
                 "[gpt2] cannot pool a batch of ", B, " sequences without pad_token_id in config.json");
      const at::Tensor all = score->forward(x);
      // The rightmost non-pad token; the last position for inputs_embeds (padding is not visible).
      const at::Tensor idx = in.input_ids.defined() && c_.pad_token_id >= 0
                                 ? last_token_index(in.input_ids, in.attention_mask, c_.pad_token_id)
                                 : at::full({B}, T - 1, at::TensorOptions().dtype(at::kLong).device(x.device()));
      out.logits = all.index({at::arange(B, idx.options()), idx.to(x.device())});
      if (in.labels.defined()) out.loss = sequence_classification_loss(out.logits, in.labels, c_.problem_type);
    }
    return out;
  }

  // logits = x·wteᵀ; a single row (decoding) uses gemv, which OpenBLAS runs ~2x faster than
  // an M = 1 sgemm over the [vocab, n_embd] table.
  at::Tensor tied_lm_head(const at::Tensor& x) {
    if (x.numel() != c_.n_embd || x.scalar_type() != at::kFloat || !x.device().is_cpu())
      return models::linear(x, tied_cast_.get(wte->weight));
    return at::mv(wte->weight, x.reshape({c_.n_embd})).view({1, 1, c_.vocab_size});
  }

  at::Tensor embed(const at::Tensor& ids) override { return wte->forward(ids); }
  at::Tensor word_embeddings() override { return wte->weight; }
  const ModelConfig& config() const override { return cfg_; }
  TaskHead head() const override { return head_; }
  int64_t num_layers() const override { return c_.n_layer; }
  int64_t num_kv_heads() const override { return c_.n_head; }
  int64_t head_dim() const override { return c_.head_dim(); }
  std::string base_model_prefix() const override { return "transformer"; }
  std::vector<std::pair<std::string, std::string>> tied_weights() const override {
    if (head_ == TaskHead::CausalLM && c_.tie_word_embeddings) return {{"lm_head.weight", "transformer.wte.weight"}};
    return {};
  }
  std::vector<std::string> ignored_checkpoint_keys() const override {
    // The causal-mask buffers older checkpoints carry (GPT2PreTrainedModel._keys_to_ignore_on_load_unexpected).
    std::vector<std::string> r = {R"((.*\.)?h\.\d+\.(attn|crossattention)\.(bias|masked_bias))"};
    if (c_.tie_word_embeddings || head_ != TaskHead::CausalLM) r.push_back(R"(lm_head\.weight)");
    return r;
  }

  torch::nn::Embedding wte{nullptr}, wpe{nullptr};
  torch::nn::ModuleList h{nullptr};
  std::vector<GPT2Block> blocks;
  LayerNorm ln_f{nullptr};
  AdaptableLinear lm_head{nullptr}, score{nullptr}, classifier{nullptr};
  AutocastWeightCache tied_cast_;  // the tied output weight under autocast

 private:
  ModelConfig cfg_;
  GPT2Config c_;
  TaskHead head_;
};

}  // namespace

std::shared_ptr<PretrainedModel> make_gpt2(const ModelConfig& cfg, TaskHead head) {
  return std::make_shared<GPT2>(cfg, head);
}

}  // namespace peft::models
