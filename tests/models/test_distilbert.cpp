// DistilBERT against transformers (tests/fixtures/models/distilbert_*;
// tools/reference/gen_models_distilbert.py).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "encoder_checks.h"
#include "golden.h"
#include "peft/core/error.h"
#include "peft/models/model.h"
#include "test_utils.h"

namespace {

using peft::models::ModelInputs;
using peft::models::TaskHead;
using peft::test::close_recorded;

ModelInputs ids_inputs(const peft::test::GoldenCase& c) {
  ModelInputs in;
  in.input_ids = c["input_ids"];
  in.attention_mask = c["attention_mask"];
  return in;
}

nlohmann::json fixture_config(const std::string& rel) {
  std::ifstream f(peft::test::fixture(rel) + "/config.json");
  return nlohmann::json::parse(f);
}

TEST(DistilBert, BaseHiddenAndGradients) {
  const auto c = peft::test::load_case("models/distilbert_base");
  auto m = peft::models::load_model(c.dir);
  EXPECT_EQ(m->head(), TaskHead::Base);
  EXPECT_EQ(m->base_model_prefix(), "distilbert");
  auto out = m->forward(ids_inputs(c));
  EXPECT_FALSE(out.pooler_output.defined());
  EXPECT_TRUE(close_recorded(out.last_hidden_state, c["last_hidden_state"], c.atol));
  at::Tensor loss = (out.last_hidden_state * c["loss_weight_hidden"]).sum();
  EXPECT_TRUE(close_recorded(loss.reshape({1}), c["loss"], 1e-4));
  loss.backward();
  peft::test::expect_encoder_grads(*m, c, "distilbert_base");
  // 4 embedding tensors (word, position, LayerNorm) + 16 per layer.
  EXPECT_EQ(m->named_parameters().size(), 4u + 16u * 2u);
}

TEST(DistilBert, InputsEmbedsAndKeyValuePrefix) {
  const auto c = peft::test::load_case("models/distilbert_base");
  auto m = peft::models::load_model(c.dir);
  torch::NoGradGuard ng;
  ModelInputs e;
  e.inputs_embeds = c["inputs_embeds"];
  e.attention_mask = c["attention_mask"];
  EXPECT_TRUE(close_recorded(m->forward(e).last_hidden_state, c["last_hidden_state_embeds"], c.atol));
  ModelInputs p = ids_inputs(c);  // mask covers T only: extended by P inside
  p.prefix_kv = peft::test::fixture_prefix(c, 2);
  EXPECT_TRUE(close_recorded(m->forward(p).last_hidden_state, c["last_hidden_state_prefix"], c.atol));
  p.attention_mask = torch::cat({torch::ones({2, 3}, c["attention_mask"].options()), c["attention_mask"]}, 1);
  EXPECT_TRUE(close_recorded(m->forward(p).last_hidden_state, c["last_hidden_state_prefix"], c.atol));
  // token_type_ids (the data pipeline's zeros) are ignored: no segment embeddings.
  p.token_type_ids = torch::zeros({2, 9}, torch::kLong);
  EXPECT_TRUE(close_recorded(m->forward(p).last_hidden_state, c["last_hidden_state_prefix"], c.atol));
}

TEST(DistilBert, SequenceClassificationRegressionAndMultiLabel) {
  for (const char* name :
       {"models/distilbert_seqcls", "models/distilbert_seqcls_regression", "models/distilbert_seqcls_multilabel"}) {
    const auto c = peft::test::load_case(name);
    auto m = peft::models::load_model(c.dir);
    EXPECT_EQ(m->head(), TaskHead::SeqCls);
    ModelInputs in = ids_inputs(c);
    in.labels = c["labels"];
    auto out = m->forward(in);
    EXPECT_TRUE(close_recorded(out.logits, c["logits"], c.atol)) << name;
    EXPECT_TRUE(close_recorded(out.loss.reshape({1}), c["loss"], c.atol)) << name;
    EXPECT_TRUE(close_recorded(out.last_hidden_state, c["last_hidden_state"], c.atol)) << name;
    out.loss.backward();
    peft::test::expect_encoder_grads(*m, c, name);
  }
}

TEST(DistilBert, TokenClassification) {
  const auto c = peft::test::load_case("models/distilbert_tokcls");
  auto m = peft::models::load_model(c.dir);
  EXPECT_EQ(m->head(), TaskHead::TokenCls);
  ModelInputs in = ids_inputs(c);
  in.labels = c["labels"];
  auto out = m->forward(in);
  EXPECT_TRUE(close_recorded(out.logits, c["logits"], c.atol));
  EXPECT_TRUE(close_recorded(out.loss.reshape({1}), c["loss"], c.atol));
  out.loss.backward();
  peft::test::expect_encoder_grads(*m, c, "distilbert_tokcls");
}

TEST(DistilBert, SinusoidalPositionsInitialiseAsTransformers) {
  const auto c = peft::test::load_case("models/distilbert_base");
  auto j = fixture_config("models/distilbert_base");
  j["sinusoidal_pos_embds"] = true;
  auto m = peft::models::create_model(peft::models::ModelConfig(j), TaskHead::Base);
  EXPECT_TRUE(close_recorded(m->named_parameters()["embeddings.position_embeddings.weight"],
                             c["sinusoidal_position_embeddings"], 1e-7));
}

TEST(DistilBert, HeadsFromBaseCheckpointAndBack) {
  const auto b = peft::test::load_case("models/distilbert_base");
  peft::models::LoadOptions o;
  o.head = TaskHead::SeqCls;
  testing::internal::CaptureStderr();
  auto m = peft::models::load_model(b.dir, o);
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("pre_classifier.weight"), std::string::npos) << err;
  EXPECT_NE(err.find("classifier.bias"), std::string::npos) << err;
  torch::NoGradGuard ng;
  EXPECT_TRUE(close_recorded(m->forward(ids_inputs(b)).last_hidden_state, b["last_hidden_state"], b.atol));
  const auto c = peft::test::load_case("models/distilbert_tokcls");
  o.head = TaskHead::Base;
  testing::internal::CaptureStderr();
  auto base = peft::models::load_model(c.dir, o);
  err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("classifier."), std::string::npos) << err;
  EXPECT_EQ(base->named_parameters().size(), 4u + 16u * 2u);
}

TEST(DistilBert, BadConfigAndInputs) {
  auto j = fixture_config("models/distilbert_base");
  j["n_heads"] = 5;
  peft::test::expect_throw_with<peft::ConfigError>(
      [&] { peft::models::create_model(peft::models::ModelConfig(j), TaskHead::Base); },
      {"[distilbert]", "dim (32)", "n_heads (5)"});
  auto k = fixture_config("models/distilbert_base");
  peft::test::expect_throw_with<peft::NotSupported>(
      [&] { peft::models::create_model(peft::models::ModelConfig(k), TaskHead::CausalLM); }, {"[distilbert]", "CausalLM"});
  const auto c = peft::test::load_case("models/distilbert_base");
  auto m = peft::models::load_model(c.dir);
  torch::NoGradGuard ng;
  ModelInputs longer;
  longer.input_ids = torch::ones({1, 21}, torch::kLong);
  peft::test::expect_throw_with<std::invalid_argument>([&] { m->forward(longer); },
                                                       {"[distilbert]", "21", "max_position_embeddings is 20"});
  ModelInputs e;
  e.inputs_embeds = torch::zeros({2, 4, 31});
  peft::test::expect_throw_with<std::invalid_argument>([&] { m->forward(e); }, {"[distilbert]", "inputs_embeds", "31"});
}

}  // namespace
