// Llama against transformers (tests/fixtures/models/llama_*; tools/reference/gen_models_llama.py).
#include <dlfcn.h>
#include <sched.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "decoder_checks.h"
#include "golden.h"
#include "peft/models/generation.h"
#include "peft/core/error.h"
#include "peft/core/runtime.h"
#include "peft/io/tensor_bridge.h"
#include "peft/models/model.h"

namespace {

using peft::models::ModelInputs;
using peft::test::close;

std::shared_ptr<peft::models::PretrainedModel> load(const peft::test::GoldenCase& c) {
  return peft::models::load_model(c.dir);
}

TEST(Llama, CausalLogitsHiddenLossAndGradients) {
  const auto c = peft::test::load_case("models/llama_causal");
  auto m = load(c);
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
  EXPECT_EQ(n, 2 + 2 * 9 + 1);  // embed, norm, lm_head + 9 per layer
}

TEST(Llama, InputsEmbedsAndKeyValuePrefix) {
  const auto c = peft::test::load_case("models/llama_causal");
  auto m = load(c);
  torch::NoGradGuard ng;
  ModelInputs e;
  e.inputs_embeds = c["inputs_embeds"];
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

TEST(Llama, IncrementalDecodingEqualsFullForward) {
  const auto c = peft::test::load_case("models/llama_causal");
  auto m = load(c);
  peft::test::check_incremental_decoding(*m, c);
}

TEST(Llama, GreedyGenerationMatchesTransformers) {
  const auto c = peft::test::load_case("models/llama_causal");
  auto m = load(c);
  peft::test::check_greedy_generation(*m, c);
}

TEST(Llama, SequenceAndTokenClassification) {
  for (const char* name : {"models/llama_seqcls", "models/llama_tokcls"}) {
    const auto c = peft::test::load_case(name);
    auto m = load(c);
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

TEST(Llama, Bf16LogitsWithinBf16ToleranceOfFp32) {
  const auto c = peft::test::load_case("models/llama_causal");
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
  EXPECT_TRUE(close(l.to(at::kFloat), c["logits"], 0.05 * scale));
}

TEST(Llama, BadConfigsAreNamed) {
  nlohmann::json j = {{"model_type", "llama"}, {"hidden_size", 32}, {"num_attention_heads", 4},
                      {"num_key_value_heads", 3}, {"num_hidden_layers", 1}, {"intermediate_size", 8}, {"vocab_size", 16}};
  peft::test::expect_throw_with<peft::ConfigError>(
      [&] { peft::models::create_model(peft::models::ModelConfig(j, "cfg.json"), peft::models::TaskHead::CausalLM); },
      {"cfg.json", "num_attention_heads (4)", "num_key_value_heads (3)"});
  j["model_type"] = "mamba";
  peft::test::expect_throw_with<peft::NotSupported>(
      [&] { peft::models::create_model(peft::models::ModelConfig(j, "cfg.json"), peft::models::TaskHead::CausalLM); },
      {"model_type 'mamba'", "llama", "gpt2", "bert", "t5"});
  j["model_type"] = "llama";
  j["num_key_value_heads"] = 2;
  j["hidden_act"] = "swishy";
  peft::test::expect_throw_with<peft::NotSupported>(
      [&] { peft::models::create_model(peft::models::ModelConfig(j, "cfg.json"), peft::models::TaskHead::CausalLM); },
      {"activation 'swishy'"});
}

TEST(LoadChecks, CountNonfiniteAgreesWithAtenOnEveryFloatType) {
  for (const auto dt : {at::kFloat, at::kDouble, at::kBFloat16, at::kHalf}) {
    at::Tensor t = torch::randn({1000, 77}).to(dt);
    EXPECT_EQ(peft::io::count_nonfinite(t), 0) << dt;
    t.view(-1)[5] = std::numeric_limits<float>::quiet_NaN();
    t.view(-1)[6000] = std::numeric_limits<float>::infinity();
    t.view(-1)[76999] = -std::numeric_limits<float>::infinity();
    const int64_t aten = t.numel() - at::isfinite(t).sum().item<int64_t>();
    EXPECT_EQ(aten, 3);
    EXPECT_EQ(peft::io::count_nonfinite(t), aten) << dt;
    EXPECT_EQ(peft::io::count_nonfinite(t.t()), aten) << dt;  // non-contiguous: the ATen path
  }
  EXPECT_EQ(peft::io::count_nonfinite(torch::full({4}, 7, torch::kLong)), 0);
}

TEST(LoadChecks, NonFiniteBaseWeightsAreRefusedByNameUnlessAllowed) {
  namespace fs = std::filesystem;
  const std::string src = peft::test::fixture("models/llama_causal");
  const std::string dir = peft::test::tmp_dir("nonfinite_base");
  fs::copy_file(src + "/config.json", dir + "/config.json");
  auto w = peft::io::load_safetensors(src + "/model.safetensors");
  const std::string key = "model.layers.0.mlp.down_proj.weight";
  ASSERT_TRUE(w.count(key));
  w[key].view(-1)[3] = std::numeric_limits<float>::quiet_NaN();
  w[key].view(-1)[4] = std::numeric_limits<float>::infinity();
  peft::io::save_safetensors(dir + "/model.safetensors", w);
  peft::test::expect_throw_with<peft::FormatError>([&] { peft::models::load_model(dir); },
                                                   {dir, "NaN or infinite", key, "(2 of", "allow_nonfinite_weights"});
  peft::models::LoadOptions o;
  o.allow_nonfinite_weights = true;
  const auto m = peft::models::load_model(dir, o);
  EXPECT_EQ(peft::io::count_nonfinite(m->named_parameters()[key]), 2);
  // The same file with finite values loads.
  w[key].view(-1)[3] = 1e6f;
  w[key].view(-1)[4] = 0.f;
  peft::io::save_safetensors(dir + "/model.safetensors", w);
  EXPECT_NO_THROW(peft::models::load_model(dir));
}

TEST(LoadChecks, ATokenizerLargerThanTheVocabularyIsRefused) {
  const auto m = peft::models::load_model(peft::test::fixture("models/llama_causal"));
  const int64_t vocab = m->config().get_int("vocab_size");
  EXPECT_NO_THROW(peft::models::check_tokenizer_fits(*m, static_cast<std::size_t>(vocab), "tok"));
  EXPECT_NO_THROW(peft::models::check_tokenizer_fits(*m, static_cast<std::size_t>(vocab - 5), "tok"));
  peft::test::expect_throw_with<peft::ConfigError>(
      [&] { peft::models::check_tokenizer_fits(*m, static_cast<std::size_t>(vocab + 1), "some/tok"); },
      {"some/tok", std::to_string(vocab + 1) + " tokens", "vocab_size " + std::to_string(vocab)});
}

TEST(Runtime, AFastBlasServesGemm) {
  const auto info = peft::init_runtime();
  EXPECT_FALSE(info.reference_blas) << info.blas_library;
  if (at::hasMKL()) {
    // PyPI's LibTorch carries MKL inside libtorch_cpu.so (sgemm_ from there, or not exported).
    EXPECT_TRUE(info.blas_library.empty() || info.blas_library.find("libtorch_cpu") != std::string::npos)
        << info.blas_library;
  } else {
    // Debian's LibTorch calls the system BLAS: scripts/install_deps.sh selects OpenBLAS, and the
    // probe must see it.
    EXPECT_NE(info.blas_library.find("openblas"), std::string::npos) << info.blas_library;
  }
}

TEST(Runtime, OnePoolOfThreads) {
  // Without thread settings in the environment: LibTorch's pool takes one thread per usable core
  // and, where OpenBLAS runs GEMM on its own pthreads, OpenBLAS is held to one thread while the
  // library's large products split their rows over LibTorch's pool.
  const auto info = peft::init_runtime();
  if (std::getenv("OMP_NUM_THREADS") != nullptr) GTEST_SKIP() << "OMP_NUM_THREADS is set";
  cpu_set_t set;
  CPU_ZERO(&set);
  ASSERT_EQ(::sched_getaffinity(0, sizeof set, &set), 0);
  EXPECT_EQ(info.intra_op_threads, CPU_COUNT(&set));
  using GetFn = int (*)();
  const auto get = reinterpret_cast<GetFn>(::dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  const bool blas_env = std::getenv("OPENBLAS_NUM_THREADS") != nullptr || std::getenv("GOTO_NUM_THREADS") != nullptr;
  if (at::hasMKL() || get == nullptr) {
    EXPECT_FALSE(peft::gemm_rows_split());
  } else if (!blas_env) {
    EXPECT_EQ(get(), 1);
    EXPECT_TRUE(peft::gemm_rows_split());
  }
}

TEST(Runtime, BlasCoretypeAdviceOnlyForGenericKernelsOnAvxCpus) {
  // OpenBLAS 0.3.21 on a recent Xeon: generic Prescott kernels although the CPU has AVX-512.
  EXPECT_EQ(peft::advise_blas_coretype("Prescott", true, true), "SkylakeX");
  EXPECT_EQ(peft::advise_blas_coretype("Prescott", true, false), "Haswell");
  EXPECT_EQ(peft::advise_blas_coretype("Sandybridge", true, false), "Haswell");
  EXPECT_EQ(peft::advise_blas_coretype("Prescott", false, false), "");  // an old CPU: Prescott is right
  EXPECT_EQ(peft::advise_blas_coretype("Haswell", true, true), "");     // recognised kernels are kept
  EXPECT_EQ(peft::advise_blas_coretype("Zen", true, true), "");
  EXPECT_EQ(peft::advise_blas_coretype("", true, true), "");            // not OpenBLAS (MKL in the wheel)
}

TEST(Runtime, PeakRssSeesTouchedMemory) {
  // The current resident set (the high-water mark may be higher from earlier tests in this process).
  double before = 0;
  {
    std::ifstream f("/proc/self/status");
    for (std::string line; std::getline(f, line);)
      if (line.rfind("VmRSS:", 0) == 0) before = std::stod(line.substr(6)) / 1024.0;
  }
  ASSERT_GT(before, 1.0);
  ASSERT_GE(peft::peak_rss_mb(), before);
  {
    std::vector<char> block(std::size_t(96) << 20);
    for (std::size_t i = 0; i < block.size(); i += 4096) block[i] = static_cast<char>(i);
    EXPECT_GE(peft::peak_rss_mb(), before + 90.0) << "96 MiB touched";
  }
  EXPECT_GE(peft::peak_rss_mb(), before + 90.0) << "a high-water mark does not go down";
}

}  // namespace
