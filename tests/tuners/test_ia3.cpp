// (IA)³ against Python PEFT (tests/fixtures/ia3/*, tools/reference/gen_ia3.py): a matrix over
// model x config running PEFT's shared checks (injection, parameter counts, forward, gradients,
// disable, merge / unmerge, save -> load, merge_and_unload), several active adapters,
// add_weighted_adapter, config rules. Adapters this test saves go to build/tests/ia3/<case>/ for
// tools/reference/verify_ia3.py.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <iomanip>
#include <set>
#include <sstream>

#include "golden.h"
#include "peft/core/error.h"
#include "peft/io/hf_checkpoint.h"
#include "peft/models/adaptable_linear.h"
#include "peft/models/model.h"
#include "peft/peft_model.h"
#include "peft/models/quantized_model.h"
#include "peft/tuners/ia3/config.h"
#include "peft/tuners/ia3/layer.h"
#include "peft/tuners/ia3/model.h"
#include "peft/tuners/registry.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using peft::test::close;
using peft::test::GoldenCase;

struct Ia3Case {
  GoldenCase g;
  std::string base;
};

// case.json of a case PEFT rejects (no tensors): its expect_error.
std::string expected_error(const std::string& name) {
  const auto j = json::parse(peft::read_file(peft::test::fixture("ia3/" + name + "/case.json")));
  return j["expect_error"].get<std::string>();
}

Ia3Case load_ia3_case(const std::string& name) {
  Ia3Case c{peft::test::load_case("ia3/" + name), ""};
  if (c.g.meta.contains("base")) c.base = peft::test::fixture(c.g.meta["base"].get<std::string>());
  return c;
}

std::string out_dir(const std::string& name) {
  const std::string d = std::string(PEFT_TEST_OUTPUT_DIR) + "/ia3/" + name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

using peft::test::inputs_of;

// Our parameter name -> PEFT's in-memory name (the fixtures' grad.* keys).
std::string peft_param_name(const std::string& ours) {
  for (const char* head : {"score.", "classifier."})
    if (ours.rfind(head, 0) == 0) return std::string(head) + "modules_to_save.default." + ours.substr(std::strlen(head));
  return ours;
}

peft::models::AdaptableLinearImpl& slot_of(peft::models::PretrainedModel& m, const std::string& module) {
  for (const auto& item : m.named_modules("", false))
    if (item.key() == module) return dynamic_cast<peft::models::AdaptableLinearImpl&>(*item.value());
  throw std::out_of_range("no module " + module);
}

// The largest |ours - PEFT's| per quantity of one test, printed at its end.
struct Deltas {
  std::map<std::string, double> worst;
  ::testing::AssertionResult check(const std::string& what, const at::Tensor& a, const at::Tensor& e, double atol) {
    if (a.sizes() == e.sizes()) {
      const double d = a.numel() ? (a.detach().to(at::kDouble) - e.to(at::kDouble)).abs().max().item<double>() : 0.0;
      worst[what] = std::max(worst[what], d);
    }
    return close(a, e, atol);
  }
  std::string str() const {
    std::ostringstream os;
    for (const auto& [k, v] : worst) os << " " << k << " " << std::setprecision(2) << v << ";";
    return os.str();
  }
};

// Compares the fixture's `<prefix>.<module>.weight/.bias` with the model's parameters.
int expect_layer_tensors(peft::models::PretrainedModel& m, const GoldenCase& g, const std::string& prefix, double atol,
                         Deltas& d) {
  auto params = m.named_parameters();
  int n = 0;
  for (const auto& [k, v] : g.t) {
    if (k.rfind(prefix + ".", 0) != 0) continue;
    const std::string name = k.substr(prefix.size() + 1);
    EXPECT_TRUE(d.check(prefix + " weights", params[name], v, atol)) << prefix << " " << name;
    ++n;
  }
  return n;
}

// Gradients of every trainable parameter against the fixture's `<prefix>.<PEFT name>`.
void expect_grads(peft::models::PretrainedModel& m, const GoldenCase& g, const std::string& prefix, Deltas& d) {
  int grads = 0;
  for (const auto& p : m.named_parameters()) {
    if (!p.value().requires_grad()) continue;
    const std::string key = prefix + "." + peft_param_name(p.key());
    ASSERT_TRUE(g.has(key)) << "no PEFT gradient for " << p.key() << " (" << key << ")";
    EXPECT_TRUE(peft::test::grad_close(p.value().grad(), g[key], g.grad_rtol)) << p.key();
    d.check(prefix, p.value().grad(), g[key], 1.0);
    ++grads;
  }
  int expected = 0;
  for (const auto& [k, v] : g.t) expected += k.rfind(prefix + ".", 0) == 0;
  EXPECT_EQ(grads, expected) << prefix;
  for (auto& p : m.parameters())
    if (p.grad().defined()) p.mutable_grad().zero_();
}

std::vector<std::string> sorted_names(const peft::io::SafetensorsFile& f) {
  auto n = f.names();
  std::sort(n.begin(), n.end());
  return n;
}

// adapter_config.json as PEFT wrote it vs ours: the same keys and values; target_modules and
// feedforward_modules are sets in PEFT (their order follows Python's string hash).
void expect_config_like_peft(const std::string& ours_path, const std::string& theirs_path) {
  json ours = peft::io::read_json_file(ours_path), theirs = peft::io::read_json_file(theirs_path);
  for (auto* j : {&ours, &theirs}) {
    j->erase("peft_version");
    // PEFT writes auto_mapping (null for a task_type) from its base config; a missing key reads as null.
    if (j->contains("auto_mapping") && (*j)["auto_mapping"].is_null()) j->erase("auto_mapping");
    for (const char* k : {"target_modules", "feedforward_modules", "exclude_modules"})
      if ((*j)[k].is_array()) {
        auto v = (*j)[k].get<std::vector<std::string>>();
        std::sort(v.begin(), v.end());
        (*j)[k] = v;
      }
  }
  EXPECT_EQ(ours, theirs) << ours_path;
}

class Ia3Matrix : public ::testing::TestWithParam<std::string> {};

TEST_P(Ia3Matrix, MatchesPeft) {
  const auto c = load_ia3_case(GetParam());
  const auto& g = c.g;
  const double atol = g.atol, atol_m = g.meta.value("atol_merged", g.atol);
  auto base = peft::models::load_model(c.base);
  auto pm = peft::PeftModel::from_pretrained(base, g.dir, "default", /*is_trainable=*/true);
  Deltas d;
  // Extra adapters saved beside "default" (PEFT's dir/<name>/ layout) load too; "default" stays active.
  for (const auto& e : fs::directory_iterator(g.dir))
    if (e.is_directory() && fs::exists(e.path() / "adapter_config.json"))
      pm->load_adapter(e.path().string(), e.path().filename().string());

  // Injection: the same modules (all adapters), the same kind per module, PEFT's counts.
  std::set<std::string> mods;
  for (const auto& a : pm->adapter_names())
    for (const auto& m : pm->adapted_modules(a)) mods.insert(m);
  EXPECT_EQ(std::vector<std::string>(mods.begin(), mods.end()), g.meta["ia3_modules"].get<std::vector<std::string>>());
  // PEFT's layers are feedforward or not once for all their adapters (the first one decides).
  const auto ff = g.meta["feedforward"].get<std::vector<std::string>>();
  for (const auto& a : pm->adapter_names())
    for (const auto& m : pm->adapted_modules(a)) {
      auto& slot = slot_of(*base, m);
      const bool is_ff = std::find(ff.begin(), ff.end(), m) != ff.end();
      const std::vector<int64_t> want =
          is_ff ? std::vector<int64_t>{1, slot.in_features()} : std::vector<int64_t>{slot.out_features(), 1};
      EXPECT_EQ(peft::ia3::ia3_vector(slot, a).sizes().vec(), want) << a << " " << m;
    }
  const auto [trainable, all] = pm->get_nb_trainable_parameters();
  EXPECT_EQ(trainable, g.meta["trainable_params"].get<int64_t>());
  EXPECT_EQ(all, g.meta["all_params"].get<int64_t>());
  EXPECT_EQ(pm->print_trainable_parameters(), g.meta["print_trainable_parameters"].get<std::string>());

  // Forward, loss and gradients of every trainable parameter.
  base->eval();
  auto out = pm->forward(inputs_of(g));
  EXPECT_TRUE(d.check("logits", out.logits, g["logits"], atol));
  EXPECT_TRUE(d.check("loss", out.loss.reshape({1}), g["loss"], atol));
  out.loss.backward();
  expect_grads(*base, g, "grad", d);

  torch::NoGradGuard ng;
  const auto in = inputs_of(g, false);
  {
    auto guard = pm->disable_adapter();
    EXPECT_TRUE(d.check("disabled", pm->forward(in).logits, g["logits_disabled"], atol)) << "disabled != base";
  }
  EXPECT_TRUE(d.check("logits", pm->forward(in).logits, g["logits"], atol)) << "re-enabled";

  // Merge: PEFT's logits and weights (biases of output-scaled modules included); unmerge divides
  // by vector + 1e-8 as PEFT does.
  pm->merge_adapter({}, /*safe_merge=*/true);
  EXPECT_TRUE(d.check("merged logits", pm->forward(in).logits, g["logits_merged"], atol_m));
  EXPECT_GT(expect_layer_tensors(*base, g, "merged", atol_m, d), 0);
  pm->unmerge_adapter();
  EXPECT_GT(expect_layer_tensors(*base, g, "unmerged", atol_m, d), 0);
  EXPECT_TRUE(d.check("logits", pm->forward(in).logits, g["logits"], atol));

  // save -> PEFT's keys, shapes and config -> load into a fresh base -> the same logits.
  const auto dir = out_dir(GetParam());
  pm->save_pretrained(dir);
  for (const auto& a : pm->adapter_names()) {
    const std::string sub = a == "default" ? "" : "/" + a;
    const auto ours = peft::io::SafetensorsFile::open(dir + sub + "/adapter_model.safetensors");
    const auto theirs = peft::io::SafetensorsFile::open(g.dir + sub + "/adapter_model.safetensors");
    ASSERT_EQ(sorted_names(ours), sorted_names(theirs)) << a;
    for (const auto& k : theirs.names()) EXPECT_EQ(ours.at(k).shape, theirs.at(k).shape) << k;
    expect_config_like_peft(dir + sub + "/adapter_config.json", g.dir + sub + "/adapter_config.json");
  }
  auto again = peft::PeftModel::from_pretrained(peft::models::load_model(c.base), dir);
  const at::Tensor l2 = again->forward(in).logits;
  EXPECT_TRUE(d.check("reloaded logits", l2, g["logits"], atol));
  peft::io::save_safetensors(dir + "/cpp_logits.safetensors", {{"logits", l2}});
  // merge_and_unload: a plain model with PEFT's merged weights, exported as a full HF folder.
  auto plain = again->merge_and_unload();
  for (const auto& p : plain->named_parameters()) EXPECT_EQ(p.key().find("ia3_"), std::string::npos) << p.key();
  EXPECT_TRUE(d.check("merge_and_unload logits", plain->forward(in).logits, g["logits_merged"], atol_m));
  EXPECT_GT(expect_layer_tensors(*plain, g, "merged", atol_m, d), 0);
  peft::models::save_pretrained(*plain, dir + "/merged");
  EXPECT_TRUE(d.check("merge_and_unload logits", peft::models::load_model(dir + "/merged")->forward(in).logits,
                      g["logits_merged"], atol_m));
  std::cout << "[ia3] " << GetParam() << " max |ours - PEFT|:" << d.str() << "\n";
}

std::vector<std::string> matrix_cases() {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(peft::test::fixture("ia3"))) {
    const std::string n = e.path().filename().string();
    if (e.is_directory() && n.rfind("error_", 0) != 0) out.push_back(n);
  }
  std::sort(out.begin(), out.end());
  return out;
}

INSTANTIATE_TEST_SUITE_P(Peft, Ia3Matrix, ::testing::ValuesIn(matrix_cases()),
                         [](const auto& info) { return info.param; });

// Default configs made here (not loaded) inject what PEFT injects and save PEFT's adapter_config.json.
TEST(Ia3Config, DefaultsMatchPeft) {
  for (const char* name : {"llama_default", "gpt2_default", "bert_seqcls", "t5_default"}) {
    const auto c = load_ia3_case(name);
    peft::Ia3Config cfg;
    cfg.task_type = peft::parse_task_type(c.g.meta["task_type"].get<std::string>());
    cfg.base_model_name_or_path = c.g.meta["base"].get<std::string>();
    auto pm = peft::get_peft_model(peft::models::load_model(c.base), cfg);
    auto mods = pm->adapted_modules("default");
    std::sort(mods.begin(), mods.end());
    EXPECT_EQ(mods, c.g.meta["ia3_modules"].get<std::vector<std::string>>()) << name;
    EXPECT_EQ(pm->get_nb_trainable_parameters().first, c.g.meta["trainable_params"].get<int64_t>()) << name;
    // Fresh vectors are ones: the adapter starts as the base model.
    torch::NoGradGuard ng;
    EXPECT_TRUE(close(pm->forward(inputs_of(c.g, false)).logits, c.g["logits_disabled"], c.g.atol)) << name;
    const auto dir = peft::test::tmp_dir(std::string("ia3_defaults_") + name);
    pm->save_pretrained(dir);
    expect_config_like_peft(dir + "/adapter_config.json", c.g.dir + "/adapter_config.json");
  }
}

// Two adapters active at once multiply; add_weighted_adapter sums weighted vectors.
TEST(Ia3Adapters, BothActiveAndWeighted) {
  const auto c = load_ia3_case("llama_two_adapters");
  const auto& g = c.g;
  auto base = peft::models::load_model(c.base);
  auto pm = peft::PeftModel::from_pretrained(base, g.dir, "default", /*is_trainable=*/true);
  pm->load_adapter(g.dir + "/other", "other", /*is_trainable=*/true);
  Deltas d;
  base->eval();
  {
    torch::NoGradGuard ng;
    pm->set_adapter("other");
    EXPECT_TRUE(d.check("other logits", pm->forward(inputs_of(g, false)).logits, g["logits_other"], g.atol));
  }
  pm->set_adapters({"default", "other"});
  auto out = pm->forward(inputs_of(g));
  EXPECT_TRUE(d.check("both logits", out.logits, g["logits_both"], g.atol));
  EXPECT_TRUE(d.check("both loss", out.loss.reshape({1}), g["loss_both"], g.atol));
  out.loss.backward();
  expect_grads(*base, g, "grad_both", d);  // both adapters' vectors are trainable and get gradients

  torch::NoGradGuard ng;
  const auto in = inputs_of(g, false);
  {
    auto guard = pm->disable_adapter();
    EXPECT_TRUE(d.check("both disabled", pm->forward(in).logits, g["logits_disabled_both"], g.atol));
  }
  pm->merge_adapter();  // both, in order
  EXPECT_TRUE(d.check("both merged logits", pm->forward(in).logits, g["logits_merged_both"],
                      g.meta.value("atol_merged", g.atol)));
  EXPECT_GT(expect_layer_tensors(*base, g, "merged_both", g.atol, d), 0);
  pm->unmerge_adapter();
  EXPECT_GT(expect_layer_tensors(*base, g, "unmerged_both", g.atol, d), 0);
  EXPECT_TRUE(d.check("both logits", pm->forward(in).logits, g["logits_both"], g.atol));

  // Mixed-adapter batches are a LoRA feature; PEFT's IA3Model has none.
  peft::test::expect_throw_with<peft::NotSupported>([&] { pm->forward(in, {"default", "other", "__base__"}); },
                                                    {"IA3", "mixed-adapter"});

  auto& tuner = pm->tuner_as<peft::ia3::Ia3Model>();
  const auto& w = g.meta["weighted"];
  tuner.add_weighted_adapter(w["adapters"].get<std::vector<std::string>>(), w["weights"].get<std::vector<double>>(),
                             "combo");
  const auto sd = pm->adapter_state_dict("combo");
  int n = 0;
  for (const auto& [k, v] : g.t) {
    if (k.rfind("combo.", 0) != 0) continue;
    const std::string key = "base_model.model." + k.substr(6);
    ASSERT_TRUE(sd.count(key)) << key;
    EXPECT_TRUE(d.check("combo vectors", sd.at(key), v, 1e-6)) << key;
    ++n;
  }
  EXPECT_EQ(n, static_cast<int>(sd.size()));
  const auto& combo_cfg = dynamic_cast<const peft::Ia3Config&>(pm->peft_config("combo"));
  auto ff = combo_cfg.feedforward_modules.list();
  EXPECT_EQ(ff, (std::vector<std::string>{"down_proj", "v_proj"}));
  // An existing name is left alone, as PEFT does.
  tuner.add_weighted_adapter({"default"}, {3.0}, "combo");
  EXPECT_TRUE(close(pm->adapter_state_dict("combo").begin()->second, sd.begin()->second, 0.0));
  pm->set_adapter("combo");
  EXPECT_TRUE(d.check("combo logits", pm->forward(in).logits, g["logits_combo"], g.atol));
  const auto dir = peft::test::tmp_dir("ia3_weighted");
  pm->save_pretrained(dir, {"combo"});
  EXPECT_EQ(sorted_names(peft::io::SafetensorsFile::open(dir + "/combo/adapter_model.safetensors")),
            sorted_names(peft::io::SafetensorsFile::open(g.dir + "/combo/adapter_model.safetensors")));
  expect_config_like_peft(dir + "/combo/adapter_config.json", g.dir + "/combo/adapter_config.json");

  pm->delete_adapter("other");
  pm->delete_adapter("combo");
  pm->set_adapter("default");
  EXPECT_EQ(pm->adapter_names(), std::vector<std::string>{"default"});
  for (const auto& p : base->named_parameters()) {
    EXPECT_EQ(p.key().find(".other"), std::string::npos) << p.key();
    EXPECT_EQ(p.key().find(".combo"), std::string::npos) << p.key();
  }
  EXPECT_TRUE(d.check("default logits after deletes", pm->forward(in).logits, g["logits"], g.atol));
  std::cout << "[ia3] llama_two_adapters max |ours - PEFT|:" << d.str() << "\n";
}

TEST(Ia3Errors, PeftRulesAndMismatches) {
  using peft::test::expect_throw_with;
  const auto llama = load_ia3_case("llama_default");
  // feedforward_modules must be a subset of target_modules (PEFT's ValueError wording).
  peft::Ia3Config bad;
  bad.target_modules = std::vector<std::string>{"q_proj"};
  bad.feedforward_modules = std::vector<std::string>{"down_proj"};
  expect_throw_with<peft::ConfigError>([&] { bad.validate(); }, {"`feedforward_modules` should be a subset of `target_modules`"});
  EXPECT_NE(expected_error("error_feedforward_subset").find("`feedforward_modules` should be a subset of `target_modules`"),
            std::string::npos);
  expect_throw_with<peft::ConfigError>(
      [&] {
        peft::peft_config_from_json({{"peft_type", "IA3"}, {"target_modules", {"q_proj"}}, {"feedforward_modules", {"wo"}}},
                                    "x.json");
      },
      {"should be a subset"});
  // A regex target_modules is not checked against the list (PEFT checks sets only).
  peft::Ia3Config rx;
  rx.target_modules = ".*q_proj";
  rx.feedforward_modules = std::vector<std::string>{"down_proj"};
  EXPECT_NO_THROW(rx.validate());
  expect_throw_with<peft::ConfigError>(
      [&] { peft::peft_config_from_json({{"peft_type", "IA3"}, {"init_ia3_weights", "yes"}}, "x.json"); },
      {"x.json", "init_ia3_weights"});
  expect_throw_with<peft::ConfigError>(
      [&] { peft::peft_config_from_json({{"peft_type", "IA3"}, {"feedforward_modules", 3}}, "x.json"); },
      {"feedforward_modules"});

  // An embedding target: PEFT's "is not supported" (error_embedding), ours names the module.
  EXPECT_NE(expected_error("error_embedding").find("is not supported"), std::string::npos);
  peft::Ia3Config e;
  e.target_modules = std::vector<std::string>{"embed_tokens"};
  e.feedforward_modules = std::vector<std::string>{};
  expect_throw_with<peft::ConfigError>([&] { peft::get_peft_model(peft::models::load_model(llama.base), e); },
                                       {"model.embed_tokens", "is not supported"});

  // A file whose feedforward modules differ from the config: the vectors' shapes do not fit.
  const auto dir = peft::test::tmp_dir("ia3_ff_mismatch");
  auto cj = peft::io::read_json_file(llama.g.dir + "/adapter_config.json");
  cj["feedforward_modules"] = json::array();
  peft::io::write_json_file(dir + "/adapter_config.json", cj);
  fs::copy_file(llama.g.dir + "/adapter_model.safetensors", dir + "/adapter_model.safetensors");
  expect_throw_with<peft::FormatError>([&] { peft::PeftModel::from_pretrained(peft::models::load_model(llama.base), dir); },
                                       {"shape mismatches", "down_proj.ia3_l", "[1, 48]", "[32, 1]", "feedforward_modules"});

  // Adapters of one model share a peft_type.
  auto pm = peft::PeftModel::from_pretrained(peft::models::load_model(llama.base), llama.g.dir);
  expect_throw_with<std::invalid_argument>(
      [&] { pm->load_adapter(peft::test::fixture("lora/llama_default"), "lora"); }, {"same peft_type", "IA3", "LORA"});

  // 4-bit base: (IA)³ runs on it, but PEFT refuses to merge.
  auto q = peft::models::load_model(llama.base);
  peft::models::BnbConfig bnb;
  bnb.load_in_4bit = true;
  ASSERT_GT(peft::models::quantize_model(*q, bnb), 0);
  auto qpm = peft::PeftModel::from_pretrained(q, llama.g.dir);
  torch::NoGradGuard ng;
  EXPECT_EQ(qpm->forward(inputs_of(llama.g, false)).logits.sizes(), llama.g["logits"].sizes());
  expect_throw_with<peft::NotSupported>([&] { qpm->merge_adapter(); }, {"4-bit"});
}

TEST(Ia3ConfigJson, RoundTripAndDefaults) {
  const auto cfg = peft::load_peft_config(peft::test::fixture("ia3/llama_regex"));
  const auto& c = dynamic_cast<const peft::Ia3Config&>(*cfg);
  EXPECT_EQ(c.peft_type, peft::PeftType::Ia3);
  EXPECT_TRUE(c.target_modules.is_regex());
  EXPECT_TRUE(c.is_feedforward("model.layers.0.mlp.down_proj"));  // "own_proj": a plain suffix
  EXPECT_FALSE(c.target_modules.matches("model.layers.0.mlp.own_proj"));
  EXPECT_FALSE(c.is_feedforward("model.layers.0.self_attn.o_proj"));
  const auto j = cfg->to_json();
  EXPECT_EQ(j["peft_type"], "IA3");
  const auto back = peft::peft_config_from_json(j, "roundtrip");
  EXPECT_EQ(back->to_json(), j);
  const auto minimal = peft::peft_config_from_json({{"peft_type", "IA3"}}, "minimal");
  const auto& m = dynamic_cast<const peft::Ia3Config&>(*minimal);
  EXPECT_TRUE(m.target_modules.is_null());
  EXPECT_TRUE(m.feedforward_modules.is_null());
  EXPECT_TRUE(m.init_ia3_weights);
  EXPECT_FALSE(m.fan_in_fan_out);
  EXPECT_EQ(peft::tuner_row("ia3").type, peft::PeftType::Ia3);
  EXPECT_EQ(peft::parse_peft_type("IA3"), peft::PeftType::Ia3);
}

}  // namespace
