// RoBERTa and XLM-RoBERTa against transformers (tests/fixtures/models/{roberta,xlm_roberta}_*;
// tools/reference/gen_models_roberta.py).
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

TEST(Roberta, BaseHiddenPoolerAndGradients) {
  const auto c = peft::test::load_case("models/roberta_base");
  auto m = peft::models::load_model(c.dir);
  EXPECT_EQ(m->head(), TaskHead::Base);
  EXPECT_EQ(m->base_model_prefix(), "roberta");
  auto out = m->forward(ids_inputs(c));
  EXPECT_TRUE(close_recorded(out.last_hidden_state, c["last_hidden_state"], c.atol));
  EXPECT_TRUE(close_recorded(out.pooler_output, c["pooler_output"], c.atol));
  at::Tensor loss = (out.last_hidden_state * c["loss_weight_hidden"]).sum() +
                    (out.pooler_output * c["loss_weight_pooler"]).sum();
  EXPECT_TRUE(close_recorded(loss.reshape({1}), c["loss"], 1e-4));
  loss.backward();
  peft::test::expect_encoder_grads(*m, c, "roberta_base");
  // The padding rows of both tables get no gradient (padding_idx = pad_token_id = 1).
  auto params = m->named_parameters();
  EXPECT_EQ(params["embeddings.position_embeddings.weight"].grad()[1].abs().max().item<double>(), 0.0);
  // Explicit positions equal to transformers' give the same result.
  torch::NoGradGuard ng;
  ModelInputs p = ids_inputs(c);
  p.position_ids = c["position_ids"];
  EXPECT_TRUE(close_recorded(m->forward(p).last_hidden_state, c["last_hidden_state"], c.atol));
}

TEST(Roberta, InputsEmbedsAndKeyValuePrefix) {
  const auto c = peft::test::load_case("models/roberta_base");
  auto m = peft::models::load_model(c.dir);
  torch::NoGradGuard ng;
  ModelInputs e;
  e.inputs_embeds = c["inputs_embeds"];  // positions pad + 1, pad + 2, ... (padding not visible)
  e.attention_mask = c["attention_mask"];
  auto oe = m->forward(e);
  EXPECT_TRUE(close_recorded(oe.last_hidden_state, c["last_hidden_state_embeds"], c.atol));
  EXPECT_TRUE(close_recorded(oe.pooler_output, c["pooler_output_embeds"], c.atol));

  // Default positions after the P prefix positions, as transformers numbers them with a cache.
  ModelInputs p = ids_inputs(c);
  p.prefix_kv = peft::test::fixture_prefix(c, 2);
  auto op = m->forward(p);
  EXPECT_TRUE(close_recorded(op.last_hidden_state, c["last_hidden_state_prefix"], c.atol));
  EXPECT_TRUE(close_recorded(op.pooler_output, c["pooler_output_prefix"], c.atol));
  p.attention_mask = torch::cat({torch::ones({2, 3}, c["attention_mask"].options()), c["attention_mask"]}, 1);
  p.position_ids = c["prefix_position_ids"];
  EXPECT_TRUE(close_recorded(m->forward(p).last_hidden_state, c["last_hidden_state_prefix"], c.atol));
}

TEST(Roberta, SequenceClassificationRegressionAndMultiLabel) {
  for (const char* name : {"models/roberta_seqcls", "models/roberta_seqcls_regression", "models/roberta_seqcls_multilabel"}) {
    const auto c = peft::test::load_case(name);
    auto m = peft::models::load_model(c.dir);
    EXPECT_EQ(m->head(), TaskHead::SeqCls);
    ModelInputs in = ids_inputs(c);
    in.labels = c["labels"];
    auto out = m->forward(in);
    EXPECT_FALSE(out.pooler_output.defined()) << name;  // RobertaModel(add_pooling_layer=False)
    EXPECT_TRUE(close_recorded(out.logits, c["logits"], c.atol)) << name;
    EXPECT_TRUE(close_recorded(out.loss.reshape({1}), c["loss"], c.atol)) << name;
    EXPECT_TRUE(close_recorded(out.last_hidden_state, c["last_hidden_state"], c.atol)) << name;
    out.loss.backward();
    peft::test::expect_encoder_grads(*m, c, name);
    // RobertaClassificationHead's parameters under HF's names.
    EXPECT_TRUE(m->named_parameters().contains("classifier.dense.weight"));
    EXPECT_TRUE(m->named_parameters().contains("classifier.out_proj.bias"));
  }
}

TEST(Roberta, TokenClassification) {
  const auto c = peft::test::load_case("models/roberta_tokcls");
  auto m = peft::models::load_model(c.dir);
  EXPECT_EQ(m->head(), TaskHead::TokenCls);
  ModelInputs in = ids_inputs(c);
  in.labels = c["labels"];
  auto out = m->forward(in);
  EXPECT_FALSE(out.pooler_output.defined());
  EXPECT_TRUE(close_recorded(out.logits, c["logits"], c.atol));
  EXPECT_TRUE(close_recorded(out.loss.reshape({1}), c["loss"], c.atol));
  out.loss.backward();
  peft::test::expect_encoder_grads(*m, c, "roberta_tokcls");
}

TEST(Roberta, XlmRobertaIsTheSameModel) {
  const auto c = peft::test::load_case("models/xlm_roberta_base");
  auto m = peft::models::load_model(c.dir);
  EXPECT_EQ(m->config().model_type(), "xlm-roberta");
  EXPECT_EQ(m->base_model_prefix(), "roberta");
  torch::NoGradGuard ng;
  auto out = m->forward(ids_inputs(c));
  EXPECT_TRUE(close_recorded(out.last_hidden_state, c["last_hidden_state"], c.atol));
  EXPECT_TRUE(close_recorded(out.pooler_output, c["pooler_output"], c.atol));
}

TEST(Roberta, SequenceClassificationFromBaseCheckpointDropsPooler) {
  const auto c = peft::test::load_case("models/roberta_base");
  peft::models::LoadOptions o;
  o.head = TaskHead::SeqCls;
  testing::internal::CaptureStderr();
  auto m = peft::models::load_model(c.dir, o);
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("classifier.out_proj.weight"), std::string::npos) << err;
  torch::NoGradGuard ng;
  auto out = m->forward(ids_inputs(c));
  EXPECT_EQ(out.logits.sizes(), (std::vector<int64_t>{2, 2}));
  EXPECT_TRUE(close_recorded(out.last_hidden_state, c["last_hidden_state"], c.atol));
}

TEST(Roberta, BadConfigAndInputs) {
  auto j = fixture_config("models/roberta_base");
  j["pad_token_id"] = nullptr;
  peft::test::expect_throw_with<peft::ConfigError>(
      [&] { peft::models::create_model(peft::models::ModelConfig(j), TaskHead::Base); }, {"[roberta]", "pad_token_id"});
  auto k = fixture_config("models/roberta_base");
  peft::test::expect_throw_with<peft::NotSupported>(
      [&] { peft::models::create_model(peft::models::ModelConfig(k), TaskHead::CausalLM); },
      {"[roberta]", "CausalLM", "RobertaForSequenceClassification"});
  const auto c = peft::test::load_case("models/roberta_base");
  auto m = peft::models::load_model(c.dir);
  torch::NoGradGuard ng;
  ModelInputs longer;  // max_position_embeddings 20, positions from 2: 18 tokens fit
  longer.input_ids = torch::full({1, 19}, 5, torch::kLong);
  peft::test::expect_throw_with<std::invalid_argument>([&] { m->forward(longer); },
                                                       {"[roberta]", "19", "max_position_embeddings (20)"});
  longer.input_ids = torch::full({1, 18}, 5, torch::kLong);
  EXPECT_EQ(m->forward(longer).last_hidden_state.size(1), 18);
}

}  // namespace
