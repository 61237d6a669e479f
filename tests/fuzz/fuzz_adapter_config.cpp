// adapter_config.json as load_peft_config reads it: the JSON parse, the config class named by
// peft_type (the registry's parsers, which are the methods' torch-free from_json), validate(),
// then what the tuners ask of a parsed config: target matching (regex or names) on typical module
// names, per-module rank and alpha patterns, P-Tuning templates, the prompt fields filled from a
// model's config.json. Input: adapter_config.json, optionally followed by NUL + config.json.
// Any input must give a config or ConfigError / FormatError / NotSupported, and a parsed
// config must read back from its own to_json() unchanged.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "fuzz_util.h"
#include "peft/core/error.h"
#include "peft/core/json_file.h"
#include "peft/models/model_config.h"
#include "peft/tuners/adalora/config.h"
#include "peft/tuners/full/config.h"
#include "peft/tuners/ia3/config.h"
#include "peft/tuners/lora/config.h"
#include "peft/tuners/p_tuning/config.h"
#include "peft/tuners/prefix_tuning/config.h"
#include "peft/tuners/prompt_tuning/config.h"

using nlohmann::json;

namespace {

const char* const kModules[] = {
    "model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.v_proj", "model.layers.12.mlp.down_proj",
    "transformer.h.0.attn.c_attn",     "bert.encoder.layer.3.attention.self.query",
    "encoder.block.0.layer.0.SelfAttention.q", "lm_head", "score", "classifier.dense", ""};

/// The registry's dispatch (tuners/registry.cpp) over the torch-free config classes.
std::unique_ptr<peft::PeftConfig> parse(const json& j, const std::string& source) {
  if (!j.is_object() || !j.contains("peft_type") || !j["peft_type"].is_string())
    throw peft::ConfigError("[config] " + source + ": missing required string field 'peft_type'");
  switch (peft::parse_peft_type(j["peft_type"].get<std::string>())) {
    case peft::PeftType::Lora: return std::make_unique<peft::LoraConfig>(peft::LoraConfig::from_json(j, source));
    case peft::PeftType::AdaLora: return std::make_unique<peft::AdaLoraConfig>(peft::AdaLoraConfig::from_json(j, source));
    case peft::PeftType::PrefixTuning:
      return std::make_unique<peft::PrefixTuningConfig>(peft::PrefixTuningConfig::from_json(j, source));
    case peft::PeftType::PTuning:
      return std::make_unique<peft::PromptEncoderConfig>(peft::PromptEncoderConfig::from_json(j, source));
    case peft::PeftType::PromptTuning:
      return std::make_unique<peft::PromptTuningConfig>(peft::PromptTuningConfig::from_json(j, source));
    case peft::PeftType::Ia3: return std::make_unique<peft::Ia3Config>(peft::Ia3Config::from_json(j, source));
    case peft::PeftType::Full: return std::make_unique<peft::FullConfig>(peft::FullConfig::from_json(j, source));
  }
  std::abort();
}

void use(peft::PeftConfig& c, const std::string_view* model_json) {
  if (auto* t = dynamic_cast<peft::TargetFields*>(&c))
    for (const char* m : kModules) (void)peft::check_target_module_exists(*t, m);
  if (auto* l = dynamic_cast<peft::LoraConfig*>(&c))
    for (const char* m : kModules) (void)l->rank_for(m), (void)l->alpha_for(m), (void)l->scaling_for(m);
  if (auto* a = dynamic_cast<peft::AdaLoraConfig*>(&c))
    for (const char* m : kModules) (void)a->kept_rank(m);
  if (auto* p = dynamic_cast<peft::PromptEncoderConfig*>(&c); p && !p->p_tuning_template.empty())
    (void)peft::parse_p_tuning_template(p->p_tuning_template);
  if (auto* p = dynamic_cast<peft::PromptLearningConfig*>(&c); p && model_json) {
    p->fill_from_model(peft::models::ModelConfig(peft::parse_json(*model_json, "config.json"), "config.json"));
    p->validate();
    (void)p->total_virtual_tokens();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto parts = peft::fuzz::split_nul(peft::fuzz::as_text(data, size));
  try {
    const json j = peft::parse_json(parts[0], "adapter_config.json");
    auto c = parse(j, "adapter_config.json");
    c->validate();
    const json out = c->to_json();
    (void)out.dump();
    if (parse(out, "round trip")->to_json() != out) std::abort();  // reads back unchanged
    use(*c, parts.size() > 1 ? &parts[1] : nullptr);
  } catch (const peft::ConfigError&) {
  } catch (const peft::FormatError&) {
  } catch (const peft::NotSupported&) {
  }
  return 0;
}
