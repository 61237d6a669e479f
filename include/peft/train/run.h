#pragma once
// A whole run from a run config, as `peft train` does it (tier 2): data, model (with its task
// head, 4-bit or GGUF base), adapter, evaluation before, training, evaluation after, the adapter,
// checkpoints, logs and results.json in args.output_dir.
//
//   #include "peft/train/run.h"
//   auto rc = peft::train::load_run_config("examples/configs/e2e_lora.yaml", {"max_steps=20"});
//   auto result = peft::train::run_training(rc);
//   std::cout << result.summary.dump(1) << "\n";
#include <iosfwd>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "peft/models/model.h"
#include "peft/train/run_config.h"

namespace peft::train {

struct RunResult {
  std::string adapter_dir;
  /// What results.json holds: method, task, parameter counts, steps, losses, tokens/s, peak RSS,
  /// metrics before and after.
  nlohmann::json summary;
};

/// Runs `c` (resuming from a checkpoint folder when `resume` is set), printing progress to stdout.
RunResult run_training(const RunConfig& c, const std::string& resume = "");

/// What `peft eval` does: the model with adapter c.adapter (none: the base model, for causal_lm and
/// seq2seq) on c.eval_file — eval_loss as the trainer computes it, and the task metrics as the end
/// of run_training reports them (task_metrics in train/evaluate.h), printed and returned. A
/// classification adapter's task.json (written by run_training) gives the trained label set.
/// With `predictions_path`, one JSON object per example per line (input, gold, prediction,
/// probabilities or scores), written atomically.
nlohmann::json run_evaluation(const RunConfig& c, const std::string& predictions_path = "");

/// The run's model: the base with the task's head (classification heads sized for `num_labels`
/// when config.json says otherwise, as transformers initialises a new head), 4-bit or GGUF as
/// the config says. `pad_id` is the padding id decoder-only classifiers pool with.
std::shared_ptr<models::PretrainedModel> load_run_model(const RunConfig& c, int64_t num_labels, int64_t pad_id);

}  // namespace peft::train
