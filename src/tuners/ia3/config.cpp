// Mirrors peft/tuners/ia3/config.py (IA3Config.__post_init__), IA3Model._check_target_module_feedforward
// and the (IA)³ tables of peft/utils/constants.py.
#include "peft/tuners/ia3/config.h"

#include <algorithm>
#include <map>

#include "peft/core/check.h"
#include "peft/core/regex.h"

namespace peft {

using nlohmann::json;
using detail::take_bool;

void Ia3Config::validate() const {
  detail::validate_target_fields(*this, "[Ia3Config]");
  if (feedforward_modules.is_regex()) (void)regex_fullmatch(feedforward_modules.regex(), "");  // compiles or throws
  // PEFT checks the subset rule only when both are lists (sets).
  if (feedforward_modules.is_list() && target_modules.is_list()) {
    const auto& t = target_modules.list();
    for (const auto& f : feedforward_modules.list())
      PEFT_CHECK(std::find(t.begin(), t.end(), f) != t.end(), ConfigError,
                 "[Ia3Config] `feedforward_modules` should be a subset of `target_modules` ('", f,
                 "' is not in target_modules)");
  }
}

json Ia3Config::to_json() const {
  json j = PeftConfig::to_json();
  detail::write_target_fields(*this, j, /*layer_fields=*/false);
  j["feedforward_modules"] = feedforward_modules.to_json();
  j["fan_in_fan_out"] = fan_in_fan_out;
  j["init_ia3_weights"] = init_ia3_weights;
  return j;
}

Ia3Config Ia3Config::from_json(const json& in, const std::string& source) {
  PEFT_CHECK(in.is_object(), ConfigError, "[config] ", source, ": expected a JSON object");
  json rest = in;
  Ia3Config c;
  detail::read_base_fields(c, rest, source);
  detail::read_target_fields(c, rest, source, /*layer_fields=*/false);
  c.feedforward_modules = detail::take_targets(rest, "feedforward_modules", source);
  c.fan_in_fan_out = take_bool(rest, "fan_in_fan_out", false, source);
  c.init_ia3_weights = take_bool(rest, "init_ia3_weights", true, source);
  c.unknown.update(rest);
  c.validate();
  return c;
}

bool Ia3Config::is_feedforward(const std::string& key) const {
  if (feedforward_modules.is_regex()) return regex_fullmatch(feedforward_modules.regex(), key);
  if (!feedforward_modules.is_list()) return false;
  // A plain suffix test, not the ".name" segment rule of target_modules.
  const auto& l = feedforward_modules.list();
  return std::any_of(l.begin(), l.end(), [&](const std::string& f) {
    return key.size() >= f.size() && key.compare(key.size() - f.size(), f.size(), f) == 0;
  });
}

std::vector<std::string> default_ia3_targets(const std::string& mt) {
  static const std::map<std::string, std::vector<std::string>> kDefaults = {
      {"t5", {"k", "v", "wo"}},
      {"mt5", {"k", "v", "wi_1"}},
      {"gpt2", {"c_attn", "mlp.c_proj"}},
      {"bloom", {"query_key_value", "mlp.dense_4h_to_h"}},
      {"roberta", {"key", "value", "output.dense"}},
      {"opt", {"q_proj", "k_proj", "fc2"}},
      {"gptj", {"q_proj", "v_proj", "fc_out"}},
      {"gpt_neox", {"query_key_value", "dense_4h_to_h"}},
      {"gpt_neo", {"q_proj", "v_proj", "c_proj"}},
      {"bart", {"q_proj", "v_proj", "fc2"}},
      {"gpt_bigcode", {"c_attn", "mlp.c_proj"}},
      {"llama", {"k_proj", "v_proj", "down_proj"}},
      {"llama4", {"q_proj", "v_proj", "down_proj"}},
      {"mistral", {"k_proj", "v_proj", "down_proj"}},
      {"mixtral", {"k_proj", "v_proj", "w2"}},
      {"bert", {"key", "value", "output.dense"}},
      {"deberta-v2", {"key_proj", "value_proj", "output.dense"}},
      {"deberta", {"in_proj", "output.dense"}},
      {"RefinedWebModel", {"query_key_value", "dense_4h_to_h"}},
      {"RefinedWeb", {"query_key_value", "dense_4h_to_h"}},
      {"falcon", {"query_key_value", "dense_4h_to_h"}},
      {"phi", {"q_proj", "v_proj", "fc2"}},
      {"gemma", {"q_proj", "v_proj", "down_proj"}},
      {"gemma2", {"q_proj", "v_proj", "down_proj"}},
      {"gemma3_text", {"q_proj", "v_proj", "down_proj"}},
      {"qwen2", {"q_proj", "v_proj", "down_proj"}},
      {"qwen3", {"q_proj", "v_proj", "down_proj"}},
  };
  auto it = kDefaults.find(mt);
  return it == kDefaults.end() ? std::vector<std::string>{} : it->second;
}

std::optional<std::vector<std::string>> default_ia3_feedforward(const std::string& mt) {
  static const std::map<std::string, std::vector<std::string>> kDefaults = {
      {"t5", {"wo"}},
      {"mt5", {}},
      {"gpt2", {"mlp.c_proj"}},
      {"bloom", {"mlp.dense_4h_to_h"}},
      {"roberta", {"output.dense"}},
      {"opt", {"fc2"}},
      {"gptj", {"fc_out"}},
      {"gpt_neox", {"dense_4h_to_h"}},
      {"gpt_neo", {"c_proj"}},
      {"bart", {"fc2"}},
      {"gpt_bigcode", {"mlp.c_proj"}},
      {"llama", {"down_proj"}},
      {"llama4", {"down_proj"}},
      {"mistral", {"down_proj"}},
      {"mixtral", {"w2"}},
      {"bert", {"output.dense"}},
      {"deberta-v2", {"output.dense"}},
      {"deberta", {"output.dense"}},
      {"RefinedWeb", {"dense_4h_to_h"}},
      {"RefinedWebModel", {"dense_4h_to_h"}},
      {"falcon", {"dense_4h_to_h"}},
      {"phi", {"fc2"}},
      {"gemma", {"down_proj"}},
      {"gemma2", {"down_proj"}},
      {"gemma3_text", {"down_proj"}},
      {"qwen2", {"down_proj"}},
      {"qwen3", {"down_proj"}},
  };
  auto it = kDefaults.find(mt);
  if (it == kDefaults.end()) return std::nullopt;
  return it->second;
}

}  // namespace peft
