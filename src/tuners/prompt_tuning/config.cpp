// Mirrors peft/tuners/prompt_tuning/config.py (PromptTuningConfig.__post_init__).
#include "peft/tuners/prompt_tuning/config.h"

#include "peft/core/check.h"

namespace peft {

using nlohmann::json;

void PromptTuningConfig::validate() const {
  PromptLearningConfig::validate();
  PEFT_CHECK(prompt_tuning_init == "RANDOM" || prompt_tuning_init == "TEXT" || prompt_tuning_init == "SAMPLE_VOCAB",
             ConfigError, "[PROMPT_TUNING] prompt_tuning_init must be RANDOM, TEXT or SAMPLE_VOCAB, got '",
             prompt_tuning_init, "'");
  if (prompt_tuning_init == "TEXT") {
    PEFT_CHECK(tokenizer_name_or_path && !tokenizer_name_or_path->empty(), ConfigError,
               "[PROMPT_TUNING] When prompt_tuning_init='TEXT', tokenizer_name_or_path can't be None.");
    PEFT_CHECK(prompt_tuning_init_text.has_value(), ConfigError,
               "[PROMPT_TUNING] When prompt_tuning_init='TEXT', prompt_tuning_init_text can't be None.");
  }
  const bool has_kwargs = !tokenizer_kwargs.is_null() && !tokenizer_kwargs.empty();
  PEFT_CHECK(!(has_kwargs && prompt_tuning_init != "TEXT"), ConfigError,
             "[PROMPT_TUNING] tokenizer_kwargs only valid when using prompt_tuning_init='TEXT'.");
}

json PromptTuningConfig::to_json() const {
  json j = PromptLearningConfig::to_json();
  j["prompt_tuning_init"] = prompt_tuning_init;
  j["prompt_tuning_init_text"] = prompt_tuning_init_text ? json(*prompt_tuning_init_text) : json(nullptr);
  j["tokenizer_name_or_path"] = tokenizer_name_or_path ? json(*tokenizer_name_or_path) : json(nullptr);
  j["tokenizer_kwargs"] = tokenizer_kwargs;
  return j;
}

PromptTuningConfig PromptTuningConfig::from_json(const json& in, const std::string& source) {
  PEFT_CHECK(in.is_object(), ConfigError, "[config] ", source, ": expected a JSON object");
  json rest = in;
  PromptTuningConfig c;
  c.read_prompt_fields(rest, source);
  c.prompt_tuning_init = detail::take_opt_string(rest, "prompt_tuning_init", source).value_or("RANDOM");
  c.prompt_tuning_init_text = detail::take_opt_string(rest, "prompt_tuning_init_text", source);
  c.tokenizer_name_or_path = detail::take_opt_string(rest, "tokenizer_name_or_path", source);
  if (auto it = rest.find("tokenizer_kwargs"); it != rest.end()) {
    PEFT_CHECK(it->is_null() || it->is_object(), ConfigError, "[config] ", source,
               ": field 'tokenizer_kwargs' must be an object or null, got ", it->dump());
    c.tokenizer_kwargs = *it;
    rest.erase(it);
  }
  for (auto it = rest.begin(); it != rest.end(); ++it) c.unknown[it.key()] = it.value();
  c.peft_type = PeftType::PromptTuning;
  c.validate();
  return c;
}

}  // namespace peft
