// Phi-3 against transformers (tests/fixtures/models/phi3_*; tools/reference/gen_models_phi3.py):
// phi3_causal (partial rotary, sliding window 5) and phi3_longrope (LongRoPE with
// original_max_position_embeddings 8: short factors for the 7-token forwards, long ones for the
// prefix forward, the 12-token forward and the generation past 8 tokens).
#include <string>
#include <vector>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "decoder_checks.h"
#include "golden.h"
#include "peft/core/error.h"
#include "peft/models/generation.h"
#include "peft/models/model.h"

namespace {

using peft::models::ModelInputs;
using peft::test::close;

const char* const kCausal[] = {"models/phi3_causal", "models/phi3_longrope"};

TEST(Phi3, CausalLogitsHiddenLossAndGradients) {
  for (const char* name : kCausal) {
    const auto c = peft::test::load_case(name);
    auto m = peft::models::load_model(c.dir);
    ModelInputs in;
    in.input_ids = c["input_ids"];
    in.attention_mask = c["attention_mask"];
    in.labels = c["labels"];
    auto out = m->forward(in);
    EXPECT_TRUE(close(out.logits, c["logits"], c.atol)) << name;
    EXPECT_TRUE(close(out.last_hidden_state, c["last_hidden_state"], c.atol)) << name;
    EXPECT_TRUE(close(out.loss.reshape({1}), c["loss"], c.atol)) << name;
    out.loss.backward();
    int n = 0;
    for (const auto& p : m->named_parameters()) {
      ASSERT_TRUE(c.has("grad." + p.key())) << name << " " << p.key();
      EXPECT_TRUE(peft::test::grad_close(p.value().grad(), c["grad." + p.key()], c.grad_rtol)) << name << " " << p.key();
      ++n;
    }
    EXPECT_EQ(n, 3 + 2 * 6) << name;  // embed, norm, lm_head + qkv, o, gate_up, down, 2 norms per layer
  }
}

TEST(Phi3, InputsEmbedsKeyValuePrefixAndLongForward) {
  for (const char* name : kCausal) {
    const auto c = peft::test::load_case(name);
    auto m = peft::models::load_model(c.dir);
    torch::NoGradGuard ng;
    ModelInputs e;
    e.inputs_embeds = c["inputs_embeds"];
    e.attention_mask = c["attention_mask"];
    EXPECT_TRUE(close(m->forward(e).logits, c["logits_embeds"], c.atol)) << name;

    ModelInputs p;
    p.input_ids = c["input_ids"];
    p.attention_mask = c["attention_mask"];  // covers T only: extended by P inside
    p.position_ids = c["prefix_position_ids"];
    for (int i = 0; i < 2; ++i)
      p.prefix_kv.push_back({c["prefix_key." + std::to_string(i)], c["prefix_value." + std::to_string(i)]});
    EXPECT_TRUE(close(m->forward(p).logits, c["logits_prefix"], c.atol)) << name;

    ModelInputs l;
    l.input_ids = c["long_input_ids"];
    l.attention_mask = c["long_attention_mask"];
    EXPECT_TRUE(close(m->forward(l).logits, c["logits_long"], c.atol)) << name;
  }
}

TEST(Phi3, IncrementalDecodingEqualsFullForward) {
  for (const char* name : kCausal) {
    const auto c = peft::test::load_case(name);
    auto m = peft::models::load_model(c.dir);
    peft::test::check_incremental_decoding(*m, c);
  }
}

TEST(Phi3, GreedyGenerationMatchesTransformers) {
  for (const char* name : kCausal) {
    const auto c = peft::test::load_case(name);
    auto m = peft::models::load_model(c.dir);
    peft::test::check_greedy_generation(*m, c);
  }
}

TEST(Phi3, SequenceAndTokenClassification) {
  for (const char* name : {"models/phi3_seqcls", "models/phi3_tokcls"}) {
    const auto c = peft::test::load_case(name);
    auto m = peft::models::load_model(c.dir);
    ModelInputs in;
    in.input_ids = c["input_ids"];
    in.attention_mask = c["attention_mask"];
    in.labels = c["labels"];
    auto out = m->forward(in);
    EXPECT_TRUE(close(out.logits, c["logits"], c.atol)) << name;
    EXPECT_TRUE(close(out.loss.reshape({1}), c["loss"], c.atol)) << name;
    out.loss.backward();
    for (const auto& p : m->named_parameters())
      EXPECT_TRUE(peft::test::grad_close(p.value().grad(), c["grad." + p.key()], c.grad_rtol)) << name << " " << p.key();
  }
}

TEST(Phi3, BadConfigsAreNamed) {
  nlohmann::json j = {{"model_type", "phi3"}, {"hidden_size", 32}, {"num_attention_heads", 4},
                      {"num_hidden_layers", 1}, {"intermediate_size", 8}, {"vocab_size", 16},
                      {"rope_scaling", {{"type", "longrope"}, {"short_factor", {1.0, 1.0}}, {"long_factor", {1.0, 1.0, 1.0, 1.0}}}}};
  auto make = [&] {
    peft::models::create_model(peft::models::ModelConfig(j, "cfg.json"), peft::models::TaskHead::CausalLM);
  };
  peft::test::expect_throw_with<peft::ConfigError>(make, {"cfg.json", "rope_scaling.short_factor", "2 entries", "4"});
  j["rope_scaling"] = {{"type", "su"}, {"short_factor", {1.0, 1.0, 1.0, 1.0}}, {"long_factor", {1.0, 1.0, 1.0, 1.0}}};
  peft::test::expect_throw_with<peft::ConfigError>(make, {"cfg.json", "original_max_position_embeddings", "'su'"});
  j["rope_scaling"] = {{"type", "dynamic"}, {"factor", 2.0}};
  peft::test::expect_throw_with<peft::NotSupported>(make, {"cfg.json", "type 'dynamic'", "longrope"});
  j.erase("rope_scaling");
  j["partial_rotary_factor"] = 0.3;  // 8 * 0.3 = 2.4 -> 2 is fine; 0.1 -> 0 is not
  EXPECT_NO_THROW(make());
  j["partial_rotary_factor"] = 0.1;
  peft::test::expect_throw_with<peft::ConfigError>(make, {"cfg.json", "partial_rotary_factor 0.1"});
}

}  // namespace
