// Mirrors peft/config.py (PeftConfigMixin.from_pretrained, to_dict) and peft/utils/peft_types.py.
#include "peft/config/peft_config.h"

#include <array>
#include <filesystem>
#include <iostream>

#include "peft/core/check.h"

namespace peft {

using nlohmann::json;

namespace {

constexpr std::array<std::pair<PeftType, const char*>, 7> kPeftTypes = {{
    {PeftType::Lora, "LORA"},
    {PeftType::AdaLora, "ADALORA"},
    {PeftType::PrefixTuning, "PREFIX_TUNING"},
    {PeftType::PTuning, "P_TUNING"},
    {PeftType::PromptTuning, "PROMPT_TUNING"},
    {PeftType::Ia3, "IA3"},
    {PeftType::Full, "FULL"},
}};
constexpr std::array<std::pair<TaskType, const char*>, 7> kTaskTypes = {{
    {TaskType::None, ""},
    {TaskType::SeqCls, "SEQ_CLS"},
    {TaskType::Seq2SeqLM, "SEQ_2_SEQ_LM"},
    {TaskType::CausalLM, "CAUSAL_LM"},
    {TaskType::TokenCls, "TOKEN_CLS"},
    {TaskType::QuestionAns, "QUESTION_ANS"},
    {TaskType::FeatureExtraction, "FEATURE_EXTRACTION"},
}};

[[noreturn]] void bad(const std::string& source, const char* key, const char* what, const json& v) {
  throw ConfigError("[config] " + source + ": field '" + key + "' must be " + what + ", got " + v.dump());
}

}  // namespace

std::string to_string(PeftType t) {
  for (const auto& [k, s] : kPeftTypes)
    if (k == t) return s;
  return "?";
}

PeftType parse_peft_type(const std::string& s) {
  for (const auto& [k, name] : kPeftTypes)
    if (s == name) return k;
  // Valid PEFT methods this library does not implement are NotSupported, not a typo.
  static const char* const kOtherPeft[] = {"LOHA", "LOKR", "OFT", "BOFT", "VERA", "FOURIERFT", "HRA",
                                           "VBLORA", "LN_TUNING", "POLY", "MULTITASK_PROMPT_TUNING",
                                           "ADAPTION_PROMPT", "XLORA", "CPT", "BONE", "MISS", "RANDLORA",
                                           "TRAINABLE_TOKENS", "SHIRA", "C3A", "ROAD", "WAVEFT", "DELORA"};
  for (const char* o : kOtherPeft)
    PEFT_CHECK(s != o, NotSupported, "[config] peft_type '", s,
               "' is a PEFT method this library does not implement (LORA, ADALORA, PREFIX_TUNING, "
               "P_TUNING, PROMPT_TUNING, IA3)");
  throw ConfigError("[config] unknown peft_type '" + s +
                    "'; expected one of LORA, ADALORA, PREFIX_TUNING, P_TUNING, PROMPT_TUNING, IA3");
}

std::string to_string(TaskType t) {
  for (const auto& [k, s] : kTaskTypes)
    if (k == t) return s;
  return "";
}

TaskType parse_task_type(const std::string& s) {
  for (const auto& [k, name] : kTaskTypes)
    if (s == name && k != TaskType::None) return k;
  throw ConfigError("[config] Invalid task type: '" + s +
                    "'. Must be one of the following task types: SEQ_CLS, SEQ_2_SEQ_LM, CAUSAL_LM, "
                    "TOKEN_CLS, QUESTION_ANS, FEATURE_EXTRACTION.");
}

json PeftConfig::to_json() const {
  json j = unknown;
  j["peft_type"] = to_string(peft_type);
  j["task_type"] = task_type == TaskType::None ? json(nullptr) : json(to_string(task_type));
  j["base_model_name_or_path"] = base_model_name_or_path.empty() ? json(nullptr) : json(base_model_name_or_path);
  j["revision"] = revision ? json(*revision) : json(nullptr);
  j["inference_mode"] = inference_mode;
  return j;
}

namespace detail {

bool take_bool(json& rest, const char* key, bool dflt, const std::string& source) {
  auto it = rest.find(key);
  if (it == rest.end()) return dflt;
  json v = *it;
  rest.erase(it);
  if (v.is_null()) return dflt;
  if (!v.is_boolean()) bad(source, key, "true or false", v);
  return v.get<bool>();
}

int64_t take_int(json& rest, const char* key, int64_t dflt, const std::string& source) {
  auto it = rest.find(key);
  if (it == rest.end()) return dflt;
  json v = *it;
  rest.erase(it);
  if (v.is_null()) return dflt;
  if (!v.is_number_integer()) bad(source, key, "an integer", v);
  return v.get<int64_t>();
}

double take_double(json& rest, const char* key, double dflt, const std::string& source) {
  auto it = rest.find(key);
  if (it == rest.end()) return dflt;
  json v = *it;
  rest.erase(it);
  if (v.is_null()) return dflt;
  if (!v.is_number()) bad(source, key, "a number", v);
  return v.get<double>();
}

std::optional<std::string> take_opt_string(json& rest, const char* key, const std::string& source) {
  auto it = rest.find(key);
  if (it == rest.end()) return std::nullopt;
  json v = *it;
  rest.erase(it);
  if (v.is_null()) return std::nullopt;
  if (!v.is_string()) bad(source, key, "a string", v);
  return v.get<std::string>();
}

void read_base_fields(PeftConfig& c, json& rest, const std::string& source) {
  auto pt = take_opt_string(rest, "peft_type", source);
  PEFT_CHECK(pt.has_value(), ConfigError, "[config] ", source, ": missing required field 'peft_type'");
  c.peft_type = parse_peft_type(*pt);
  if (auto tt = take_opt_string(rest, "task_type", source)) {
    try {
      c.task_type = parse_task_type(*tt);
    } catch (const ConfigError& e) {  // name the file and the field
      throw ConfigError("[config] " + source + ": field 'task_type': " + std::string(e.what()).substr(9));
    }
  }
  c.base_model_name_or_path = take_opt_string(rest, "base_model_name_or_path", source).value_or("");
  c.revision = take_opt_string(rest, "revision", source);
  c.inference_mode = take_bool(rest, "inference_mode", false, source);
  // Informational keys PEFT writes; kept verbatim.
  for (const char* k : {"peft_version", "auto_mapping", "megatron_core", "qalora_group_size"}) {
    auto it = rest.find(k);
    if (it != rest.end()) {
      c.unknown[k] = *it;
      rest.erase(it);
    }
  }
}

}  // namespace detail

}  // namespace peft
