// Prefix placements beyond PEFT (Prefix-Tuning paper): prefix_on: encoder_and_decoder on T5
// (z = [PREFIX; x; PREFIX'; y]), and on decoder-only models the embedding-only and infix
// ablations. Each test checks the computation against the base model run by hand.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "golden.h"
#include "peft/core/error.h"
#include "peft/models/model.h"
#include "peft/peft_model.h"
#include "peft/tuners/prefix_tuning/config.h"
#include "peft/tuners/prompt_learning/encoder.h"
#include "peft/tuners/prompt_learning/model.h"

namespace {

namespace fs = std::filesystem;
using peft::models::ModelInputs;

std::shared_ptr<peft::models::PretrainedModel> load(const std::string& name) {
  auto m = peft::models::load_model(peft::test::fixture("models/" + name));
  m->eval();
  return m;
}

at::Tensor table_of(peft::PeftModel& pm) { return pm.tuner_as<peft::prompt::PromptLearningModel>().prompt_encoder_state()["embedding.weight"]; }

peft::PrefixTuningConfig prefix_cfg(peft::TaskType task, int64_t P) {
  peft::PrefixTuningConfig c;
  c.task_type = task;
  c.num_virtual_tokens = P;
  return c;
}

ModelInputs t5_inputs() {
  ModelInputs in;
  in.input_ids = at::tensor({5, 9, 13, 2, 7, 4, 11, 3}, at::kLong).view({2, 4});
  in.attention_mask = at::tensor({1, 1, 1, 1, 1, 1, 1, 0}, at::kLong).view({2, 4});
  in.decoder_input_ids = at::tensor({0, 6, 8, 0, 3, 12}, at::kLong).view({2, 3});
  return in;
}

TEST(PromptPlacement, EncoderAndDecoderPrefixOnT5) {
  auto base = load("t5_seq2seq");
  auto cfg = prefix_cfg(peft::TaskType::Seq2SeqLM, 3);
  cfg.prefix_on = "encoder_and_decoder";
  torch::manual_seed(1);
  auto pm = peft::get_peft_model(base, cfg);
  const auto& c = dynamic_cast<const peft::PrefixTuningConfig&>(pm->peft_config());
  const int64_t P = 3, L = c.num_layers, H = c.num_attention_heads, d = c.token_dim;
  at::Tensor table = table_of(*pm);
  ASSERT_EQ(table.size(0), 2 * P);  // decoder rows 0..P-1, encoder rows P..2P-1
  const ModelInputs in = t5_inputs();
  torch::NoGradGuard ng;
  const auto out = pm->forward(in);

  // By hand: encoder self-attention prefix from rows P.., decoder's from rows ..P in PEFT's layout.
  ModelInputs ref = in;
  const at::Tensor flat = table.unsqueeze(0).expand({2, -1, -1});
  ref.prefix_kv = peft::prompt::prefix_key_values(flat.narrow(1, P, P), L, H, d, 1);
  ref.decoder_prefix_kv = peft::prompt::prefix_key_values(flat.narrow(1, 0, P), L, H, d, 2);
  ref.decoder_attention_mask = at::ones({2, 3}, at::kLong);
  const auto want = base->forward(ref);
  EXPECT_TRUE(at::allclose(out.logits, want.logits, 1e-5, 1e-6));
  // The encoder sees its prefix: its states differ from the plain encoder's.
  const auto plain = base->forward(in);
  EXPECT_FALSE(at::allclose(out.encoder_last_hidden_state, plain.encoder_last_hidden_state, 1e-4, 1e-5));

  // Changing only the encoder rows changes the encoder states; changing only the decoder rows
  // leaves them as they are and changes the logits.
  const at::Tensor saved = table.clone();
  table.narrow(0, P, P).add_(0.5);
  const auto enc_changed = pm->forward(in);
  EXPECT_FALSE(at::allclose(enc_changed.encoder_last_hidden_state, out.encoder_last_hidden_state, 1e-4, 1e-5));
  table.copy_(saved);
  table.narrow(0, 0, P).add_(0.5);
  const auto dec_changed = pm->forward(in);
  EXPECT_TRUE(at::equal(dec_changed.encoder_last_hidden_state, out.encoder_last_hidden_state));
  EXPECT_FALSE(at::allclose(dec_changed.logits, out.logits, 1e-4, 1e-5));
  table.copy_(saved);

  // Greedy generation: the first token follows the forward pass with the same prefixes.
  peft::models::GenerationConfig gc;
  gc.max_new_tokens = 3;
  const at::Tensor ids = in.input_ids.narrow(0, 0, 1);
  const at::Tensor gen = pm->generate(ids, at::Tensor(), gc);
  ModelInputs one;
  one.input_ids = ids;
  one.decoder_input_ids = gen.narrow(1, 0, 1);
  EXPECT_EQ(gen[0][1].item<int64_t>(), pm->forward(one).logits[0][0].argmax().item<int64_t>());

  // Saved with the option in its config (PEFT ignores it); without it the file is refused.
  const std::string dir = std::string(PEFT_TEST_OUTPUT_DIR) + "/prompt_placement/enc_dec";
  pm->save_pretrained(dir);
  std::ifstream f(dir + "/adapter_config.json");
  nlohmann::json j = nlohmann::json::parse(f);
  EXPECT_EQ(j["prefix_on"], "encoder_and_decoder");
  auto again = peft::PeftModel::from_pretrained(load("t5_seq2seq"), dir);
  EXPECT_TRUE(at::allclose(again->forward(in).logits, out.logits, 1e-6, 1e-7));
  j.erase("prefix_on");
  std::ofstream(dir + "/adapter_config.json") << j.dump(2);
  try {
    peft::PeftModel::from_pretrained(load("t5_seq2seq"), dir);
    ADD_FAILURE() << "loaded an encoder_and_decoder prefix without prefix_on";
  } catch (const peft::FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("prefix_on"), std::string::npos) << e.what();
  }
}

TEST(PromptPlacement, PeftDefaultLeavesEncoderAlone) {
  auto base = load("t5_seq2seq");
  auto pm = peft::get_peft_model(base, prefix_cfg(peft::TaskType::Seq2SeqLM, 3));
  EXPECT_EQ(table_of(*pm).size(0), 3);
  torch::NoGradGuard ng;
  const ModelInputs in = t5_inputs();
  EXPECT_TRUE(at::equal(pm->forward(in).encoder_last_hidden_state, base->forward(in).encoder_last_hidden_state));
  EXPECT_EQ(pm->peft_config().to_json().count("prefix_on"), 0u);
}

TEST(PromptPlacement, EmbeddingOnlyIsInputVectorsOnly) {
  auto base = load("llama_causal");
  auto cfg = prefix_cfg(peft::TaskType::CausalLM, 4);
  cfg.prefix_placement = "embedding";
  cfg.prefix_projection = true;
  cfg.encoder_hidden_size = 16;
  auto pm = peft::get_peft_model(base, cfg);
  const int64_t d = base->word_embeddings().size(1);
  ModelInputs in;
  in.input_ids = at::tensor({5, 9, 13, 2, 7, 4}, at::kLong).view({2, 3});
  in.labels = at::tensor({-100, 9, 13, -100, 4, 11}, at::kLong).view({2, 3});
  const auto out = pm->forward(in);
  const at::Tensor virt = pm->tuner_as<peft::prompt::PromptLearningModel>().prompt_embeddings();
  ASSERT_EQ(virt.sizes(), (at::IntArrayRef{4, d}));  // one token_dim vector per virtual token
  ModelInputs ref;
  ref.inputs_embeds = at::cat({virt.unsqueeze(0).expand({2, -1, -1}), base->embed(in.input_ids)}, 1);
  ref.labels = at::cat({at::full({2, 4}, -100, at::kLong), in.labels}, 1);
  const auto want = base->forward(ref);
  EXPECT_TRUE(at::allclose(out.logits, want.logits, 1e-5, 1e-6));
  EXPECT_NEAR(out.loss.item<double>(), want.loss.item<double>(), 1e-6);
  // The gradient reaches the reparametrisation (embedding -> MLP), nothing in the base.
  out.loss.backward();
  for (const auto& [k, p] : pm->tuner_as<peft::prompt::PromptLearningModel>().prompt_encoder_state()) {
    ASSERT_TRUE(p.grad().defined()) << k;
    EXPECT_GT(p.grad().abs().sum().item<double>(), 0) << k;
  }
  EXPECT_FALSE(base->word_embeddings().grad().defined());
}

TEST(PromptPlacement, InfixSitsAfterX) {
  auto base = load("llama_causal");
  auto cfg = prefix_cfg(peft::TaskType::CausalLM, 3);
  cfg.prefix_placement = "infix";
  torch::manual_seed(2);
  auto pm = peft::get_peft_model(base, cfg);
  ModelInputs in;
  in.input_ids = at::tensor({5, 9, 13, 2, 7, 4, 11, 3, 8, 6}, at::kLong).view({2, 5});
  // x = the first 3 (row 0) / 2 (row 1) tokens: the first label that is not -100 starts y.
  in.labels = at::tensor({-100, -100, -100, 2, 7, -100, -100, 3, 8, 6}, at::kLong).view({2, 5});
  torch::NoGradGuard ng;
  const auto out = pm->forward(in);
  ASSERT_EQ(out.logits.size(1), 5);
  // x never sees the infix: its logits are the base model's on x alone.
  for (int64_t b = 0; b < 2; ++b) {
    const int64_t s = b == 0 ? 3 : 2;
    ModelInputs x;
    x.input_ids = in.input_ids.narrow(0, b, 1).narrow(1, 0, s);
    EXPECT_TRUE(at::allclose(out.logits.narrow(0, b, 1).narrow(1, 0, s), base->forward(x).logits, 1e-5, 1e-6));
  }
  // y sees it: changing the infix changes y's logits only.
  at::Tensor table = table_of(*pm);
  const at::Tensor saved = table.clone();
  table.add_(0.5);
  const auto moved = pm->forward(in);
  EXPECT_TRUE(at::allclose(moved.logits.narrow(1, 0, 2), out.logits.narrow(1, 0, 2), 1e-5, 1e-6));
  EXPECT_FALSE(at::allclose(moved.logits.narrow(1, 3, 2), out.logits.narrow(1, 3, 2), 1e-4, 1e-5));
  table.copy_(saved);
  // With an empty x the infix is a prefix: same logits as prefix placement with the same table.
  ModelInputs all = in;
  all.labels = in.input_ids.clone();
  const auto as_infix = pm->forward(all);
  auto pcfg = prefix_cfg(peft::TaskType::CausalLM, 3);
  auto pp = peft::get_peft_model(load("llama_causal"), pcfg);
  table_of(*pp).copy_(table);
  const auto as_prefix = pp->forward(all);
  EXPECT_TRUE(at::allclose(as_infix.logits, as_prefix.logits, 1e-5, 1e-6));
  EXPECT_NEAR(as_infix.loss.item<double>(), as_prefix.loss.item<double>(), 1e-5);

  // Generation: the prompt is x; its last token predicts without the infix, then y sees it.
  peft::models::GenerationConfig gc;
  gc.max_new_tokens = 3;
  const at::Tensor ids = in.input_ids.narrow(0, 0, 1);
  const at::Tensor gen = pm->generate(ids, at::Tensor(), gc);
  ModelInputs x;
  x.input_ids = ids;
  EXPECT_EQ(gen[0][5].item<int64_t>(), base->forward(x).logits[0][4].argmax().item<int64_t>());
  ModelInputs xy;
  xy.input_ids = gen.narrow(1, 0, 7);
  xy.labels = at::cat({at::full({1, 5}, -100, at::kLong), gen.narrow(1, 5, 2)}, 1);
  EXPECT_EQ(gen[0][6].item<int64_t>(), pm->forward(xy).logits[0][5].argmax().item<int64_t>());
  EXPECT_EQ(gen[0][7].item<int64_t>(), pm->forward(xy).logits[0][6].argmax().item<int64_t>());
}

TEST(PromptPlacement, OptionsAreCheckedAndPeftCompatibleByDefault) {
  auto bad = prefix_cfg(peft::TaskType::CausalLM, 3);
  bad.prefix_on = "encoder_and_decoder";
  EXPECT_THROW(bad.validate(), peft::ConfigError);
  auto bad2 = prefix_cfg(peft::TaskType::Seq2SeqLM, 3);
  bad2.prefix_placement = "infix";
  EXPECT_THROW(bad2.validate(), peft::ConfigError);
  auto bad3 = prefix_cfg(peft::TaskType::CausalLM, 3);
  bad3.prefix_placement = "middle";
  EXPECT_THROW(bad3.validate(), peft::ConfigError);
  auto ok = prefix_cfg(peft::TaskType::CausalLM, 3);
  ok.prefix_placement = "infix";
  const auto j = ok.to_json();
  EXPECT_EQ(j["prefix_placement"], "infix");
  EXPECT_EQ(peft::PrefixTuningConfig::from_json(j).prefix_placement, "infix");
  EXPECT_EQ(prefix_cfg(peft::TaskType::CausalLM, 3).to_json().count("prefix_placement"), 0u);
}

}  // namespace
