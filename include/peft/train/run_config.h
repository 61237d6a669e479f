#pragma once
// A run configuration: what `peft train`, `peft eval` and `peft compare` read from a YAML file
// plus `key=value` overrides, as data in the library (tier 2). Keys are transformers'
// TrainingArguments and BitsAndBytesConfig names, the data pipeline's keys, and the chosen method's
// own PEFT config fields, which its registry row parses (tuners/registry.h) exactly as it parses an
// adapter_config.json.
//
//   auto rc = peft::train::load_run_config("examples/configs/e2e_lora.yaml", {"max_steps=20"});
//   auto pm = peft::get_peft_model(model, *rc.peft);
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "peft/config/peft_config.h"
#include "peft/train/training_args.h"

namespace peft::models {
struct LoadOptions;  // models/model.h
}

namespace peft::train {

/// One task of a multi-task run (`tasks:`): its name and the data keys it sets for itself (YAML
/// text, applied over the run's own keys).
struct TaskEntry {
  std::string name;
  std::vector<std::pair<std::string, std::string>> keys;
  std::string base_dir;  ///< the folder its relative paths are resolved against ("" = working directory)
};

struct RunConfig {
  std::string model, adapter, method = "lora", task = "causal_lm", train_file, eval_file;
  std::string text_column = "text", text_pair_column, label_column = "label", label_regex;
  std::vector<TaskEntry> tasks;  ///< multi-task classification: one shared adapter, a head per task
  std::string task_name;         ///< set on a task's own configuration (task_config)
  std::string prompt_template, completion_template, source_column = "source", target_column = "target";
  int64_t max_length = 256, max_train_samples = 0, max_eval_samples = 0;
  int64_t tag_column = -1;  ///< token_cls: the CoNLL column holding the tags (0-based; -1 = the last)
  /// Without eval_file: the last this-percent of train_file's rows is the evaluation set (HF run_*'s
  /// validation_split_percentage) and the rest the training set.
  int64_t validation_split_percentage = 0;
  /// seq_cls, as transformers' config: problem_type "regression" (float labels, MSE; also chosen
  /// by num_labels 1), "multi_label_classification" (label_column holds several names, BCE) or
  /// "single_label_classification"; "" = single-label unless num_labels is 1. num_labels 0 = the
  /// training data's label count.
  std::string problem_type;
  int64_t num_labels = 0;
  int64_t eval_generate = 0, max_new_tokens = 48;
  bool skip_bad_rows = false;
  /// Data bytes that are not UTF-8: "error" (naming file:line) or "replace" (U+FFFD, a warning).
  std::string invalid_utf8 = "error";
  double ddp_timeout = 300;  ///< seconds a rank may hang before the others stop (data-parallel runs)
  TrainingArguments args;
  // QLoRA: transformers' BitsAndBytesConfig names; method qlora turns load_in_4bit on.
  bool load_in_4bit = false, bnb_4bit_use_double_quant = true;
  std::string bnb_4bit_quant_type = "nf4", bnb_4bit_compute_dtype = "float32";
  /// GGUF models: decode block-quantised projections to fp32 instead of keeping them quantised.
  bool dequantize = false;
  /// Load a base whose weights hold NaN/inf with a warning (LoadOptions::allow_nonfinite_weights).
  bool allow_nonfinite_weights = false;
  /// The 4-bit options above come from the adapter's base_quantization.json (`adapter` was
  /// trained on a 4-bit base and the config set none of them).
  bool base_quantization_from_adapter = false;
  /// Keys of any method's PEFT config, as JSON (the method's own ones go to its parser).
  nlohmann::json method_fields = nlohmann::json::object();
  /// The method's PEFT config, parsed and validated (built by load_run_config).
  std::shared_ptr<const PeftConfig> peft;

  /// The task type of `task` (causal_lm -> CAUSAL_LM, ...).
  TaskType task_type() const;
  /// problem_type as the run uses it: "regression", "multi_label_classification" or
  /// "single_label_classification" for seq_cls; "" for other tasks.
  std::string problem() const;
  /// The model loader's options (4-bit base, GGUF dequantisation).
  models::LoadOptions load_options() const;
};

/// The methods a run config can name: every registry row ("lora", "adalora", "prefix_tuning",
/// ...) and the variants "qlora" (LoRA on a 4-bit base, all linear layers unless given) and
/// "p_tuning_v2" (prefix tuning without projection, prefix_dropout 0.1 unless given), and "full"
/// (full fine-tuning, the baseline: every parameter trained, a model folder saved).
std::vector<std::string> run_methods();

/// Reads `path` (may be empty: overrides only) and applies `overrides` ("key=value", the value
/// read as YAML). Every key is checked: an unknown key, a wrong type or an invalid value is one
/// ConfigError naming the key and where it came from. Relative paths (model, adapter,
/// train_file, eval_file, output_dir, tokenizer_name_or_path, a task's files) in the file are
/// relative to the file's folder; in overrides, to the working directory. An adapter that
/// records a 4-bit base (base_quantization.json) sets the 4-bit keys the config leaves unset.
RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides = {});

/// A task's own configuration: the run's, with the task's data keys applied.
RunConfig task_config(const RunConfig& c, const TaskEntry& t);

}  // namespace peft::train
