#pragma once
// Which modules a layer tuner (LoRA, AdaLoRA, (IA)³) adapts, and the config fields that say so
// (tier 0). Mirrors peft/tuners/tuners_utils.py: check_target_module_exists and
// _maybe_include_all_linear_layers.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace peft {

/// target_modules / exclude_modules: unset (null), a regex (full match), or a list of names
/// (exact or ".suffix" match). The string "all-linear" selects every linear layer but the output.
struct TargetSpec {
  std::variant<std::monostate, std::string, std::vector<std::string>> value;
  TargetSpec() = default;
  TargetSpec(std::vector<std::string> names) : value(std::move(names)) {}
  TargetSpec(std::string regex) : value(std::move(regex)) {}
  TargetSpec(const char* regex) : value(std::string(regex)) {}
  bool is_null() const { return std::holds_alternative<std::monostate>(value); }
  bool is_regex() const { return std::holds_alternative<std::string>(value); }
  bool is_list() const { return std::holds_alternative<std::vector<std::string>>(value); }
  const std::string& regex() const { return std::get<std::string>(value); }
  const std::vector<std::string>& list() const { return std::get<std::vector<std::string>>(value); }
  /// null, the regex string, or the list.
  nlohmann::json to_json() const;
  /// True when `key` is the regex's full match or a list entry equal to it or to a ".suffix".
  bool matches(const std::string& key) const;
};

/// The fields of a layer tuner's config that select its modules (PEFT's names).
struct TargetFields {
  TargetSpec target_modules;
  TargetSpec exclude_modules;
  std::optional<std::vector<std::string>> modules_to_save;
  std::optional<std::vector<int64_t>> layers_to_transform;
  std::optional<std::vector<std::string>> layers_pattern;
};

enum class TargetMatch { No, Yes, Excluded };

/// PEFT's rule for one module name: exclude_modules and modules_to_save veto, then a regex full
/// match or a list entry equal to the name or to a ".suffix", then the layers_to_transform filter.
TargetMatch check_target_module_exists(const TargetFields& c, const std::string& key);

/// Resolves the config's targets against a model's modules. Unset target_modules take `defaults`
/// (PEFT's per-architecture table; an error naming `model_type` when empty). `linear` /
/// `embedding` list the adaptable module names (pass an empty `embedding` for tuners that adapt
/// linear layers only); `output_layer` is the LM head excluded by "all-linear" (may be "").
/// Returns the names to adapt, in model order. Throws ConfigError (prefixed by `who`) listing the
/// adaptable names when nothing matches, and when a matched module is of a type the tuner cannot
/// adapt.
std::vector<std::string> resolve_targets(TargetFields& c, const std::vector<std::string>& defaults,
                                         const std::string& who, const std::string& model_type,
                                         const std::vector<std::string>& all_modules,
                                         const std::vector<std::string>& linear,
                                         const std::vector<std::string>& embedding,
                                         const std::string& output_layer);

namespace detail {
/// Config I/O shared by the layer tuners' configs: reads target_modules, exclude_modules,
/// modules_to_save (and, with `layer_fields`, layers_to_transform and layers_pattern) out of
/// `rest`; writes them back; checks PEFT's __post_init__ rules on them (`who`: "[LoraConfig]").
TargetSpec take_targets(nlohmann::json& rest, const char* key, const std::string& source);
void read_target_fields(TargetFields& c, nlohmann::json& rest, const std::string& source, bool layer_fields);
void write_target_fields(const TargetFields& c, nlohmann::json& j, bool layer_fields);
void validate_target_fields(const TargetFields& c, const std::string& who);
}  // namespace detail

}  // namespace peft
