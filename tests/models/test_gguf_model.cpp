// GGUF models: tiny random Llamas converted by llama.cpp's convert_hf_to_gguf.py (F32, F16, BF16,
// Q8_0; untied and tied) and stories260K, loaded here, give transformers' logits
// (tools/reference/gen_gguf_models.py). Block-quantised weights stay quantised in their slots.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "golden.h"
#include "peft/core/json_file.h"
#include "peft/io/gguf.h"
#include "peft/io/tensor_bridge.h"
#include "peft/models/adaptable_linear.h"
#include "peft/models/generation.h"
#include "peft/models/gguf_model.h"
#include "peft/io/tokenizer.h"
#include "peft/models/model.h"
#include "peft/quant/ggml_linear.h"

namespace {

using peft::test::close;
using peft::test::fixture;

std::map<std::string, at::Tensor> expected(const std::string& rel) {
  return peft::io::load_safetensors(fixture(rel));
}

at::Tensor logits_of(peft::models::PretrainedModel& m, const at::Tensor& ids) {
  torch::NoGradGuard ng;
  peft::models::ModelInputs in;
  in.input_ids = ids;
  return m.forward(in).logits;
}

int count_quantized(peft::models::PretrainedModel& m) {
  int n = 0;
  for (const auto& item : m.named_modules("", false))
    if (auto* s = dynamic_cast<peft::models::AdaptableLinearImpl*>(item.value().get()))
      n += s->quantized() != nullptr;
  return n;
}

struct Case {
  const char* dir;
  const char* file;
  const char* key;
  double atol;
  int quantized_slots;  ///< projections kept in their blocks
  double max_rel;       ///< bound on |logits - fp32 logits| / |fp32 logits| (quantised files)
};

class GgufModel : public ::testing::TestWithParam<Case> {};

TEST_P(GgufModel, LogitsMatchTransformers) {
  const Case c = GetParam();
  const auto exp = expected(std::string("gguf/models/") + c.dir + "/expected.safetensors");
  const std::string path = fixture(std::string("gguf/models/") + c.dir + "/" + c.file);
  auto model = peft::models::load_model(path);
  const at::Tensor logits = logits_of(*model, exp.at("input_ids"));
  EXPECT_TRUE(close(logits, exp.at(c.key), c.atol)) << c.file;
  const bool quantized = c.quantized_slots > 0;
  // Block-quantised projections stay in their blocks (7 per layer, + an untied lm_head).
  EXPECT_EQ(count_quantized(*model), c.quantized_slots) << c.file;
  // The quantised file is within quantisation error of the fp32 model's logits.
  if (quantized) {
    const double rel = ((logits - exp.at("logits")).norm() / exp.at("logits").norm()).item<double>();
    EXPECT_LT(rel, c.max_rel) << c.file;
    EXPECT_GT(rel, 1e-6) << c.file << ": the quantised logits should differ from fp32";
    std::cout << c.file << ": relative logit error vs fp32 " << rel << "\n";
  }
  // dequantize: true gives the same numbers through plain fp32 parameters.
  peft::models::LoadOptions o;
  o.dequantize = true;
  auto dense = peft::models::load_model(path, o);
  EXPECT_EQ(count_quantized(*dense), 0);
  EXPECT_TRUE(close(logits_of(*dense, exp.at("input_ids")), exp.at(c.key), c.atol)) << c.file << " dequantized";
}

INSTANTIATE_TEST_SUITE_P(
    Files, GgufModel,
    ::testing::Values(Case{"tiny_llama", "tiny_llama_f32.gguf", "logits", 1e-5, 0, 0},
                      Case{"tiny_llama", "tiny_llama_f16.gguf", "logits_f16", 1e-5, 0, 0},
                      Case{"tiny_llama", "tiny_llama_bf16.gguf", "logits_bf16", 1e-5, 0, 0},
                      Case{"tiny_llama", "tiny_llama_q8_0.gguf", "logits_q8_0", 1e-5, 15, 0.05},
                      Case{"tiny_llama", "tiny_llama_q4_0.gguf", "logits_q4_0", 1e-5, 15, 0.5},
                      Case{"tiny_llama", "tiny_llama_q4_1.gguf", "logits_q4_1", 1e-5, 15, 0.5},
                      Case{"tiny_llama_tied", "tiny_llama_tied_f32.gguf", "logits", 1e-5, 0, 0},
                      Case{"tiny_llama_tied", "tiny_llama_tied_q8_0.gguf", "logits_q8_0", 1e-5, 14, 0.05},
                      Case{"tiny_llama_kq", "tiny_llama_kq_q4_k.gguf", "logits_q4_k", 1e-5, 7, 0.5},
                      Case{"tiny_llama_kq", "tiny_llama_kq_q6_k.gguf", "logits_q6_k", 1e-5, 7, 0.1},
                      Case{"tiny_llama_kq", "tiny_llama_kq_q4_k_m.gguf", "logits_q4_k_m", 1e-5, 7, 0.5},
                      Case{"tiny_llama3_rope", "tiny_llama3_rope_q8_0.gguf", "logits_q8_0", 1e-5, 7, 0.1}));

// Llama 3.1-style files: rope_freqs.weight becomes transformers' llama3 rope parameters again.
TEST(GgufModelConfig, Llama3RopeFactorsBecomeRopeScaling) {
  const auto f = peft::io::GgufFile::open(fixture("gguf/models/tiny_llama3_rope/tiny_llama3_rope_q8_0.gguf"));
  ASSERT_TRUE(f.has_tensor("rope_freqs.weight"));
  const nlohmann::json c = peft::models::gguf_hf_config(f);
  const nlohmann::json want = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                               {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 64}};
  EXPECT_EQ(c.at("rope_scaling"), want) << c.dump();
  EXPECT_EQ(c.at("rope_theta").get<double>(), 500000.0);
}

TEST(GgufModelConfig, ConfigMatchesTheHfFolderItCameFrom) {
  for (const char* d : {"tiny_llama", "tiny_llama_tied"}) {
    const std::string dir = fixture(std::string("gguf/models/") + d);
    const auto f = peft::io::GgufFile::open(dir + "/" + d + "_f32.gguf");
    const nlohmann::json got = peft::models::gguf_hf_config(f);
    const nlohmann::json hf = peft::read_json_file(dir + "/hf/config.json");
    for (const char* k : {"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                          "num_key_value_heads", "vocab_size", "tie_word_embeddings", "max_position_embeddings"})
      EXPECT_EQ(got.at(k), hf.at(k)) << d << " " << k;
    EXPECT_DOUBLE_EQ(got.at("rms_norm_eps").get<double>(), hf.at("rms_norm_eps").get<double>()) << d;
    EXPECT_EQ(got.at("model_type"), "llama");
  }
}

TEST(GgufModelConvert, ConvertedFolderHoldsTheHfWeights) {
  // peft convert model.gguf OUT: the weights transformers saved, bit for bit (F32 file).
  const std::string dir = fixture("gguf/models/tiny_llama");
  const std::string out = peft::test::tmp_dir("gguf_convert");
  peft::models::convert_gguf_to_hf(dir + "/tiny_llama_f32.gguf", out);
  const auto mine = peft::io::load_safetensors(out + "/model.safetensors");
  const auto ref = peft::io::load_safetensors(dir + "/hf/model.safetensors");
  ASSERT_EQ(mine.size(), ref.size());
  for (const auto& [k, v] : ref) {
    ASSERT_TRUE(mine.count(k)) << k;
    EXPECT_TRUE(at::equal(mine.at(k), v.to(at::kFloat))) << k;
  }
  auto model = peft::models::load_model(out);
  const auto exp = expected("gguf/models/tiny_llama/expected.safetensors");
  EXPECT_TRUE(close(logits_of(*model, exp.at("input_ids")), exp.at("logits"), 1e-5));
}

TEST(GgufModelStories260K, LogitsAndGreedyMatchTransformers) {
  const auto exp = expected("gguf/models/stories260K_expected.safetensors");
  auto model = peft::models::load_model(fixture("gguf/models/stories260K_f32.gguf"));
  for (int p = 0; p < 4; ++p) {
    const std::string k = "prompt" + std::to_string(p);
    EXPECT_TRUE(close(logits_of(*model, exp.at(k + "_ids")), exp.at(k + "_logits"), 2e-5, 2e-6)) << k;
  }
}

TEST(GgufModelQuantized, BlockWeightForwardAndInputGradientMatchDense) {
  // The quantised slot's forward and input gradient equal x·Wᵀ / g·W with W = its dequantisation.
  const auto f = peft::io::GgufFile::open(fixture("gguf/models/tiny_llama/tiny_llama_q8_0.gguf"));
  const auto& t = f.tensor("blk.0.ffn_down.weight");
  std::vector<uint8_t> bytes(t.data, t.data + t.nbytes);
  peft::quant::GgmlLinearWeight w(t.ggml_type(), bytes, t.ne[1], t.ne[0]);
  EXPECT_EQ(w.nbytes(), static_cast<int64_t>(t.nbytes));
  const at::Tensor W = w.dequantize();
  at::Tensor x = at::randn({3, 5, t.ne[0]}).requires_grad_(true);
  at::Tensor y = w.forward(x);
  EXPECT_TRUE(close(y, at::matmul(x, W.t()), 1e-5, 1e-5));
  const at::Tensor g = at::randn_like(y);
  y.backward(g);
  EXPECT_TRUE(close(x.grad(), at::matmul(g, W), 1e-5, 1e-5));
}

// The real SmolLM2-135M-Instruct Q4_1 file (scripts/fetch_models.sh; skipped when absent): greedy
// ids from the prompt equal transformers' on the same (dequantised) weights, 32 tokens for each of
// the three prompts of tests/fixtures/gguf/smollm2_greedy.json.
TEST(GgufModelSmolLM2, GreedyMatchesTransformersOnTheDequantisedWeights) {
  const char* env = std::getenv("PEFT_SMOLLM2_GGUF");
  const std::string path = env ? env : peft::test::source_path("build/models/SmolLM2-135M-Instruct.Q4_1.gguf");
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " not present (scripts/fetch_models.sh)";
  const auto golden = nlohmann::json::parse(peft::read_file(fixture("gguf/smollm2_greedy.json")));
  auto model = peft::models::load_model(path);
  const auto tok = peft::io::Tokenizer::from_pretrained(path);
  auto gc = peft::models::generation_config_from(model->config());
  gc.max_new_tokens = 32;
  for (const auto& c : golden["cases"]) {
    const auto enc = tok.encode(c["prompt"].get<std::string>());
    const std::vector<int64_t> prompt(enc.ids.begin(), enc.ids.end());
    EXPECT_EQ(prompt, c["prompt_ids"].get<std::vector<int64_t>>()) << c["prompt"];
    const at::Tensor out = peft::models::generate(*model, torch::tensor(prompt).unsqueeze(0), {}, gc)[0];
    const std::vector<int64_t> all(out.data_ptr<int64_t>(), out.data_ptr<int64_t>() + out.numel());
    const std::vector<int64_t> gen(all.begin() + static_cast<long>(prompt.size()), all.end());
    auto want = c["transformers_dequant"]["generated_ids"].get<std::vector<int64_t>>();
    EXPECT_EQ(std::vector<int64_t>(gen.begin(), gen.begin() + static_cast<long>(std::min(gen.size(), want.size()))), want)
        << c["prompt"];
  }
}

TEST(GgufModelErrors, UnknownArchitectureAndTensorsAreNamed) {
  using peft::io::GgufValue;
  const std::string dir = peft::test::tmp_dir("gguf_model_errors");
  const auto src = peft::io::GgufFile::open(fixture("gguf/models/tiny_llama/tiny_llama_f32.gguf"));
  auto rewrite = [&](const std::string& name, const std::string& arch, const std::string& extra_tensor) {
    std::vector<std::pair<std::string, GgufValue>> meta;
    for (const auto& k : src.keys()) {
      GgufValue v = src.at(k);
      if (k == "general.architecture") v = GgufValue::from_string(arch);
      meta.emplace_back(k, v);
    }
    std::vector<peft::io::GgufTensorBytes> ts;
    for (const auto& t : src.tensors()) ts.push_back({t.name, t.ggml_type(), t.ne, t.data, t.nbytes});
    static const float one[4] = {1, 1, 1, 1};
    if (!extra_tensor.empty()) ts.push_back({extra_tensor, peft::io::GgmlType::F32, {4}, one, 16});
    peft::io::write_gguf(dir + "/" + name, meta, ts);
    return dir + "/" + name;
  };
  peft::test::expect_throw_with<peft::NotSupported>(
      [&] { (void)peft::models::load_model(rewrite("mamba.gguf", "mamba", "")); },
      {"mamba.gguf", "general.architecture 'mamba' is not supported", "llama"});
  peft::test::expect_throw_with<peft::FormatError>(
      [&] { (void)peft::models::load_model(rewrite("extra.gguf", "llama", "blk.0.ssm_conv.weight")); },
      {"extra.gguf", "not used by the llama architecture", "blk.0.ssm_conv.weight"});
  peft::models::LoadOptions o;
  o.load_in_4bit = true;
  peft::test::expect_throw_with<peft::ConfigError>(
      [&] { (void)peft::models::load_model(fixture("gguf/models/tiny_llama/tiny_llama_f32.gguf"), o); },
      {"load_in_4bit", "GGUF"});
}

}  // namespace
