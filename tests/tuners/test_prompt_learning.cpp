// Prompt Tuning, P-Tuning, Prefix Tuning / P-Tuning v2 against Python PEFT
// (tests/fixtures/prompt/*, tools/reference/gen_prompt.py): a matrix over model x method checking
// parameter counts, logits, loss, prompt-encoder and classifier gradients, PEFT-saved adapters,
// our saved adapters, and greedy generation; plus configs, init modes and errors.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "golden.h"
#include "peft/core/error.h"
#include "peft/io/llama2c.h"
#include "peft/io/tokenizer.h"
#include "peft/models/model.h"
#include "peft/peft_model.h"
#include "peft/tuners/p_tuning/config.h"
#include "peft/tuners/prefix_tuning/config.h"
#include "peft/tuners/prompt_learning/encoder.h"
#include "peft/tuners/prompt_learning/ensemble.h"
#include "peft/tuners/prompt_tuning/config.h"
#include "peft/tuners/registry.h"
#include "peft/tuners/prompt_learning/model.h"

namespace {

namespace fs = std::filesystem;
using peft::test::close;
using peft::test::GoldenCase;
using peft::test::grad_close;

// Every case folder gen_prompt.py wrote (sorted).
std::vector<std::string> prompt_cases() {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(peft::test::fixture("prompt")))
    if (fs::exists(e.path() / "encoder.safetensors")) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

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

peft::models::ModelInputs prompt_inputs_of(const GoldenCase& g) {
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
  auto have = pm.tuner_as<peft::prompt::PromptLearningModel>().prompt_encoder_state();
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
  const auto in = prompt_inputs_of(g);
  auto out = pm->forward(in);
  EXPECT_TRUE(close(out.logits, g["logits"], g.atol, g.rtol)) << "logits";
  EXPECT_TRUE(close(out.loss.reshape({1}), g["loss"], g.atol, g.rtol)) << "loss";
  out.loss.backward();
  int checked = 0;
  for (const auto& [k, v] : pm->tuner_as<peft::prompt::PromptLearningModel>().prompt_encoder_state()) {
    if (!g.has("grad." + k)) continue;
    EXPECT_TRUE(grad_close(v.grad(), g["grad." + k], g.grad_rtol)) << "grad of " << k;
    ++checked;
  }
  EXPECT_GT(checked, 0);
  for (const auto& p : pm->base_model().named_parameters(true))
    if (g.has("grad." + p.key())) {
      EXPECT_TRUE(grad_close(p.value().grad(), g["grad." + p.key()], g.grad_rtol)) << "grad of " << p.key();
    }
  EXPECT_TRUE(close(pm->tuner_as<peft::prompt::PromptLearningModel>().prompt_embeddings(), g["prompt_embeddings"], g.atol, g.rtol)) << "prompt_embeddings";
  {  // disable_adapter(): the base model's forward (original classifier included)
    torch::NoGradGuard ng;
    auto plain = base_of(g);
    auto guard = pm->disable_adapter();
    EXPECT_TRUE(close(pm->forward(in).logits, plain->forward(in).logits, 1e-6));
  }

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

INSTANTIATE_TEST_SUITE_P(Peft, PromptMatrix, ::testing::ValuesIn(prompt_cases()),
                         [](const auto& info) { return info.param; });

// ---------------------------------------------------------------- configs

TEST(PromptConfig, JsonRoundTripAndDefaults) {
  peft::PromptEncoderConfig c;
  c.task_type = peft::TaskType::SeqCls;
  c.num_virtual_tokens = 7;
  c.encoder_reparameterization_type = "LSTM";
  const auto j = c.to_json();
  EXPECT_EQ(j["peft_type"], "P_TUNING");
  EXPECT_EQ(j["encoder_num_layers"], 2);
  EXPECT_TRUE(j["token_dim"].is_null());
  auto back = peft::peft_config_from_json(j, "mem");
  EXPECT_EQ(back->to_json(), j);
  // PEFT's defaults for missing keys.
  auto p = peft::peft_config_from_json({{"peft_type", "PREFIX_TUNING"}, {"num_virtual_tokens", 4}}, "mem");
  const auto& pc = dynamic_cast<const peft::PrefixTuningConfig&>(*p);
  EXPECT_FALSE(pc.prefix_projection);
  EXPECT_FALSE(pc.init_weights.has_value());
  auto t = peft::peft_config_from_json({{"peft_type", "PROMPT_TUNING"}, {"num_virtual_tokens", 4}}, "mem");
  EXPECT_EQ(dynamic_cast<const peft::PromptTuningConfig&>(*t).prompt_tuning_init, "RANDOM");
  // The P-Tuning v2 preset saves as PREFIX_TUNING and keeps its prefix dropout.
  auto v2 = peft::p_tuning_v2_config(peft::TaskType::TokenCls, 11);
  EXPECT_EQ(v2.to_json()["peft_type"], "PREFIX_TUNING");
  EXPECT_DOUBLE_EQ(v2.to_json()["prefix_dropout"].get<double>(), 0.1);
}

TEST(PromptConfig, InvalidCombinationsAreClearErrors) {
  using peft::test::expect_throw_with;
  expect_throw_with<peft::ConfigError>(
      [] { peft::peft_config_from_json({{"peft_type", "PROMPT_TUNING"}, {"num_virtual_tokens", 0}}, "a.json"); },
      {"num_virtual_tokens must be a positive integer", "got 0"});
  expect_throw_with<peft::ConfigError>(
      [] {
        peft::peft_config_from_json({{"peft_type", "PROMPT_TUNING"}, {"num_virtual_tokens", 3},
                                     {"prompt_tuning_init", "TEXT"}, {"tokenizer_name_or_path", "tok"}},
                                    "a.json");
      },
      {"prompt_tuning_init_text can't be None"});
  expect_throw_with<peft::ConfigError>(
      [] {
        peft::peft_config_from_json({{"peft_type", "PROMPT_TUNING"}, {"num_virtual_tokens", 3},
                                     {"prompt_tuning_init", "TEXT"}, {"prompt_tuning_init_text", "hi"}},
                                    "a.json");
      },
      {"tokenizer_name_or_path can't be None"});
  expect_throw_with<peft::ConfigError>(
      [] {
        peft::peft_config_from_json({{"peft_type", "PROMPT_TUNING"}, {"num_virtual_tokens", 3},
                                     {"tokenizer_kwargs", {{"use_fast", true}}}},
                                    "a.json");
      },
      {"tokenizer_kwargs only valid"});
  expect_throw_with<peft::ConfigError>(
      [] {
        peft::peft_config_from_json({{"peft_type", "P_TUNING"}, {"num_virtual_tokens", 3},
                                     {"encoder_reparameterization_type", "GRU"}},
                                    "a.json");
      },
      {"Prompt encoder type not recognized", "GRU"});
  expect_throw_with<peft::ConfigError>(
      [] {
        peft::peft_config_from_json({{"peft_type", "PREFIX_TUNING"}, {"num_virtual_tokens", 3}, {"init_weights", "ones"}},
                                    "a.json");
      },
      {"init_weights", "ones"});
  expect_throw_with<peft::ConfigError>(
      [] { peft::peft_config_from_json({{"peft_type", "PREFIX_TUNING"}, {"num_virtual_tokens", "3"}}, "a.json"); },
      {"a.json", "num_virtual_tokens", "integer"});

  // Prefix tuning refuses gradient checkpointing, as PEFT.
  auto base = peft::models::load_model(peft::test::fixture("models/llama_causal"));
  base->set_gradient_checkpointing(true);
  peft::PrefixTuningConfig pc;
  pc.task_type = peft::TaskType::CausalLM;
  pc.num_virtual_tokens = 2;
  expect_throw_with<peft::ConfigError>([&] { peft::get_peft_model(base, pc); }, {"gradient checkpointing"});
  // The task type must match the model's head.
  auto base2 = peft::models::load_model(peft::test::fixture("models/llama_causal"));
  pc.task_type = peft::TaskType::SeqCls;
  expect_throw_with<std::invalid_argument>([&] { peft::get_peft_model(base2, pc); }, {"SEQ_CLS", "head"});
  // A prefix built for another model does not load.
  pc.task_type = peft::TaskType::CausalLM;
  pc.num_layers = 5;
  expect_throw_with<peft::ConfigError>([&] { peft::get_peft_model(base2, pc); }, {"num_layers=5", "2 layers"});
}

TEST(PromptConfig, GqaOverrideAndModelFields) {
  auto base = peft::models::load_model(peft::test::fixture("models/llama_causal"));
  peft::PrefixTuningConfig pc;
  pc.task_type = peft::TaskType::CausalLM;
  pc.num_virtual_tokens = 4;
  auto pm = peft::get_peft_model(base, pc);
  const auto j = pm->peft_config().to_json();
  // hidden 32, 4 query heads, 2 key/value heads of 8: the prefix is KV-sized.
  EXPECT_EQ(j["token_dim"], 16);
  EXPECT_EQ(j["num_attention_heads"], 2);
  EXPECT_EQ(j["encoder_hidden_size"], 16);
  EXPECT_EQ(j["num_layers"], 2);
  EXPECT_EQ(j["num_transformer_submodules"], 1);
  EXPECT_EQ(pm->tuner_as<peft::prompt::PromptLearningModel>().prompt_embeddings().sizes(), (std::vector<int64_t>{4, 2 * 2 * 16}));
}

// ---------------------------------------------------------------- encoders

TEST(PromptEncoder, TextAndSampleVocabInit) {
  const std::string dir = peft::test::tmp_dir("prompt_stories260k");
  if (!fs::exists(dir + "/config.json"))
    peft::io::convert_llama2c(peft::test::source_path("models/stories260K/stories260K.bin"),
                              peft::test::source_path("models/stories260K/tok512.bin"), dir);
  peft::PromptTuningConfig c;
  c.task_type = peft::TaskType::CausalLM;
  c.num_virtual_tokens = 9;
  c.prompt_tuning_init = "TEXT";
  c.prompt_tuning_init_text = "Once upon";
  c.tokenizer_name_or_path = dir;
  auto pm = peft::get_peft_model(peft::models::load_model(dir), c);
  const auto tok = peft::io::Tokenizer::from_pretrained(dir);
  const auto ids = tok.encode("Once upon", true).ids;
  ASSERT_FALSE(ids.empty());
  ASSERT_LT(ids.size(), 9u);
  const at::Tensor words = pm->base_model().word_embeddings();
  const at::Tensor table = pm->tuner_as<peft::prompt::PromptLearningModel>().prompt_embeddings();
  for (int64_t i = 0; i < 9; ++i)  // the id list repeated, then truncated to 9
    EXPECT_TRUE(at::equal(table[i], words[ids[i % ids.size()]])) << "row " << i;
  EXPECT_EQ(peft::prompt::repeat_or_truncate({1, 2, 3, 4}, 2), (std::vector<int64_t>{1, 2}));

  // PEFT's TEXT init on the same model and tokenizer (gen_prompt.py --stories): identical tables.
  const GoldenCase ti = peft::test::load_case("prompt/text_init");
  const std::string text = ti.meta["text"].get<std::string>();
  const auto pids = tok.encode(text, true).ids;
  EXPECT_TRUE(at::equal(at::tensor(std::vector<int64_t>(pids.begin(), pids.end())), ti["ids"])) << "token ids";
  for (int64_t p : {4, 13}) {
    peft::PromptTuningConfig tc = c;
    tc.num_virtual_tokens = p;
    tc.prompt_tuning_init_text = text;
    auto pmt = peft::get_peft_model(peft::models::load_model(dir), tc);
    EXPECT_TRUE(at::equal(pmt->tuner_as<peft::prompt::PromptLearningModel>().prompt_embeddings(), ti["table_" + std::to_string(p)])) << "P = " << p;
  }

  peft::PromptTuningConfig s;
  s.task_type = peft::TaskType::CausalLM;
  s.num_virtual_tokens = 5;
  s.prompt_tuning_init = "SAMPLE_VOCAB";
  auto pm2 = peft::get_peft_model(peft::models::load_model(dir), s);
  const at::Tensor t2 = pm2->tuner_as<peft::prompt::PromptLearningModel>().prompt_embeddings();
  for (int64_t i = 0; i < 5; ++i) {  // every row is some vocabulary row
    const at::Tensor hit = (words - t2[i]).abs().amax(1).eq(0);
    EXPECT_TRUE(hit.any().item<bool>()) << "row " << i;
  }
}

// Gemma's input embedding module scales its rows by sqrt(hidden_size), and PEFT seeds TEXT /
// SAMPLE_VOCAB prompts through that module (word_embeddings(ids)): every prompt row is a scaled
// vocabulary row, not the raw one.
TEST(PromptTuning, SampleVocabInitGoesThroughGemmasScaledEmbedding) {
  for (const char* base : {"models/gemma2_causal", "models/gemma3_causal"}) {
    auto model = peft::models::load_model(peft::test::fixture(base));
    const int64_t hidden = model->word_embeddings().size(1);
    const at::Tensor scaled = model->word_embeddings() * static_cast<float>(std::sqrt(static_cast<double>(hidden)));
    peft::PromptTuningConfig s;
    s.task_type = peft::TaskType::CausalLM;
    s.num_virtual_tokens = 4;
    s.prompt_tuning_init = "SAMPLE_VOCAB";
    auto pm = peft::get_peft_model(model, s);
    const at::Tensor t = pm->tuner_as<peft::prompt::PromptLearningModel>().prompt_embeddings();
    for (int64_t i = 0; i < 4; ++i) {
      const at::Tensor d = (scaled - t[i]).abs().amax(1);
      EXPECT_LT(d.min().item<float>(), 1e-6f) << base << " row " << i << " is no scaled vocabulary row";
      EXPECT_GT((pm->base_model().word_embeddings() - t[i]).abs().amax(1).min().item<float>(), 1e-3f)
          << base << " row " << i << " is a raw (unscaled) row";
    }
  }
}

TEST(PromptEncoder, ResumeFromSidecarAndPeftLimit) {
  const GoldenCase g = peft::test::load_case("prompt/llama_causal_ptuning_lstm");
  auto pm = peft::get_peft_model(base_of(g), *config_of(g));
  load_encoder(*pm, g.dir + "/encoder.safetensors");
  const std::string dir = peft::test::tmp_dir("prompt_resume");
  fs::remove_all(dir);
  pm->save_pretrained(dir);
  ASSERT_TRUE(fs::exists(dir + "/prompt_encoder.safetensors"));
  // Trainable load rebuilds the full LSTM encoder from the sidecar: same output, same gradients.
  auto again = peft::PeftModel::from_pretrained(base_of(g), dir, "default", /*is_trainable=*/true);
  EXPECT_EQ(again->get_nb_trainable_parameters(), pm->get_nb_trainable_parameters());
  const auto in = prompt_inputs_of(g);
  auto out = again->forward(in);
  EXPECT_TRUE(close(out.logits, g["logits"], g.atol, g.rtol));
  out.loss.backward();
  const auto st = again->tuner_as<peft::prompt::PromptLearningModel>().prompt_encoder_state();
  EXPECT_TRUE(grad_close(st.at("lstm_head.weight_ih_l0").grad(), g["grad.lstm_head.weight_ih_l0"], g.grad_rtol));
  // PEFT's own files carry only the output: resuming them is a clear error, frozen use works.
  peft::test::expect_throw_with<peft::FormatError>(
      [&] { peft::PeftModel::from_pretrained(base_of(g), g.dir + "/adapter", "default", true); },
      {"prompt_encoder.safetensors", "is missing"});
  EXPECT_NO_THROW(peft::PeftModel::from_pretrained(base_of(g), g.dir + "/adapter"));
}

TEST(PromptEncoder, GradientCheckpointingKeepsPromptGradients) {
  // Prompt Tuning / P-Tuning work with gradient checkpointing (only prefix tuning refuses it).
  const GoldenCase g = peft::test::load_case("prompt/llama_causal_ptuning_mlp");
  auto base = base_of(g);
  auto pm = peft::get_peft_model(base, *config_of(g));
  load_encoder(*pm, g.dir + "/encoder.safetensors");
  base->set_gradient_checkpointing(true);
  base->train();  // checkpointing is active in training mode; the fixture model has no dropout
  auto out = pm->forward(prompt_inputs_of(g));
  EXPECT_TRUE(close(out.loss.reshape({1}), g["loss"], g.atol, g.rtol));
  out.loss.backward();
  for (const auto& [k, v] : pm->tuner_as<peft::prompt::PromptLearningModel>().prompt_encoder_state())
    EXPECT_TRUE(grad_close(v.grad(), g["grad." + k], g.grad_rtol)) << "grad of " << k;
}

TEST(PromptEncoder, TokenClassificationLabelsAndTrim) {
  const GoldenCase g = peft::test::load_case("prompt/bert_tokcls_prompt");
  auto pm = peft::get_peft_model(base_of(g), *config_of(g));
  load_encoder(*pm, g.dir + "/encoder.safetensors");
  const auto in = prompt_inputs_of(g);  // labels of length T: padded for the virtual tokens here
  const int64_t T = in.input_ids.size(1);
  {
    torch::NoGradGuard ng;
    auto full = pm->forward(in);
    EXPECT_EQ(full.logits.size(1), T + 3);
    EXPECT_TRUE(close(full.loss.reshape({1}), g["loss"], g.atol, g.rtol));
    pm->trim_prompt_logits = true;
    auto trimmed = pm->forward(in);
    EXPECT_EQ(trimmed.logits.size(1), T);
    EXPECT_TRUE(close(trimmed.logits, g["logits"].narrow(1, 3, T), g.atol, g.rtol));
  }
}

TEST(PromptEncoder, PrefixDropoutOnlyWhileTraining) {
  auto base = peft::models::load_model(peft::test::fixture("models/bert_seqcls"));
  auto cfg = peft::p_tuning_v2_config(peft::TaskType::SeqCls, 4);
  cfg.prefix_dropout = 0.5;
  auto pm = peft::get_peft_model(base, cfg);
  peft::models::ModelInputs in;
  in.input_ids = at::tensor({5, 9, 13, 2}, at::kLong).unsqueeze(0);
  torch::NoGradGuard ng;
  base->eval();
  const at::Tensor a = pm->forward(in).logits, b = pm->forward(in).logits;
  EXPECT_TRUE(at::equal(a, b));
  base->train();
  torch::manual_seed(0);
  const at::Tensor c = pm->forward(in).logits;
  EXPECT_FALSE(at::allclose(a, c));
  // Only the prefix and the classifier train (P-Tuning v2).
  base->eval();
  int64_t n = 0;
  for (const auto& t : pm->trainable_parameters()) n += t.numel();
  EXPECT_EQ(n, 4 * 2 * 2 * 32 + 3 * 32 + 3);
}

TEST(PromptEnsemble, OneBatchEqualsSeparateRunsAndCombines) {
  auto base = peft::models::load_model(peft::test::fixture("models/bert_seqcls"));
  base->eval();
  peft::PromptTuningConfig c;
  c.task_type = peft::TaskType::SeqCls;
  c.num_virtual_tokens = 3;
  torch::manual_seed(1);
  auto pm = peft::get_peft_model(base, c, "p0");
  pm->add_adapter("p1", c);
  pm->add_adapter("p2", c);
  peft::models::ModelInputs in;
  in.input_ids = at::tensor({5, 9, 13, 2, 7, 7, 30, 4, 1, 0}, at::kLong).view({2, 5});
  in.attention_mask = at::tensor({1, 1, 1, 1, 1, 1, 1, 1, 1, 0}, at::kLong).view({2, 5});
  const std::vector<std::string> names = {"p0", "p1", "p2"};
  const auto r = peft::prompt::ensemble(*pm, names, in, peft::prompt::Combine::MajorityVote);
  ASSERT_EQ(r.probs.sizes(), (std::vector<int64_t>{3, 2, 3}));
  torch::NoGradGuard ng;
  at::Tensor sum = at::zeros({2, 3});
  for (std::size_t k = 0; k < names.size(); ++k) {
    pm->set_adapter(names[k]);
    const at::Tensor p = at::softmax(pm->forward(in).logits, -1);
    EXPECT_TRUE(close(r.probs[k], p, 1e-6)) << names[k];
    sum += p;
  }
  EXPECT_TRUE(close(r.mean_probs, sum / 3, 1e-6));
  EXPECT_TRUE(at::equal(r.votes.sum(-1), at::full({2}, 3, at::kLong)));
  for (int64_t b = 0; b < 2; ++b) {  // the winner has the most votes
    const int64_t w = r.prediction[b].item<int64_t>();
    EXPECT_EQ(r.votes[b][w].item<int64_t>(), r.votes[b].max().item<int64_t>());
  }
  const auto m = peft::prompt::ensemble(*pm, names, in, peft::prompt::Combine::MeanProbability);
  EXPECT_TRUE(at::equal(m.prediction, (sum / 3).argmax(-1)));
  // Prefix adapters are not ensembled this way.
  peft::PrefixTuningConfig px;
  px.task_type = peft::TaskType::SeqCls;
  px.num_virtual_tokens = 3;
  auto pm2 = peft::get_peft_model(peft::models::load_model(peft::test::fixture("models/bert_seqcls")), px, "x");
  EXPECT_THROW(peft::prompt::ensemble(*pm2, {"x"}, in), peft::NotSupported);
}

}  // namespace
