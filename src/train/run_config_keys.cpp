// The run configuration's keys (train/run_config.h), torch-free: the one table of run keys, the
// YAML reading and the method keys kept as JSON for the method's parser (which
// train/run_config.cpp calls, with the registry's rows).
#include "train/run_config_keys.h"

#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <functional>
#include <map>
#include <type_traits>

#include "peft/core/check.h"
#include "peft/core/strings.h"
#include "peft/core/utf8.h"
#include "peft/core/yaml_bounds.h"

namespace peft::train {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using detail::MethodKeys;

/// `n` in an error message: a scalar's text (cut short), or what kind of node it is. Never the
/// whole node: YAML aliases can make a few lines stand for billions of values.
std::string shown(const YAML::Node& n) {
  if (n.IsSequence()) return "a list";
  if (n.IsMap()) return "a mapping";
  if (!n.IsScalar()) return "nothing";
  const std::string& s = n.Scalar();
  return "'" + (s.size() > 80 ? s.substr(0, 80) + "..." : s) + "'";
}

/// A scalar's text, which JSON and the tokenizers need as UTF-8 (a YAML escape can spell half of
/// a character).
const std::string& utf8(const std::string& s, const std::string& key) {
  if (const std::size_t bad = find_invalid_utf8(s); bad != std::string::npos)
    throw ConfigError("[config] key '" + key + "': the value is not valid UTF-8 (byte " + std::to_string(bad + 1) +
                      "; an escape such as \\uD800 is half of a character)");
  return s;
}

/// A mapping key: a plain name (a list or mapping as a key, YAML's "? [a, b]", is refused).
std::string key_of(const YAML::Node& k, const std::string& where) {
  PEFT_CHECK(k.IsScalar(), ConfigError, "[config] ", where, ": a key must be a name, got ", shown(k));
  return utf8(k.Scalar(), where);
}

template <typename T>
T as(const YAML::Node& n, const std::string& key, const char* what) {
  try {
    if constexpr (std::is_same_v<T, std::string>) {
      if (!n.IsScalar()) throw YAML::BadConversion(n.Mark());
      return utf8(n.Scalar(), key);
    } else {
      return n.as<T>();
    }
  } catch (const YAML::Exception&) {
    throw ConfigError("[config] key '" + key + "': expected " + what + ", got " + shown(n));
  }
}

/// At most this many values in one key's value: a run config holds a few dozen, and YAML aliases
/// (&a ... *a) let a few lines repeat a node exponentially often.
constexpr std::size_t kMaxValues = std::size_t{1} << 14;
constexpr int kMaxDepth = 64;

/// A YAML value as JSON: quoted scalars stay strings; plain ones become null, booleans, integers
/// or numbers when they read as such. `budget` counts the values left (kMaxValues in all).
json to_json(const YAML::Node& n, const std::string& key, std::size_t& budget, int depth = 0) {
  PEFT_CHECK(budget > 0, ConfigError, "[config] key '", key, "': more than ", kMaxValues,
             " values (YAML aliases repeating a list or mapping?)");
  // check_yaml_bounds caps the nesting the text spells; an alias inside its own anchor
  // (&a [*a]) nests without end.
  PEFT_CHECK(depth <= kMaxDepth, ConfigError, "[config] key '", key, "': nested deeper than ", kMaxDepth,
             " levels (a YAML alias inside its own anchor?)");
  --budget;
  if (n.IsNull()) return nullptr;
  if (n.IsSequence()) {
    json a = json::array();
    for (const auto& e : n) a.push_back(to_json(e, key, budget, depth + 1));
    return a;
  }
  if (n.IsMap()) {
    json o = json::object();
    for (const auto& kv : n) o[key_of(kv.first, "key '" + key + "'")] = to_json(kv.second, key, budget, depth + 1);
    return o;
  }
  const std::string& s = utf8(n.Scalar(), key);
  if (n.Tag() == "!") return s;
  if (s == "true" || s == "True") return true;
  if (s == "false" || s == "False") return false;
  if (s == "null" || s == "~" || s == "None") return nullptr;
  const json number = json::parse(s, nullptr, /*allow_exceptions=*/false);  // YAML's numbers are JSON's
  if (number.is_number()) return number;
  return s;
}

/// The run keys that name files or folders: relative values in a config file are resolved
/// against that file's folder (command-line overrides against the working directory).
const std::set<std::string> kPathKeys = {"model", "adapter", "train_file", "eval_file", "output_dir",
                                         "tokenizer_name_or_path"};

/// `value` of path key `key` read from a file in folder `base`: base/value unless absolute or
/// empty. When that does not exist but `value` does from the working directory (a config written
/// for the working directory), a ConfigError says how to write it.
std::string resolve_path(const std::string& key, const std::string& value, const fs::path& base,
                         const std::string& where) {
  if (value.empty() || base.empty() || fs::path(value).is_absolute()) return value;
  const fs::path p = (base / value).lexically_normal();
  if (key != "output_dir" && !fs::exists(p) && fs::exists(value)) {
    std::error_code ec;
    const fs::path rel = fs::relative(fs::absolute(value), fs::absolute(base), ec);
    throw ConfigError("[config] " + where + ": key '" + key + "': '" + value + "' is looked up in " +
                      base.string() + "/ (relative paths in a config file are relative to its folder) and is not "
                      "there; it exists from the working directory: write " + key + ": " +
                      (ec ? fs::absolute(value).string() : rel.string()) + " in the file, or give " + key + "=" +
                      value + " on the command line");
  }
  return p.string();
}

using Setter = std::function<void(RunConfig&, const YAML::Node&)>;

const std::set<std::string> kTaskKeys = {"train_file", "eval_file", "text_column", "text_pair_column",
                                         "problem_type", "num_labels",
                                         "label_column", "label_regex", "max_train_samples",
                                         "max_eval_samples", "max_length", "skip_bad_rows", "invalid_utf8",
                                         "validation_split_percentage", "tag_column"};

void set_tasks(RunConfig& c, const YAML::Node& n, const fs::path& base) {
  PEFT_CHECK(n.IsSequence() && n.size() > 0, ConfigError, "[config] key 'tasks': expected a list of tasks, each a "
             "mapping with 'name' and data keys (train_file, eval_file, text_column, label_column, label_regex, ...)");
  c.tasks.clear();
  for (std::size_t i = 0; i < n.size(); ++i) {
    const YAML::Node& t = n[i];
    PEFT_CHECK(t.IsMap(), ConfigError, "[config] key 'tasks': entry ", i, " is not a mapping");
    TaskEntry e;
    e.base_dir = base.string();
    for (const auto& kv : t) {
      const auto k = key_of(kv.first, "key 'tasks': entry " + std::to_string(i));
      if (k == "name") {
        e.name = as<std::string>(kv.second, "tasks[" + std::to_string(i) + "].name", "a string");
        continue;
      }
      PEFT_CHECK(kTaskKeys.count(k), ConfigError, "[config] key 'tasks': entry ", i, ": unknown key '", k,
                 "' (valid keys: name, ", join(std::vector<std::string>(kTaskKeys.begin(), kTaskKeys.end()), 99), ")");
      PEFT_CHECK(kv.second.IsScalar() || kv.second.IsNull(), ConfigError, "[config] key 'tasks': entry ", i,
                 ": key '", k, "' takes one value, got ", shown(kv.second));
      e.keys.emplace_back(k, YAML::Dump(kv.second));
    }
    PEFT_CHECK(!e.name.empty(), ConfigError, "[config] key 'tasks': entry ", i, " has no 'name'");
    for (const auto& o : c.tasks)
      PEFT_CHECK(o.name != e.name, ConfigError, "[config] key 'tasks': the name '", e.name, "' is used twice");
    c.tasks.push_back(std::move(e));
  }
}

// key -> setter; the one table of run keys (the methods' keys come from their configs).
const std::map<std::string, Setter>& setters() {
  static const std::map<std::string, Setter> t = [] {
    std::map<std::string, Setter> m;
#define S_STR(k, field) m[k] = [](RunConfig& c, const YAML::Node& n) { c.field = n.IsNull() ? std::string() : as<std::string>(n, k, "a string"); }
#define S_INT(k, field) m[k] = [](RunConfig& c, const YAML::Node& n) { c.field = as<int64_t>(n, k, "an integer"); }
#define S_DBL(k, field) m[k] = [](RunConfig& c, const YAML::Node& n) { c.field = as<double>(n, k, "a number"); }
#define S_BOOL(k, field) m[k] = [](RunConfig& c, const YAML::Node& n) { c.field = as<bool>(n, k, "true or false"); }
    S_STR("model", model); S_STR("adapter", adapter); S_STR("method", method); S_STR("task", task);
    S_STR("train_file", train_file); S_STR("eval_file", eval_file);
    S_STR("text_column", text_column); S_STR("text_pair_column", text_pair_column); S_STR("label_column", label_column);
    S_STR("label_regex", label_regex);
    S_STR("prompt_template", prompt_template); S_STR("completion_template", completion_template);
    S_STR("source_column", source_column); S_STR("target_column", target_column);
    S_INT("max_length", max_length); S_INT("max_train_samples", max_train_samples);
    S_INT("max_eval_samples", max_eval_samples);
    S_INT("validation_split_percentage", validation_split_percentage);
    S_INT("tag_column", tag_column); S_INT("eval_generate", eval_generate);
    S_INT("max_new_tokens", max_new_tokens); S_STR("problem_type", problem_type); S_INT("num_labels", num_labels); S_BOOL("skip_bad_rows", skip_bad_rows);
    S_STR("invalid_utf8", invalid_utf8);
    // TrainingArguments
    S_STR("output_dir", args.output_dir); S_STR("run_name", args.run_name); S_DBL("learning_rate", args.learning_rate);
    S_DBL("weight_decay", args.weight_decay); S_DBL("adam_beta1", args.adam_beta1); S_DBL("adam_beta2", args.adam_beta2);
    S_DBL("adam_epsilon", args.adam_epsilon); S_DBL("max_grad_norm", args.max_grad_norm);
    S_DBL("num_train_epochs", args.num_train_epochs); S_INT("max_steps", args.max_steps);
    S_INT("per_device_train_batch_size", args.per_device_train_batch_size);
    S_INT("per_device_eval_batch_size", args.per_device_eval_batch_size);
    S_INT("gradient_accumulation_steps", args.gradient_accumulation_steps);
    S_STR("lr_scheduler_type", args.lr_scheduler_type); S_DBL("warmup_ratio", args.warmup_ratio);
    S_INT("warmup_steps", args.warmup_steps); S_INT("logging_steps", args.logging_steps);
    S_INT("eval_steps", args.eval_steps); S_INT("save_steps", args.save_steps); S_INT("seed", args.seed);
    S_BOOL("group_by_length", args.group_by_length); S_BOOL("gradient_checkpointing", args.gradient_checkpointing);
    S_BOOL("bf16", args.bf16); S_STR("on_nonfinite", args.on_nonfinite);
    S_DBL("ddp_timeout", ddp_timeout);
    m["tasks"] = [](RunConfig& c, const YAML::Node& n) { set_tasks(c, n, {}); };
    // BitsAndBytesConfig (QLoRA)
    S_BOOL("load_in_4bit", load_in_4bit); S_STR("bnb_4bit_quant_type", bnb_4bit_quant_type);
    S_BOOL("bnb_4bit_use_double_quant", bnb_4bit_use_double_quant);
    S_STR("bnb_4bit_compute_dtype", bnb_4bit_compute_dtype);
    S_BOOL("dequantize", dequantize); S_BOOL("allow_nonfinite_weights", allow_nonfinite_weights);
#undef S_STR
#undef S_INT
#undef S_DBL
#undef S_BOOL
    return m;
  }();
  return t;
}

/// Sets `key` from a value read from `where`; `base` is the folder relative paths are resolved
/// against (a config file's; empty for the command line).
void apply(RunConfig& c, const std::string& key, const YAML::Node& v, const std::string& where,
           const fs::path& base, const MethodKeys& method_keys) {
  if (key == "tasks") return set_tasks(c, v, base);
  if (auto it = setters().find(key); it != setters().end()) {
    it->second(c, v);
    std::string* path = key == "model" ? &c.model : key == "adapter" ? &c.adapter : key == "train_file" ? &c.train_file
                        : key == "eval_file" ? &c.eval_file : key == "output_dir" ? &c.args.output_dir : nullptr;
    if (path) *path = resolve_path(key, *path, base, where);
    return;
  }
  for (const auto& [method, keys] : method_keys)
    if (keys.count(key)) {
      std::size_t budget = kMaxValues;
      c.method_fields[key] = to_json(v, key, budget);
      if (kPathKeys.count(key) && c.method_fields[key].is_string())
        c.method_fields[key] = resolve_path(key, c.method_fields[key].get<std::string>(), base, where);
      return;
    }
  std::set<std::string> valid;
  for (const auto& [k, f] : setters()) valid.insert(k);
  for (const auto& [method, keys] : method_keys) valid.insert(keys.begin(), keys.end());
  throw ConfigError("[config] " + where + ": unknown key '" + key +
                    "' (valid keys: " + join(std::vector<std::string>(valid.begin(), valid.end()), 1000) + ")");
}

}  // namespace

TaskType RunConfig::task_type() const {
  static const std::map<std::string, TaskType> kTasks = {{"causal_lm", TaskType::CausalLM},
                                                         {"seq_cls", TaskType::SeqCls},
                                                         {"token_cls", TaskType::TokenCls},
                                                         {"seq2seq", TaskType::Seq2SeqLM}};
  auto it = kTasks.find(task);
  PEFT_CHECK(it != kTasks.end(), ConfigError, "[config] key 'task': '", task,
             "' is not one of causal_lm, seq_cls, token_cls, seq2seq");
  return it->second;
}

std::string RunConfig::problem() const {
  if (task != "seq_cls") return "";
  if (!problem_type.empty()) return problem_type;
  return num_labels == 1 ? "regression" : "single_label_classification";
}

namespace detail {

std::set<std::string> apply_run_yaml(RunConfig& c, const std::string& text, const std::string& source,
                                     const std::string& base_dir, const MethodKeys& method_keys) {
  check_yaml_bounds(text, source);
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw ConfigError("[config] " + source + ": not valid YAML: " + e.what());
  }
  PEFT_CHECK(root.IsMap() || root.IsNull(), ConfigError, "[config] ", source, ": expected a mapping of key: value");
  std::set<std::string> given;
  for (const auto& kv : root) {
    const auto key = key_of(kv.first, source);
    apply(c, key, kv.second, source, base_dir, method_keys);
    given.insert(key);
  }
  return given;
}

std::string apply_run_override(RunConfig& c, const std::string& key_value, const MethodKeys& method_keys) {
  const auto eq = key_value.find('=');
  PEFT_CHECK(eq != std::string::npos && eq > 0, ConfigError, "[config] override '", key_value, "' is not key=value");
  const std::string key = key_value.substr(0, eq), value = key_value.substr(eq + 1);
  check_yaml_bounds(value, "command line " + key);
  YAML::Node v;
  try {
    v = YAML::Load(value);
  } catch (const YAML::Exception& e) {
    throw ConfigError("[config] command line: override '" + key_value + "': not a valid YAML value: " + e.what());
  }
  apply(c, key, v, "command line", {}, method_keys);
  return key;
}

void apply_task_keys(RunConfig& c, const TaskEntry& t, const MethodKeys& method_keys) {
  for (const auto& [k, v] : t.keys) apply(c, k, YAML::Load(v), "task '" + t.name + "'", t.base_dir, method_keys);
}

}  // namespace detail

}  // namespace peft::train
