// Real checkpoints against transformers, skipped when the model is absent (scripts/fetch_models.sh
// puts them in build/models/). all-MiniLM-L6-v2: tests/fixtures/models/real_minilm,
// tools/reference/gen_real_minilm.py.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "golden.h"
#include "peft/core/file_util.h"
#include "peft/io/tensor_bridge.h"
#include "peft/io/tokenizer.h"
#include "peft/models/model.h"
#include "peft/train/data.h"

namespace {

namespace fs = std::filesystem;
using peft::models::ModelInputs;

double max_diff(const at::Tensor& a, const at::Tensor& e) {
  return (a.to(at::kDouble) - e.to(at::kDouble)).abs().max().item<double>();
}

void report(const std::string& what, double diff) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", diff);
  std::cout << "[ minilm   ] " << what << ": max |ours - transformers| = " << buf << "\n";
  ::testing::Test::RecordProperty("max_diff_" + what, buf);
}

at::Tensor row(const std::vector<int64_t>& v) { return torch::tensor(v, torch::kLong).unsqueeze(0); }

/// Hidden state of each pair run alone (batch 1, mask of ones, as the fixture was made).
at::Tensor run_alone(peft::models::PretrainedModel& m, const peft::train::Example& e) {
  ModelInputs in;
  in.input_ids = row(e.input_ids);
  in.token_type_ids = row(e.token_type_ids);
  in.attention_mask = torch::ones_like(in.input_ids);
  return m.forward(in).last_hidden_state[0];
}

/// The model folder with its config cut to `layers` layers and the weights of the later layers
/// dropped: its last_hidden_state is the full model's hidden_states[layers].
std::string first_layers(const std::string& model_dir, int64_t layers, const std::string& out) {
  fs::create_directories(out);
  auto cfg = nlohmann::json::parse(peft::read_file(model_dir + "/config.json"));
  cfg["num_hidden_layers"] = layers;
  peft::write_file_atomic(out + "/config.json", cfg.dump(2));
  std::map<std::string, at::Tensor> kept;
  for (auto& kv : peft::io::load_safetensors(model_dir + "/model.safetensors")) {
    const std::string p = "encoder.layer.";
    const auto at = kv.first.find(p);
    if (at != std::string::npos && std::stoll(kv.first.substr(at + p.size())) >= layers) continue;
    kept.insert(kv);
  }
  peft::io::save_safetensors(out + "/model.safetensors", kept);
  return out;
}

// all-MiniLM-L6-v2 (BertModel, 6 layers, hidden 384) on the first 200 pairs of GLUE RTE dev: our
// pair tokenisation (build_dataset, SEQ_CLS with a text pair, max_length 128, longest_first)
// gives transformers' ids, and our BERT gives its fp32 hidden states within 1e-5: the [CLS] row,
// the mean over tokens (sentence-transformers' pooling), four whole sequences and the [CLS] row
// after every layer, each pair alone as the fixture was made and again as padded batches of 50.
TEST(RealMiniLM, HiddenStatesMatchTransformersOn200RtePairs) {
  const char* env = std::getenv("PEFT_MINILM_DIR");
  const std::string dir = env ? env : peft::test::source_path("build/models/all-MiniLM-L6-v2");
  if (!fs::exists(dir + "/model.safetensors"))
    GTEST_SKIP() << dir << "/model.safetensors not present (scripts/fetch_models.sh)";
  const auto start = std::chrono::steady_clock::now();
  const std::string fx = peft::test::fixture("models/real_minilm");
  const auto golden = nlohmann::json::parse(peft::read_file(fx + "/pairs.json"));
  const auto expected = peft::io::load_safetensors(fx + "/expected.safetensors");
  const auto& pairs = golden["pairs"];
  const int64_t n = static_cast<int64_t>(pairs.size());
  ASSERT_EQ(n, 200);
  const double atol = 1e-5;

  // Tokenisation: the trainer's sentence-pair path against the transformers fast tokenizer.
  const auto tok = peft::io::Tokenizer::from_file(dir + "/tokenizer.json");
  std::vector<peft::train::Row> rows;
  for (const auto& p : pairs) {
    peft::train::Row r;
    r.fields = {{"sentence1", p["sentence1"].get<std::string>()},
                {"sentence2", p["sentence2"].get<std::string>()},
                {"label", "0"}};
    r.file = "pairs.json";
    r.line = static_cast<int64_t>(rows.size()) + 1;
    rows.push_back(r);
  }
  peft::train::DataOptions o;
  o.task = peft::train::TaskFormat::SeqCls;
  o.text_column = "sentence1";
  o.text_pair_column = "sentence2";
  o.max_length = golden["max_length"].get<int64_t>();
  const auto ours = peft::train::build_dataset(rows, tok, o);
  ASSERT_EQ(static_cast<int64_t>(ours.examples.size()), n);
  // The model runs on the fixture's ids, so a tokenizer difference shows here and only here.
  peft::train::Dataset ref;
  int64_t same_ids = 0, same_types = 0;
  for (int64_t i = 0; i < n; ++i) {
    peft::train::Example e;
    e.input_ids = pairs[static_cast<std::size_t>(i)]["input_ids"].get<std::vector<int64_t>>();
    e.token_type_ids = pairs[static_cast<std::size_t>(i)]["token_type_ids"].get<std::vector<int64_t>>();
    same_ids += ours.examples[i].input_ids == e.input_ids;
    same_types += ours.examples[i].token_type_ids == e.token_type_ids;
    EXPECT_EQ(ours.examples[i].input_ids, e.input_ids) << "pair " << i;
    ref.examples.push_back(std::move(e));
  }
  std::cout << "[ minilm   ] tokenizer: input_ids equal on " << same_ids << "/" << n << " pairs, token_type_ids on "
            << same_types << "/" << n << "\n";
  EXPECT_EQ(same_ids, n);
  EXPECT_EQ(same_types, n);

  torch::NoGradGuard no_grad;
  auto m = peft::models::load_model(dir);
  m->eval();

  // Each pair alone.
  std::vector<at::Tensor> cls, mean;
  for (int64_t i = 0; i < n; ++i) {
    const at::Tensor h = run_alone(*m, ref.examples[i]);
    cls.push_back(h[0]);
    mean.push_back(h.mean(0));
    if (i < 4) {
      const std::string k = "full." + std::to_string(i);
      EXPECT_TRUE(peft::test::close(h, expected.at(k), atol)) << k;
      report(k, max_diff(h, expected.at(k)));
    }
  }
  const at::Tensor c = torch::stack(cls), mp = torch::stack(mean);
  EXPECT_TRUE(peft::test::close(c, expected.at("cls"), atol)) << "cls";
  EXPECT_TRUE(peft::test::close(mp, expected.at("mean"), atol)) << "mean";
  report("cls", max_diff(c, expected.at("cls")));
  report("mean", max_diff(mp, expected.at("mean")));

  // The same pairs as padded batches of 50 (the trainer's collation, right padding, pad id 0).
  const int64_t bs = 50;
  std::vector<at::Tensor> pcls, pmean;
  for (int64_t b = 0; b < n; b += bs) {
    std::vector<int64_t> idx;
    for (int64_t i = b; i < std::min(n, b + bs); ++i) idx.push_back(i);
    const auto batch = peft::train::collate(ref, idx, 0);
    auto t = [&](const std::vector<int64_t>& v) { return torch::tensor(v, torch::kLong).view({batch.rows, batch.cols}); };
    ModelInputs in;
    in.input_ids = t(batch.input_ids);
    in.token_type_ids = t(batch.token_type_ids);
    in.attention_mask = t(batch.attention_mask);
    const at::Tensor h = m->forward(in).last_hidden_state;
    const at::Tensor mask = in.attention_mask.unsqueeze(-1).to(h.scalar_type());
    pcls.push_back(h.select(1, 0));
    pmean.push_back((h * mask).sum(1) / mask.sum(1));
  }
  const at::Tensor pc = torch::cat(pcls), pm = torch::cat(pmean);
  EXPECT_TRUE(peft::test::close(pc, expected.at("cls"), atol)) << "padded cls";
  EXPECT_TRUE(peft::test::close(pm, expected.at("mean"), atol)) << "padded mean";
  report("padded_cls", max_diff(pc, expected.at("cls")));
  report("padded_mean", max_diff(pm, expected.at("mean")));

  // The [CLS] row after layers 1..6 (transformers' hidden_states[k], k >= 1) on the fixture's first
  // pairs: a model of the first k layers ends in hidden_states[k]. hidden_states[0] (the
  // embeddings' output) has no model of its own and is covered by every layer after it.
  const at::Tensor layer_cls = expected.at("hidden_cls");  // [7, P, 384]
  const int64_t P = layer_cls.size(1);
  const std::string tmp = peft::test::tmp_dir("real_minilm_layers");
  for (int64_t k = 1; k < layer_cls.size(0); ++k) {
    auto mk = peft::models::load_model(first_layers(dir, k, tmp + "/layers" + std::to_string(k)));
    mk->eval();
    std::vector<at::Tensor> rows_k;
    for (int64_t i = 0; i < P; ++i) rows_k.push_back(run_alone(*mk, ref.examples[i])[0]);
    const at::Tensor got = torch::stack(rows_k);
    EXPECT_TRUE(peft::test::close(got, layer_cls[k], atol)) << "hidden_states[" << k << "]";
    report("layer" + std::to_string(k) + "_cls", max_diff(got, layer_cls[k]));
  }
  fs::remove_all(tmp);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << "[ minilm   ] " << n << " pairs, " << P << " for the per-layer rows; " << secs << " s\n";
}

}  // namespace
