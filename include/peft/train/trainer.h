#pragma once
// The training loop (tier 2): data -> forward -> loss -> backward -> clip -> AdamW step ->
// LR schedule -> log / eval / checkpoint. Field names follow transformers' TrainingArguments.
//
//   peft::train::TrainingArguments args;  args.learning_rate = 2e-4;  args.max_steps = 100;
//   peft::train::Trainer t(peft_model, args, train_set, &eval_set, tokenizer.pad_token_id().value_or(0));
//   auto result = t.train();
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "peft/peft_model.h"
#include "peft/train/data.h"
#include "peft/train/training_args.h"

namespace peft::distributed {
class Collective;
}

namespace peft::train {

struct TrainResult {
  int64_t global_step = 0;
  std::vector<double> step_losses;  ///< one per optimizer step (mean over its micro-batches)
  double train_loss = 0;            ///< mean of step_losses
  std::optional<double> eval_loss;
  std::string adapter_dir;          ///< where the final adapter was saved
  int64_t train_tokens = 0;         ///< tokens (padding excluded) fed to training in this call
  double train_seconds = 0;         ///< time in optimizer steps (no evaluation, no checkpoints)
  double train_cpu_seconds = 0;     ///< CPU time of the process (all threads) in those steps
  int64_t skipped_steps = 0;        ///< steps skipped for a non-finite loss or gradient (on_nonfinite: skip)
};

struct EvalResult {
  double loss = 0;
  double perplexity = 0;
  int64_t tokens = 0;
};

/// The eval loss of `model` on `d` as Trainer::evaluate computes it: batches of `batch_size` in
/// order, each batch's mean loss weighted by its loss tokens (rows for sequence classification,
/// whose loss follows the data's problem type); with `world` > 1 this rank takes every world-th
/// batch. Returns the weighted sum and the weight (the caller reduces over ranks and divides).
struct LossSum {
  double total = 0;
  int64_t tokens = 0;
};
LossSum eval_loss_sum(PeftModel& model, const Dataset& d, int64_t pad, int64_t batch_size, int rank = 0,
                      int world = 1);

/// The training loss logged at optimizer step `step` (1-based), as transformers' Trainer logs it:
/// the mean of the step losses since the previous logging step (the last multiple of
/// logging_steps before `step`), not the loss of `step` alone.
double logged_train_loss(const std::vector<double>& step_losses, int64_t step, int64_t logging_steps);

/// The learning-rate multiplier at optimizer step `step` (0-based), as transformers'
/// get_scheduler builds it.
double lr_lambda(const std::string& type, int64_t step, int64_t warmup, int64_t total);

/// A collated batch as model inputs: ids, mask, token types and, with `with_labels`, the task's
/// labels (token labels, class ids or regression targets, or seq2seq labels with the decoder ids).
models::ModelInputs to_model_inputs(const Batch& b, TaskFormat task, bool with_labels = true);

/// Multi-task classification (merge_tasks in data.h): `logits` [B, sum of num_labels] (sequence
/// classification) or [B, T, sum of num_labels] (token classification) with every class outside
/// each row's task set to -inf, so softmax, cross-entropy and argmax see only the row's own head.
/// row_tasks: one task index per row.
at::Tensor mask_to_tasks(const at::Tensor& logits, const std::vector<int64_t>& row_tasks,
                         const std::vector<TaskSpan>& tasks);

/// Writes one PEFT adapter folder per task, `dir/<task name>/`: the model's active adapter (the
/// shared prefix or LoRA weights) with only that task's rows of the classifier head (the
/// modules_to_save tensors whose first dimension is the joined label count), and task.json with the
/// task's name and label names. Each folder loads in peft.cpp or Python PEFT on the base model with
/// that task's num_labels, e.g. to continue on one task (`peft train ... adapter=dir/<task>`).
/// Written atomically per task. Throws ConfigError when the adapter has no such head.
void save_task_adapters(const PeftModel& model, const std::vector<TaskSpan>& tasks, const std::string& dir);

class Trainer {
 public:
  Trainer(std::shared_ptr<PeftModel> model, TrainingArguments args, Dataset train, const Dataset* eval,
          int64_t pad_token_id);
  ~Trainer();

  /// Trains to the end; with `resume_from` (a checkpoint folder written by this trainer)
  /// continues exactly where it stopped (adapter, optimizer, schedule, RNG and data position).
  TrainResult train(const std::string& resume_from = "");
  EvalResult evaluate();

  /// Called after every optimizer step with (step, loss, lr); used by tests and the CLI.
  std::function<void(int64_t, double, double)> on_step;

  /// Data-parallel training (docs/distributed.md): per_device_train_batch_size becomes the per-rank
  /// batch, gradients of trainable parameters are summed over ranks, and rank 0 alone logs and writes
  /// checkpoints and the adapter. Call before train()/evaluate(); nullptr = a single process.
  void set_collective(std::shared_ptr<distributed::Collective> collective);

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace peft::train
