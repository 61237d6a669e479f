// Mirrors peft/tuners/prompt_tuning/model.py (PromptEmbedding), peft/tuners/p_tuning/model.py
// (PromptEncoder), peft/tuners/prefix_tuning/model.py (PrefixEncoder) and the prefix layout of
// peft/peft_model.py (PeftModel.get_prompt).
#include "peft/tuners/prompt_learning/encoder.h"

#include <ATen/ATen.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/rnn.h>

#include "peft/core/check.h"
#include "peft/core/memory_bounds.h"
#include "peft/tuners/p_tuning/config.h"
#include "peft/tuners/prefix_tuning/config.h"
#include "peft/tuners/prompt_tuning/config.h"

namespace peft::prompt {

namespace {

torch::nn::Embedding make_table(int64_t n, int64_t d) {
  // torch.nn.Embedding's default init: N(0, 1).
  return torch::nn::Embedding(torch::nn::EmbeddingOptions(n, d));
}

// PromptEmbedding: the table is the prompt.
class PromptTuningEncoder : public PromptEncoder {
 public:
  PromptTuningEncoder(const PromptTuningConfig& c, const at::Tensor& words, const std::vector<int64_t>& init_ids,
                      const std::function<at::Tensor(const at::Tensor&)>& lookup) {
    const int64_t n = c.total_virtual_tokens();
    embedding = register_module("embedding", make_table(n, c.token_dim));
    if (c.inference_mode || c.prompt_tuning_init == "RANDOM") return;
    PEFT_CHECK(words.defined() && words.dim() == 2 && words.size(1) == c.token_dim, std::invalid_argument,
               "[PROMPT_TUNING] word embeddings must be [vocab, token_dim=", c.token_dim, "]");
    at::Tensor ids;
    if (c.prompt_tuning_init == "SAMPLE_VOCAB") {
      ids = at::randint(words.size(0), {n}, at::TensorOptions().dtype(at::kLong));
    } else {
      PEFT_CHECK(!init_ids.empty(), ConfigError, "[PROMPT_TUNING] prompt_tuning_init_text '",
                 c.prompt_tuning_init_text.value_or(""), "' tokenises to no tokens");
      for (int64_t id : init_ids)
        PEFT_CHECK(id >= 0 && id < words.size(0), ConfigError, "[PROMPT_TUNING] init text token id ", id,
                   " is outside the model's vocabulary (", words.size(0), "): wrong tokenizer_name_or_path?");
      ids = at::tensor(repeat_or_truncate(init_ids, n), at::TensorOptions().dtype(at::kLong));
    }
    torch::NoGradGuard ng;
    ids = ids.to(words.device());
    const at::Tensor rows = lookup ? lookup(ids) : words.index_select(0, ids);
    embedding->weight.copy_(rows.detach().to(at::kFloat));
  }
  at::Tensor forward() override { return embedding->weight; }
  bool table_only() const override { return true; }
  at::Tensor table() override { return embedding->weight; }

 private:
  torch::nn::Embedding embedding{nullptr};
};

// PromptEncoder (P-tuning): embedding -> MLP, or embedding -> biLSTM -> MLP.
class PTuningEncoder : public PromptEncoder {
 public:
  explicit PTuningEncoder(const PromptEncoderConfig& c) : lstm_(c.encoder_reparameterization_type == "LSTM") {
    const int64_t d = c.token_dim, h = c.encoder_hidden_size;
    embedding = register_module("embedding", make_table(c.total_virtual_tokens(), d));
    if (c.inference_mode) return;
    using torch::nn::Linear;
    using torch::nn::ReLU;
    if (lstm_) {
      lstm_head = register_module(
          "lstm_head", torch::nn::LSTM(torch::nn::LSTMOptions(d, h)
                                           .num_layers(c.encoder_num_layers)
                                           .dropout(c.encoder_dropout)
                                           .bidirectional(true)
                                           .batch_first(true)));
      mlp_head = register_module("mlp_head", torch::nn::Sequential(Linear(2 * h, 2 * h), ReLU(), Linear(2 * h, d)));
    } else {
      mlp_head = register_module("mlp_head",
                                 torch::nn::Sequential(Linear(d, h), ReLU(), Linear(h, h), ReLU(), Linear(h, d)));
    }
    has_net_ = true;
  }
  at::Tensor forward() override {
    if (!has_net_) return embedding->weight;
    at::Tensor x = embedding->weight.unsqueeze(0);  // one sample [1, T_v, d]
    if (lstm_) x = std::get<0>(lstm_head->forward(x));
    return mlp_head->forward(x).squeeze(0);
  }
  bool table_only() const override { return !has_net_; }
  at::Tensor table() override { return embedding->weight; }

 private:
  bool lstm_;
  bool has_net_ = false;
  torch::nn::Embedding embedding{nullptr};
  torch::nn::LSTM lstm_head{nullptr};
  torch::nn::Sequential mlp_head{nullptr};
};

// PrefixEncoder: the flattened key/value prefix, directly or through embedding -> MLP.
class PrefixEncoderImpl : public PromptEncoder {
 public:
  explicit PrefixEncoderImpl(const PrefixTuningConfig& c) {
    const int64_t d = c.token_dim, P = c.prefix_rows(), out = c.prefix_width();
    const bool zero = c.init_weights.value_or("") == "zero";
    torch::NoGradGuard ng;
    if (c.prefix_projection && !c.inference_mode) {
      embedding = register_module("embedding", make_table(P, d));
      transform = register_module("transform", torch::nn::Sequential(torch::nn::Linear(d, c.encoder_hidden_size),
                                                                      torch::nn::Tanh(),
                                                                      torch::nn::Linear(c.encoder_hidden_size, out)));
      if (zero)
        for (auto& p : transform[2]->parameters()) p.zero_();
      projection_ = true;
    } else {
      embedding = register_module("embedding", make_table(P, out));
      if (zero) embedding->weight.zero_();
    }
  }
  at::Tensor forward() override {
    return projection_ ? transform->forward(embedding->weight) : embedding->weight;
  }
  bool table_only() const override { return !projection_; }
  at::Tensor table() override { return embedding->weight; }

 private:
  bool projection_ = false;
  torch::nn::Embedding embedding{nullptr};
  torch::nn::Sequential transform{nullptr};
};

}  // namespace

std::vector<int64_t> repeat_or_truncate(const std::vector<int64_t>& ids, int64_t total) {
  std::vector<int64_t> out;
  if (ids.empty()) return out;
  while (static_cast<int64_t>(out.size()) < total) out.insert(out.end(), ids.begin(), ids.end());
  out.resize(total);
  return out;
}

std::shared_ptr<PromptEncoder> make_prompt_encoder(const PromptLearningConfig& cfg, const at::Tensor& words,
                                                   const std::vector<int64_t>& init_ids,
                                                   const std::function<at::Tensor(const at::Tensor&)>& lookup) {
  PEFT_CHECK(cfg.token_dim > 0 && cfg.num_layers > 0 && cfg.num_transformer_submodules > 0, std::invalid_argument,
             "[prompt encoder] token_dim, num_layers and num_transformer_submodules must be filled in first");
  {  // What the tables will take, before they are allocated (num_virtual_tokens, encoder_hidden_size).
    const double n = static_cast<double>(cfg.total_virtual_tokens()), d = static_cast<double>(cfg.token_dim),
                 L2 = 2.0 * static_cast<double>(cfg.num_layers);
    double params = n * d;
    std::string because = "num_virtual_tokens " + std::to_string(cfg.num_virtual_tokens) + " x token_dim " +
                          std::to_string(cfg.token_dim);
    if (auto* c = dynamic_cast<const PrefixTuningConfig*>(&cfg)) {
      const double h = static_cast<double>(c->encoder_hidden_size);
      params = c->prefix_projection ? n * d + d * h + h * L2 * d : n * L2 * d;
      because += " x 2·num_layers " + std::to_string(cfg.num_layers);
      if (c->prefix_projection) because += ", encoder_hidden_size " + std::to_string(c->encoder_hidden_size);
    } else if (auto* c = dynamic_cast<const PromptEncoderConfig*>(&cfg)) {
      const double h = static_cast<double>(c->encoder_hidden_size);
      params += 2.0 * d * h + h * h;
      because += ", encoder_hidden_size " + std::to_string(c->encoder_hidden_size);
    }
    check_fits_in_memory("[" + to_string(cfg.peft_type) + "] the prompt encoder", 4.0 * params, because);
  }
  if (auto* c = dynamic_cast<const PromptTuningConfig*>(&cfg)) return std::make_shared<PromptTuningEncoder>(*c, words, init_ids, lookup);
  if (auto* c = dynamic_cast<const PromptEncoderConfig*>(&cfg)) return std::make_shared<PTuningEncoder>(*c);
  if (auto* c = dynamic_cast<const PrefixTuningConfig*>(&cfg)) return std::make_shared<PrefixEncoderImpl>(*c);
  throw NotSupported("[prompt encoder] peft_type " + to_string(cfg.peft_type) + " is not a prompt-learning method");
}

std::vector<models::KeyValue> prefix_key_values(const at::Tensor& flat, int64_t L, int64_t H, int64_t d,
                                                int64_t S) {
  PEFT_CHECK(flat.dim() == 3 && flat.size(2) == 2 * L * d && d % H == 0, std::invalid_argument,
             "[prefix tuning] prefix must be [B, P, 2·num_layers·token_dim = ", 2 * L * d, "], got ", flat.sizes());
  const int64_t B = flat.size(0), P = flat.size(1);
  at::Tensor kv = flat.view({B, P, 2 * L, H, d / H});
  if (S == 2) kv = at::cat({kv, kv}, 2);
  kv = kv.permute({2, 0, 3, 1, 4});  // [2L·S, B, H, P, hd]
  const int64_t group = 2 * S;
  std::vector<models::KeyValue> out;
  for (int64_t l = 0; l < L; ++l) out.push_back({kv[group * l], kv[group * l + 1]});
  return out;
}

}  // namespace peft::prompt
