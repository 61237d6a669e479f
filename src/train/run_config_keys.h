#pragma once
// The torch-free half of load_run_config (train/run_config_keys.cpp): reading a run config's YAML
// and `key=value` overrides into a RunConfig, key by key. The method keys a run may set come from
// the caller (load_run_config passes the registry's; tests/fuzz/fuzz_yaml_config.cpp its own).
#include <map>
#include <set>
#include <string>

#include "peft/train/run_config.h"

namespace peft::train::detail {

/// Each method's PEFT config fields (method name -> field names).
using MethodKeys = std::map<std::string, std::set<std::string>>;

/// Reads `text` (a run config's YAML, bounds-checked; `source` names it in errors) and sets each
/// key on `c`: run keys through the one table, `method_keys` fields into c.method_fields as JSON.
/// Relative paths are resolved against `base_dir` ("" = as given). Returns the keys set; an
/// unknown key, a wrong type or YAML that does not parse is one ConfigError naming the key.
std::set<std::string> apply_run_yaml(RunConfig& c, const std::string& text, const std::string& source,
                                     const std::string& base_dir, const MethodKeys& method_keys);

/// Sets one command-line override "key=value" (the value read as YAML); returns the key.
std::string apply_run_override(RunConfig& c, const std::string& key_value, const MethodKeys& method_keys);

/// Sets a task's own data keys (TaskEntry::keys) on `c`.
void apply_task_keys(RunConfig& c, const TaskEntry& t, const MethodKeys& method_keys);

}  // namespace peft::train::detail
