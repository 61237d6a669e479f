#pragma once
// Which modules a LoRA-family config adapts (tier 0). Mirrors
// peft/tuners/tuners_utils.py: check_target_module_exists and _maybe_include_all_linear_layers.
#include <string>
#include <vector>

#include "peft/tuners/lora/config.h"

namespace peft {

enum class TargetMatch { No, Yes, Excluded };

/// PEFT's rule for one module name: exclude_modules and modules_to_save veto, then a regex full
/// match or a list entry equal to the name or to a ".suffix", then the layers_to_transform filter.
TargetMatch check_target_module_exists(const LoraConfig& c, const std::string& key);

/// Resolves the config's targets against a model's modules. `linear` / `embedding` list the
/// adaptable module names; `output_layer` is the LM head excluded by "all-linear" (may be "").
/// Returns the names to adapt, in model order. Throws ConfigError listing the available module
/// names when nothing matches, and when a matched module is of a type LoRA cannot adapt.
std::vector<std::string> resolve_lora_targets(LoraConfig& c, const std::string& model_type,
                                              const std::vector<std::string>& all_modules,
                                              const std::vector<std::string>& linear,
                                              const std::vector<std::string>& embedding,
                                              const std::string& output_layer);

}  // namespace peft
