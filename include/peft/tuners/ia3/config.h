#pragma once
// Ia3Config: (IA)³'s field names and defaults (tier 0). Mirrors peft/tuners/ia3/config.py.
//
//   peft::Ia3Config c;  c.target_modules = {"k", "v", "wo"};  c.feedforward_modules = {"wo"};
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "peft/config/peft_config.h"
#include "peft/tuners/target_match.h"

namespace peft {

/// Learned vectors that rescale activations: the input of feedforward modules ([1, in]) and the
/// output, bias included, of the other targeted modules ([out, 1]).
struct Ia3Config : PeftConfig, TargetFields {
  Ia3Config() { peft_type = PeftType::Ia3; }
  /// Targeted modules whose vector scales the input instead of the output: a regex (full match)
  /// or names a module key ends with. Must be a subset of target_modules when both are lists.
  /// Unset: the architecture's default (PEFT's feedforward table).
  TargetSpec feedforward_modules;
  bool fan_in_fan_out = false;
  /// true: vectors start at 1 (the adapter is a no-op); false: random (debugging only).
  bool init_ia3_weights = true;

  void validate() const override;
  nlohmann::json to_json() const override;
  std::unique_ptr<PeftConfig> clone() const override { return std::make_unique<Ia3Config>(*this); }
  std::optional<std::vector<std::string>>* modules_to_save_field() override { return &modules_to_save; }
  /// Parses the (IA)³ fields of an adapter_config.json (base fields included).
  static Ia3Config from_json(const nlohmann::json& j, const std::string& source = "adapter_config.json");

  /// Whether targeted module `key` is a feedforward one (PEFT's _check_target_module_feedforward:
  /// a regex full match, or a plain `endswith` for a list).
  bool is_feedforward(const std::string& key) const;
};

/// PEFT's TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING; empty when the architecture has none.
std::vector<std::string> default_ia3_targets(const std::string& model_type);
/// PEFT's TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING; nullopt when the architecture has
/// none (an empty list is a valid default: mt5).
std::optional<std::vector<std::string>> default_ia3_feedforward(const std::string& model_type);

}  // namespace peft
