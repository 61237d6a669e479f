// Mirrors peft/tuners/tuners_utils.py: check_target_module_exists, _maybe_include_all_linear_layers,
// and BaseTuner.inject_adapter's "Target modules ... not found in the base model" error.
#include "peft/tuners/target_match.h"

#include <algorithm>
#include <set>
#include <sstream>

#include "peft/core/check.h"
#include "peft/core/regex.h"

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

TargetMatch check_target_module_exists(const LoraConfig& c, const std::string& key) {
  if (c.exclude_modules.is_regex() && regex_fullmatch(c.exclude_modules.regex(), key)) return TargetMatch::Excluded;
  if (c.exclude_modules.is_list() && in_list_or_suffix(c.exclude_modules.list(), key)) return TargetMatch::Excluded;
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

std::vector<std::string> resolve_lora_targets(LoraConfig& c, const std::string& model_type,
                                              const std::vector<std::string>& all_modules,
                                              const std::vector<std::string>& linear,
                                              const std::vector<std::string>& embedding,
                                              const std::string& output_layer) {
  if (c.target_modules.is_null()) {
    auto d = default_lora_targets(model_type);
    PEFT_CHECK(!d.empty(), ConfigError, "[lora::inject] Please specify `target_modules` in `peft_config`: "
               "there are no default target modules for model_type '", model_type, "'");
    c.target_modules = TargetSpec(d);
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
    PEFT_CHECK(lin.count(name) || emb.count(name), ConfigError, "[lora::inject] Target module '", name,
               "' is not supported. Currently, only linear projections (incl. GPT-2 Conv1D) and embeddings are "
               "supported.");
    out.push_back(name);
  }
  if (out.empty()) {
    std::ostringstream os;
    os << "[lora::inject] Target modules " << c.to_json()["target_modules"].dump()
       << " not found in the base model. Please check the target modules and try again.";
    if (any_excluded) os << " (Some modules were excluded by exclude_modules or modules_to_save.)";
    os << " Adaptable modules are:";
    std::size_t shown = 0;
    for (const auto& n : all_modules)
      if ((lin.count(n) || emb.count(n)) && shown++ < 40) os << " " << n;
    if (shown > 40) os << " ... (" << shown << " in all)";
    throw ConfigError(os.str());
  }
  return out;
}

}  // namespace peft
