// The run configuration (train/run_config.h): the keys are read by train/run_config_keys.cpp
// (torch-free); here the method's own keys are handed to its registry row's parser as JSON and the
// whole run is checked.
#include "peft/train/run_config.h"


#include <filesystem>
#include <iostream>
#include <map>
#include <set>

#include "peft/core/check.h"
#include "peft/core/strings.h"
#include "peft/core/yaml_bounds.h"
#include "peft/io/gguf.h"
#include "peft/models/model.h"
#include "peft/models/quantized_model.h"
#include "peft/tuners/registry.h"
#include "train/run_config_keys.h"

namespace peft::train {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// The PEFT config fields of each registered method (a default config's JSON keys, base fields aside).
const detail::MethodKeys& method_keys() {
  static const detail::MethodKeys t = [] {
    detail::MethodKeys m;
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
    const std::string base = fs::path(path).parent_path().empty() ? "." : fs::path(path).parent_path().string();
    given = detail::apply_run_yaml(c, read_yaml_text(path), path, base, method_keys());
  }
  for (const auto& o : overrides) given.insert(detail::apply_run_override(c, o, method_keys()));
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
  detail::apply_task_keys(tc, t, method_keys());
  return tc;
}

}  // namespace peft::train
