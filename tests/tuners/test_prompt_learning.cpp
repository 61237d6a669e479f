// Prompt Tuning, P-Tuning, Prefix Tuning / P-Tuning v2 against Python PEFT
// (tests/fixtures/prompt/*, tools/reference/gen_prompt.py): a matrix over model x method checking
// parameter counts, logits, loss, prompt-encoder and classifier gradients, PEFT-saved adapters,
// our saved adapters, and greedy generation; plus configs, init modes and errors.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "golden.h"
#include "peft/core/error.h"
#include "peft/models/model.h"
#include "peft/peft_model.h"
#include "peft/tuners/p_tuning/config.h"
#include "peft/tuners/prefix_tuning/config.h"
#include "peft/tuners/prompt_learning/encoder.h"
#include "peft/tuners/prompt_tuning/config.h"

namespace {

namespace fs = std::filesystem;
using peft::test::close;
using peft::test::GoldenCase;
using peft::test::grad_close;

const std::vector<std::string> kCases = {
    "llama_causal_prompt", "llama_causal_ptuning_mlp", "llama_causal_ptuning_lstm", "llama_causal_prefix",
    "llama_causal_prefix_proj", "gpt2_causal_prompt", "gpt2_causal_prefix", "llama_seqcls_prompt",
    "llama_seqcls_prefix", "llama_tokcls_ptuning_mlp", "bert_seqcls_prompt", "bert_seqcls_ptuning_mlp",
    "bert_seqcls_prefix", "bert_seqcls_prefix_proj", "bert_tokcls_prompt", "bert_tokcls_prefix",
    "t5_seq2seq_prompt", "t5_seq2seq_ptuning_mlp", "t5_seq2seq_prefix"};

std::unique_ptr<peft::PeftConfig> config_of(const GoldenCase& g) {
  nlohmann::json j = g.meta["config"];
  j["peft_type"] = g.meta["peft_type"];
  j["task_type"] = g.meta["task_type"];
  j["num_virtual_tokens"] = g.meta["num_virtual_tokens"];
  return peft::peft_config_from_json(j, g.dir + "/case.json");
}

std::shared_ptr<peft::models::PretrainedModel> base_of(const GoldenCase& g) {
  auto m = peft::models::load_model(peft::test::fixture(g.meta["base"].get<std::string>()));
  m->eval();
  return m;
}

peft::models::ModelInputs inputs_of(const GoldenCase& g) {
  peft::models::ModelInputs in;
  for (const auto& [k, v] : g.t) {
    if (k == "in.input_ids") in.input_ids = v;
    if (k == "in.attention_mask") in.attention_mask = v;
    if (k == "in.token_type_ids") in.token_type_ids = v;
    if (k == "in.decoder_input_ids") in.decoder_input_ids = v;
    if (k == "in.labels") in.labels = v;
  }
  return in;
}

void load_encoder(peft::PeftModel& pm, const std::string& file) {
  const auto want = peft::io::load_safetensors(file);
  auto have = pm.prompt_encoder_state();
  ASSERT_EQ(have.size(), want.size()) << file;
  torch::NoGradGuard ng;
  for (auto& [k, v] : have) {
    ASSERT_TRUE(want.count(k)) << "encoder parameter " << k << " not in " << file;
    v.copy_(want.at(k));
  }
}

class PromptMatrix : public ::testing::TestWithParam<std::string> {};

TEST_P(PromptMatrix, MatchesPeft) {
  const GoldenCase g = peft::test::load_case("prompt/" + GetParam());
  auto pm = peft::get_peft_model(base_of(g), *config_of(g));
  load_encoder(*pm, g.dir + "/encoder.safetensors");
  const auto [trainable, all] = pm->get_nb_trainable_parameters();
  EXPECT_EQ(trainable, g.meta["trainable_params"].get<int64_t>());
  EXPECT_EQ(all, g.meta["all_params"].get<int64_t>());

  // Forward, loss and gradients of the prompt parameters (and the classifier).
  const auto in = inputs_of(g);
  auto out = pm->forward(in);
  EXPECT_TRUE(close(out.logits, g["logits"], g.atol, g.rtol)) << "logits";
  EXPECT_TRUE(close(out.loss.reshape({1}), g["loss"], g.atol, g.rtol)) << "loss";
  out.loss.backward();
  int checked = 0;
  for (const auto& [k, v] : pm->prompt_encoder_state()) {
    if (!g.has("grad." + k)) continue;
    EXPECT_TRUE(grad_close(v.grad(), g["grad." + k], g.grad_rtol)) << "grad of " << k;
    ++checked;
  }
  EXPECT_GT(checked, 0);
  for (const auto& p : pm->base_model().named_parameters(true))
    if (g.has("grad." + p.key())) {
      EXPECT_TRUE(grad_close(p.value().grad(), g["grad." + p.key()], g.grad_rtol)) << "grad of " << p.key();
    }
  EXPECT_TRUE(close(pm->prompt_embeddings(), g["prompt_embeddings"], g.atol, g.rtol)) << "prompt_embeddings";

  // Greedy generation with the prompt / prefix.
  if (g.meta["generate"].get<bool>()) {
    peft::models::GenerationConfig gc;
    gc.max_new_tokens = g.meta["gen_tokens"].get<int64_t>();
    gc.pad_token_id = 0;
    const at::Tensor ids = pm->generate(in.input_ids, in.attention_mask, gc);
    EXPECT_TRUE(at::equal(ids, g["gen_ids"])) << "generated " << ids << "\nPEFT " << g["gen_ids"];
  }

  // The adapter PEFT saved loads here (frozen) and gives PEFT's logits.
  {
    auto loaded = peft::PeftModel::from_pretrained(base_of(g), g.dir + "/adapter");
    torch::NoGradGuard ng;
    EXPECT_TRUE(close(loaded->forward(in).logits, g["logits_loaded"], g.atol, g.rtol)) << "PEFT-saved adapter";
    EXPECT_EQ(loaded->get_nb_trainable_parameters().first, 0);
  }
  // Ours round-trips (and is written where tools/reference/verify_prompt.py reads it in PEFT).
  const std::string saved = std::string(PEFT_TEST_OUTPUT_DIR) + "/prompt_saved/" + GetParam();
  fs::remove_all(saved);
  pm->save_pretrained(saved);
  {
    auto loaded = peft::PeftModel::from_pretrained(base_of(g), saved);
    torch::NoGradGuard ng;
    EXPECT_TRUE(close(loaded->forward(in).logits, g["logits"], g.atol, g.rtol)) << "our saved adapter";
  }
  const auto cfg = nlohmann::json::parse(peft::read_file(saved + "/adapter_config.json"));
  const auto peft_cfg = nlohmann::json::parse(peft::read_file(g.dir + "/adapter/adapter_config.json"));
  for (const char* k : {"peft_type", "task_type", "num_virtual_tokens", "token_dim", "num_attention_heads",
                        "num_layers", "num_transformer_submodules"})
    EXPECT_EQ(cfg[k], peft_cfg[k]) << k;
}

INSTANTIATE_TEST_SUITE_P(Peft, PromptMatrix, ::testing::ValuesIn(kCases),
                         [](const auto& info) { return info.param; });

}  // namespace
