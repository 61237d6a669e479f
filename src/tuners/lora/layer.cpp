// Mirrors peft/tuners/lora/layer.py (LoraLayer.update_layer, reset_lora_parameters,
// Linear.forward/get_delta_weight, Embedding) and peft/tuners/lora/dora.py.
#include "../slot_dict.h"
#include "peft/tuners/lora/layer.h"

#include <ATen/ATen.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/linear.h>

#include <cmath>

#include "peft/core/check.h"

namespace peft::lora {

double LoraSettings::scaling() const { return lora_scaling(alpha, r, use_rslora); }

namespace {

using tuners::dict_of;
using tuners::erase_entry;
using tuners::find_tensor;

void init_pair(const at::Tensor& A, const at::Tensor& B, const LoraSettings& s, bool embedding) {
  torch::NoGradGuard ng;
  if (s.init == "false") {
    // PEFT leaves both at their module defaults (random): Kaiming-uniform for Linear.
    torch::nn::init::kaiming_uniform_(A, std::sqrt(5.0));
    torch::nn::init::kaiming_uniform_(B, std::sqrt(5.0));
    return;
  }
  if (embedding) {  // A = 0, B ~ N(0, 1)
    A.zero_();
    B.normal_(0.0, 1.0);
    return;
  }
  if (s.init == "gaussian") A.normal_(0.0, 1.0 / static_cast<double>(s.r));
  else torch::nn::init::kaiming_uniform_(A, std::sqrt(5.0));
  B.zero_();
}

class LoraLinear : public models::LinearAdapter {
 public:
  LoraLinear(models::AdaptableLinearImpl& slot, torch::nn::Linear A, torch::nn::Linear B, at::Tensor magnitude,
             LoraSettings s)
      : slot_(slot), A_(std::move(A)), B_(std::move(B)), magnitude_(std::move(magnitude)), s_(std::move(s)) {}

  at::Tensor delta(const at::Tensor& x_in, const at::Tensor& base_out) override {
    at::Tensor x = x_in.to(A_->weight.scalar_type());
    const bool drop = s_.dropout > 0 && slot_.is_training();
    if (drop) x = at::dropout(x, s_.dropout, true);
    if (!magnitude_.defined()) return B_->forward(A_->forward(x)) * s_.scaling();
    // DoRA: rescale by m / ||W + s·BA||_row (norm detached); with dropout the base term is
    // recomputed on the dropped input, as PEFT does.
    const at::Tensor W = slot_.weight_out_in().to(x.scalar_type());
    const at::Tensor lora_w = at::matmul(B_->weight, A_->weight);
    const at::Tensor norm = (W + s_.scaling() * lora_w.detach()).norm(2, {1}).detach();
    const at::Tensor scale = (magnitude_ / norm).view({1, -1});
    const at::Tensor base = drop ? at::linear(x, W) : base_out.to(x.scalar_type());
    at::Tensor lora = B_->forward(A_->forward(x));
    if (B_->bias.defined()) lora = lora - B_->bias;  // DoRA has no lora_bias
    return (scale - 1) * base + scale * lora * s_.scaling();
  }

  at::Tensor delta_weight() override {
    return at::matmul(B_->weight.to(at::kFloat), A_->weight.to(at::kFloat)) * s_.scaling();
  }
  at::Tensor delta_bias() override {
    return B_->bias.defined() ? B_->bias.to(at::kFloat) * s_.scaling() : at::Tensor();
  }
  at::Tensor merge_into(const at::Tensor& w) override {
    if (!magnitude_.defined()) return models::LinearAdapter::merge_into(w);
    const at::Tensor d = delta_weight();
    dora_factor_ = (magnitude_.to(at::kFloat) / (w + d).norm(2, {1})).detach();
    return dora_factor_.view({-1, 1}) * (w + d);
  }
  at::Tensor unmerge_from(const at::Tensor& w) override {
    if (!magnitude_.defined()) return models::LinearAdapter::unmerge_from(w);
    return w / dora_factor_.view({-1, 1}) - delta_weight();
  }
  bool low_rank_factors(at::Tensor& A, at::Tensor& B, double& scaling) override {
    if (magnitude_.defined() || B_->bias.defined() || (s_.dropout > 0 && slot_.is_training())) return false;
    A = A_->weight;
    B = B_->weight;
    scaling = s_.scaling();
    return true;
  }
  const LoraSettings& settings() const { return s_; }

 private:
  models::AdaptableLinearImpl& slot_;
  torch::nn::Linear A_, B_;
  at::Tensor magnitude_, dora_factor_;
  LoraSettings s_;
};

class LoraEmbedding : public models::EmbeddingAdapter {
 public:
  LoraEmbedding(models::AdaptableEmbeddingImpl& slot, at::Tensor A, at::Tensor B, LoraSettings s)
      : slot_(slot), A_(std::move(A)), B_(std::move(B)), s_(std::move(s)) {}
  at::Tensor delta(const at::Tensor& ids) override {
    // embedding(x, Aᵀ) @ Bᵀ · s; padding_idx is not applied to the LoRA lookup (PEFT's _embed
    // passes the base layer's padding_idx, so its row gets no gradient).
    const auto pad = slot_.padding_idx();
    at::Tensor after_a = at::embedding(A_.t(), ids, pad ? *pad : -1);
    return at::matmul(after_a, B_.t()) * s_.scaling();
  }
  at::Tensor delta_weight() override { return (at::matmul(B_, A_).t() * s_.scaling()).to(at::kFloat); }

 private:
  models::AdaptableEmbeddingImpl& slot_;
  at::Tensor A_, B_;
  LoraSettings s_;
};

}  // namespace

void add_lora(models::AdaptableLinearImpl& slot, const std::string& name, const LoraSettings& s) {
  PEFT_CHECK(s.r > 0, ConfigError, "[lora] `r` should be a positive integer value but the value passed is ", s.r);
  auto A = torch::nn::Linear(torch::nn::LinearOptions(slot.in_features(), s.r).bias(false));
  auto B = torch::nn::Linear(torch::nn::LinearOptions(s.r, slot.out_features()).bias(s.lora_bias));
  init_pair(A->weight, B->weight, s, false);
  if (B->bias.defined()) {
    torch::NoGradGuard ng;
    B->bias.zero_();
  }
  dict_of(slot, "lora_A")->register_module(name, A);
  dict_of(slot, "lora_B")->register_module(name, B);
  at::Tensor magnitude;
  if (s.use_dora) {
    // m starts as the row norms of W + s·BA (= ||W|| with B = 0).
    torch::NoGradGuard ng;
    const at::Tensor W = slot.weight_out_in().to(at::kFloat);
    const at::Tensor m = (W + s.scaling() * at::matmul(B->weight, A->weight)).norm(2, {1});
    auto holder = std::make_shared<torch::nn::Module>();
    magnitude = holder->register_parameter("weight", m.clone());
    dict_of(slot, "lora_magnitude_vector")->register_module(name, holder);
  }
  slot.adapters.add(name, std::make_shared<LoraLinear>(slot, A, B, magnitude, s));
}

void add_lora(models::AdaptableEmbeddingImpl& slot, const std::string& name, const LoraSettings& s) {
  PEFT_CHECK(s.r > 0, ConfigError, "[lora] `r` should be a positive integer value but the value passed is ", s.r);
  PEFT_CHECK(!s.use_dora, NotSupported, "[lora] DoRA on embedding layers is not supported");
  at::Tensor A = at::empty({s.r, slot.num_embeddings()});
  at::Tensor B = at::empty({slot.embedding_dim(), s.r});
  init_pair(A, B, s, true);
  A = dict_of(slot, "lora_embedding_A")->register_parameter(name, A);
  B = dict_of(slot, "lora_embedding_B")->register_parameter(name, B);
  slot.adapters.add(name, std::make_shared<LoraEmbedding>(slot, A, B, s));
}

void remove_lora(models::AdaptableLinearImpl& slot, const std::string& name) {
  slot.adapters.remove(name);
  for (const char* d : {"lora_A", "lora_B", "lora_magnitude_vector"}) erase_entry(slot, d, name);
}

void remove_lora(models::AdaptableEmbeddingImpl& slot, const std::string& name) {
  slot.adapters.remove(name);
  for (const char* d : {"lora_embedding_A", "lora_embedding_B"}) erase_entry(slot, d, name);
}

LoraTensors lora_tensors(models::AdaptableLinearImpl& slot, const std::string& name) {
  LoraTensors t;
  t.A = find_tensor(slot, "lora_A." + name + ".weight");
  t.B = find_tensor(slot, "lora_B." + name + ".weight");
  t.B_bias = find_tensor(slot, "lora_B." + name + ".bias");
  t.magnitude = find_tensor(slot, "lora_magnitude_vector." + name + ".weight");
  if (auto a = std::dynamic_pointer_cast<LoraLinear>(slot.adapters.get(name))) t.settings = a->settings();
  return t;
}

LoraTensors lora_tensors(models::AdaptableEmbeddingImpl& slot, const std::string& name) {
  LoraTensors t;
  t.A = find_tensor(slot, "lora_embedding_A." + name);
  t.B = find_tensor(slot, "lora_embedding_B." + name);
  return t;
}

}  // namespace peft::lora
