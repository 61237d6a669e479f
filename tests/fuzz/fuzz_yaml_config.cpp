// A YAML run config as `peft train` reads it, up to where LibTorch is needed: the bounds check,
// yaml-cpp's parse, every key through the run-key table or into the method's fields
// (train/run_config_keys.h), the tasks list, then the checks of the parsed values (task,
// problem, TrainingArguments) and the method's own PEFT config parsed from its fields. Input: the
// YAML text, optionally followed by NUL + one `key=value` override per NUL-separated part.
// Any input must give a run config or ConfigError / FormatError / NotSupported.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "fuzz_util.h"
#include "peft/core/error.h"
#include "peft/train/run_config.h"
#include "peft/tuners/adalora/config.h"
#include "peft/tuners/full/config.h"
#include "peft/tuners/ia3/config.h"
#include "peft/tuners/lora/config.h"
#include "peft/tuners/p_tuning/config.h"
#include "peft/tuners/prefix_tuning/config.h"
#include "peft/tuners/prompt_tuning/config.h"
#include "train/run_config_keys.h"

using nlohmann::json;
using peft::train::detail::MethodKeys;

namespace {

template <typename Config>
void add(MethodKeys& m, const char* name) {
  const Config c;
  const json j = c.to_json();
  auto& keys = m[name];
  for (auto it = j.begin(); it != j.end(); ++it) keys.insert(it.key());
  for (const auto& k : c.optional_fields()) keys.insert(k);
  for (const char* base : {"peft_type", "task_type", "base_model_name_or_path", "revision", "inference_mode"})
    keys.erase(base);
}

/// The registry's keys per method (train/run_config.cpp's method_keys) from the torch-free configs.
const MethodKeys& method_keys() {
  static const MethodKeys m = [] {
    MethodKeys k;
    add<peft::LoraConfig>(k, "lora");
    add<peft::AdaLoraConfig>(k, "adalora");
    add<peft::PrefixTuningConfig>(k, "prefix_tuning");
    add<peft::PromptEncoderConfig>(k, "p_tuning");
    add<peft::PromptTuningConfig>(k, "prompt_tuning");
    add<peft::Ia3Config>(k, "ia3");
    add<peft::FullConfig>(k, "full");
    return k;
  }();
  return m;
}

/// The method's PEFT config from the run's fields, as build_peft_config parses it.
void parse_method(const peft::train::RunConfig& c) {
  const std::string m = c.method == "qlora" ? "lora" : c.method == "p_tuning_v2" ? "prefix_tuning" : c.method;
  const auto it = method_keys().find(m);
  if (it == method_keys().end()) return;
  json j = json::object();
  for (auto f = c.method_fields.begin(); f != c.method_fields.end(); ++f)
    if (it->second.count(f.key())) j[f.key()] = f.value();
  j["task_type"] = peft::to_string(c.task_type());
  const std::string source = "method " + c.method;
  std::unique_ptr<peft::PeftConfig> cfg;
  if (m == "lora") j["peft_type"] = "LORA", cfg = std::make_unique<peft::LoraConfig>(peft::LoraConfig::from_json(j, source));
  if (m == "adalora") {
    j["peft_type"] = "ADALORA";
    if (!j.contains("total_step")) j["total_step"] = 100;
    cfg = std::make_unique<peft::AdaLoraConfig>(peft::AdaLoraConfig::from_json(j, source));
  }
  if (m == "prefix_tuning")
    j["peft_type"] = "PREFIX_TUNING", cfg = std::make_unique<peft::PrefixTuningConfig>(peft::PrefixTuningConfig::from_json(j, source));
  if (m == "p_tuning")
    j["peft_type"] = "P_TUNING", cfg = std::make_unique<peft::PromptEncoderConfig>(peft::PromptEncoderConfig::from_json(j, source));
  if (m == "prompt_tuning")
    j["peft_type"] = "PROMPT_TUNING", cfg = std::make_unique<peft::PromptTuningConfig>(peft::PromptTuningConfig::from_json(j, source));
  if (m == "ia3") j["peft_type"] = "IA3", cfg = std::make_unique<peft::Ia3Config>(peft::Ia3Config::from_json(j, source));
  if (m == "full") j["peft_type"] = "FULL", cfg = std::make_unique<peft::FullConfig>(peft::FullConfig::from_json(j, source));
  cfg->validate();
  (void)cfg->to_json().dump();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto parts = peft::fuzz::split_nul(peft::fuzz::as_text(data, size));
  peft::train::RunConfig c;
  try {
    (void)peft::train::detail::apply_run_yaml(c, std::string(parts[0]), "run.yaml", "", method_keys());
    for (std::size_t i = 1; i < parts.size(); ++i)
      (void)peft::train::detail::apply_run_override(c, std::string(parts[i]), method_keys());
    for (const auto& t : c.tasks) {
      peft::train::RunConfig tc = c;
      peft::train::detail::apply_task_keys(tc, t, method_keys());
    }
    (void)c.task_type();
    (void)c.problem();
    c.args.validate();
    (void)c.method_fields.dump();
    parse_method(c);
  } catch (const peft::ConfigError&) {
  } catch (const peft::FormatError&) {
  } catch (const peft::NotSupported&) {
  }
  return 0;
}
