// Mirrors peft/config.py (PromptLearningConfig) and peft/utils/other.py
// (_prepare_prompt_learning_config).
#include "peft/tuners/prompt_learning/config.h"

#include <nlohmann/json.hpp>

#include "peft/core/check.h"
#include "peft/models/model_config.h"

namespace peft {

using nlohmann::json;

namespace detail {
json int_or_null(int64_t v) { return v > 0 ? json(v) : json(nullptr); }
}  // namespace detail

void PromptLearningConfig::validate() const {
  const std::string who = "[" + to_string(peft_type) + "] ";
  PEFT_CHECK(num_virtual_tokens > 0, ConfigError, who,
             "num_virtual_tokens must be a positive integer (the number of virtual tokens), got ",
             num_virtual_tokens);
  PEFT_CHECK(token_dim >= 0 && num_attention_heads >= 0 && num_layers >= 0, ConfigError, who,
             "token_dim, num_attention_heads and num_layers must be positive (or unset to take them "
             "from the model), got ", token_dim, ", ", num_attention_heads, ", ", num_layers);
  PEFT_CHECK(num_transformer_submodules >= 0 && num_transformer_submodules <= 2, ConfigError, who,
             "num_transformer_submodules must be 1 or 2 (or unset), got ", num_transformer_submodules);
}

json PromptLearningConfig::to_json() const {
  json j = PeftConfig::to_json();
  j["num_virtual_tokens"] = detail::int_or_null(num_virtual_tokens);
  j["token_dim"] = detail::int_or_null(token_dim);
  j["num_transformer_submodules"] = detail::int_or_null(num_transformer_submodules);
  j["num_attention_heads"] = detail::int_or_null(num_attention_heads);
  j["num_layers"] = detail::int_or_null(num_layers);
  j["modules_to_save"] = modules_to_save ? json(*modules_to_save) : json(nullptr);
  return j;
}

void PromptLearningConfig::read_prompt_fields(json& rest, const std::string& source) {
  detail::read_base_fields(*this, rest, source);
  num_virtual_tokens = detail::take_int(rest, "num_virtual_tokens", 0, source);
  token_dim = detail::take_int(rest, "token_dim", 0, source);
  num_transformer_submodules = detail::take_int(rest, "num_transformer_submodules", 0, source);
  num_attention_heads = detail::take_int(rest, "num_attention_heads", 0, source);
  num_layers = detail::take_int(rest, "num_layers", 0, source);
  if (auto it = rest.find("modules_to_save"); it != rest.end()) {
    if (it->is_array()) {
      std::vector<std::string> m;
      for (const auto& e : *it) {
        PEFT_CHECK(e.is_string(), ConfigError, "[config] ", source,
                   ": field 'modules_to_save' must list module names (strings), got ", e.dump());
        m.push_back(e.get<std::string>());
      }
      modules_to_save = m;
    } else {
      PEFT_CHECK(it->is_null(), ConfigError, "[config] ", source,
                 ": field 'modules_to_save' must be a list of module names or null, got ", it->dump());
    }
    rest.erase(it);
  }
}

void PromptLearningConfig::fill_from_model(const models::ModelConfig& m) {
  auto first = [&](std::initializer_list<const char*> keys, const char* field) -> int64_t {
    for (const char* k : keys)
      if (m.has(k)) return m.get_positive(k);
    throw ConfigError(std::string("[") + to_string(peft_type) + "] Please specify `" + field +
                      "` in the config: " + m.source() + " has none of the usual keys");
  };
  // n_layers: DistilBERT (PEFT reads it through transformers' attribute_map as num_hidden_layers).
  if (num_layers == 0) num_layers = first({"num_hidden_layers", "n_layers", "num_layers", "n_layer"}, "num_layers");
  if (token_dim == 0) token_dim = first({"hidden_size", "n_embd", "d_model"}, "token_dim");
  if (num_attention_heads == 0)
    num_attention_heads = first({"num_attention_heads", "n_head", "num_heads", "encoder_attention_heads"},
                                "num_attention_heads");
  if (num_transformer_submodules == 0) num_transformer_submodules = task_type == TaskType::Seq2SeqLM ? 2 : 1;
}

}  // namespace peft
