// The run configuration (train/run_config.h): one table of run keys; the method's own keys are
// handed to its registry row's parser as JSON.
#include "peft/train/run_config.h"

#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <set>

#include "peft/core/check.h"
#include "peft/core/strings.h"
#include "peft/core/yaml_bounds.h"
#include "peft/io/gguf.h"
#include "peft/models/quantized_model.h"
#include "peft/tuners/registry.h"

namespace peft::train {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

template <typename T>
T as(const YAML::Node& n, const std::string& key, const char* what) {
  try {
    return n.as<T>();
  } catch (const YAML::Exception&) {
    throw ConfigError("[config] key '" + key + "': expected " + what + ", got '" + YAML::Dump(n) + "'");
  }
}

/// A YAML value as JSON: quoted scalars stay strings; plain ones become null, booleans, integers
/// or numbers when they read as such.
json to_json(const YAML::Node& n) {
  if (n.IsNull()) return nullptr;
  if (n.IsSequence()) {
    json a = json::array();
    for (const auto& e : n) a.push_back(to_json(e));
    return a;
  }
  if (n.IsMap()) {
    json o = json::object();
    for (const auto& kv : n) o[kv.first.as<std::string>()] = to_json(kv.second);
    return o;
  }
  const std::string s = n.Scalar();
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
      const auto k = kv.first.as<std::string>();
      if (k == "name") {
        e.name = as<std::string>(kv.second, "tasks[" + std::to_string(i) + "].name", "a string");
        continue;
      }
      PEFT_CHECK(kTaskKeys.count(k), ConfigError, "[config] key 'tasks': entry ", i, ": unknown key '", k,
                 "' (valid keys: name, ", join(std::vector<std::string>(kTaskKeys.begin(), kTaskKeys.end()), 99), ")");
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

// The PEFT config fields of each registered method (a default config's JSON keys, base fields aside).
const std::map<std::string, std::set<std::string>>& method_keys() {
  static const std::map<std::string, std::set<std::string>> t = [] {
    std::map<std::string, std::set<std::string>> m;
    for (const auto& row : tuner_rows()) {
      const auto cfg = row.make_config();
      const json j = cfg->to_json();
      m[row.name];  // a method may have no keys of its own (full)
      for (auto it = j.begin(); it != j.end(); ++it)
        if (it.key() != "peft_type" && it.key() != "task_type" && it.key() != "base_model_name_or_path" &&
            it.key() != "revision" && it.key() != "inference_mode")
          m[row.name].insert(it.key());
      for (const auto& k : cfg->optional_fields()) m[row.name].insert(k);
    }
    return m;
  }();
  return t;
}

/// Sets `key` from a value read from `where`; `base` is the folder relative paths are resolved
/// against (a config file's; empty for the command line).
void apply(RunConfig& c, const std::string& key, const YAML::Node& v, const std::string& where,
           const fs::path& base = {}) {
  if (key == "tasks") return set_tasks(c, v, base);
  if (auto it = setters().find(key); it != setters().end()) {
    it->second(c, v);
    std::string* path = key == "model" ? &c.model : key == "adapter" ? &c.adapter : key == "train_file" ? &c.train_file
                        : key == "eval_file" ? &c.eval_file : key == "output_dir" ? &c.args.output_dir : nullptr;
    if (path) *path = resolve_path(key, *path, base, where);
    return;
  }
  for (const auto& [method, keys] : method_keys())
    if (keys.count(key)) {
      c.method_fields[key] = to_json(v);
      if (kPathKeys.count(key) && c.method_fields[key].is_string())
        c.method_fields[key] = resolve_path(key, c.method_fields[key].get<std::string>(), base, where);
      return;
    }
  std::set<std::string> valid;
  for (const auto& [k, f] : setters()) valid.insert(k);
  for (const auto& [method, keys] : method_keys()) valid.insert(keys.begin(), keys.end());
  throw ConfigError("[config] " + where + ": unknown key '" + key +
                    "' (valid keys: " + join(std::vector<std::string>(valid.begin(), valid.end()), 1000) + ")");
}

/// The method's PEFT config from the run: its own fields, the task, and the defaults of the
/// run-config variants (qlora, p_tuning_v2) and of fields that follow from the run.
std::shared_ptr<const PeftConfig> build_peft_config(const RunConfig& c) {
  const bool qlora = c.method == "qlora", v2 = c.method == "p_tuning_v2";
  const TunerRow& row = tuner_row(qlora ? "lora" : v2 ? "prefix_tuning" : c.method);
  json j = json::object();
  const auto& own = method_keys().at(row.name);
  for (auto it = c.method_fields.begin(); it != c.method_fields.end(); ++it)
    if (own.count(it.key())) j[it.key()] = it.value();
  j["peft_type"] = to_string(row.type);
  j["task_type"] = to_string(c.task_type());
  if (qlora && !j.contains("target_modules")) j["target_modules"] = "all-linear";
  if (v2) {
    // Deep prompt tuning (a key/value prefix in every layer, no reparameterisation) with the
    // original code's prefix dropout. The paper targets classification; on generation tasks it is
    // prefix tuning without projection, which is how `peft compare` runs it on E2E.
    if (c.task != "seq_cls" && c.task != "token_cls")
      std::cerr << "note: method p_tuning_v2 on task " << c.task
                << ": deep prompt tuning (prefix tuning without projection, prefix dropout)\n";
    if (!j.contains("prefix_dropout")) j["prefix_dropout"] = 0.1;
  }
  if (row.type == PeftType::AdaLora && (!j.contains("total_step") || j["total_step"].is_null())) {
    PEFT_CHECK(c.args.max_steps > 0, ConfigError,
               "[config] method adalora needs 'total_step' (or 'max_steps', which it defaults to)");
    j["total_step"] = c.args.max_steps;
  }
  // Prompt tuning from text and P-Tuning templates tokenise with the model's tokenizer by default.
  const bool text_init = j.value("prompt_tuning_init", std::string()) == "TEXT";
  const bool templated = j.contains("p_tuning_template") && j["p_tuning_template"].is_string() &&
                         !j["p_tuning_template"].get<std::string>().empty();
  if ((text_init || templated) && own.count("tokenizer_name_or_path") &&
      (!j.contains("tokenizer_name_or_path") || j["tokenizer_name_or_path"].is_null()))
    j["tokenizer_name_or_path"] = c.model;
  auto cfg = std::shared_ptr<PeftConfig>(row.parse(j, "method " + c.method));
  cfg->validate();
  return cfg;
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

models::LoadOptions RunConfig::load_options() const {
  models::LoadOptions o;
  o.load_in_4bit = load_in_4bit;
  o.bnb_4bit_quant_type = bnb_4bit_quant_type;
  o.bnb_4bit_use_double_quant = bnb_4bit_use_double_quant;
  o.bnb_4bit_compute_dtype = bnb_4bit_compute_dtype;
  o.dequantize = dequantize;
  o.allow_nonfinite_weights = allow_nonfinite_weights;
  return o;
}

std::vector<std::string> run_methods() {
  std::vector<std::string> out;
  for (const auto& row : tuner_rows()) {
    out.push_back(row.name);
    if (std::string(row.name) == "lora") out.push_back("qlora");
    if (std::string(row.name) == "prefix_tuning") out.push_back("p_tuning_v2");
  }
  return out;
}

RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides) {
  RunConfig c;
  std::set<std::string> given;  // the keys the file or the command line set
  if (!path.empty()) {
    PEFT_CHECK(fs::exists(path), ConfigError, "[config] ", path, ": no such file");
    const std::string text = read_yaml_text(path);
    YAML::Node root;
    try {
      root = YAML::Load(text);
    } catch (const YAML::Exception& e) {
      throw ConfigError("[config] " + path + ": not valid YAML: " + e.what());
    }
    PEFT_CHECK(root.IsMap() || root.IsNull(), ConfigError, "[config] ", path, ": expected a mapping of key: value");
    const fs::path base = fs::path(path).parent_path().empty() ? fs::path(".") : fs::path(path).parent_path();
    for (const auto& kv : root) {
      const auto key = kv.first.as<std::string>();
      apply(c, key, kv.second, path, base);
      given.insert(key);
    }
  }
  for (const auto& o : overrides) {
    const auto eq = o.find('=');
    PEFT_CHECK(eq != std::string::npos && eq > 0, ConfigError, "[config] override '", o, "' is not key=value");
    const std::string value = o.substr(eq + 1);
    check_yaml_bounds(value, "command line " + o.substr(0, eq));
    YAML::Node v;
    try {
      v = YAML::Load(value);
    } catch (const YAML::Exception& e) {
      throw ConfigError("[config] command line: override '" + o + "': not a valid YAML value: " + e.what());
    }
    apply(c, o.substr(0, eq), v, "command line");
    given.insert(o.substr(0, eq));
  }
  PEFT_CHECK(!c.model.empty(), ConfigError, "[config] key 'model' (a model folder or a .gguf file) is required");
  const bool gguf = fs::is_regular_file(c.model) && io::is_gguf_file(c.model);
  // An adapter trained on a 4-bit base records it (base_quantization.json): used so unless the
  // config says otherwise.
  if (!c.adapter.empty() && !gguf) {
    if (const auto q = models::adapter_base_quantization(c.adapter)) {
      const bool quant_keys_given = given.count("load_in_4bit") || given.count("bnb_4bit_quant_type") ||
                                    given.count("bnb_4bit_use_double_quant") || c.method == "qlora";
      if (!quant_keys_given) {
        c.load_in_4bit = true;
        c.bnb_4bit_quant_type = q->quant_type;
        c.bnb_4bit_use_double_quant = q->use_double_quant;
        if (!given.count("bnb_4bit_compute_dtype")) c.bnb_4bit_compute_dtype = q->compute_dtype;
        c.base_quantization_from_adapter = true;
      }
    }
  }
  PEFT_CHECK(!(gguf && c.load_in_4bit), ConfigError, "[config] key 'load_in_4bit': ", c.model,
             " is a GGUF file, which keeps its own quantisation (set dequantize: true for fp32 weights)");
  const auto methods = run_methods();
  PEFT_CHECK(std::find(methods.begin(), methods.end(), c.method) != methods.end(), ConfigError,
             "[config] key 'method': '", c.method, "' is not one of ", join(methods, 99));
  // qlora = LoRA on a 4-bit (nf4 + double quant by default) base; a GGUF base is already
  // quantised, so there qlora is LoRA on its blocks.
  if (c.method == "qlora") c.load_in_4bit = !gguf;
  PEFT_CHECK(c.bnb_4bit_quant_type == "nf4" || c.bnb_4bit_quant_type == "fp4", ConfigError,
             "[config] key 'bnb_4bit_quant_type': '", c.bnb_4bit_quant_type, "' is not one of nf4, fp4");
  PEFT_CHECK(c.bnb_4bit_compute_dtype == "float32" || c.bnb_4bit_compute_dtype == "bfloat16", ConfigError,
             "[config] key 'bnb_4bit_compute_dtype': '", c.bnb_4bit_compute_dtype,
             "' is not one of float32, bfloat16");
  (void)c.task_type();  // checks the task name
  c.peft = build_peft_config(c);
  c.args.validate();
  if (c.args.run_name.empty()) {  // loss.png's title: "lora on stories260K"
    const fs::path m = fs::path(c.model).lexically_normal();
    c.args.run_name = c.method + " on " + (m.has_filename() ? m.filename() : m.parent_path().filename()).string();
  }
  PEFT_CHECK(c.validation_split_percentage >= 0 && c.validation_split_percentage < 100, ConfigError,
             "[config] key 'validation_split_percentage': must be in [0, 100), got ", c.validation_split_percentage);
  if (c.method == "full") {
    PEFT_CHECK(!c.load_in_4bit, ConfigError, "[config] method full: a 4-bit base cannot be fine-tuned in full "
               "(quantised weights have no gradient); drop load_in_4bit or use method qlora");
    PEFT_CHECK(!gguf || c.dequantize, ConfigError, "[config] method full on the GGUF file ", c.model,
               ": its quantised blocks have no gradient; convert it first (peft convert ", c.model,
               " DIR) and fine-tune DIR, or set dequantize: true");
    PEFT_CHECK(c.tasks.empty(), ConfigError, "[config] key 'tasks': multi-task runs share one adapter between "
               "task heads; method full has none (run one task per full fine-tune)");
    PEFT_CHECK(c.adapter.empty(), ConfigError, "[config] key 'adapter': method full trains the model itself; to "
               "continue a full fine-tune, give its model folder as 'model'");
  }
  PEFT_CHECK(c.invalid_utf8 == "error" || c.invalid_utf8 == "replace", ConfigError, "[config] key 'invalid_utf8': '",
             c.invalid_utf8, "'; expected error or replace");
  PEFT_CHECK(c.problem_type.empty() || c.problem_type == "regression" || c.problem_type == "single_label_classification" ||
                 c.problem_type == "multi_label_classification",
             ConfigError, "[config] key 'problem_type': '", c.problem_type,
             "' is not one of regression, single_label_classification, multi_label_classification");
  PEFT_CHECK(c.problem_type.empty() || c.task == "seq_cls", ConfigError, "[config] key 'problem_type' applies to "
             "task seq_cls, not ", c.task);
  PEFT_CHECK(c.num_labels >= 0, ConfigError, "[config] key 'num_labels': must be >= 0, got ", c.num_labels);
  PEFT_CHECK(c.num_labels != 1 || c.problem_type.empty() || c.problem_type == "regression", ConfigError,
             "[config] key 'num_labels': 1 means regression, but problem_type is ", c.problem_type);
  PEFT_CHECK(c.problem_type != "regression" || c.num_labels <= 1,
             ConfigError, "[config] key 'num_labels': problem_type regression has one output, got num_labels ",
             c.num_labels);
  PEFT_CHECK(c.tasks.empty() || c.task != "seq_cls" || c.problem() == "single_label_classification", ConfigError,
             "[config] key 'tasks': multi-task runs join single-label classification sets, not problem_type ",
             c.problem());
  PEFT_CHECK(c.tasks.empty() || c.task == "seq_cls" || c.task == "token_cls", ConfigError,
             "[config] key 'tasks': multi-task training (a head per task) needs task: seq_cls or token_cls, not ", c.task);
  return c;
}

RunConfig task_config(const RunConfig& c, const TaskEntry& t) {
  RunConfig tc = c;
  tc.task_name = t.name;
  for (const auto& [k, v] : t.keys) apply(tc, k, YAML::Load(v), "task '" + t.name + "'", t.base_dir);
  return tc;
}

}  // namespace peft::train
