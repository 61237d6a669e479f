// The one table from peft_type to config parser (no static self-registration).
#include <iostream>

#include "peft/config/peft_config.h"
#include "peft/core/check.h"
#include "peft/tuners/lora/config.h"
#include "peft/tuners/adalora/config.h"
#include "peft/tuners/p_tuning/config.h"
#include "peft/tuners/prefix_tuning/config.h"
#include "peft/tuners/prompt_tuning/config.h"

namespace peft {

namespace {

using Parser = std::unique_ptr<PeftConfig> (*)(const nlohmann::json&, const std::string&);

std::unique_ptr<PeftConfig> parse_lora(const nlohmann::json& j, const std::string& src) {
  return std::make_unique<LoraConfig>(LoraConfig::from_json(j, src));
}

std::unique_ptr<PeftConfig> parse_adalora(const nlohmann::json& j, const std::string& src) {
  return std::make_unique<AdaLoraConfig>(AdaLoraConfig::from_json(j, src));
}
std::unique_ptr<PeftConfig> parse_prompt_tuning(const nlohmann::json& j, const std::string& src) {
  return std::make_unique<PromptTuningConfig>(PromptTuningConfig::from_json(j, src));
}
std::unique_ptr<PeftConfig> parse_p_tuning(const nlohmann::json& j, const std::string& src) {
  return std::make_unique<PromptEncoderConfig>(PromptEncoderConfig::from_json(j, src));
}
std::unique_ptr<PeftConfig> parse_prefix_tuning(const nlohmann::json& j, const std::string& src) {
  return std::make_unique<PrefixTuningConfig>(PrefixTuningConfig::from_json(j, src));
}

struct Row {
  PeftType type;
  Parser parse;
};
const Row kTuners[] = {
    {PeftType::Lora, parse_lora},
    {PeftType::AdaLora, parse_adalora},
    {PeftType::PromptTuning, parse_prompt_tuning},
    {PeftType::PTuning, parse_p_tuning},
    {PeftType::PrefixTuning, parse_prefix_tuning},
};

}  // namespace

std::unique_ptr<PeftConfig> peft_config_from_json(const nlohmann::json& j, const std::string& source) {
  PEFT_CHECK(j.is_object(), ConfigError, "[config] ", source, ": expected a JSON object");
  auto it = j.find("peft_type");
  PEFT_CHECK(it != j.end() && it->is_string(), ConfigError, "[config] ", source,
             ": missing required string field 'peft_type'");
  const PeftType t = parse_peft_type(it->get<std::string>());
  for (const auto& row : kTuners) {
    if (row.type != t) continue;
    auto c = row.parse(j, source);
    if (!c->unknown.empty()) {
      std::string keys;
      for (auto u = c->unknown.begin(); u != c->unknown.end(); ++u)
        if (u.key() != "peft_version" && u.key() != "auto_mapping" && u.key() != "megatron_core" &&
            u.key() != "qalora_group_size" && !u->is_null() &&
            !(u->is_boolean() && !u->get<bool>()) && !((u->is_object() || u->is_array()) && u->empty()))
          keys += " " + u.key();  // only keys whose value could change behaviour
      if (!keys.empty()) std::cerr << "warning: " << source << ": unknown keys kept as they are:" << keys << "\n";
    }
    return c;
  }
  throw NotSupported("[config] " + source + ": peft_type '" + it->get<std::string>() +
                     "' is not implemented yet in this build");
}

}  // namespace peft
