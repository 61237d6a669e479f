// LoadOptions::llamacpp_numerics: a GGUF model computed as llama.cpp's CPU backend computes it,
// checked against llama.cpp's own logits (tests/fixtures/gguf/llamacpp/, written by
// tools/llamacpp/gen_llamacpp_logits.py with the llama.cpp build of tools/llamacpp) for every
// block type the mode reproduces, and against llama.cpp's greedy tokens on SmolLM2-135M-Instruct
// Q4_1 when the real file is present. The plain fp32 path is measured beside it: it sits at the
// distance llama.cpp's activation quantisation puts between the two.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "golden.h"
#include "peft/io/tensor_bridge.h"
#include "peft/io/tokenizer.h"
#include "peft/models/generation.h"
#include "peft/models/model.h"
#include "peft/quant/ggml_cpu.h"

namespace {

using peft::test::fixture;

struct Config {
  const char* key;   ///< logits key in the fixture
  bool kv_f16, flash_attn, steps;
};
const Config kConfigs[] = {
    {"logits_f32_cache", false, false, false},  // dump_logits: F32 KV cache, -fa off
    {"logits_default", true, true, false},      // llama.cpp's defaults: F16 KV cache, -fa auto (on)
    {"logits_default_steps", true, true, true}, // the same, one token per llama_decode
};

// Logits [B, T, vocab] for each row on its own (fresh cache): all positions at once, or token by
// token through a KV cache.
at::Tensor logits_of(peft::models::PretrainedModel& m, const at::Tensor& ids, bool steps) {
  torch::NoGradGuard ng;
  std::vector<at::Tensor> rows;
  for (int64_t b = 0; b < ids.size(0); ++b) {
    const at::Tensor row = ids.narrow(0, b, 1);
    if (!steps) {
      peft::models::ModelInputs in;
      in.input_ids = row;
      rows.push_back(m.forward(in).logits);
      continue;
    }
    peft::models::KVCache cache;
    std::vector<at::Tensor> cols;
    for (int64_t t = 0; t < row.size(1); ++t) {
      peft::models::ModelInputs in;
      in.input_ids = row.narrow(1, t, 1);
      in.cache = &cache;
      cols.push_back(m.forward(in).logits);
    }
    rows.push_back(at::cat(cols, 1));
  }
  return at::cat(rows, 0);
}

double max_abs(const at::Tensor& a, const at::Tensor& b) { return (a - b).abs().max().item<double>(); }

const nlohmann::json& manifest() {
  static const nlohmann::json m = nlohmann::json::parse(peft::read_file(fixture("gguf/llamacpp/manifest.json")));
  return m;
}

std::shared_ptr<peft::models::PretrainedModel> load(const std::string& path, bool kv_f16, bool fa) {
  peft::models::LoadOptions o;
  o.llamacpp_numerics.enabled = true;
  o.llamacpp_numerics.kv_cache_f16 = kv_f16;
  o.llamacpp_numerics.flash_attn = fa;
  return peft::models::load_model(path, o);
}

// Greedy ids after `prompt`, without the end-of-generation token llama.cpp stops before.
void expect_llamacpp_greedy(peft::models::PretrainedModel& m, const std::vector<int64_t>& prompt, int64_t n,
                            const nlohmann::json& ref, const std::string& what) {
  auto gc = peft::models::generation_config_from(m.config());
  gc.max_new_tokens = n;
  const at::Tensor out = peft::models::generate(m, torch::tensor(prompt).unsqueeze(0), {}, gc)[0];
  const std::vector<int64_t> all(out.data_ptr<int64_t>(), out.data_ptr<int64_t>() + out.numel());
  std::vector<int64_t> gen(all.begin() + static_cast<long>(prompt.size()), all.end());
  const auto want = ref["generated_ids"].get<std::vector<int64_t>>();
  if (ref["stopped_at_eog"].get<bool>()) {
    ASSERT_EQ(gen.size(), want.size() + 1) << what;
    EXPECT_NE(std::find(gc.eos_token_id.begin(), gc.eos_token_id.end(), gen.back()), gc.eos_token_id.end()) << what;
    gen.pop_back();
  }
  EXPECT_EQ(gen, want) << what;
}

class GgufLlamaCpp : public ::testing::TestWithParam<std::string> {};

TEST_P(GgufLlamaCpp, LogitsEqualLlamaCpps) {
  const std::string name = GetParam();
  const auto& entry = manifest()["files"][name];
  const std::string path = peft::test::source_path(entry["model"].get<std::string>());
  const auto ref = peft::io::load_safetensors(fixture("gguf/llamacpp/" + name + ".safetensors"));
  const at::Tensor ids = ref.at("input_ids").to(at::kLong);
  auto plain = peft::models::load_model(path);
  const at::Tensor fp32 = logits_of(*plain, ids, false);
  for (const Config& cfg : kConfigs) {
    auto model = load(path, cfg.kv_f16, cfg.flash_attn);
    const at::Tensor want = ref.at(cfg.key);
    const at::Tensor got = logits_of(*model, ids, cfg.steps);
    const double d_mode = max_abs(got, want), d_plain = max_abs(fp32, want);
    std::cout << name << " " << cfg.key << ": max |ours - llama.cpp| " << d_mode << " (fp32 path: " << d_plain
              << ")\n";
    // The same operations in the same order: llama.cpp's numbers, bit for bit.
    EXPECT_EQ(d_mode, 0.0) << name << " " << cfg.key;
    // The plain path is far away (activation quantisation), so the comparison has teeth.
    EXPECT_GT(d_plain, 1e-3) << name << " " << cfg.key;
  }
}

TEST_P(GgufLlamaCpp, GreedyEqualsLlamaCpps) {
  // generate() keeps only the last position through the last layer's feed-forward and the output,
  // as llama.cpp does for a prompt: those matmuls then run llama.cpp's one-row kernels.
  const std::string name = GetParam();
  const auto& entry = manifest()["files"][name];
  const std::string path = peft::test::source_path(entry["model"].get<std::string>());
  const auto& g = entry["greedy"];
  const auto prompt = g["prompt_ids"].get<std::vector<int64_t>>();
  for (const auto& [key, kv_f16, fa] : {std::tuple<const char*, bool, bool>{"defaults", true, true},
                                        std::tuple<const char*, bool, bool>{"f32_cache", false, false}}) {
    auto model = load(path, kv_f16, fa);
    expect_llamacpp_greedy(*model, prompt, 16, g[key], name + " " + key);
  }
}

INSTANTIATE_TEST_SUITE_P(Files, GgufLlamaCpp,
                         ::testing::Values("tiny_llama_q4_0", "tiny_llama_q4_1", "tiny_llama_q5_0", "tiny_llama_q5_1",
                                           "tiny_llama_q8_0", "tiny_llama_f16", "tiny_llama_tied_q8_0",
                                           "tiny_llama_kq_q4_k", "tiny_llama_kq_q5_k", "tiny_llama_kq_q6_k",
                                           "tiny_llama_kq_q4_k_m", "tiny_llama3_rope_q8_0"),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

TEST(GgufLlamaCppNumerics, TrainingStaysFloat) {
  // With gradients recorded the mode is off: the loss and the input gradient are the fp32 path's.
  const std::string path = fixture("gguf/models/tiny_llama/tiny_llama_q4_1.gguf");
  auto mode = load(path, true, true);
  auto plain = peft::models::load_model(path);
  const at::Tensor ids = peft::io::load_safetensors(fixture("gguf/llamacpp/tiny_llama_q4_1.safetensors"))
                             .at("input_ids").narrow(0, 0, 1).to(at::kLong);
  peft::models::ModelInputs in;
  in.input_ids = ids;
  in.labels = ids;
  EXPECT_TRUE(at::equal(mode->forward(in).loss, plain->forward(in).loss));
}

TEST(GgufLlamaCppNumerics, RefusalsAreNamed) {
  const std::string q41 = fixture("gguf/models/tiny_llama/tiny_llama_q4_1.gguf");
  peft::models::LoadOptions o;
  o.llamacpp_numerics.enabled = true;
  o.dequantize = true;
  peft::test::expect_throw_with<peft::ConfigError>([&] { (void)peft::models::load_model(q41, o); },
                                                    {"llamacpp_numerics", "dequantize"});
  // BF16 weights: llama.cpp's BF16 matmul is not reproduced.
  o.dequantize = false;
  peft::test::expect_throw_with<peft::NotSupported>(
      [&] { (void)peft::models::load_model(fixture("gguf/models/tiny_llama/tiny_llama_bf16.gguf"), o); },
      {"BF16", "llamacpp_numerics"});
  // One sequence at a time.
  auto m = load(q41, true, true);
  torch::NoGradGuard ng;
  peft::models::ModelInputs in;
  in.input_ids = at::ones({2, 3}, at::kLong);
  peft::test::expect_throw_with<peft::NotSupported>([&] { (void)m->forward(in); }, {"one sequence"});
}

// The real SmolLM2-135M-Instruct Q4_1 file (scripts/fetch_models.sh; skipped when absent): greedy
// generation in the mode gives llama.cpp's 32 tokens on the three prompts of
// tests/fixtures/gguf/smollm2_greedy.json, with llama.cpp's defaults (F16 KV cache, flash
// attention: llama-simple's text) and with an F32 cache and flash attention off (dump_logits).
TEST(GgufLlamaCppNumerics, SmolLM2GreedyEqualsLlamaCpps) {
  const char* env = std::getenv("PEFT_SMOLLM2_GGUF");
  const std::string path = env ? env : peft::test::source_path("build/models/SmolLM2-135M-Instruct.Q4_1.gguf");
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " not present (scripts/fetch_models.sh)";
  const auto golden = nlohmann::json::parse(peft::read_file(fixture("gguf/smollm2_greedy.json")));
  const auto tok = peft::io::Tokenizer::from_pretrained(path);
  for (const auto& [key, kv_f16, fa] : {std::tuple<const char*, bool, bool>{"llamacpp_defaults", true, true},
                                        std::tuple<const char*, bool, bool>{"llamacpp", false, false}}) {
    auto model = load(path, kv_f16, fa);
    for (const auto& c : golden["cases"]) {
      const auto enc = tok.encode(c["prompt"].get<std::string>());
      const std::vector<int64_t> prompt(enc.ids.begin(), enc.ids.end());
      ASSERT_EQ(prompt, c["prompt_ids"].get<std::vector<int64_t>>()) << c["prompt"];
      expect_llamacpp_greedy(*model, prompt, 32, c[key], std::string(key) + ": " + c["prompt"].get<std::string>());
    }
  }
}

}  // namespace
