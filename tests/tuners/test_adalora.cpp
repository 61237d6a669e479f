// AdaLoRA against Python PEFT (tests/fixtures/adalora/*, tools/reference/gen_adalora.py): config
// checks, the 30-step allocation run (budgets, masks, scores, weights), PEFT-saved pruned
// adapters (rank 0 included) and our save in PEFT's format.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "golden.h"
#include "peft/core/error.h"
#include "peft/core/json_file.h"
#include "peft/io/safetensors.h"
#include "peft/models/model.h"
#include "peft/peft_model.h"
#include "peft/tuners/adalora/config.h"
#include "peft/tuners/adalora/layer.h"
#include "peft/train/trainer.h"
#include "peft/tuners/registry.h"
#include "peft/tuners/adalora/model.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using peft::test::close;

json valid_config() {
  return json{{"peft_type", "ADALORA"}, {"task_type", "CAUSAL_LM"}, {"init_r", 6}, {"target_r", 2},
              {"tinit", 4}, {"tfinal", 8}, {"total_step", 30}, {"target_modules", {"q_proj", "v_proj"}}};
}

std::string out_dir(const std::string& name) {
  const std::string d = std::string(PEFT_TEST_OUTPUT_DIR) + "/adalora/" + name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

peft::models::ModelInputs batch(const peft::test::GoldenCase& g, int i) {
  peft::models::ModelInputs in;
  const std::string p = "batch" + std::to_string(i) + ".";
  in.input_ids = g[p + "input_ids"];
  in.attention_mask = g[p + "attention_mask"];
  in.labels = g[p + "labels"];
  return in;
}

std::map<std::string, std::vector<bool>> pattern_of(const json& j) {
  std::map<std::string, std::vector<bool>> out;
  for (auto it = j.begin(); it != j.end(); ++it) out[it.key()] = it->get<std::vector<bool>>();
  return out;
}

TEST(AdaLoraConfig, ParsesPeftFieldsAndRoundTrips) {
  json j = valid_config();
  j["rank_pattern"] = {{"model.layers.0.self_attn.q_proj.lora_E", {true, false, true, true, false, false}}};
  j["beta1"] = 0.8;
  auto c = peft::AdaLoraConfig::from_json(j);
  EXPECT_EQ(c.peft_type, peft::PeftType::AdaLora);
  EXPECT_EQ(c.init_r, 6);
  EXPECT_EQ(c.target_r, 2);
  EXPECT_EQ(*c.total_step, 30);
  EXPECT_DOUBLE_EQ(c.beta1, 0.8);
  EXPECT_DOUBLE_EQ(c.orth_reg_weight, 0.5);
  EXPECT_EQ(c.kept_rank("model.layers.0.self_attn.q_proj"), 3);
  EXPECT_EQ(c.kept_rank("model.layers.1.self_attn.q_proj"), 6);
  const json back = c.to_json();
  EXPECT_EQ(back["rank_pattern"], j["rank_pattern"]);
  EXPECT_EQ(back["peft_type"], "ADALORA");
  EXPECT_EQ(back["deltaT"], 1);
  // The registry dispatches ADALORA to this parser.
  auto any = peft::peft_config_from_json(j, "x.json");
  EXPECT_NE(dynamic_cast<peft::AdaLoraConfig*>(any.get()), nullptr);
}

TEST(AdaLoraConfig, InvalidSchedulesAreClearErrors) {
  using peft::ConfigError;
  using peft::test::expect_throw_with;
  auto with = [](const char* k, json v) {
    json j = valid_config();
    j[k] = std::move(v);
    return j;
  };
  expect_throw_with<ConfigError>([&] { peft::AdaLoraConfig::from_json(with("tinit", 22), "a.json"); },
                                 {"don't allow for a budgeting phase", "tinit=22", "tfinal=8", "total_step=30"});
  expect_throw_with<ConfigError>([&] { peft::AdaLoraConfig::from_json(with("tfinal", 30), "a.json"); },
                                 {"budgeting phase"});
  expect_throw_with<ConfigError>([&] { peft::AdaLoraConfig::from_json(with("beta1", 1.0), "a.json"); },
                                 {"`beta1` must be in (0, 1)", "1"});
  expect_throw_with<ConfigError>([&] { peft::AdaLoraConfig::from_json(with("beta2", 0.0), "a.json"); },
                                 {"`beta2` must be in (0, 1)"});
  expect_throw_with<ConfigError>([&] { peft::AdaLoraConfig::from_json(with("total_step", nullptr), "a.json"); },
                                 {"`total_step` is None", "null"});
  json missing = valid_config();
  missing.erase("total_step");
  expect_throw_with<ConfigError>([&] { peft::peft_config_from_json(missing, "b.json"); }, {"total_step"});
  expect_throw_with<ConfigError>([&] { peft::AdaLoraConfig::from_json(with("total_step", 0), "a.json"); },
                                 {"supply a value > 0"});
  expect_throw_with<ConfigError>([&] { peft::AdaLoraConfig::from_json(with("orth_reg_weight", -1), "a.json"); },
                                 {"orth_reg_weight"});
  expect_throw_with<ConfigError>([&] { peft::AdaLoraConfig::from_json(with("total_step", "10"), "a.json"); },
                                 {"a.json", "total_step"});
  expect_throw_with<ConfigError>(
      [&] { peft::AdaLoraConfig::from_json(with("rank_pattern", {{"m.lora_E", {true, false}}}), "a.json"); },
      {"rank_pattern['m.lora_E']", "init_r = 6"});
  expect_throw_with<ConfigError>(
      [&] { peft::AdaLoraConfig::from_json(with("rank_pattern", {{"m.lora_E", 3}}), "a.json"); },
      {"list of booleans"});
  expect_throw_with<ConfigError>([&] { peft::AdaLoraConfig::from_json(with("use_dora", true), "a.json"); },
                                 {"DoRA"});
}

// The fp32 regulariser (one GEMM per matrix each way) against the plain autograd graph in fp64:
// the value and the gradients of A and B, including a matrix with G = I exactly (zero norm, zero
// gradient) and rank 0.
TEST(AdaLora, OrthogonalRegularizationMatchesThePlainGraph) {
  torch::manual_seed(7);
  std::vector<peft::adalora::AdaLoraTensors> f32, f64;
  auto add = [&](at::Tensor A, at::Tensor B) {
    peft::adalora::AdaLoraTensors a, b;
    a.A = A.clone().requires_grad_(true);
    a.B = B.clone().requires_grad_(true);
    b.A = A.to(at::kDouble).requires_grad_(true);
    b.B = B.to(at::kDouble).requires_grad_(true);
    f32.push_back(a);
    f64.push_back(b);
  };
  add(torch::randn({6, 40}) * 0.3, torch::randn({24, 6}) * 0.2);
  add(torch::randn({12, 64}), torch::randn({64, 12}));
  add(torch::eye(5, 32), torch::eye(48, 5));  // orthonormal rows and columns: G - I = 0
  add(torch::zeros({0, 16}), torch::zeros({16, 0}));
  const at::Tensor r32 = peft::adalora::orthogonal_regularization(f32);
  const at::Tensor r64 = peft::adalora::orthogonal_regularization(f64);
  EXPECT_EQ(r32.scalar_type(), at::kFloat);
  EXPECT_NEAR(r32.item<double>(), r64.item<double>(), 1e-6 * r64.item<double>());
  (r32 * 3.0).backward();
  (r64 * 3.0).backward();
  for (std::size_t i = 0; i < f32.size(); ++i) {
    SCOPED_TRACE("module " + std::to_string(i));
    for (int k = 0; k < 2; ++k) {
      const at::Tensor& g32 = k == 0 ? f32[i].A.grad() : f32[i].B.grad();
      const at::Tensor& g64 = k == 0 ? f64[i].A.grad() : f64[i].B.grad();
      ASSERT_TRUE(g32.defined());
      const double scale = std::max(1.0, g64.numel() ? g64.abs().max().item<double>() : 0.0);
      EXPECT_TRUE(close(g32.to(at::kDouble), g64, 1e-5 * scale));
    }
  }
  EXPECT_EQ(f32[2].A.grad().abs().max().item<float>(), 0.0f);
  EXPECT_GT(f32[1].A.grad().abs().max().item<float>(), 0.0f);
}

// 30 steps of PEFT's update_and_allocate in a plain SGD loop, replayed here from the same initial
// adapter and data: loss, budget, masks and triplet scores at every step, final tensors.
TEST(AdaLora, ThirtyStepAllocationMatchesPeft) {
  const auto g = peft::test::load_case("adalora/llama_train30");
  auto base = peft::models::load_model(peft::test::fixture(g.meta["base"]));
  auto pm = peft::PeftModel::from_pretrained(base, g.dir + "/init", "default", /*is_trainable=*/true);
  pm->base_model().train();
  // PEFT's parameter counts (ranknum counts among all parameters).
  const auto [trainable, all] = pm->get_nb_trainable_parameters();
  EXPECT_EQ(trainable, g["nb_trainable_parameters"][0].item<int64_t>());
  EXPECT_EQ(all, g["nb_trainable_parameters"][1].item<int64_t>());
  auto* alloc = pm->tuner_as<peft::adalora::AdaLoraModel>().rank_allocator();
  ASSERT_NE(alloc, nullptr);
  EXPECT_EQ(alloc->init_budget(), g.meta["init_bgt"].get<int64_t>());
  EXPECT_EQ(alloc->target_budget(), g.meta["target_bgt"].get<int64_t>());
  torch::optim::SGD opt(pm->trainable_parameters(), torch::optim::SGDOptions(0.5));
  const auto& cfg = dynamic_cast<const peft::AdaLoraConfig&>(pm->peft_config());
  double worst_score = 0, worst_loss = 0, worst_weight = 0;
  int64_t masks_compared = 0;
  for (const auto& s : g.meta["steps"]) {
    const int64_t step = s["step"].get<int64_t>();
    SCOPED_TRACE("step " + std::to_string(step));
    const at::Tensor loss = pm->forward(batch(g, static_cast<int>((step - 1) % 3))).loss;
    EXPECT_NEAR(loss.item<double>(), s["loss"].get<double>(), 1e-5);
    worst_loss = std::max(worst_loss, std::abs(loss.item<double>() - s["loss"].get<double>()));
    loss.backward();
    opt.step();
    const auto logged = pm->on_optimizer_step(step);
    ASSERT_FALSE(logged.empty());
    EXPECT_EQ(logged[0].first, "adalora/budget");
    EXPECT_EQ(static_cast<int64_t>(logged[0].second), s["budget"].get<int64_t>());
    if (s["rank_pattern"].is_null()) {
      EXPECT_FALSE(cfg.adalora_rank_pattern.has_value());
    } else {
      ASSERT_TRUE(cfg.adalora_rank_pattern.has_value());
      EXPECT_EQ(*cfg.adalora_rank_pattern, pattern_of(s["rank_pattern"]));
      ++masks_compared;
    }
    const auto scores = alloc->triplet_scores();
    int64_t n_expected = 0;
    for (const auto& [k, v] : g.t) {
      const std::string p = "score." + std::to_string(step) + ".";
      if (k.rfind(p, 0) != 0) continue;
      ++n_expected;
      const std::string mod = k.substr(p.size());
      ASSERT_TRUE(scores.count(mod)) << mod;
      // Scores are products of two EMAs of |θ·∇θ|; compare relative to their scale.
      EXPECT_TRUE(close(scores.at(mod), v, 1e-6 * v.abs().max().item<double>() + 1e-14, 1e-4)) << mod;
      worst_score = std::max(worst_score, ((scores.at(mod) - v).abs() / v.abs().max().clamp_min(1e-30)).max().item<double>());
    }
    EXPECT_EQ(static_cast<int64_t>(scores.size()), n_expected);
    opt.zero_grad();
  }
  // Final full-rank tensors, the final pattern and the logits.
  const auto params = pm->base_model().named_parameters();
  int64_t checked = 0;
  for (const auto& [k, v] : g.t) {
    if (k.rfind("final.", 0) != 0) continue;
    const std::string name = k.substr(6) + ".default";
    ASSERT_NE(params.find(name), nullptr) << name;
    EXPECT_TRUE(close(params[name], v, 1e-5)) << name;
    worst_weight = std::max(worst_weight, (params[name] - v).abs().max().item<double>());
    ++checked;
  }
  EXPECT_EQ(checked, 3 * 8);
  EXPECT_EQ(masks_compared, 25);
  std::cout << "30 steps vs PEFT: max |loss diff| " << worst_loss << ", max score diff / module max score "
            << worst_score << ", max |final weight diff| " << worst_weight << ", rank patterns compared "
            << masks_compared << "\n";
  const json saved = peft::read_json_file(g.dir + "/adapter_config.json");
  EXPECT_EQ(*cfg.adalora_rank_pattern, pattern_of(saved["rank_pattern"]));
  pm->base_model().eval();
  peft::models::ModelInputs in;
  in.input_ids = g["batch0.input_ids"];
  in.attention_mask = g["batch0.attention_mask"];
  torch::NoGradGuard ng;
  EXPECT_TRUE(close(pm->forward(in).logits, g["logits"], 1e-5));

  // Saved as PEFT saves it: same keys, shrunk shapes and values, the same config fields; the
  // file loads back with identical logits.
  const auto dir = out_dir("llama_train30");
  pm->save_pretrained(dir);
  const auto ours = peft::io::load_safetensors(dir + "/adapter_model.safetensors");
  const auto theirs = peft::io::load_safetensors(g.dir + "/adapter_model.safetensors");
  ASSERT_EQ(ours.size(), theirs.size());
  for (const auto& [k, v] : theirs) {
    ASSERT_TRUE(ours.count(k)) << k;
    EXPECT_TRUE(close(ours.at(k), v, 1e-5)) << k;
  }
  const json mine = peft::read_json_file(dir + "/adapter_config.json");
  for (const char* k : {"rank_pattern", "init_r", "target_r", "tinit", "tfinal", "deltaT", "beta1", "beta2",
                        "orth_reg_weight", "total_step", "peft_type", "lora_alpha"})
    EXPECT_EQ(mine[k], saved[k]) << k;
  auto again = peft::PeftModel::from_pretrained(peft::models::load_model(peft::test::fixture(g.meta["base"])), dir);
  const at::Tensor l2 = again->forward(in).logits;
  EXPECT_TRUE(close(l2, g["logits_reloaded"], 1e-5));
  peft::io::save_safetensors(dir + "/cpp_logits.safetensors", {{"logits", l2}});
}

class AdaLoraSaved : public ::testing::TestWithParam<std::string> {};

// PEFT-saved pruned adapters load with the kept ranks, ranknum = init_r and PEFT's logits; our
// save of them is the same file content.
TEST_P(AdaLoraSaved, LoadsWithPeftLogits) {
  const auto g = peft::test::load_case("adalora/" + GetParam());
  const std::string base_dir = peft::test::fixture(g.meta["base"]);
  auto pm = peft::PeftModel::from_pretrained(peft::models::load_model(base_dir), g.dir);
  const auto& cfg = dynamic_cast<const peft::AdaLoraConfig&>(pm->peft_config());
  ASSERT_TRUE(cfg.adalora_rank_pattern.has_value());
  const auto params = pm->base_model().named_parameters();
  int64_t zero_rank = 0;
  for (const auto& [key, keep] : *cfg.adalora_rank_pattern) {
    const std::string mod = key.substr(0, key.size() - 7);
    const int64_t k = std::count(keep.begin(), keep.end(), true);
    EXPECT_EQ(params[mod + ".lora_A.default"].size(0), k) << mod;
    EXPECT_EQ(params[mod + ".lora_E.default"].size(0), k) << mod;
    EXPECT_EQ(params[mod + ".lora_B.default"].size(1), k) << mod;
    EXPECT_FLOAT_EQ(params[mod + ".ranknum.default"].item<float>(), static_cast<float>(cfg.init_r)) << mod;
    zero_rank += k == 0;
  }
  if (g.meta.contains("rank0_module")) EXPECT_EQ(zero_rank, 1);
  peft::models::ModelInputs in;
  in.input_ids = g.has("input_ids") ? g["input_ids"] : g["batch0.input_ids"];
  in.attention_mask = g.has("attention_mask") ? g["attention_mask"] : g["batch0.attention_mask"];
  torch::NoGradGuard ng;
  const at::Tensor logits = pm->forward(in).logits;
  EXPECT_TRUE(close(logits, g.has("logits_reloaded") ? g["logits_reloaded"] : g["logits"], 1e-5));

  const auto dir = out_dir(GetParam());
  pm->save_pretrained(dir);
  const auto ours = peft::io::load_safetensors(dir + "/adapter_model.safetensors");
  const auto theirs = peft::io::load_safetensors(g.dir + "/adapter_model.safetensors");
  ASSERT_EQ(ours.size(), theirs.size());
  for (const auto& [k, v] : theirs) {
    ASSERT_TRUE(ours.count(k)) << k;
    EXPECT_TRUE(close(ours.at(k), v, 0.0)) << k;
  }
  peft::io::save_safetensors(dir + "/cpp_logits.safetensors", {{"logits", logits}});
}

INSTANTIATE_TEST_SUITE_P(Fixtures, AdaLoraSaved, ::testing::Values("llama_train30", "llama_rank0", "gpt2_pruned"));

TEST(AdaLora, InjectionFreezesAndRejectsWhatPeftRejects) {
  auto base = peft::models::load_model(peft::test::fixture("models/llama_causal"));
  peft::AdaLoraConfig c;
  c.total_step = 10;
  c.init_r = 4;
  auto pm = peft::get_peft_model(base, c);
  // Default AdaLoRA targets for llama: q_proj, v_proj on 2 layers; ranknum is frozen.
  EXPECT_EQ(pm->adapted_modules("default").size(), 4u);
  const auto params = pm->base_model().named_parameters();
  EXPECT_TRUE(params["model.layers.0.self_attn.q_proj.lora_E.default"].requires_grad());
  EXPECT_FALSE(params["model.layers.0.self_attn.q_proj.ranknum.default"].requires_grad());
  EXPECT_FLOAT_EQ(params["model.layers.0.self_attn.q_proj.lora_E.default"].abs().sum().item<float>(), 0.f);
  // A second trainable AdaLoRA adapter, weighted combinations: PEFT's errors.
  peft::test::expect_throw_with<std::invalid_argument>([&] { pm->add_adapter("other", c); }, {"only 1 trainable adapter"});
  peft::AdaLoraConfig frozen = c;
  frozen.inference_mode = true;
  pm->add_adapter("other", frozen);
  peft::test::expect_throw_with<peft::NotSupported>(
      [&] { pm->tuner_as<peft::adalora::AdaLoraModel>().add_weighted_adapter({"default", "other"}, {1.0, 1.0}, "mix"); }, {"add_weighted_adapter"});
  pm->delete_adapter("other");
  EXPECT_EQ(pm->adapter_names(), std::vector<std::string>{"default"});
  // Merging folds B·(A⊙E)·alpha/(ranknum+1e-5) into the weights.
  {
    torch::NoGradGuard ng;
    for (auto& p : pm->trainable_parameters()) p.uniform_(-0.1, 0.1);
  }
  peft::models::ModelInputs in;
  in.input_ids = at::tensor({5, 9, 13, 2, 7}, at::kLong).view({1, 5});
  torch::NoGradGuard ng;
  const at::Tensor before = pm->forward(in).logits;
  pm->merge_adapter();
  EXPECT_TRUE(close(pm->forward(in).logits, before, 1e-5));
  pm->unmerge_adapter();
}

// The trainer runs the allocation after every optimizer step on its own (no user call), logs the
// budget and the ranks, and the saved adapter is the pruned one.
TEST(AdaLora, TrainerAllocatesAndLogs) {
  auto base = peft::models::load_model(peft::test::fixture("models/llama_causal"));
  peft::AdaLoraConfig c;
  c.task_type = peft::TaskType::CausalLM;
  c.init_r = 4;
  c.target_r = 2;
  c.tinit = 2;
  c.tfinal = 3;
  c.total_step = 12;
  at::manual_seed(0);
  auto pm = peft::get_peft_model(base, c);
  peft::train::Dataset d;
  for (int i = 0; i < 8; ++i) {
    peft::train::Example e;
    for (int j = 0; j < 6 + i % 3; ++j) e.input_ids.push_back(3 + (5 * i + 7 * j) % 50);
    e.labels = e.input_ids;
    d.examples.push_back(e);
  }
  peft::train::TrainingArguments a;
  a.output_dir = peft::test::tmp_dir("adalora_trainer");
  a.per_device_train_batch_size = 4;
  a.max_steps = 12;
  a.learning_rate = 2e-2;
  a.shuffle = false;
  a.progress_bar = false;
  a.logging_steps = 1;
  a.tensorboard = false;
  peft::train::Trainer t(pm, a, d, &d, 0);
  const auto res = t.train();
  ASSERT_EQ(res.step_losses.size(), 12u);
  // metrics.jsonl: the schedule's budget and a rank per module at every step.
  std::ifstream f(a.output_dir + "/metrics.jsonl");
  std::string line;
  int64_t budget_lines = 0;
  auto* alloc = pm->tuner_as<peft::adalora::AdaLoraModel>().rank_allocator();
  ASSERT_NE(alloc, nullptr);
  while (std::getline(f, line)) {
    const json j = json::parse(line);
    if (!j.contains("adalora/budget")) continue;
    const int64_t step = j["step"];
    EXPECT_EQ(j["adalora/budget"].get<int64_t>(), alloc->budget_schedule(step).first) << step;
    EXPECT_TRUE(j.contains("adalora/rank/model.layers.1.self_attn.v_proj")) << line;
    ++budget_lines;
  }
  EXPECT_EQ(budget_lines, 12);
  // The final pattern keeps exactly the target budget (4 modules x target_r 2); the saved adapter
  // is pruned to it and reloads with the trained model's logits.
  const auto saved = peft::AdaLoraConfig::from_json(peft::read_json_file(res.adapter_dir + "/adapter_config.json"));
  ASSERT_TRUE(saved.adalora_rank_pattern.has_value());
  int64_t kept = 0;
  for (const auto& [k, v] : *saved.adalora_rank_pattern) kept += std::count(v.begin(), v.end(), true);
  EXPECT_EQ(kept, 8);
  const auto file = peft::io::load_safetensors(res.adapter_dir + "/adapter_model.safetensors");
  int64_t file_rank = 0;
  for (const auto& [k, v] : file)
    if (k.size() > 7 && k.compare(k.size() - 7, 7, ".lora_E") == 0) file_rank += v.size(0);
  EXPECT_EQ(file_rank, 8);
  peft::models::ModelInputs in;
  in.input_ids = at::tensor({5, 9, 13, 2, 7, 11}, at::kLong).view({1, 6});
  torch::NoGradGuard ng;
  const at::Tensor live = pm->forward(in).logits;
  auto again = peft::PeftModel::from_pretrained(peft::models::load_model(peft::test::fixture("models/llama_causal")),
                                                res.adapter_dir);
  EXPECT_TRUE(close(again->forward(in).logits, live, 1e-5));
}

// A run resumed from a mid-run checkpoint (pruned adapter + tuner state) ends where the
// uninterrupted run ends: same losses, same rank pattern, same adapter file.
TEST(AdaLora, TrainerResumesExactly) {
  auto run = [](const std::string& out, int64_t save_steps, const std::string& resume) {
    auto base = peft::models::load_model(peft::test::fixture("models/llama_causal"));
    peft::AdaLoraConfig c;
    c.task_type = peft::TaskType::CausalLM;
    c.init_r = 4;
    c.target_r = 2;
    c.tinit = 2;
    c.tfinal = 3;
    c.total_step = 12;
    at::manual_seed(0);
    auto pm = peft::get_peft_model(base, c);
    peft::train::Dataset d;
    for (int i = 0; i < 8; ++i) {
      peft::train::Example e;
      for (int j = 0; j < 6 + i % 3; ++j) e.input_ids.push_back(3 + (5 * i + 7 * j) % 50);
      e.labels = e.input_ids;
      d.examples.push_back(e);
    }
    peft::train::TrainingArguments a;
    a.output_dir = out;
    a.per_device_train_batch_size = 4;
    a.max_steps = 12;
    a.learning_rate = 2e-2;
    a.shuffle = false;
    a.progress_bar = false;
    a.logging_steps = 0;
    a.save_steps = save_steps;
    a.tensorboard = false;
    peft::train::Trainer t(pm, a, d, nullptr, 0);
    return t.train(resume);
  };
  const auto full = run(peft::test::tmp_dir("adalora_full"), 7, "");
  const std::string dir = peft::test::tmp_dir("adalora_resumed");
  fs::copy(fs::path(full.adapter_dir).parent_path() / "checkpoint-7", fs::path(dir) / "checkpoint-7",
           fs::copy_options::recursive);
  ASSERT_TRUE(fs::exists(dir + "/checkpoint-7/tuner_state.safetensors"));
  const auto resumed = run(dir, 0, dir + "/checkpoint-7");
  ASSERT_EQ(resumed.step_losses.size(), full.step_losses.size());
  for (std::size_t i = 0; i < full.step_losses.size(); ++i) EXPECT_DOUBLE_EQ(resumed.step_losses[i], full.step_losses[i]) << i;
  EXPECT_EQ(peft::read_json_file(resumed.adapter_dir + "/adapter_config.json")["rank_pattern"],
            peft::read_json_file(full.adapter_dir + "/adapter_config.json")["rank_pattern"]);
  const auto x = peft::io::load_safetensors(resumed.adapter_dir + "/adapter_model.safetensors");
  const auto y = peft::io::load_safetensors(full.adapter_dir + "/adapter_model.safetensors");
  ASSERT_EQ(x.size(), y.size());
  for (const auto& [k, v] : y) EXPECT_TRUE(x.at(k).equal(v)) << k;
}

}  // namespace
