// LoRA against Python PEFT (tests/fixtures/lora/*, tools/reference/gen_lora.py): a matrix over
// model x config running PEFT's shared checks (injection, parameter counts, forward, gradients,
// disable, merge, save -> load), plus multi-adapter cases.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "golden.h"
#include "peft/io/llama2c.h"
#include "peft/models/model.h"
#include "peft/peft_model.h"
#include "peft/tuners/lora/config.h"
#include "peft/core/error.h"
#include "peft/tuners/registry.h"
#include "peft/tuners/lora/model.h"

namespace {

namespace fs = std::filesystem;
using peft::test::close;
using peft::test::GoldenCase;

std::string base_dir(const std::string& base) {
  if (base != "stories260k") return peft::test::fixture(base);
  static const std::string dir = [] {
    auto d = peft::test::tmp_dir("lora_stories260k");
    peft::io::convert_llama2c(peft::test::source_path("models/stories260K/stories260K.bin"), "", d);
    return d;
  }();
  return dir;
}

struct LoraCase {
  GoldenCase g;
  std::string base;
};

LoraCase load_lora_case(const std::string& name) {
  LoraCase c{peft::test::load_case("lora/" + name), ""};
  c.base = base_dir(c.g.meta["base"].get<std::string>());
  return c;
}

using peft::test::inputs_of;

// Our parameter name -> PEFT's in-memory name (the fixtures' grad.* keys).
std::string peft_param_name(const std::string& ours, const std::vector<std::string>& adapted) {
  const std::string b = ".bias";
  if (ours.size() > b.size() && ours.compare(ours.size() - b.size(), b.size(), b) == 0 &&
      ours.find("lora_") == std::string::npos) {
    const std::string mod = ours.substr(0, ours.size() - b.size());
    if (std::find(adapted.begin(), adapted.end(), mod) != adapted.end()) return mod + ".base_layer.bias";
  }
  for (const char* head : {"score.", "classifier.", "pre_classifier."})
    if (ours.rfind(head, 0) == 0) return std::string(head) + "modules_to_save.default." + ours.substr(std::strlen(head));
  return ours;
}

class LoraMatrix : public ::testing::TestWithParam<std::string> {};

TEST_P(LoraMatrix, MatchesPeft) {
  const auto c = load_lora_case(GetParam());
  const auto& g = c.g;
  const double atol = g.atol, atol_m = g.meta.value("atol_merged", g.atol);
  auto base = peft::models::load_model(c.base);
  auto pm = peft::PeftModel::from_pretrained(base, g.dir, "default", /*is_trainable=*/true);
  // Extra adapters saved beside "default" (PEFT's dir/<name>/ layout) load too; "default" stays active.
  for (const auto& e : fs::directory_iterator(g.dir))
    if (e.is_directory() && fs::exists(e.path() / "adapter_config.json"))
      pm->load_adapter(e.path().string(), e.path().filename().string());

  // Injection: the same modules, the same parameter counts, PEFT's summary line.
  const auto mods = pm->adapted_modules("default");
  EXPECT_EQ(static_cast<int64_t>(mods.size()), g.meta["n_lora_modules"].get<int64_t>());
  auto want_mods = g.meta["lora_modules"].get<std::vector<std::string>>();
  auto got_mods = mods;
  std::sort(got_mods.begin(), got_mods.end());
  EXPECT_EQ(got_mods, want_mods);
  const auto [trainable, all] = pm->get_nb_trainable_parameters();
  EXPECT_EQ(trainable, g.meta["trainable_params"].get<int64_t>());
  EXPECT_EQ(all, g.meta["all_params"].get<int64_t>());
  EXPECT_EQ(pm->print_trainable_parameters(), g.meta["print_trainable_parameters"].get<std::string>());

  // Forward, loss and gradients of every trainable parameter.
  base->eval();
  auto out = pm->forward(inputs_of(g));
  EXPECT_TRUE(close(out.logits, g["logits"], atol));
  EXPECT_TRUE(close(out.loss.reshape({1}), g["loss"], atol));
  out.loss.backward();
  int grads = 0;
  for (const auto& p : base->named_parameters()) {
    if (!p.value().requires_grad()) continue;
    const std::string key = "grad." + peft_param_name(p.key(), mods);
    ASSERT_TRUE(g.has(key)) << "no PEFT gradient for " << p.key() << " (" << key << ")";
    EXPECT_TRUE(peft::test::grad_close(p.value().grad(), g[key], g.grad_rtol)) << p.key();
    ++grads;
  }
  int expected_grads = 0;
  for (const auto& [k, v] : g.t) expected_grads += k.rfind("grad.", 0) == 0;
  EXPECT_EQ(grads, expected_grads);

  torch::NoGradGuard ng;
  const auto in = inputs_of(g, false);
  {
    auto guard = pm->disable_adapter();
    EXPECT_TRUE(close(pm->forward(in).logits, g["logits_disabled"], atol)) << "disabled != base";
  }
  EXPECT_TRUE(close(pm->forward(in).logits, g["logits"], atol)) << "re-enabled";

  // Merge == unmerged, and the merged weights equal PEFT's; unmerge restores.
  pm->merge_adapter({}, /*safe_merge=*/true);
  EXPECT_TRUE(close(pm->forward(in).logits, g["logits_merged"], atol_m));
  auto params = base->named_parameters();
  for (const auto& [k, v] : g.t) {
    if (k.rfind("merged.", 0) != 0) continue;
    const std::string name = k.substr(7);
    EXPECT_TRUE(close(params[name], v, atol_m)) << name;
  }
  pm->unmerge_adapter();
  EXPECT_TRUE(close(pm->forward(in).logits, g["logits"], atol));

  // save -> the same keys and shapes as PEFT's file -> load into a fresh base -> same logits.
  const auto dir = peft::test::tmp_dir("lora_save_" + GetParam());
  pm->save_pretrained(dir);
  const auto ours = peft::io::SafetensorsFile::open(dir + "/adapter_model.safetensors");
  const auto theirs = peft::io::SafetensorsFile::open(g.dir + "/adapter_model.safetensors");
  auto on = ours.names(), tn = theirs.names();
  std::sort(on.begin(), on.end());
  std::sort(tn.begin(), tn.end());
  EXPECT_EQ(on, tn);
  auto again = peft::PeftModel::from_pretrained(peft::models::load_model(c.base), dir);
  const at::Tensor l2 = again->forward(in).logits;
  EXPECT_TRUE(close(l2, g["logits"], atol));
  peft::io::save_safetensors(dir + "/cpp_logits.safetensors", {{"logits", l2}});
  // merge_and_unload gives a plain model with the merged behaviour, exported as a full HF folder
  // that loads as the original architecture.
  auto plain = again->merge_and_unload();
  for (const auto& p : plain->named_parameters()) EXPECT_EQ(p.key().find("lora_"), std::string::npos) << p.key();
  EXPECT_TRUE(close(plain->forward(in).logits, g["logits_merged"], atol_m));
  peft::models::save_pretrained(*plain, dir + "/merged");
  EXPECT_TRUE(close(peft::models::load_model(dir + "/merged")->forward(in).logits, g["logits_merged"], atol_m));
}

std::vector<std::string> matrix_cases() {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(peft::test::fixture("lora"))) {
    const std::string n = e.path().filename().string();
    if (!e.is_directory() || n.rfind("error_", 0) == 0 || n.rfind("weighted_", 0) == 0) continue;
    out.push_back(n);
  }
  std::sort(out.begin(), out.end());
  return out;
}

INSTANTIATE_TEST_SUITE_P(Peft, LoraMatrix, ::testing::ValuesIn(matrix_cases()),
                         [](const auto& info) { return info.param; });

// Two adapters: switching, and a mixed batch (one adapter per row) equal to PEFT's and to the
// per-row single-adapter results.
TEST(LoraAdapters, SwitchMixedBatchDelete) {
  const auto c = load_lora_case("llama_two_adapters_mixed");
  const auto& g = c.g;
  auto pm = peft::PeftModel::from_pretrained(peft::models::load_model(c.base), g.dir);
  pm->load_adapter(g.dir + "/other", "other");
  torch::NoGradGuard ng;
  const auto in = inputs_of(g, false);
  EXPECT_TRUE(close(pm->forward(in).logits, g["logits"], g.atol));
  pm->set_adapter("other");
  EXPECT_TRUE(close(pm->forward(in).logits, g["logits_other"], g.atol));
  pm->set_adapter("default");

  peft::models::ModelInputs mixed;
  mixed.input_ids = g["mixed_input_ids"];
  mixed.attention_mask = g["mixed_attention_mask"];
  const std::vector<std::string> names = {"default", "other", "__base__"};
  const at::Tensor lm = pm->forward(mixed, names).logits;
  EXPECT_TRUE(close(lm, g["logits_mixed"], g.atol));
  for (int64_t i = 0; i < 3; ++i) {
    peft::models::ModelInputs one;
    one.input_ids = mixed.input_ids.narrow(0, i, 1);
    one.attention_mask = mixed.attention_mask.narrow(0, i, 1);
    at::Tensor single;
    if (names[i] == "__base__") {
      auto guard = pm->disable_adapter();
      single = pm->forward(one).logits;
    } else {
      pm->set_adapter(names[i]);
      single = pm->forward(one).logits;
    }
    EXPECT_TRUE(close(lm.narrow(0, i, 1), single, 1e-5)) << "row " << i;
  }
  pm->set_adapter("default");
  // Mixed batches are inference-only and need unmerged adapters.
  pm->base_model().train();
  EXPECT_THROW(pm->forward(mixed, names), std::invalid_argument);
  pm->base_model().eval();
  EXPECT_THROW(pm->forward(mixed, {"default", "nope", "__base__"}), std::invalid_argument);

  pm->delete_adapter("other");
  EXPECT_EQ(pm->adapter_names(), std::vector<std::string>{"default"});
  for (const auto& p : pm->base_model().named_parameters())
    EXPECT_EQ(p.key().find(".other"), std::string::npos) << p.key();
  EXPECT_TRUE(close(pm->forward(in).logits, g["logits"], g.atol));
  EXPECT_THROW(pm->set_adapter("other"), std::invalid_argument);
}

class LoraWeighted : public ::testing::TestWithParam<std::string> {};

TEST_P(LoraWeighted, AddWeightedAdapterMatchesPeft) {
  const auto c = load_lora_case(GetParam());
  const auto& g = c.g;
  const auto& w = g.meta["weighted"];
  auto pm = peft::PeftModel::from_pretrained(peft::models::load_model(c.base), g.dir);
  pm->load_adapter(g.dir + "/other", "other");
  pm->tuner_as<peft::lora::LoraModel>().add_weighted_adapter(w["adapters"].get<std::vector<std::string>>(), w["weights"].get<std::vector<double>>(),
                           "combo", w["combination_type"].get<std::string>(), w.value("svd_rank", int64_t{0}));
  const auto sd = pm->adapter_state_dict("combo");
  int n = 0;
  for (const auto& [k, v] : g.t) {
    if (k.rfind("combo.", 0) != 0) continue;
    const std::string key = "base_model.model." + k.substr(6);
    ASSERT_TRUE(sd.count(key)) << key;
    // SVD factors are unique up to sign per component: compare the products for svd.
    if (w["combination_type"] == "svd") continue;
    EXPECT_TRUE(close(sd.at(key), v, 1e-5)) << key;
    ++n;
  }
  pm->set_adapter("combo");
  torch::NoGradGuard ng;
  EXPECT_TRUE(close(pm->forward(inputs_of(g, false)).logits, g["logits_combo"], 2e-5));
  EXPECT_EQ(pm->get_nb_trainable_parameters().second, g.meta["all_params"].get<int64_t>());
  // The combination saves and loads like any adapter (PEFT's combo/ folder has the same keys).
  const auto dir = peft::test::tmp_dir("weighted_" + GetParam());
  pm->save_pretrained(dir, {"combo"});
  auto theirs = peft::io::SafetensorsFile::open(g.dir + "/combo/adapter_model.safetensors").names();
  auto ours = peft::io::SafetensorsFile::open(dir + "/combo/adapter_model.safetensors").names();
  std::sort(theirs.begin(), theirs.end());
  std::sort(ours.begin(), ours.end());
  EXPECT_EQ(ours, theirs);
}

INSTANTIATE_TEST_SUITE_P(Peft, LoraWeighted, ::testing::Values("weighted_linear", "weighted_cat", "weighted_svd"),
                         [](const auto& info) { return info.param; });

TEST(LoraErrors, PeftRulesAndHostileAdapters) {
  const auto c = load_lora_case("llama_default");
  using peft::test::expect_throw_with;
  // Config rules with PEFT's wording.
  peft::LoraConfig bad;
  bad.target_modules = ".*q_proj";
  bad.layers_to_transform = std::vector<int64_t>{0};
  expect_throw_with<peft::ConfigError>([&] { bad.validate(); }, {"`layers_to_transform` cannot be used when `target_modules` is a str."});
  peft::LoraConfig r0;
  r0.r = 0;
  expect_throw_with<peft::ConfigError>([&] { r0.validate(); }, {"`r` should be a positive integer"});
  peft::LoraConfig b;
  b.bias = "some";
  expect_throw_with<peft::ConfigError>([&] { b.validate(); }, {"Requested bias: some"});
  expect_throw_with<peft::ConfigError>(
      [&] { peft::peft_config_from_json({{"peft_type", "LORA"}, {"r", "eight"}}, "x.json"); }, {"x.json", "'r'", "integer"});
  expect_throw_with<peft::ConfigError>([&] { peft::peft_config_from_json({{"peft_type", "LORAX"}}, "x.json"); }, {"LORAX"});
  expect_throw_with<peft::NotSupported>([&] { peft::peft_config_from_json({{"peft_type", "LOHA"}}, "x.json"); }, {"LOHA"});
  expect_throw_with<peft::NotSupported>(
      [&] { peft::peft_config_from_json({{"peft_type", "LORA"}, {"layer_replication", {{0, 1}}}}, "x.json"); },
      {"layer_replication"});

  // Unknown target modules: the error lists the modules that exist.
  peft::LoraConfig t;
  t.target_modules = std::vector<std::string>{"query_key_value"};
  expect_throw_with<peft::ConfigError>([&] { peft::get_peft_model(peft::models::load_model(c.base), t); },
                                       {"query_key_value", "not found", "model.layers.0.self_attn.q_proj"});
  peft::LoraConfig norm;
  norm.target_modules = std::vector<std::string>{"input_layernorm"};
  expect_throw_with<peft::ConfigError>([&] { peft::get_peft_model(peft::models::load_model(c.base), norm); },
                                       {"input_layernorm", "not supported"});

  // PEFT has no default target modules for phi3 (lora/error_phi3_no_default): the same refusal.
  {
    std::ifstream f(peft::test::fixture("lora/error_phi3_no_default") + "/case.json");
    const auto meta = nlohmann::json::parse(f);
    EXPECT_NE(meta["expect_error"].get<std::string>().find("Please specify `target_modules`"), std::string::npos);
    const std::string base = base_dir(meta["base"].get<std::string>());
    expect_throw_with<peft::ConfigError>([&] { peft::get_peft_model(peft::models::load_model(base), peft::LoraConfig{}); },
                                         {"Please specify `target_modules`", "phi3"});
  }

  // An adapter for another base: a shape mismatch names the tensor and both shapes.
  expect_throw_with<peft::FormatError>(
      [&] { peft::PeftModel::from_pretrained(peft::models::load_model(base_dir("stories260k")), c.g.dir); },
      {"shape mismatches", "q_proj.lora_A.weight", "[4, 32]", "[4, 64]"});
  // An adapter whose keys match no module would do nothing: refused, naming the keys.
  const auto dir = peft::test::tmp_dir("lora_hostile");
  fs::copy_file(c.g.dir + "/adapter_config.json", dir + "/adapter_config.json");
  auto tensors = peft::io::load_safetensors(c.g.dir + "/adapter_model.safetensors");
  std::map<std::string, at::Tensor> renamed;
  for (auto& [k, v] : tensors) renamed["base_model.model.transformer." + k.substr(17)] = v;
  peft::io::save_safetensors(dir + "/adapter_model.safetensors", renamed);
  expect_throw_with<peft::FormatError>([&] { peft::PeftModel::from_pretrained(peft::models::load_model(c.base), dir); },
                                       {"would have no effect", "base_model.model.transformer.", "missing from the file"});
  // Missing file.
  fs::remove(dir + "/adapter_model.safetensors");
  expect_throw_with<peft::FormatError>([&] { peft::PeftModel::from_pretrained(peft::models::load_model(c.base), dir); },
                                       {"adapter_model.safetensors"});
}

// Recomputing layers in backward gives the same loss and gradients (dropout masks included).
TEST(GradientCheckpointing, SameLossAndGradients) {
  for (const char* name : {"llama_default", "gpt2_default", "bert_seqcls", "t5_default"}) {
    const auto c = load_lora_case(name);
    auto pm = peft::PeftModel::from_pretrained(peft::models::load_model(c.base), c.g.dir, "default", true);
    auto& m = pm->base_model();
    m.train();
    std::vector<std::vector<at::Tensor>> grads(2);
    std::vector<double> losses;
    for (int run = 0; run < 2; ++run) {
      m.set_gradient_checkpointing(run == 1);
      torch::manual_seed(0);
      auto loss = pm->forward(inputs_of(c.g)).loss;
      loss.backward();
      losses.push_back(loss.item<double>());
      for (auto& p : pm->trainable_parameters()) {
        grads[run].push_back(p.grad().clone());
        p.mutable_grad().zero_();
      }
    }
    EXPECT_NEAR(losses[0], losses[1], 1e-6) << name;
    ASSERT_EQ(grads[0].size(), grads[1].size());
    for (std::size_t i = 0; i < grads[0].size(); ++i) EXPECT_TRUE(close(grads[1][i], grads[0][i], 1e-6)) << name << " #" << i;
  }
}

TEST(LoraConfigJson, RoundTripKeepsUnknownKeysAndDefaults) {
  const auto cfg = peft::load_peft_config(peft::test::fixture("lora/llama_patterns"));
  const auto& l = dynamic_cast<const peft::LoraConfig&>(*cfg);
  EXPECT_TRUE(l.target_modules.is_regex());
  EXPECT_EQ(l.rank_for("model.layers.0.self_attn.q_proj"), 2);
  EXPECT_EQ(l.alpha_for("model.layers.1.self_attn.v_proj"), 4);
  EXPECT_EQ(l.rank_for("model.layers.1.self_attn.v_proj"), 4);
  const auto j = cfg->to_json();
  EXPECT_EQ(j["megatron_core"], "megatron.core");  // kept verbatim
  EXPECT_EQ(j["peft_type"], "LORA");
  EXPECT_EQ(j["task_type"], "CAUSAL_LM");
  const auto back = peft::peft_config_from_json(j, "roundtrip");
  EXPECT_EQ(back->to_json(), j);
  // Missing keys take PEFT's defaults.
  const auto minimal = peft::peft_config_from_json({{"peft_type", "LORA"}}, "minimal");
  const auto& m = dynamic_cast<const peft::LoraConfig&>(*minimal);
  EXPECT_EQ(m.r, 8);
  EXPECT_EQ(m.lora_alpha, 8);
  EXPECT_EQ(m.bias, "none");
  EXPECT_EQ(m.init_lora_weights, "true");
}

// A whole lora_alpha too large for an integer stays a number in to_json (it was cast to int64_t:
// undefined behaviour, caught by tests/fuzz/fuzz_adapter_config under UBSan).
TEST(LoraConfigJson, HugeWholeAlphaStaysANumber) {
  const auto c = peft::peft_config_from_json({{"peft_type", "LORA"}, {"lora_alpha", 1e300}}, "huge");
  const auto j = c->to_json();
  ASSERT_TRUE(j["lora_alpha"].is_number_float());
  EXPECT_EQ(j["lora_alpha"].get<double>(), 1e300);
  EXPECT_TRUE(c->to_json()["r"].is_number_integer());
  EXPECT_TRUE(peft::peft_config_from_json({{"peft_type", "LORA"}, {"lora_alpha", 32.0}}, "whole")
                  ->to_json()["lora_alpha"]
                  .is_number_integer());
}

// Lists and pattern values are checked element by element, naming the field (found by
// tests/fuzz/fuzz_adapter_config: layers_to_transform ["r"] escaped as nlohmann's type_error 302
// with no file or field, and a rank_pattern of 1e300 was cast to an integer).
TEST(LoraConfigJson, ListElementsAndPatternValuesAreTyped) {
  using peft::test::expect_throw_with;
  auto parse = [](const nlohmann::json& j) { return peft::peft_config_from_json(j, "a.json"); };
  expect_throw_with<peft::ConfigError>([&] { parse({{"peft_type", "LORA"}, {"layers_to_transform", {1, "r"}}}); },
                                       {"a.json", "'layers_to_transform' must be an int or a list of ints", "\"r\""});
  expect_throw_with<peft::ConfigError>([&] { parse({{"peft_type", "LORA"}, {"layers_pattern", {"layers", 3}}}); },
                                       {"a.json", "'layers_pattern' must be a string or a list of strings"});
  expect_throw_with<peft::ConfigError>([&] { parse({{"peft_type", "LORA"}, {"rank_pattern", {{"q_proj", 1e300}}}}); },
                                       {"a.json", "rank_pattern['q_proj'] must be an integer"});
  const auto ok = parse({{"peft_type", "LORA"}, {"layers_to_transform", {0, 2}}, {"layers_pattern", {"layers"}},
                         {"target_modules", {"q_proj"}}, {"alpha_pattern", {{"q_proj", 2.5}}}});
  const auto& l = dynamic_cast<const peft::LoraConfig&>(*ok);
  EXPECT_EQ(*l.layers_to_transform, (std::vector<int64_t>{0, 2}));
  EXPECT_DOUBLE_EQ(l.alpha_for("model.layers.0.self_attn.q_proj"), 2.5);
}

}  // namespace
