#pragma once
// AdaLoraConfig: PEFT's field names, defaults and schedule checks (tier 0). Mirrors
// peft/tuners/adalora/config.py; like PEFT's class it extends the LoRA config.
//
//   peft::AdaLoraConfig c;  c.init_r = 12;  c.target_r = 4;  c.total_step = 1000;  c.tinit = 100;  c.tfinal = 200;
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "peft/tuners/lora/config.h"

namespace peft {

struct AdaLoraConfig : LoraConfig {
  AdaLoraConfig() { peft_type = PeftType::AdaLora; }
  int64_t target_r = 8;   ///< target average rank per adapted matrix at the end of the budget phase
  int64_t init_r = 12;    ///< starting rank of every adapted matrix (`r` is ignored)
  int64_t tinit = 0;      ///< warm-up steps with the full budget
  int64_t tfinal = 0;     ///< final steps with the ranks frozen
  int64_t deltaT = 1;     ///< steps between two maskings in the budget phase
  double beta1 = 0.85;    ///< EMA factor of the sensitivity, in (0, 1)
  double beta2 = 0.85;    ///< EMA factor of the uncertainty, in (0, 1)
  double orth_reg_weight = 0.5;
  std::optional<int64_t> total_step;  ///< required, > 0
  /// Kept singular triplets per module ("<module>.lora_E" -> init_r booleans); written by the rank
  /// allocator, saved in adapter_config.json and used on load to rebuild the pruned ranks.
  /// Unset (null) until the allocator has masked once. (LoraConfig::rank_pattern is not used.)
  std::optional<std::map<std::string, std::vector<bool>>> adalora_rank_pattern;

  void validate() const override;
  nlohmann::json to_json() const override;
  std::unique_ptr<PeftConfig> clone() const override { return std::make_unique<AdaLoraConfig>(*this); }
  static AdaLoraConfig from_json(const nlohmann::json& j, const std::string& source = "adapter_config.json");
  /// The rank a module keeps per adalora_rank_pattern (init_r when it is not listed).
  int64_t kept_rank(const std::string& module) const;
};

/// PEFT's TRANSFORMERS_MODELS_TO_ADALORA_TARGET_MODULES_MAPPING (empty when none).
std::vector<std::string> default_adalora_targets(const std::string& model_type);

}  // namespace peft
