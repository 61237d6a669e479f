// Gemma, Gemma 2 and Gemma 3 (text) against transformers (tests/fixtures/models/gemma*;
// tools/reference/gen_models_gemma.py). The fixtures use a sliding window of 4 on 7 tokens,
// soft-capping that changes the numbers and random norm weights.
#include <string>
#include <vector>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "decoder_checks.h"
#include "golden.h"
#include "peft/core/error.h"
#include "peft/core/file_util.h"
#include "peft/models/model.h"
#include "peft/models/model_config.h"

namespace {

using peft::models::ModelInputs;
using peft::test::close;

struct CausalCase {
  const char* name;
  int params;  // named parameters: embeddings, final norm, lm_head (untied) + per layer
};
// Gemma 2: 4 projections + 3 MLP + 4 norms per layer, tied head. Gemma 3: + q_norm/k_norm,
// untied head. Gemma: 7 + 2 norms per layer, tied head.
const CausalCase kCausal[] = {{"models/gemma2_causal", 2 + 2 * 11}, {"models/gemma3_causal", 3 + 2 * 13},
                              {"models/gemma_causal", 2 + 2 * 9}};

TEST(Gemma, CausalLogitsHiddenLossAndGradients) {
  for (const auto& k : kCausal) {
    SCOPED_TRACE(k.name);
    const auto c = peft::test::load_case(k.name);
    auto m = peft::models::load_model(c.dir);
    ModelInputs in;
    in.input_ids = c["input_ids"];
    in.attention_mask = c["attention_mask"];
    in.labels = c["labels"];
    auto out = m->forward(in);
    EXPECT_TRUE(close(out.logits, c["logits"], c.atol));
    EXPECT_TRUE(close(out.last_hidden_state, c["last_hidden_state"], c.atol));
    EXPECT_TRUE(close(out.loss.reshape({1}), c["loss"], c.atol));
    out.loss.backward();
    int n = 0;
    for (const auto& p : m->named_parameters()) {
      ASSERT_TRUE(c.has("grad." + p.key())) << p.key();
      EXPECT_TRUE(peft::test::grad_close(p.value().grad(), c["grad." + p.key()], c.grad_rtol)) << p.key();
      ++n;
    }
    EXPECT_EQ(n, k.params);
  }
}

TEST(Gemma, InputsEmbedsAndKeyValuePrefix) {
  for (const auto& k : kCausal) {
    SCOPED_TRACE(k.name);
    const auto c = peft::test::load_case(k.name);
    auto m = peft::models::load_model(c.dir);
    torch::NoGradGuard ng;
    ModelInputs e;
    e.inputs_embeds = c["inputs_embeds"];  // used as given: transformers scales only looked-up ids
    e.attention_mask = c["attention_mask"];
    EXPECT_TRUE(close(m->forward(e).logits, c["logits_embeds"], c.atol));

    ModelInputs p;
    p.input_ids = c["input_ids"];
    p.attention_mask = c["attention_mask"];  // covers T only: extended by P inside
    p.position_ids = c["prefix_position_ids"];
    for (int i = 0; i < 2; ++i)
      p.prefix_kv.push_back({c["prefix_key." + std::to_string(i)], c["prefix_value." + std::to_string(i)]});
    EXPECT_TRUE(close(m->forward(p).logits, c["logits_prefix"], c.atol));
  }
}

TEST(Gemma, IncrementalDecodingEqualsFullForward) {
  for (const auto& k : kCausal) {
    SCOPED_TRACE(k.name);
    const auto c = peft::test::load_case(k.name);
    auto m = peft::models::load_model(c.dir);
    peft::test::check_incremental_decoding(*m, c);
  }
}

TEST(Gemma, GreedyGenerationPastTheWindowMatchesTransformers) {
  for (const auto& k : kCausal) {
    SCOPED_TRACE(k.name);
    const auto c = peft::test::load_case(k.name);
    auto m = peft::models::load_model(c.dir);
    peft::test::check_greedy_generation(*m, c);
  }
}

TEST(Gemma, Bf16LogitsMatchTransformersBf16) {
  for (const auto& k : kCausal) {
    SCOPED_TRACE(k.name);
    const auto c = peft::test::load_case(k.name);
    peft::models::LoadOptions o;
    o.dtype = "bfloat16";
    auto m = peft::models::load_model(c.dir, o);
    torch::NoGradGuard ng;
    ModelInputs in;
    in.input_ids = c["input_ids"];
    in.attention_mask = c["attention_mask"];
    const at::Tensor l = m->forward(in).logits;
    EXPECT_EQ(l.scalar_type(), at::kBFloat16);
    // Against transformers' own bfloat16 run of the same weights: within a couple of bfloat16
    // steps of the logits (2^-8 relative), far tighter than bfloat16 against float32.
    const double scale = c["logits_bf16"].abs().max().item<double>();
    EXPECT_TRUE(close(l.to(at::kFloat), c["logits_bf16"], scale / 64));
  }
}

TEST(Gemma, SequenceAndTokenClassification) {
  for (const char* name : {"models/gemma2_seqcls", "models/gemma2_tokcls", "models/gemma3_seqcls"}) {
    SCOPED_TRACE(name);
    const auto c = peft::test::load_case(name);
    auto m = peft::models::load_model(c.dir);
    ModelInputs in;
    in.input_ids = c["input_ids"];
    in.attention_mask = c["attention_mask"];
    in.labels = c["labels"];
    auto out = m->forward(in);
    EXPECT_TRUE(close(out.logits, c["logits"], c.atol));
    EXPECT_TRUE(close(out.loss.reshape({1}), c["loss"], c.atol));
    out.loss.backward();
    for (const auto& p : m->named_parameters())
      EXPECT_TRUE(peft::test::grad_close(p.value().grad(), c["grad." + p.key()], c.grad_rtol)) << p.key();
  }
}

TEST(Gemma, BadConfigsAreNamed) {
  using peft::models::ModelConfig;
  using peft::models::TaskHead;
  nlohmann::json j = nlohmann::json::parse(peft::read_file(peft::test::fixture("models/gemma3_causal") + "/config.json"));
  auto make = [&](TaskHead h) { peft::models::create_model(ModelConfig(j, "cfg.json"), h); };
  auto bad = j;
  j["layer_types"] = {"sliding_attention"};
  peft::test::expect_throw_with<peft::ConfigError>([&] { make(TaskHead::CausalLM); },
                                                   {"cfg.json", "layer_types", "num_hidden_layers (2)"});
  j = bad;
  j["rope_parameters"]["full_attention"]["rope_type"] = "yarn";
  peft::test::expect_throw_with<peft::NotSupported>([&] { make(TaskHead::CausalLM); },
                                                    {"cfg.json", "rope_parameters.full_attention", "'yarn'"});
  j = bad;
  peft::test::expect_throw_with<peft::NotSupported>([&] { make(TaskHead::TokenCls); },
                                                    {"gemma3_text", "token-classification"});
  j = {{"model_type", "gemma3"}, {"text_config", bad}};
  peft::test::expect_throw_with<peft::NotSupported>([&] { make(TaskHead::CausalLM); },
                                                    {"cfg.json", "'gemma3'", "multimodal", "'gemma3_text'"});
}

TEST(Gemma, LayerTypesFromTheSlidingWindowPattern) {
  // Without layer_types, Gemma 3 makes every sliding_window_pattern-th layer global: with a
  // pattern of 2 the fixture's explicit ["sliding_attention", "full_attention"] again.
  const auto c = peft::test::load_case("models/gemma3_causal");
  nlohmann::json j = nlohmann::json::parse(peft::read_file(c.dir + "/config.json"));
  auto ref = peft::models::load_model(c.dir);
  j.erase("layer_types");
  j["sliding_window_pattern"] = 2;
  auto m = peft::models::create_model(peft::models::ModelConfig(j, "cfg.json"), peft::models::TaskHead::CausalLM);
  {
    torch::NoGradGuard ng;
    auto src = ref->named_parameters();
    for (auto& p : m->named_parameters()) p.value().copy_(src[p.key()]);
  }
  torch::NoGradGuard ng;
  ModelInputs in;
  in.input_ids = c["input_ids"];
  in.attention_mask = c["attention_mask"];
  EXPECT_TRUE(close(m->forward(in).logits, c["logits"], c.atol));
  j["sliding_window_pattern"] = 3;  // now both layers slide: a different model
  auto m3 = peft::models::create_model(peft::models::ModelConfig(j, "cfg.json"), peft::models::TaskHead::CausalLM);
  {
    auto src = ref->named_parameters();
    for (auto& p : m3->named_parameters()) p.value().copy_(src[p.key()]);
  }
  EXPECT_FALSE(close(m3->forward(in).logits, c["logits"], c.atol));
}

}  // namespace
