// LoRA against Python PEFT (tests/fixtures/lora/*, tools/reference/gen_lora.py): a matrix over
// model x config running PEFT's shared checks (injection, parameter counts, forward, gradients,
// disable, merge, save -> load), plus multi-adapter cases.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "golden.h"
#include "peft/io/llama2c.h"
#include "peft/models/model.h"
#include "peft/peft_model.h"
#include "peft/tuners/lora/config.h"

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

peft::models::ModelInputs inputs_of(const GoldenCase& g, bool with_labels = true) {
  peft::models::ModelInputs in;
  in.input_ids = g["input_ids"];
  in.attention_mask = g["attention_mask"];
  if (g.has("decoder_input_ids")) in.decoder_input_ids = g["decoder_input_ids"];
  if (g.has("token_type_ids")) in.token_type_ids = g["token_type_ids"];
  if (with_labels) in.labels = g["labels"];
  return in;
}

// Our parameter name -> PEFT's in-memory name (the fixtures' grad.* keys).
std::string peft_param_name(const std::string& ours, const std::vector<std::string>& adapted) {
  const std::string b = ".bias";
  if (ours.size() > b.size() && ours.compare(ours.size() - b.size(), b.size(), b) == 0 &&
      ours.find("lora_") == std::string::npos) {
    const std::string mod = ours.substr(0, ours.size() - b.size());
    if (std::find(adapted.begin(), adapted.end(), mod) != adapted.end()) return mod + ".base_layer.bias";
  }
  for (const char* head : {"score.", "classifier."})
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
  // merge_and_unload gives a plain model with the merged behaviour.
  auto plain = again->merge_and_unload();
  for (const auto& p : plain->named_parameters()) EXPECT_EQ(p.key().find("lora_"), std::string::npos) << p.key();
  EXPECT_TRUE(close(plain->forward(in).logits, g["logits_merged"], atol_m));
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

}  // namespace
