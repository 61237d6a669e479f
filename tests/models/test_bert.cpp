// BERT against transformers (tests/fixtures/models/bert_*; tools/reference/gen_models_bert.py).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "golden.h"
#include "peft/core/error.h"
#include "peft/io/tensor_bridge.h"
#include "peft/models/model.h"

namespace {

namespace fs = std::filesystem;
using peft::models::ModelInputs;
using peft::models::TaskHead;

/// close() that also records the measured max |diff| as a test property (--gtest_output=xml).
::testing::AssertionResult close(const at::Tensor& a, const at::Tensor& e, double atol) {
  auto r = peft::test::close(a, e, atol);
  static int n = 0;
  ::testing::Test::RecordProperty("diff" + std::to_string(n++), r.message());
  return r;
}

ModelInputs pair_inputs(const peft::test::GoldenCase& c) {
  ModelInputs in;
  in.input_ids = c["input_ids"];
  in.token_type_ids = c["token_type_ids"];
  in.attention_mask = c["attention_mask"];
  return in;
}

std::shared_ptr<peft::models::PretrainedModel> load_as(const std::string& dir, TaskHead head) {
  peft::models::LoadOptions o;
  o.head = head;
  return peft::models::load_model(dir, o);
}

void expect_grads(peft::models::PretrainedModel& m, const peft::test::GoldenCase& c, const std::string& what) {
  int n = 0;
  double worst = 0;  // max |g - e| / max |e| over the tensors
  for (const auto& p : m.named_parameters()) {
    ASSERT_TRUE(c.has("grad." + p.key())) << what << " " << p.key();
    const at::Tensor& e = c["grad." + p.key()];
    EXPECT_TRUE(peft::test::grad_close(p.value().grad(), e, c.grad_rtol)) << what << " " << p.key();
    ++n;
    if (!p.value().grad().defined()) continue;
    const double diff = (p.value().grad() - e).abs().max().item<double>(), emax = e.abs().max().item<double>();
    // attention.self.key.bias: softmax is shift invariant, so its gradient is exactly zero and
    // both sides hold rounding noise (~1e-8); check it absolutely.
    if (emax < 1e-6) EXPECT_LT(diff, 1e-6) << what << " " << p.key();
    else worst = std::max(worst, diff / std::max(emax, 1e-3));
  }
  EXPECT_LE(worst, c.grad_rtol) << what;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", worst);
  ::testing::Test::RecordProperty("grad_max_rel_" + what, buf);
  int expected = 0;
  for (const auto& kv : c.t) expected += kv.first.rfind("grad.", 0) == 0;
  EXPECT_EQ(n, expected) << what;
}

TEST(Bert, BaseHiddenPoolerAndGradients) {
  const auto c = peft::test::load_case("models/bert_base");
  auto m = peft::models::load_model(c.dir);
  EXPECT_EQ(m->head(), TaskHead::Base);
  EXPECT_EQ(m->base_model_prefix(), "bert");
  auto out = m->forward(pair_inputs(c));
  EXPECT_TRUE(close(out.last_hidden_state, c["last_hidden_state"], c.atol));
  EXPECT_TRUE(close(out.pooler_output, c["pooler_output"], c.atol));
  at::Tensor loss = (out.last_hidden_state * c["loss_weight_hidden"]).sum() +
                    (out.pooler_output * c["loss_weight_pooler"]).sum();
  EXPECT_TRUE(close(loss.reshape({1}), c["loss"], 1e-4));  // a sum of 600 terms of O(1)
  loss.backward();
  expect_grads(*m, c, "bert_base");
  // 5 embedding tensors + 16 per layer + pooler.
  EXPECT_EQ(m->named_parameters().size(), 5u + 16u * 2u + 2u);
}

TEST(Bert, InputsEmbedsAndKeyValuePrefix) {
  const auto c = peft::test::load_case("models/bert_base");
  auto m = peft::models::load_model(c.dir);
  torch::NoGradGuard ng;
  ModelInputs e;
  e.inputs_embeds = c["inputs_embeds"];
  e.attention_mask = c["attention_mask"];  // token_type_ids default to zeros
  auto oe = m->forward(e);
  EXPECT_TRUE(close(oe.last_hidden_state, c["last_hidden_state_embeds"], c.atol));
  EXPECT_TRUE(close(oe.pooler_output, c["pooler_output_embeds"], c.atol));

  ModelInputs p = pair_inputs(c);  // mask covers T only: extended by P inside
  p.position_ids = c["prefix_position_ids"];
  for (int i = 0; i < 2; ++i)
    p.prefix_kv.push_back({c["prefix_key." + std::to_string(i)], c["prefix_value." + std::to_string(i)]});
  auto op = m->forward(p);
  EXPECT_TRUE(close(op.last_hidden_state, c["last_hidden_state_prefix"], c.atol));
  EXPECT_TRUE(close(op.pooler_output, c["pooler_output_prefix"], c.atol));
  // The same with a mask that already covers the prefix.
  p.attention_mask = torch::cat({torch::ones({2, 3}, c["attention_mask"].options()), c["attention_mask"]}, 1);
  EXPECT_TRUE(close(m->forward(p).last_hidden_state, c["last_hidden_state_prefix"], c.atol));
}

TEST(Bert, SequenceClassificationAndRegression) {
  for (const char* name : {"models/bert_seqcls", "models/bert_seqcls_regression"}) {
    const auto c = peft::test::load_case(name);
    auto m = peft::models::load_model(c.dir);
    EXPECT_EQ(m->head(), TaskHead::SeqCls);
    ModelInputs in = pair_inputs(c);
    in.labels = c["labels"];
    auto out = m->forward(in);
    EXPECT_TRUE(close(out.logits, c["logits"], c.atol)) << name;
    EXPECT_TRUE(close(out.loss.reshape({1}), c["loss"], c.atol)) << name;
    EXPECT_TRUE(close(out.last_hidden_state, c["last_hidden_state"], c.atol)) << name;
    EXPECT_TRUE(close(out.pooler_output, c["pooler_output"], c.atol)) << name;
    out.loss.backward();
    expect_grads(*m, c, name);
  }
}

TEST(Bert, TokenClassificationIgnoresMinus100) {
  const auto c = peft::test::load_case("models/bert_tokcls");
  auto m = peft::models::load_model(c.dir);
  EXPECT_EQ(m->head(), TaskHead::TokenCls);
  ModelInputs in = pair_inputs(c);
  in.labels = c["labels"];
  auto out = m->forward(in);
  EXPECT_FALSE(out.pooler_output.defined());  // BertModel(add_pooling_layer=False)
  EXPECT_TRUE(close(out.logits, c["logits"], c.atol));
  EXPECT_TRUE(close(out.loss.reshape({1}), c["loss"], c.atol));
  out.loss.backward();
  expect_grads(*m, c, "bert_tokcls");
}

TEST(Bert, BaseModelFromSequenceClassificationCheckpoint) {
  // "bert." prefix stripped; the classifier is a head tensor of another task: only reported.
  const auto c = peft::test::load_case("models/bert_seqcls");
  testing::internal::CaptureStderr();
  auto m = load_as(c.dir, TaskHead::Base);
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("classifier."), std::string::npos) << err;
  torch::NoGradGuard ng;
  auto out = m->forward(pair_inputs(c));
  EXPECT_FALSE(out.logits.defined());
  EXPECT_TRUE(close(out.last_hidden_state, c["last_hidden_state"], c.atol));
  EXPECT_TRUE(close(out.pooler_output, c["pooler_output"], c.atol));
}

TEST(Bert, SequenceClassificationFromBaseCheckpointInitialisesClassifier) {
  const auto c = peft::test::load_case("models/bert_base");
  testing::internal::CaptureStderr();
  auto m = load_as(c.dir, TaskHead::SeqCls);
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("newly initialised"), std::string::npos) << err;
  EXPECT_NE(err.find("classifier.weight"), std::string::npos) << err;
  EXPECT_NE(err.find("classifier.bias"), std::string::npos) << err;
  torch::NoGradGuard ng;
  auto out = m->forward(pair_inputs(c));
  EXPECT_EQ(out.logits.sizes(), (std::vector<int64_t>{2, 2}));  // num_labels defaults to 2
  EXPECT_TRUE(close(out.last_hidden_state, c["last_hidden_state"], c.atol));
  EXPECT_TRUE(close(out.pooler_output, c["pooler_output"], c.atol));
}

TEST(Bert, PretrainingCheckpointReportsClsHeadAndIgnoresPositionIds) {
  const auto c = peft::test::load_case("models/bert_pretraining");
  for (TaskHead head : {TaskHead::Base, TaskHead::SeqCls, TaskHead::TokenCls}) {
    testing::internal::CaptureStderr();
    auto m = load_as(c.dir, head);
    const std::string err = testing::internal::GetCapturedStderr();
    EXPECT_NE(err.find("not used by this task head (e.g. cls."), std::string::npos) << err;
    EXPECT_EQ(err.find("position_ids"), std::string::npos) << err;
    for (const auto& p : m->named_parameters()) EXPECT_EQ(p.key().find("cls."), std::string::npos) << p.key();
    torch::NoGradGuard ng;
    auto out = m->forward(pair_inputs(c));
    EXPECT_TRUE(close(out.last_hidden_state, c["last_hidden_state"], c.atol));
    if (head != TaskHead::TokenCls) EXPECT_TRUE(close(out.pooler_output, c["pooler_output"], c.atol));
  }
}

TEST(Bert, Bf16WithinBf16ToleranceOfFp32) {
  const auto c = peft::test::load_case("models/bert_seqcls");
  peft::models::LoadOptions o;
  o.dtype = "bfloat16";
  auto m = peft::models::load_model(c.dir, o);
  torch::NoGradGuard ng;
  auto out = m->forward(pair_inputs(c));
  EXPECT_EQ(out.logits.scalar_type(), at::kBFloat16);
  EXPECT_EQ(out.last_hidden_state.scalar_type(), at::kBFloat16);
  // LayerNorm keeps hidden states O(1): bf16 has 8 significant bits.
  EXPECT_TRUE(close(out.last_hidden_state.to(at::kFloat), c["last_hidden_state"], 0.05 * c["last_hidden_state"].abs().max().item<double>()));
  EXPECT_TRUE(close(out.logits.to(at::kFloat), c["logits"], 0.05 * c["logits"].abs().max().item<double>()));
}

// ---- bad input ---------------------------------------------------------------------------------

nlohmann::json fixture_config(const std::string& rel) {
  std::ifstream f(peft::test::fixture(rel) + "/config.json");
  return nlohmann::json::parse(f);
}

/// A copy of a fixture model folder with its weights rewritten by `edit`.
std::string edited_copy(const std::string& rel, const std::string& name,
                        const std::function<void(std::map<std::string, at::Tensor>&)>& edit) {
  const std::string src = peft::test::fixture(rel), dir = peft::test::tmp_dir(name);
  fs::copy_file(src + "/config.json", dir + "/config.json");
  auto w = peft::io::load_safetensors(src + "/model.safetensors");
  edit(w);
  peft::io::save_safetensors(dir + "/model.safetensors", w);
  return dir;
}

TEST(Bert, RelativePositionEmbeddingsAreNotSupported) {
  auto j = fixture_config("models/bert_base");
  j["position_embedding_type"] = "relative_key";
  peft::test::expect_throw_with<peft::NotSupported>(
      [&] { peft::models::create_model(peft::models::ModelConfig(j), TaskHead::Base); },
      {"[bert]", "position_embedding_type", "relative_key"});
}

TEST(Bert, HiddenSizeNotDivisibleByHeadsIsAConfigError) {
  auto j = fixture_config("models/bert_base");
  j["num_attention_heads"] = 5;
  peft::test::expect_throw_with<peft::ConfigError>(
      [&] { peft::models::create_model(peft::models::ModelConfig(j), TaskHead::Base); },
      {"[bert]", "hidden_size (32)", "num_attention_heads (5)"});
}

TEST(Bert, MisShapedTensorNamesTensorAndBothShapes) {
  const std::string dir = edited_copy("models/bert_base", "bert_misshaped", [](auto& w) {
    w["encoder.layer.1.attention.self.key.weight"] = torch::zeros({32, 31});
  });
  peft::test::expect_throw_with<peft::FormatError>(
      [&] { peft::models::load_model(dir); },
      {"encoder.layer.1.attention.self.key.weight", "[32, 31]", "[32, 32]"});
}

TEST(Bert, ExtraLayerKeyIsAFormatError) {
  const std::string dir = edited_copy("models/bert_seqcls", "bert_extra_layer", [](auto& w) {
    w["bert.encoder.layer.5.output.dense.weight"] = torch::zeros({32, 37});
  });
  peft::test::expect_throw_with<peft::FormatError>([&] { peft::models::load_model(dir); },
                                                   {"bert.encoder.layer.5.output.dense.weight"});
  // The same key seen from BertModel (prefix stripped on lookup, reported as in the checkpoint).
  peft::test::expect_throw_with<peft::FormatError>([&] { load_as(dir, TaskHead::Base); },
                                                   {"bert.encoder.layer.5.output.dense.weight"});
}

TEST(Bert, BadForwardArguments) {
  const auto c = peft::test::load_case("models/bert_base");
  auto m = peft::models::load_model(c.dir);
  torch::NoGradGuard ng;
  ModelInputs none;
  peft::test::expect_throw_with<std::invalid_argument>([&] { m->forward(none); }, {"[bert]", "input_ids"});
  ModelInputs e;
  e.inputs_embeds = torch::zeros({2, 4, 31});
  peft::test::expect_throw_with<std::invalid_argument>([&] { m->forward(e); }, {"[bert]", "inputs_embeds", "31"});
  ModelInputs longer;
  longer.input_ids = torch::ones({1, 33}, torch::kLong);
  peft::test::expect_throw_with<std::invalid_argument>([&] { m->forward(longer); }, {"[bert]", "33", "max_position_embeddings"});
  ModelInputs types = pair_inputs(c);
  types.token_type_ids = types.token_type_ids * 2;
  peft::test::expect_throw_with<std::invalid_argument>([&] { m->forward(types); }, {"[bert]", "token_type_ids"});
}

TEST(Bert, CausalHeadIsNotSupported) {
  auto j = fixture_config("models/bert_base");
  peft::test::expect_throw_with<peft::NotSupported>(
      [&] { peft::models::create_model(peft::models::ModelConfig(j), TaskHead::CausalLM); }, {"[bert]", "CausalLM"});
}

}  // namespace
