// Qwen2, Qwen3 and Mistral against transformers (tests/fixtures/models/{qwen2,qwen3,mistral}_*;
// tools/reference/gen_models_llama_family.py). The fixtures use 4-slot sliding windows on the
// 7-token batch (Qwen2: layer 1, Qwen3: layer 0, Mistral: both), and generation runs past them.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <iostream>
#include <string>

#include "decoder_checks.h"
#include "golden.h"
#include "peft/core/error.h"
#include "peft/models/architectures.h"
#include "peft/models/gguf_model.h"
#include "peft/models/llama.h"
#include "peft/models/adaptable_linear.h"
#include "peft/models/model.h"
#include "peft/tuners/adalora/config.h"
#include "peft/tuners/ia3/config.h"
#include "peft/tuners/lora/config.h"

namespace {

using peft::models::ModelConfig;
using peft::models::ModelInputs;
using peft::test::close;

// EXPECT_TRUE with the max |diff| printed (the numbers the fixtures are held to).
void expect_close(const std::string& what, const at::Tensor& got, const at::Tensor& want, double atol) {
  const auto r = close(got, want, atol);
  EXPECT_TRUE(r) << what;
  std::cout << "  " << what << ": " << r.message() << "\n";
}

class LlamaFamily : public ::testing::TestWithParam<std::string> {};

TEST_P(LlamaFamily, CausalLogitsHiddenLossAndGradients) {
  const auto c = peft::test::load_case("models/" + GetParam() + "_causal");
  auto m = peft::models::load_model(c.dir);
  EXPECT_EQ(m->config().model_type(), GetParam());
  ModelInputs in;
  in.input_ids = c["input_ids"];
  in.attention_mask = c["attention_mask"];
  in.labels = c["labels"];
  auto out = m->forward(in);
  expect_close(GetParam() + " logits", out.logits, c["logits"], c.atol);
  expect_close(GetParam() + " hidden", out.last_hidden_state, c["last_hidden_state"], c.atol);
  expect_close(GetParam() + " loss", out.loss.reshape({1}), c["loss"], c.atol);
  out.loss.backward();
  int n = 0, want = 0;
  for (const auto& p : m->named_parameters()) {
    ASSERT_TRUE(c.has("grad." + p.key())) << p.key();
    EXPECT_TRUE(peft::test::grad_close(p.value().grad(), c["grad." + p.key()], c.grad_rtol)) << p.key();
    ++n;
  }
  for (const auto& [k, v] : c.t) want += k.rfind("grad.", 0) == 0;
  EXPECT_EQ(n, want);  // every parameter transformers has, under its name
}

TEST_P(LlamaFamily, InputsEmbedsAndKeyValuePrefix) {
  const auto c = peft::test::load_case("models/" + GetParam() + "_causal");
  auto m = peft::models::load_model(c.dir);
  torch::NoGradGuard ng;
  ModelInputs e;
  e.inputs_embeds = c["inputs_embeds"];
  e.attention_mask = c["attention_mask"];
  expect_close(GetParam() + " logits_embeds", m->forward(e).logits, c["logits_embeds"], c.atol);

  // The prefix takes the first 3 slots: with a 4-slot window the last queries no longer see it.
  ModelInputs p;
  p.input_ids = c["input_ids"];
  p.attention_mask = c["attention_mask"];
  p.position_ids = c["prefix_position_ids"];
  for (int i = 0; i < 2; ++i)
    p.prefix_kv.push_back({c["prefix_key." + std::to_string(i)], c["prefix_value." + std::to_string(i)]});
  expect_close(GetParam() + " logits_prefix", m->forward(p).logits, c["logits_prefix"], c.atol);
}

TEST_P(LlamaFamily, IncrementalDecodingEqualsFullForward) {
  const auto c = peft::test::load_case("models/" + GetParam() + "_causal");
  auto m = peft::models::load_model(c.dir);
  peft::test::check_incremental_decoding(*m, c);
}

TEST_P(LlamaFamily, GreedyGenerationMatchesTransformers) {
  const auto c = peft::test::load_case("models/" + GetParam() + "_causal");
  auto m = peft::models::load_model(c.dir);
  peft::test::check_greedy_generation(*m, c);
}

TEST_P(LlamaFamily, SequenceAndTokenClassification) {
  for (const std::string head : {"_seqcls", "_tokcls"}) {
    const std::string name = GetParam() + head;
    const auto c = peft::test::load_case("models/" + name);
    auto m = peft::models::load_model(c.dir);
    ModelInputs in;
    in.input_ids = c["input_ids"];
    in.attention_mask = c["attention_mask"];
    in.labels = c["labels"];
    auto out = m->forward(in);
    expect_close(name + " logits", out.logits, c["logits"], c.atol);
    expect_close(name + " loss", out.loss.reshape({1}), c["loss"], c.atol);
    out.loss.backward();
    int n = 0;
    for (const auto& p : m->named_parameters()) {
      ASSERT_TRUE(c.has("grad." + p.key())) << name << " " << p.key();
      EXPECT_TRUE(peft::test::grad_close(p.value().grad(), c["grad." + p.key()], c.grad_rtol)) << name << " " << p.key();
      ++n;
    }
    int want = 0;
    for (const auto& [k, v] : c.t) want += k.rfind("grad.", 0) == 0;
    EXPECT_EQ(n, want) << name;
  }
}

TEST_P(LlamaFamily, LlamaCppNumericsRefusesTheFamilyOptions) {
  auto m = peft::models::load_model(peft::test::fixture("models/" + GetParam() + "_causal"));
  peft::models::LlamaCppNumerics n;
  n.enabled = true;
  std::vector<std::string> parts = {"[" + GetParam() + "]", "llama.cpp's Llama graph only",
                                    "model_type '" + GetParam() + "'", "sliding-window attention"};
  if (GetParam() == "qwen3") parts.push_back("q_norm/k_norm");
  if (GetParam() == "qwen2") parts.push_back("q/k/v projection biases without an o_proj bias");
  try {
    m->set_llamacpp_numerics(n, {});
    ADD_FAILURE() << "no error";
  } catch (const peft::NotSupported& e) {
    for (const auto& s : parts) EXPECT_NE(std::string(e.what()).find(s), std::string::npos) << e.what() << " lacks " << s;
  }
}

INSTANTIATE_TEST_SUITE_P(Transformers, LlamaFamily, ::testing::Values("qwen2", "qwen3", "mistral"),
                         [](const auto& info) { return info.param; });

// Qwen2 / Qwen3 GGUF files (gguf-py, llama.cpp's names, q/k rows unpermuted) from the HF
// fixtures (tools/reference/gen_gguf_family.py): transformers' logits on the same weights with
// full attention (a GGUF carries no sliding window for these architectures).
TEST(LlamaFamilyGguf, Qwen2AndQwen3FilesGiveTransformersLogits) {
  const auto e = peft::io::load_safetensors(peft::test::fixture("gguf/family/expected.safetensors"));
  for (const std::string name : {"qwen2_f32", "qwen3_f32", "qwen3_q8_0"}) {
    auto m = peft::models::load_model(peft::test::fixture("gguf/family/" + name + ".gguf"));
    EXPECT_EQ(m->config().model_type(), name.substr(0, 5));
    int quantized = 0;
    for (const auto& item : m->named_modules("", false))
      if (auto* s = dynamic_cast<peft::models::AdaptableLinearImpl*>(item.value().get())) quantized += s->quantized() != nullptr;
    // Rows of 32 inputs are whole Q8_0 blocks: q/k/v, gate/up/down (not o_proj, 48 inputs) x 2 layers.
    EXPECT_EQ(quantized, name == "qwen3_q8_0" ? 12 : 0) << name;
    torch::NoGradGuard ng;
    ModelInputs in;
    in.input_ids = e.at("input_ids");
    expect_close(name + " gguf logits", m->forward(in).logits, e.at(name), 1e-5);
  }
  // The same Qwen3 file has the HF fixture's config.
  const auto hf = peft::models::load_model(peft::test::fixture("models/qwen3_causal"));
  const auto gg = peft::models::load_model(peft::test::fixture("gguf/family/qwen3_f32.gguf"));
  for (const char* k : {"head_dim", "num_key_value_heads", "attention_bias", "tie_word_embeddings", "vocab_size"})
    EXPECT_EQ(gg->config().json()[k], hf->config().json()[k]) << k;
  // convert_gguf_to_hf writes the folder transformers' Qwen3 loads: same logits.
  const std::string dir = peft::test::tmp_dir("qwen3_gguf_to_hf");
  peft::models::convert_gguf_to_hf(peft::test::fixture("gguf/family/qwen3_f32.gguf"), dir);
  {
    torch::NoGradGuard ng;
    ModelInputs in;
    in.input_ids = e.at("input_ids");
    expect_close("qwen3 gguf -> hf folder logits", peft::models::load_model(dir)->forward(in).logits, e.at("qwen3_f32"), 1e-5);
  }
  peft::models::LoadOptions o;
  o.llamacpp_numerics.enabled = true;
  peft::test::expect_throw_with<peft::NotSupported>(
      [&] { (void)peft::models::load_model(peft::test::fixture("gguf/family/qwen3_f32.gguf"), o); },
      {"[qwen3]", "llama.cpp's Llama graph only", "q_norm/k_norm"});
}

nlohmann::json tiny(const std::string& model_type) {
  return {{"model_type", model_type}, {"hidden_size", 32}, {"num_attention_heads", 4}, {"num_key_value_heads", 2},
          {"num_hidden_layers", 3}, {"intermediate_size", 8}, {"vocab_size", 16}};
}

TEST(LlamaFamilyConfig, SlidingWindowsAsTransformersDecides) {
  using V = std::vector<int64_t>;
  auto qwen2 = [](const nlohmann::json& j) { return peft::models::qwen2_config(ModelConfig(j, "cfg.json")); };
  nlohmann::json j = tiny("qwen2");
  j["sliding_window"] = 5;
  EXPECT_EQ(qwen2(j).sliding_window, (V{0, 0, 0}));  // Qwen2Config: only with use_sliding_window
  j["use_sliding_window"] = true;
  EXPECT_EQ(qwen2(j).sliding_window, (V{0, 0, 0}));  // max_window_layers defaults to 28
  j["max_window_layers"] = 1;
  EXPECT_EQ(qwen2(j).sliding_window, (V{0, 5, 5}));
  j["layer_types"] = {"sliding_attention", "full_attention", "sliding_attention"};
  EXPECT_EQ(qwen2(j).sliding_window, (V{5, 0, 5}));  // layer_types decides over max_window_layers
  j["sliding_window"] = nullptr;
  EXPECT_EQ(qwen2(j).sliding_window, (V{0, 0, 0}));
  j.erase("sliding_window");
  EXPECT_EQ(qwen2(j).sliding_window, (V{4096, 0, 4096}));  // the config class's default
  j["layer_types"] = {"full_attention", "sliding_attention"};
  peft::test::expect_throw_with<peft::ConfigError>([&] { qwen2(j); }, {"cfg.json", "layer_types", "(3)"});
  j["layer_types"] = {"full_attention", "chunked_attention", "full_attention"};
  peft::test::expect_throw_with<peft::ConfigError>([&] { qwen2(j); }, {"cfg.json", "chunked_attention"});
  j["layer_types"] = {"full_attention", "full_attention", "full_attention"};
  j["sliding_window"] = -2;
  peft::test::expect_throw_with<peft::ConfigError>([&] { qwen2(j); }, {"cfg.json", "sliding_window"});

  auto mistral = [](const nlohmann::json& j) { return peft::models::mistral_config(ModelConfig(j, "cfg.json")); };
  nlohmann::json m = tiny("mistral");
  EXPECT_EQ(mistral(m).sliding_window, (V{4096, 4096, 4096}));  // MistralConfig's default
  m["sliding_window"] = nullptr;
  EXPECT_EQ(mistral(m).sliding_window, (V{0, 0, 0}));
  m["sliding_window"] = 3;
  m["attention_bias"] = true;  // not a Mistral option: its projections have no bias
  const auto mc = mistral(m);
  EXPECT_EQ(mc.sliding_window, (V{3, 3, 3}));
  EXPECT_FALSE(mc.q_bias || mc.k_bias || mc.v_bias || mc.o_bias || mc.qk_norm);
}

TEST(LlamaFamilyConfig, BiasesNormsAndHeadDim) {
  const auto q2 = peft::models::qwen2_config(ModelConfig(tiny("qwen2")));
  EXPECT_TRUE(q2.q_bias && q2.k_bias && q2.v_bias);
  EXPECT_FALSE(q2.o_bias || q2.mlp_bias || q2.qk_norm);
  EXPECT_EQ(q2.head_dim, 8);
  EXPECT_EQ(q2.model_type, "qwen2");
  nlohmann::json j = tiny("qwen3");
  auto q3 = peft::models::qwen3_config(ModelConfig(j));
  EXPECT_TRUE(q3.qk_norm);
  EXPECT_FALSE(q3.q_bias || q3.k_bias || q3.v_bias || q3.o_bias);
  EXPECT_EQ(q3.head_dim, 128);  // Qwen3Config's default, not hidden / heads
  j["attention_bias"] = true;
  j["head_dim"] = 6;
  q3 = peft::models::qwen3_config(ModelConfig(j));
  EXPECT_TRUE(q3.q_bias && q3.k_bias && q3.v_bias && q3.o_bias);
  EXPECT_EQ(q3.head_dim, 6);
  // The model is built with transformers' parameter names and shapes.
  auto m = peft::models::create_model(ModelConfig(j), peft::models::TaskHead::CausalLM);
  auto params = m->named_parameters();
  EXPECT_EQ(params["model.layers.0.self_attn.q_proj.weight"].sizes(), (at::IntArrayRef{24, 32}));
  EXPECT_EQ(params["model.layers.0.self_attn.o_proj.bias"].sizes(), (at::IntArrayRef{32}));
  EXPECT_EQ(params["model.layers.2.self_attn.q_norm.weight"].sizes(), (at::IntArrayRef{6}));
  EXPECT_EQ(params["model.layers.2.self_attn.k_norm.weight"].sizes(), (at::IntArrayRef{6}));
  EXPECT_FALSE(params.contains("model.layers.0.mlp.down_proj.bias"));
}

// PEFT 0.21's TRANSFORMERS_MODELS_TO_{LORA,ADALORA,IA3,IA3_FEEDFORWARD}_*_MAPPING rows.
TEST(LlamaFamilyConfig, PeftDefaultTargets) {
  using V = std::vector<std::string>;
  for (const char* mt : {"qwen2", "qwen3", "mistral"}) EXPECT_EQ(peft::default_lora_targets(mt), (V{"q_proj", "v_proj"})) << mt;
  EXPECT_EQ(peft::default_adalora_targets("qwen2"), (V{"q_proj", "v_proj"}));
  EXPECT_EQ(peft::default_adalora_targets("qwen3"), (V{"q_proj", "v_proj"}));
  EXPECT_TRUE(peft::default_adalora_targets("mistral").empty());  // none in PEFT's table
  EXPECT_EQ(peft::default_ia3_targets("qwen2"), (V{"q_proj", "v_proj", "down_proj"}));
  EXPECT_EQ(peft::default_ia3_targets("qwen3"), (V{"q_proj", "v_proj", "down_proj"}));
  EXPECT_EQ(peft::default_ia3_targets("mistral"), (V{"k_proj", "v_proj", "down_proj"}));
  for (const char* mt : {"qwen2", "qwen3", "mistral"}) EXPECT_EQ(peft::default_ia3_feedforward(mt), (V{"down_proj"})) << mt;
}

}  // namespace
