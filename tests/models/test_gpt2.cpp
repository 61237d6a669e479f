// GPT-2 against transformers (tests/fixtures/models/gpt2_*; tools/reference/gen_models_gpt2.py).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "decoder_checks.h"
#include "golden.h"
#include "peft/core/error.h"
#include "peft/io/tensor_bridge.h"
#include "peft/models/generation.h"
#include "peft/models/model.h"

namespace {

using peft::models::ModelInputs;
using peft::test::close;

std::shared_ptr<peft::models::PretrainedModel> load(const peft::test::GoldenCase& c) {
  return peft::models::load_model(c.dir);
}

// EXPECT_TRUE plus a printed "max |diff|" line, so the run log shows the measured deviation.
void expect_close(const char* what, const ::testing::AssertionResult& r) {
  EXPECT_TRUE(r) << what;
  std::cout << "[gpt2] " << what << ": " << r.message() << "\n";
}

// A copy of a fixture's config.json + model.safetensors with the tensors edited by `edit`.
template <typename Edit>
std::string edited_checkpoint(const peft::test::GoldenCase& c, const std::string& name, Edit edit) {
  namespace fs = std::filesystem;
  const std::string dir = peft::test::tmp_dir(name);
  fs::copy_file(c.dir + "/config.json", dir + "/config.json");
  auto tensors = peft::io::load_safetensors(c.dir + "/model.safetensors");
  edit(tensors);
  peft::io::save_safetensors(dir + "/model.safetensors", tensors);
  return dir;
}

TEST(Gpt2, CausalLogitsHiddenLossAndGradients) {
  const auto c = peft::test::load_case("models/gpt2_causal");
  auto m = load(c);
  ModelInputs in;
  in.input_ids = c["input_ids"];
  in.attention_mask = c["attention_mask"];
  in.labels = c["labels"];
  auto out = m->forward(in);
  expect_close("logits", close(out.logits, c["logits"], c.atol));
  expect_close("last_hidden_state", close(out.last_hidden_state, c["last_hidden_state"], c.atol));
  expect_close("loss", close(out.loss.reshape({1}), c["loss"], c.atol));
  out.loss.backward();
  int n = 0;
  double worst = 0;
  for (const auto& p : m->named_parameters()) {
    ASSERT_TRUE(c.has("grad." + p.key())) << p.key();
    const at::Tensor& e = c["grad." + p.key()];
    EXPECT_TRUE(peft::test::grad_close(p.value().grad(), e, c.grad_rtol)) << p.key();
    worst = std::max(worst, (p.value().grad() - e).abs().max().item<double>());
    ++n;
  }
  std::cout << "[gpt2] gradients: max |diff| " << worst << " over " << n << " tensors\n";
  EXPECT_EQ(n, 4 + 2 * 12);  // wte, wpe, ln_f (2) + 12 per layer; lm_head is tied to wte
  // Conv1D layout: [in, out].
  const auto params = m->named_parameters();
  EXPECT_EQ(params["transformer.h.0.attn.c_attn.weight"].sizes(), at::IntArrayRef({32, 96}));
  EXPECT_EQ(params["transformer.h.0.mlp.c_fc.weight"].sizes(), at::IntArrayRef({32, 64}));
}

TEST(Gpt2, InputsEmbedsAndKeyValuePrefix) {
  const auto c = peft::test::load_case("models/gpt2_causal");
  auto m = load(c);
  torch::NoGradGuard ng;
  ModelInputs e;
  e.inputs_embeds = c["inputs_embeds"];
  e.attention_mask = c["attention_mask"];
  expect_close("logits (inputs_embeds)", close(m->forward(e).logits, c["logits_embeds"], c.atol));

  ModelInputs p;
  p.input_ids = c["input_ids"];
  p.attention_mask = c["attention_mask"];  // covers T only: extended by P inside
  p.position_ids = c["prefix_position_ids"];
  for (int i = 0; i < 2; ++i)
    p.prefix_kv.push_back({c["prefix_key." + std::to_string(i)], c["prefix_value." + std::to_string(i)]});
  expect_close("logits (key/value prefix)", close(m->forward(p).logits, c["logits_prefix"], c.atol));
}

TEST(Gpt2, BaseModelFromCausalCheckpoint) {
  const auto c = peft::test::load_case("models/gpt2_causal");
  peft::models::LoadOptions o;
  o.head = peft::models::TaskHead::Base;
  auto m = peft::models::load_model(c.dir, o);
  EXPECT_TRUE(m->named_parameters().contains("h.0.attn.c_attn.weight"));
  torch::NoGradGuard ng;
  ModelInputs in;
  in.input_ids = c["input_ids"];
  in.attention_mask = c["attention_mask"];
  expect_close("GPT2Model last_hidden_state",
               close(m->forward(in).last_hidden_state, c["last_hidden_state"], c.atol));
}

TEST(Gpt2, IncrementalDecodingEqualsFullForward) {
  const auto c = peft::test::load_case("models/gpt2_causal");
  auto m = load(c);
  peft::test::check_incremental_decoding(*m, c);
}

TEST(Gpt2, GreedyGenerationMatchesTransformers) {
  const auto c = peft::test::load_case("models/gpt2_causal");
  auto m = load(c);
  peft::test::check_greedy_generation(*m, c);
}

TEST(Gpt2, SequenceAndTokenClassification) {
  for (const char* name : {"models/gpt2_seqcls", "models/gpt2_tokcls"}) {
    const auto c = peft::test::load_case(name);
    auto m = load(c);
    ModelInputs in;
    in.input_ids = c["input_ids"];
    in.attention_mask = c["attention_mask"];
    in.labels = c["labels"];
    auto out = m->forward(in);
    expect_close((std::string(name) + " logits").c_str(), close(out.logits, c["logits"], c.atol));
    expect_close((std::string(name) + " loss").c_str(), close(out.loss.reshape({1}), c["loss"], c.atol));
    out.loss.backward();
    double worst = 0;
    for (const auto& p : m->named_parameters()) {
      ASSERT_TRUE(c.has("grad." + p.key())) << name << " " << p.key();
      const at::Tensor& e = c["grad." + p.key()];
      EXPECT_TRUE(peft::test::grad_close(p.value().grad(), e, c.grad_rtol)) << name << " " << p.key();
      worst = std::max(worst, (p.value().grad() - e).abs().max().item<double>());
    }
    std::cout << "[gpt2] " << name << " gradients: max |diff| " << worst << "\n";
  }
}

TEST(Gpt2, Bf16LogitsWithinBf16ToleranceOfFp32) {
  const auto c = peft::test::load_case("models/gpt2_causal");
  peft::models::LoadOptions o;
  o.dtype = "bfloat16";
  auto m = peft::models::load_model(c.dir, o);
  torch::NoGradGuard ng;
  ModelInputs in;
  in.input_ids = c["input_ids"];
  in.attention_mask = c["attention_mask"];
  const at::Tensor l = m->forward(in).logits;
  EXPECT_EQ(l.scalar_type(), at::kBFloat16);
  const double scale = c["logits"].abs().max().item<double>();
  expect_close("bf16 logits", close(l.to(at::kFloat), c["logits"], 0.05 * scale));
}

TEST(Gpt2, HeadsNotDividingEmbeddingIsAConfigError) {
  const nlohmann::json j = {{"model_type", "gpt2"}, {"n_embd", 30}, {"n_head", 4}, {"n_layer", 1},
                            {"vocab_size", 16}, {"n_positions", 8}};
  peft::test::expect_throw_with<peft::ConfigError>(
      [&] { peft::models::create_model(peft::models::ModelConfig(j), peft::models::TaskHead::CausalLM); },
      {"[gpt2]", "n_embd (30)", "n_head (4)"});
}

TEST(Gpt2, MisShapedTensorIsAFormatErrorWithBothShapes) {
  const auto c = peft::test::load_case("models/gpt2_causal");
  const std::string dir = edited_checkpoint(c, "gpt2_misshaped", [](auto& t) {
    t["transformer.h.1.attn.c_attn.weight"] = t["transformer.h.1.attn.c_attn.weight"].t().contiguous();
  });
  peft::test::expect_throw_with<peft::FormatError>(
      [&] { peft::models::load_model(dir); },
      {"transformer.h.1.attn.c_attn.weight", "[96, 32]", "[32, 96]"});
}

TEST(Gpt2, MissingTensorIsAFormatErrorNamingIt) {
  const auto c = peft::test::load_case("models/gpt2_causal");
  const std::string dir = edited_checkpoint(c, "gpt2_missing", [](auto& t) { t.erase("transformer.h.0.mlp.c_fc.bias"); });
  peft::test::expect_throw_with<peft::FormatError>([&] { peft::models::load_model(dir); },
                                                   {"missing", "transformer.h.0.mlp.c_fc.bias"});
}

TEST(Gpt2, OldCausalMaskBuffersAreIgnored) {
  const auto c = peft::test::load_case("models/gpt2_causal");
  const std::string dir = edited_checkpoint(c, "gpt2_old_buffers", [](auto& t) {
    for (int i = 0; i < 2; ++i) {
      const std::string p = "transformer.h." + std::to_string(i) + ".attn.";
      t[p + "bias"] = torch::ones({1, 1, 64, 64}).tril().to(torch::kBool);
      t[p + "masked_bias"] = torch::tensor(-1e4f);
    }
  });
  auto m = peft::models::load_model(dir);
  torch::NoGradGuard ng;
  ModelInputs in;
  in.input_ids = c["input_ids"];
  in.attention_mask = c["attention_mask"];
  EXPECT_TRUE(close(m->forward(in).logits, c["logits"], c.atol));
}

}  // namespace
