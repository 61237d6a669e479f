#pragma once
// LoraConfig: PEFT's field names and defaults (tier 0). Mirrors peft/tuners/lora/config.py.
//
//   peft::LoraConfig c;  c.r = 16;  c.lora_alpha = 32;  c.target_modules = {"q_proj", "v_proj"};
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "peft/config/peft_config.h"
#include "peft/tuners/target_match.h"

namespace peft {

struct LoraConfig : PeftConfig, TargetFields {
  LoraConfig() { peft_type = PeftType::Lora; }
  int64_t r = 8;
  double lora_alpha = 8;
  double lora_dropout = 0.0;
  bool fan_in_fan_out = false;
  std::string bias = "none";  ///< "none" | "all" | "lora_only"
  bool use_rslora = false;
  /// "true" (Kaiming-uniform A, zero B), "false" (random A and B), "gaussian" (A ~ N(0, 1/r)).
  std::string init_lora_weights = "true";
  std::map<std::string, int64_t> rank_pattern;
  std::map<std::string, double> alpha_pattern;
  bool use_dora = false;
  bool lora_bias = false;

  void validate() const override;
  nlohmann::json to_json() const override;
  std::unique_ptr<PeftConfig> clone() const override { return std::make_unique<LoraConfig>(*this); }
  std::optional<std::vector<std::string>>* modules_to_save_field() override { return &modules_to_save; }
  /// Parses the LoRA fields of an adapter_config.json (base fields included).
  static LoraConfig from_json(const nlohmann::json& j, const std::string& source = "adapter_config.json");

  /// Rank and alpha for a module after rank_pattern / alpha_pattern (PEFT's get_pattern_key).
  int64_t rank_for(const std::string& module) const;
  double alpha_for(const std::string& module) const;
  /// alpha / r, or alpha / sqrt(r) with use_rslora.
  double scaling_for(const std::string& module) const;
};

/// LoRA's scale of B·A: alpha / r, or alpha / sqrt(r) with use_rslora (rsLoRA).
double lora_scaling(double alpha, int64_t r, bool use_rslora);

/// PEFT's default target modules per model_type (TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING);
/// empty when the architecture has no default.
std::vector<std::string> default_lora_targets(const std::string& model_type);

}  // namespace peft
