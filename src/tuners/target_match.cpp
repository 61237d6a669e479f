// Mirrors peft/tuners/tuners_utils.py: check_target_module_exists, _maybe_include_all_linear_layers,
// and BaseTuner.inject_adapter's "Target modules ... not found in the base model" error.
#include "peft/tuners/target_match.h"

#include <algorithm>
#include <set>
#include <sstream>

#include "peft/core/check.h"
#include "peft/core/regex.h"
#include "peft/core/error.h"

namespace peft {

namespace {

bool ends_with_segment(const std::string& key, const std::string& name) {
  return key == name || (key.size() > name.size() && key.compare(key.size() - name.size(), name.size(), name) == 0 &&
                         key[key.size() - name.size() - 1] == '.');
}

// The layer index: the first ".<digits>." after the pattern (or after any segment).
std::optional<int64_t> layer_index(const std::string& key, const std::optional<std::vector<std::string>>& patterns) {
  auto digits_after = [&](std::size_t pos) -> std::optional<int64_t> {
    std::size_t e = pos;
    while (e < key.size() && std::isdigit(static_cast<unsigned char>(key[e]))) ++e;
    if (e == pos || e >= key.size() || key[e] != '.') return std::nullopt;
    return std::stoll(key.substr(pos, e - pos));
  };
  if (!patterns || patterns->empty()) {
    // re.match(r".*?\.[^.]*\.(?P<idx>\d+)\.", key): the first numeric segment after the first dot.
    std::size_t first_dot = key.find('.');
    if (first_dot == std::string::npos) return std::nullopt;
    for (std::size_t p = key.find('.', first_dot + 1); p != std::string::npos; p = key.find('.', p + 1))
      if (auto v = digits_after(p + 1)) return v;
    return std::nullopt;
  }
  for (const auto& pat : *patterns) {
    // re.match(rf"(?:^|.*?\.){pattern}\.(?P<idx>\d+)\.", key)
    for (std::size_t start = 0; start <= key.size(); ) {
      if (key.compare(start, pat.size() + 1, pat + ".") == 0)
        if (auto v = digits_after(start + pat.size() + 1)) return v;
      const std::size_t dot = key.find('.', start);
      if (dot == std::string::npos) break;
      start = dot + 1;
    }
  }
  return std::nullopt;
}

bool in_list_or_suffix(const std::vector<std::string>& list, const std::string& key) {
  return std::any_of(list.begin(), list.end(), [&](const std::string& t) { return ends_with_segment(key, t); });
}

}  // namespace

nlohmann::json TargetSpec::to_json() const {
  if (is_null()) return nullptr;
  if (is_regex()) return regex();
  return list();
}

bool TargetSpec::matches(const std::string& key) const {
  if (is_regex()) return regex_fullmatch(regex(), key);
  return is_list() && in_list_or_suffix(list(), key);
}

TargetMatch check_target_module_exists(const TargetFields& c, const std::string& key) {
  if (c.exclude_modules.matches(key)) return TargetMatch::Excluded;
  if (c.modules_to_save)
    for (const auto& m : *c.modules_to_save)
      if (regex_fullmatch("(^|.*\\.)" + m + "($|\\..*)", key)) return TargetMatch::Excluded;
  if (c.target_modules.is_null()) return TargetMatch::No;
  if (c.target_modules.is_regex()) return regex_fullmatch(c.target_modules.regex(), key) ? TargetMatch::Yes : TargetMatch::No;
  if (!in_list_or_suffix(c.target_modules.list(), key)) return TargetMatch::No;
  if (c.layers_to_transform && !c.layers_to_transform->empty()) {
    auto idx = layer_index(key, c.layers_pattern);
    if (!idx) return TargetMatch::No;
    const auto& l = *c.layers_to_transform;
    return std::find(l.begin(), l.end(), *idx) != l.end() ? TargetMatch::Yes : TargetMatch::No;
  }
  return TargetMatch::Yes;
}

std::vector<std::string> resolve_targets(TargetFields& c, const std::vector<std::string>& defaults,
                                         const std::string& who, const std::string& model_type,
                                         const std::vector<std::string>& all_modules,
                                         const std::vector<std::string>& linear,
                                         const std::vector<std::string>& embedding,
                                         const std::string& output_layer) {
  if (c.target_modules.is_null()) {
    PEFT_CHECK(!defaults.empty(), ConfigError, who, " Please specify `target_modules` in `peft_config`: "
               "there are no default target modules for model_type '", model_type, "'");
    c.target_modules = TargetSpec(defaults);
  }
  if (c.target_modules.is_regex()) {
    std::string lower = c.target_modules.regex();
    std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
    if (lower == "all-linear") {
      std::vector<std::string> names;
      for (const auto& n : linear)
        if (n != output_layer) names.push_back(n);
      c.target_modules = TargetSpec(names);
    }
  }
  std::set<std::string> lin(linear.begin(), linear.end()), emb(embedding.begin(), embedding.end());
  std::vector<std::string> out;
  bool any_excluded = false;
  for (const auto& name : all_modules) {
    if (name.empty()) continue;
    const TargetMatch m = check_target_module_exists(c, name);
    any_excluded = any_excluded || m == TargetMatch::Excluded;
    if (m != TargetMatch::Yes) continue;
    PEFT_CHECK(lin.count(name) || emb.count(name), ConfigError, who, " Target module '", name,
               "' is not supported. Currently, only linear projections (incl. GPT-2 Conv1D)",
               embedding.empty() ? "" : " and embeddings", " are supported.");
    out.push_back(name);
  }
  if (out.empty()) {
    std::ostringstream os;
    os << who << " Target modules " << c.target_modules.to_json().dump()
       << " not found in the base model. Please check the target modules and try again.";
    if (any_excluded) os << " (Some modules were excluded by exclude_modules or modules_to_save.)";
    if (c.layers_to_transform) {
      os << " Note: You specified 'layers_to_transform': " << nlohmann::json(*c.layers_to_transform).dump() << ".";
      if (c.layers_pattern) os << " You also specified 'layers_pattern': " << nlohmann::json(*c.layers_pattern).dump() << ".";
    }
    os << " Adaptable modules are:";
    std::size_t shown = 0;
    for (const auto& n : all_modules)
      if ((lin.count(n) || emb.count(n)) && shown++ < 40) os << " " << n;
    if (shown > 40) os << " ... (" << shown << " in all)";
    throw ConfigError(os.str());
  }
  return out;
}

namespace detail {

using nlohmann::json;

TargetSpec take_targets(json& rest, const char* key, const std::string& source) {
  TargetSpec t;
  auto it = rest.find(key);
  if (it == rest.end()) return t;
  json v = *it;
  rest.erase(it);
  if (v.is_null()) return t;
  if (v.is_string()) return TargetSpec(v.get<std::string>());
  PEFT_CHECK(v.is_array(), ConfigError, "[config] ", source, ": field '", key,
             "' must be a string (regex) or a list of module names, got ", v.dump());
  std::vector<std::string> names;
  for (const auto& e : v) {
    PEFT_CHECK(e.is_string(), ConfigError, "[config] ", source, ": field '", key,
               "' must list module names (strings), got ", e.dump());
    names.push_back(e.get<std::string>());
  }
  return TargetSpec(std::move(names));
}

void read_target_fields(TargetFields& c, json& rest, const std::string& source, bool layer_fields) {
  c.target_modules = take_targets(rest, "target_modules", source);
  c.exclude_modules = take_targets(rest, "exclude_modules", source);
  {
    TargetSpec m = take_targets(rest, "modules_to_save", source);
    PEFT_CHECK(!m.is_regex(), ConfigError, "[config] ", source, ": field 'modules_to_save' must be a list");
    if (m.is_list()) c.modules_to_save = m.list();
  }
  if (!layer_fields) return;
  if (auto it = rest.find("layers_to_transform"); it != rest.end()) {
    const bool ints = it->is_array() && std::all_of(it->begin(), it->end(), [](const json& e) { return e.is_number_integer(); });
    if (it->is_number_integer()) c.layers_to_transform = std::vector<int64_t>{it->get<int64_t>()};
    else if (ints) c.layers_to_transform = it->get<std::vector<int64_t>>();
    else if (!it->is_null())
      throw ConfigError("[config] " + source + ": field 'layers_to_transform' must be an int or a list of ints, got " + it->dump());
    rest.erase(it);
  }
  if (auto it = rest.find("layers_pattern"); it != rest.end()) {
    const bool strings = it->is_array() && std::all_of(it->begin(), it->end(), [](const json& e) { return e.is_string(); });
    if (it->is_string()) c.layers_pattern = std::vector<std::string>{it->get<std::string>()};
    else if (strings) c.layers_pattern = it->get<std::vector<std::string>>();
    else if (!it->is_null())
      throw ConfigError("[config] " + source + ": field 'layers_pattern' must be a string or a list of strings, got " + it->dump());
    rest.erase(it);
  }
}

void write_target_fields(const TargetFields& c, json& j, bool layer_fields) {
  j["target_modules"] = c.target_modules.to_json();
  j["exclude_modules"] = c.exclude_modules.to_json();
  j["modules_to_save"] = c.modules_to_save ? json(*c.modules_to_save) : json(nullptr);
  if (!layer_fields) return;
  j["layers_to_transform"] = c.layers_to_transform ? json(*c.layers_to_transform) : json(nullptr);
  j["layers_pattern"] = c.layers_pattern ? json(*c.layers_pattern) : json(nullptr);
}

void validate_target_fields(const TargetFields& c, const std::string& who) {
  PEFT_CHECK(!(c.target_modules.is_regex() && c.layers_to_transform), ConfigError, who,
             " `layers_to_transform` cannot be used when `target_modules` is a str.");
  PEFT_CHECK(!(c.target_modules.is_regex() && c.layers_pattern), ConfigError, who,
             " `layers_pattern` cannot be used when `target_modules` is a str.");
  PEFT_CHECK(!(c.layers_pattern && !c.layers_pattern->empty() && !c.layers_to_transform), ConfigError, who,
             " When `layers_pattern` is specified, `layers_to_transform` must also be specified.");
  if (c.target_modules.is_regex()) (void)regex_fullmatch(c.target_modules.regex(), "");  // compiles or throws
  if (c.exclude_modules.is_regex()) (void)regex_fullmatch(c.exclude_modules.regex(), "");
}

}  // namespace detail

}  // namespace peft
