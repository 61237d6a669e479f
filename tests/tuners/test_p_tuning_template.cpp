// P-Tuning templates (the P-Tuning paper): virtual tokens anywhere in a template mixed with real,
// frozen anchor tokens around the input x. Checked against the base model fed the template by hand.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "golden.h"
#include "peft/core/error.h"
#include "peft/models/model.h"
#include "peft/peft_model.h"
#include "peft/tuners/p_tuning/config.h"
#include "peft/tuners/prompt_learning/model.h"

namespace {

using peft::models::ModelInputs;

peft::PromptEncoderConfig template_cfg(const std::string& type) {
  peft::PromptEncoderConfig c;
  c.task_type = peft::TaskType::CausalLM;
  c.num_virtual_tokens = 3;
  c.encoder_reparameterization_type = type;
  c.encoder_hidden_size = 16;
  c.p_tuning_template = "[v] [x] [v] [id:7] [v]";
  return c;
}

TEST(PTuningTemplate, VirtualTokensAndAnchorsAroundX) {
  auto base = peft::models::load_model(peft::test::fixture("models/llama_causal"));
  base->eval();
  torch::manual_seed(3);
  auto pm = peft::get_peft_model(base, template_cfg("MLP"));
  ModelInputs in;
  in.input_ids = at::tensor({5, 9, 13, 2, 7, 4, 11, 3, 8, 6}, at::kLong).view({2, 5});
  in.labels = at::tensor({-100, -100, -100, 2, 7, -100, -100, 3, 8, 6}, at::kLong).view({2, 5});
  const auto out = pm->forward(in);
  ASSERT_EQ(out.logits.size(1), 5 + 4);  // 3 virtual tokens + 1 anchor

  // By hand: [v0; x; v1; emb(7); v2; y] per row, template labels -100.
  const at::Tensor virt = pm->tuner_as<peft::prompt::PromptLearningModel>().prompt_embeddings().detach();
  const at::Tensor emb = base->embed(in.input_ids).detach();
  const at::Tensor anchor = base->embed(at::tensor({7}, at::kLong).unsqueeze(0))[0].detach();
  std::vector<at::Tensor> rows, labels;
  for (int64_t b = 0; b < 2; ++b) {
    const int64_t s = b == 0 ? 3 : 2;
    rows.push_back(at::cat({virt.narrow(0, 0, 1), emb[b].narrow(0, 0, s), virt.narrow(0, 1, 1), anchor,
                            virt.narrow(0, 2, 1), emb[b].narrow(0, s, 5 - s)}, 0));
    const at::Tensor l = in.labels[b], skip = at::full({1}, -100, at::kLong);
    labels.push_back(at::cat({skip, l.narrow(0, 0, s), skip, skip, skip, l.narrow(0, s, 5 - s)}, 0));
  }
  ModelInputs ref;
  ref.inputs_embeds = at::stack(rows);
  ref.labels = at::stack(labels);
  const auto want = base->forward(ref);
  EXPECT_TRUE(at::allclose(out.logits, want.logits, 1e-5, 1e-6));
  EXPECT_NEAR(out.loss.item<double>(), want.loss.item<double>(), 1e-6);

  // Anchors are frozen real embeddings: only the prompt encoder gets gradients.
  out.loss.backward();
  for (const auto& [k, p] : pm->tuner_as<peft::prompt::PromptLearningModel>().prompt_encoder_state()) {
    ASSERT_TRUE(p.grad().defined()) << k;
    EXPECT_GT(p.grad().abs().sum().item<double>(), 0) << k;
  }
  EXPECT_FALSE(base->word_embeddings().grad().defined());

  // Greedy generation with the template around the prompt x.
  peft::models::GenerationConfig gc;
  gc.max_new_tokens = 2;
  torch::NoGradGuard ng;
  const at::Tensor ids = in.input_ids.narrow(0, 0, 1);
  const at::Tensor gen = pm->generate(ids, at::Tensor(), gc);
  ModelInputs x;
  x.input_ids = ids;
  EXPECT_EQ(gen[0][5].item<int64_t>(), pm->forward(x).logits[0][-1].argmax().item<int64_t>());
  ModelInputs xy;
  xy.input_ids = gen.narrow(1, 0, 6);
  xy.labels = at::cat({at::full({1, 5}, -100, at::kLong), gen.narrow(1, 5, 1)}, 1);
  EXPECT_EQ(gen[0][6].item<int64_t>(), pm->forward(xy).logits[0][-1].argmax().item<int64_t>());
}

TEST(PTuningTemplate, LstmCouplesTheVirtualTokens) {
  auto base = peft::models::load_model(peft::test::fixture("models/llama_causal"));
  auto pm = peft::get_peft_model(base, template_cfg("LSTM"));
  torch::NoGradGuard ng;
  const at::Tensor before = pm->tuner_as<peft::prompt::PromptLearningModel>().prompt_embeddings().clone();
  pm->tuner_as<peft::prompt::PromptLearningModel>().prompt_encoder_state()["embedding.weight"][0].add_(1.0);  // only the first virtual token's input
  const at::Tensor after = pm->tuner_as<peft::prompt::PromptLearningModel>().prompt_embeddings();
  EXPECT_FALSE(at::allclose(before[2], after[2]));  // the last one moves too (bidirectional LSTM)
}

TEST(PTuningTemplate, ConfigChecksAndRoundTrip) {
  auto c = template_cfg("MLP");
  const auto j = c.to_json();
  EXPECT_EQ(j["p_tuning_template"], "[v] [x] [v] [id:7] [v]");
  EXPECT_EQ(peft::PromptEncoderConfig::from_json(j).p_tuning_template, c.p_tuning_template);
  EXPECT_EQ(template_cfg("MLP").to_json().count("tokenizer_name_or_path"), 0u);
  peft::PromptEncoderConfig plain;
  plain.task_type = peft::TaskType::CausalLM;
  plain.num_virtual_tokens = 3;
  EXPECT_EQ(plain.to_json().count("p_tuning_template"), 0u);
  auto bad = c;
  bad.p_tuning_template = "[v] [x] [v]";  // 2 virtual tokens, 3 expected
  EXPECT_THROW(bad.validate(), peft::ConfigError);
  bad.p_tuning_template = "[v] [v] [v]";  // no [x]
  EXPECT_THROW(bad.validate(), peft::ConfigError);
  bad.p_tuning_template = "[v] [x] [w] [v] [v]";
  EXPECT_THROW(bad.validate(), peft::ConfigError);
  auto words = c;
  words.p_tuning_template = "[v] [x] capital [v] [v]";  // a word anchor needs a tokenizer
  auto base = peft::models::load_model(peft::test::fixture("models/llama_causal"));
  EXPECT_THROW(peft::get_peft_model(base, words), peft::ConfigError);
}

}  // namespace
