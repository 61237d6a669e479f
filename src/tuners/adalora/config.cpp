// Mirrors peft/tuners/adalora/config.py (AdaLoraConfig.__post_init__) and the AdaLoRA row of
// peft/utils/constants.py.
#include "peft/tuners/adalora/config.h"

#include <iostream>

#include "peft/core/check.h"

namespace peft {

using nlohmann::json;

void AdaLoraConfig::validate() const {
  PEFT_CHECK(!use_dora, ConfigError, "[AdaLoraConfig] ADALORA does not support DoRA.");
  PEFT_CHECK(!(target_modules.is_regex() && layers_to_transform), ConfigError,
             "[AdaLoraConfig] `layers_to_transform` cannot be used when `target_modules` is a str.");
  PEFT_CHECK(!(layers_pattern && !layers_pattern->empty() && !layers_to_transform), ConfigError,
             "[AdaLoraConfig] When `layers_pattern` is specified, `layers_to_transform` must also be specified.");
  PEFT_CHECK(total_step.has_value() && *total_step > 0, ConfigError,
             "[AdaLoraConfig] AdaLoRA does not work when `total_step` is None, supply a value > 0 (got ",
             total_step ? std::to_string(*total_step) : std::string("null"), ").");
  PEFT_CHECK(orth_reg_weight >= 0, ConfigError,
             "[AdaLoraConfig] `orth_reg_weight` should be greater than or equal to 0, but the value passed is ",
             orth_reg_weight);
  PEFT_CHECK(tinit < *total_step - tfinal, ConfigError,
             "[AdaLoraConfig] The supplied schedule values don't allow for a budgeting phase. Decrease "
             "`tfinal`/`tinit` or increase `total_step` (need tinit < total_step - tfinal; got tinit=",
             tinit, ", tfinal=", tfinal, ", total_step=", *total_step, ").");
  // PEFT asserts these in its RankAllocator; checked here so a bad file fails on load.
  PEFT_CHECK(beta1 > 0 && beta1 < 1, ConfigError, "[AdaLoraConfig] `beta1` must be in (0, 1), got ", beta1);
  PEFT_CHECK(beta2 > 0 && beta2 < 1, ConfigError, "[AdaLoraConfig] `beta2` must be in (0, 1), got ", beta2);
  PEFT_CHECK(init_r >= 0, ConfigError, "[AdaLoraConfig] `init_r` should be a positive integer or 0, got ", init_r);
  PEFT_CHECK(target_r >= 0, ConfigError, "[AdaLoraConfig] `target_r` must be >= 0, got ", target_r);
  PEFT_CHECK(tinit >= 0 && tfinal >= 0, ConfigError, "[AdaLoraConfig] `tinit` and `tfinal` must be >= 0, got ",
             tinit, " and ", tfinal);
  PEFT_CHECK(deltaT > 0, ConfigError, "[AdaLoraConfig] `deltaT` must be > 0, got ", deltaT);
  PEFT_CHECK(lora_dropout >= 0 && lora_dropout < 1, ConfigError,
             "[AdaLoraConfig] `lora_dropout` must be in [0, 1), got ", lora_dropout);
  PEFT_CHECK(bias == "none" || bias == "all" || bias == "lora_only", ConfigError,
             "[AdaLoraConfig] Requested bias: ", bias, ", is not implemented. Use 'none', 'all' or 'lora_only'.");
  PEFT_CHECK(!lora_bias, NotSupported, "[AdaLoraConfig] lora_bias is not supported by AdaLoRA");
  if (adalora_rank_pattern)
    for (const auto& [k, v] : *adalora_rank_pattern)
      PEFT_CHECK(static_cast<int64_t>(v.size()) == init_r, ConfigError, "[AdaLoraConfig] rank_pattern['", k,
                 "'] has ", v.size(), " entries; expected init_r = ", init_r);
}

json AdaLoraConfig::to_json() const {
  json j = LoraConfig::to_json();
  j["target_r"] = target_r;
  j["init_r"] = init_r;
  j["tinit"] = tinit;
  j["tfinal"] = tfinal;
  j["deltaT"] = deltaT;
  j["beta1"] = beta1;
  j["beta2"] = beta2;
  j["orth_reg_weight"] = orth_reg_weight;
  j["total_step"] = total_step ? json(*total_step) : json(nullptr);
  if (adalora_rank_pattern) {
    json rp = json::object();
    for (const auto& [k, v] : *adalora_rank_pattern) rp[k] = v;
    j["rank_pattern"] = rp;
  } else {
    j["rank_pattern"] = nullptr;
  }
  return j;
}

AdaLoraConfig AdaLoraConfig::from_json(const json& in, const std::string& source) {
  PEFT_CHECK(in.is_object(), ConfigError, "[config] ", source, ": expected a JSON object");
  json rest = in;
  AdaLoraConfig c;
  c.target_r = detail::take_int(rest, "target_r", c.target_r, source);
  c.init_r = detail::take_int(rest, "init_r", c.init_r, source);
  c.tinit = detail::take_int(rest, "tinit", c.tinit, source);
  c.tfinal = detail::take_int(rest, "tfinal", c.tfinal, source);
  c.deltaT = detail::take_int(rest, "deltaT", c.deltaT, source);
  c.beta1 = detail::take_double(rest, "beta1", c.beta1, source);
  c.beta2 = detail::take_double(rest, "beta2", c.beta2, source);
  c.orth_reg_weight = detail::take_double(rest, "orth_reg_weight", c.orth_reg_weight, source);
  if (auto it = rest.find("total_step"); it != rest.end()) {
    if (!it->is_null()) {
      PEFT_CHECK(it->is_number_integer(), ConfigError, "[config] ", source,
                 ": field 'total_step' must be an integer, got ", it->dump());
      c.total_step = it->get<int64_t>();
    }
    rest.erase(it);
  }
  if (auto it = rest.find("rank_pattern"); it != rest.end()) {
    if (!it->is_null()) {
      PEFT_CHECK(it->is_object(), ConfigError, "[config] ", source,
                 ": field 'rank_pattern' must be an object of boolean lists, got ", it->dump());
      std::map<std::string, std::vector<bool>> rp;
      for (auto e = it->begin(); e != it->end(); ++e) {
        PEFT_CHECK(e->is_array(), ConfigError, "[config] ", source, ": rank_pattern['", e.key(),
                   "'] must be a list of booleans (AdaLoRA), got ", e->dump());
        std::vector<bool> keep;
        for (const auto& b : *e) {
          PEFT_CHECK(b.is_boolean() || (b.is_number_integer() && (b.get<int64_t>() == 0 || b.get<int64_t>() == 1)),
                     ConfigError, "[config] ", source, ": rank_pattern['", e.key(),
                     "'] must hold booleans, got ", b.dump());
          keep.push_back(b.is_boolean() ? b.get<bool>() : b.get<int64_t>() == 1);
        }
        rp[e.key()] = std::move(keep);
      }
      c.adalora_rank_pattern = std::move(rp);
    }
    rest.erase(it);
  }
  // The LoRA fields (and the base fields); `r` is ignored by AdaLoRA.
  LoraConfig base = LoraConfig::from_json(rest, source);
  static_cast<LoraConfig&>(c) = base;
  c.peft_type = PeftType::AdaLora;
  if (c.r != 8)
    std::cerr << "warning: " << source << ": Note that `r` is not used in AdaLora and will be ignored. "
              << "If you intended to set the initial rank, use `init_r` instead.\n";
  c.validate();
  return c;
}

int64_t AdaLoraConfig::kept_rank(const std::string& module) const {
  if (!adalora_rank_pattern) return init_r;
  auto it = adalora_rank_pattern->find(module + ".lora_E");
  if (it == adalora_rank_pattern->end()) return init_r;
  int64_t k = 0;
  for (bool b : it->second) k += b ? 1 : 0;
  return k;
}

std::vector<std::string> default_adalora_targets(const std::string& mt) {
  static const std::map<std::string, std::vector<std::string>> kDefaults = {
      {"t5", {"q", "k", "v", "o", "wi", "wo"}},
      {"mt5", {"q", "k", "v", "o", "wi_0", "wi_1", "wo"}},
      {"gpt2", {"c_attn"}},
      {"llama", {"q_proj", "v_proj"}},
      {"bert", {"query", "value"}},
      {"roberta", {"query", "key", "value", "dense"}},
      {"qwen2", {"q_proj", "v_proj"}},
      {"qwen3", {"q_proj", "v_proj"}},  // PEFT has no AdaLoRA default for mistral
      {"gemma", {"q_proj", "v_proj"}},
      {"gemma2", {"q_proj", "v_proj"}},
      {"gemma3_text", {"q_proj", "v_proj"}},
  };
  auto it = kDefaults.find(mt);
  return it == kDefaults.end() ? std::vector<std::string>{} : it->second;
}

}  // namespace peft
