// Mirrors peft/tuners/lora/config.py (LoraConfig.__post_init__) and peft/utils/other.py
// (get_pattern_key).
#include "peft/tuners/lora/config.h"

#include <cmath>

#include "peft/core/check.h"
#include "peft/core/regex.h"

namespace peft {

using nlohmann::json;
using detail::take_bool;
using detail::take_double;
using detail::take_int;
using detail::take_opt_string;

void LoraConfig::validate() const {
  PEFT_CHECK(r > 0, ConfigError, "[LoraConfig] `r` should be a positive integer value but the value passed is ", r);
  PEFT_CHECK(lora_dropout >= 0 && lora_dropout < 1, ConfigError,
             "[LoraConfig] `lora_dropout` must be in [0, 1), got ", lora_dropout);
  PEFT_CHECK(bias == "none" || bias == "all" || bias == "lora_only", ConfigError,
             "[LoraConfig] Requested bias: ", bias, ", is not implemented. Use 'none', 'all' or 'lora_only'.");
  detail::validate_target_fields(*this, "[LoraConfig]");
  PEFT_CHECK(init_lora_weights == "true" || init_lora_weights == "false" || init_lora_weights == "gaussian",
             NotSupported, "[LoraConfig] init_lora_weights '", init_lora_weights,
             "' is not supported (true, false, gaussian)");
  PEFT_CHECK(!(lora_bias && use_dora), ConfigError,
             "[LoraConfig] The argument lora_bias=True is not supported for DoRA, please pass use_dora=False");
  PEFT_CHECK(!(lora_bias && init_lora_weights == "gaussian"), ConfigError,
             "[LoraConfig] The argument lora_bias=True is only supported with init_lora_weights=True or False, "
             "got init_lora_weights=gaussian instead.");
  for (const auto& [k, v] : rank_pattern)
    PEFT_CHECK(v > 0, ConfigError, "[LoraConfig] rank_pattern['", k, "'] = ", v, " must be a positive integer");
}

json LoraConfig::to_json() const {
  json j = PeftConfig::to_json();
  j["r"] = r;
  // Whole alphas as integers (as PEFT writes them), when they fit one.
  if (lora_alpha == std::floor(lora_alpha) && std::fabs(lora_alpha) < 9.0e18) j["lora_alpha"] = static_cast<int64_t>(lora_alpha);
  else j["lora_alpha"] = lora_alpha;
  j["lora_dropout"] = lora_dropout;
  detail::write_target_fields(*this, j, /*layer_fields=*/true);
  j["fan_in_fan_out"] = fan_in_fan_out;
  j["bias"] = bias;
  j["use_rslora"] = use_rslora;
  if (init_lora_weights == "true") j["init_lora_weights"] = true;
  else if (init_lora_weights == "false") j["init_lora_weights"] = false;
  else j["init_lora_weights"] = init_lora_weights;
  j["rank_pattern"] = rank_pattern;
  j["alpha_pattern"] = alpha_pattern;
  j["use_dora"] = use_dora;
  j["lora_bias"] = lora_bias;
  return j;
}

LoraConfig LoraConfig::from_json(const json& in, const std::string& source) {
  PEFT_CHECK(in.is_object(), ConfigError, "[config] ", source, ": expected a JSON object");
  json rest = in;
  LoraConfig c;
  detail::read_base_fields(c, rest, source);
  c.r = take_int(rest, "r", c.r, source);
  c.lora_alpha = take_double(rest, "lora_alpha", c.lora_alpha, source);
  c.lora_dropout = take_double(rest, "lora_dropout", c.lora_dropout, source);
  detail::read_target_fields(c, rest, source, /*layer_fields=*/true);
  c.fan_in_fan_out = take_bool(rest, "fan_in_fan_out", false, source);
  c.bias = take_opt_string(rest, "bias", source).value_or("none");
  c.use_rslora = take_bool(rest, "use_rslora", false, source);
  if (auto it = rest.find("init_lora_weights"); it != rest.end()) {
    if (it->is_boolean()) c.init_lora_weights = it->get<bool>() ? "true" : "false";
    else if (it->is_string()) c.init_lora_weights = it->get<std::string>();
    else if (!it->is_null())
      throw ConfigError("[config] " + source + ": field 'init_lora_weights' must be a bool or a string, got " + it->dump());
    rest.erase(it);
  }
  for (const char* key : {"rank_pattern", "alpha_pattern"}) {
    auto it = rest.find(key);
    if (it == rest.end()) continue;
    if (!it->is_null()) {
      PEFT_CHECK(it->is_object(), ConfigError, "[config] ", source, ": field '", key, "' must be an object");
      for (auto e = it->begin(); e != it->end(); ++e) {
        const bool rank = std::string(key) == "rank_pattern";
        PEFT_CHECK(rank ? e->is_number_integer() : e->is_number(), ConfigError, "[config] ", source, ": ", key, "['",
                   e.key(), "'] must be ", rank ? "an integer" : "a number", ", got ", e->dump());
        if (rank) c.rank_pattern[e.key()] = e->get<int64_t>();
        else c.alpha_pattern[e.key()] = e->get<double>();
      }
    }
    rest.erase(it);
  }
  c.use_dora = take_bool(rest, "use_dora", false, source);
  c.lora_bias = take_bool(rest, "lora_bias", false, source);
  // Features of PEFT's LoraConfig this library does not implement: refuse non-default values
  // rather than load an adapter that would silently compute something else.
  for (const char* k : {"layer_replication", "trainable_token_indices", "target_parameters", "megatron_config",
                        "alora_invocation_tokens", "use_qalora", "arrow_config", "use_bdlora"}) {
    auto it = rest.find(k);
    if (it == rest.end()) continue;
    const bool set = !(it->is_null() || (it->is_boolean() && !it->get<bool>()) ||
                       (it->is_array() && it->empty()) || (it->is_object() && it->empty()));
    PEFT_CHECK(!set, NotSupported, "[config] ", source, ": LoRA option '", k, "' = ", it->dump(),
               " is not supported by this library");
  }
  c.unknown.update(rest);
  c.validate();
  return c;
}

namespace {
// PEFT's get_pattern_key: the first pattern key k with re.match("(.*\.)?(k)$", module).
std::optional<std::string> pattern_key(const std::vector<std::string>& keys, const std::string& module) {
  for (const auto& k : keys)
    if (regex_fullmatch("(.*\\.)?(" + k + ")", module)) return k;
  return std::nullopt;
}
template <typename M>
std::vector<std::string> keys_of(const M& m) {
  std::vector<std::string> k;
  for (const auto& e : m) k.push_back(e.first);
  return k;
}
}  // namespace

int64_t LoraConfig::rank_for(const std::string& module) const {
  const auto k = pattern_key(keys_of(rank_pattern), module);
  return k ? rank_pattern.at(*k) : r;
}

double LoraConfig::alpha_for(const std::string& module) const {
  const auto k = pattern_key(keys_of(alpha_pattern), module);
  return k ? alpha_pattern.at(*k) : lora_alpha;
}

double lora_scaling(double alpha, int64_t r, bool use_rslora) {
  const double rr = static_cast<double>(r);
  return use_rslora ? alpha / std::sqrt(rr) : alpha / rr;
}

double LoraConfig::scaling_for(const std::string& module) const {
  return lora_scaling(alpha_for(module), rank_for(module), use_rslora);
}

std::vector<std::string> default_lora_targets(const std::string& mt) {
  static const std::map<std::string, std::vector<std::string>> kDefaults = {
      {"llama", {"q_proj", "v_proj"}},   {"mistral", {"q_proj", "v_proj"}}, {"qwen2", {"q_proj", "v_proj"}},
      {"qwen3", {"q_proj", "v_proj"}},
      {"gpt2", {"c_attn"}},              {"bert", {"query", "value"}},      {"roberta", {"query", "value"}},
      {"xlm-roberta", {"query", "value"}},
      {"t5", {"q", "v"}},                {"mt5", {"q", "v"}},
      {"gemma", {"q_proj", "v_proj"}},   {"gemma2", {"q_proj", "v_proj"}}, {"gemma3_text", {"q_proj", "v_proj"}},
  };
  auto it = kDefaults.find(mt);
  return it == kDefaults.end() ? std::vector<std::string>{} : it->second;
}

}  // namespace peft
