#pragma once
// The parts of the trainer that src/train/*.cpp share (private): the run's position and its
// checkpoints (checkpoint.cpp), the optimiser and schedule (optim.cpp), what a run reports
// (progress.cpp) and the multi-task loss (multitask.cpp).
#include <ATen/core/Tensor.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "peft/train/trainer.h"

namespace torch::optim {
class AdamW;
struct AdamWOptions;
class Optimizer;
class OptimizerParamGroup;
}  // namespace torch::optim

namespace peft::train {

class TensorBoardWriter;

namespace detail {

/// A tuner's scalars after an optimizer step (PeftModel::on_optimizer_step), e.g. AdaLoRA's budget.
using TunerScalars = std::vector<std::pair<std::string, double>>;

// ---------------------------------------------------------------- optim.cpp

/// AdamW over the model's trainable parameters, the prompt encoder's included; biases and norm
/// weights get no weight decay (transformers' grouping). `params` receives every one of them.
std::unique_ptr<torch::optim::AdamW> make_optimizer(PeftModel& model, const TrainingArguments& args,
                                                    std::vector<at::Tensor>& params);

/// A parameter's key in a LibTorch optimizer's state map (`Key`: the map's key_type). LibTorch
/// 1.13 keys the state by the TensorImpl's address printed to a string, LibTorch 2.x by the
/// address itself.
template <typename Key>
Key optimizer_state_key(const at::Tensor& p) {
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream key;
    key << p.unsafeGetTensorImpl();
    return key.str();
  } else {
    return static_cast<Key>(p.unsafeGetTensorImpl());
  }
}

/// LibTorch's AdamW (same options, state and optimizer.pt) whose step updates each fp32 CPU
/// parameter in one fused pass; make_optimizer's optimizer.
std::unique_ptr<torch::optim::AdamW> make_fused_adamw(const std::vector<torch::optim::OptimizerParamGroup>& groups,
                                                      const torch::optim::AdamWOptions& defaults);

/// The gradients' total 2-norm, and each gradient scaled by max_norm / (norm + 1e-6) when that is
/// below 1 (torch.nn.utils.clip_grad_norm_). fp32 CPU gradients in one pass each.
double clip_grad_norm(const std::vector<at::Tensor>& params, double max_norm);

/// The learning rate of every parameter group.
void set_learning_rate(torch::optim::AdamW& opt, double lr);

/// The run's length and learning-rate schedule (transformers' get_scheduler).
struct Schedule {
  int64_t total = 0;   ///< optimizer steps: max_steps, or num_train_epochs of the data
  int64_t warmup = 0;  ///< warmup_steps, or warmup_ratio of total
  double learning_rate = 0;
  std::string type;
  /// The learning rate of optimizer step `step` (0-based).
  double lr_at(int64_t step) const { return learning_rate * lr_lambda(type, step, warmup, total); }
};
/// `examples` split into global batches of `global_batch`, gradient_accumulation_steps per step.
Schedule make_schedule(const TrainingArguments& args, int64_t examples, int64_t global_batch);

// ---------------------------------------------------------------- checkpoint.cpp

/// Where a run stands, and what a checkpoint's trainer_state.json records of it, so that a resume
/// (with any world size) continues with the same batches.
struct RunState {
  int64_t examples = 0;      ///< training examples
  int64_t global_batch = 0;  ///< per-device batch x ranks
  int world = 1;
  int64_t total = 0;         ///< optimizer steps of the run
  std::string total_from = "max_steps";  ///< the config key that set `total`
  int64_t step = 0;          ///< optimizer steps done
  int64_t epoch = 0;
  /// The epoch's batches start after epoch_start examples of an order drawn with order_batch; both
  /// are saved, so a resume with another world size continues the same order.
  int64_t epoch_start = 0, order_batch = 0;
  int64_t batch_pos = 0;     ///< batches of the epoch done since epoch_start
  std::vector<double> step_losses;  ///< one per optimizer step, the resumed ones included

  void next_epoch() {
    ++epoch;
    batch_pos = 0;
    epoch_start = 0;
    order_batch = global_batch;
  }
};

/// Writes `output_dir/checkpoint-<step>/`: the active adapter, the tuner state (if any), the
/// optimizer, the RNG and trainer_state.json, into a temp folder then put in place
/// (replace_folder), so a kill leaves either the old state or the new; a failed write removes the
/// temp folder before the error goes on.
void save_checkpoint(const std::string& output_dir, PeftModel& model, const torch::optim::Optimizer& opt,
                     const RunState& run);

/// Restores a checkpoint written by save_checkpoint into the model, the optimizer, the RNG and
/// `run`'s position and losses (checkpoints from before data-parallel support: `per_device_batch`).
void load_checkpoint(const std::string& dir, PeftModel& model, torch::optim::Optimizer& opt,
                     int64_t per_device_batch, RunState& run);

/// Removes what a killed run left in `output_dir`: the temp folders of a checkpoint or adapter
/// being written (.checkpoint-<N>.tmp, .adapter.tmp, .model.tmp; only those names).
void remove_stale_temp_folders(const std::string& output_dir);

/// Saves the active adapter in the folder `dst` (written beside it, then renamed).
void save_final_adapter(const std::string& dst, const PeftModel& model);

/// The newest output_dir/checkpoint-N folder with N <= max_step (save_checkpoint's naming); ""
/// when there is none.
std::string newest_checkpoint(const std::string& output_dir, int64_t max_step);

/// The active adapter's files (adapter_config.json, adapter_model.safetensors and the prompt
/// encoder sidecar) directly in `dir`, whatever the adapter's name (save_pretrained puts a
/// non-default adapter in a sub-folder).
void save_active_adapter_flat(const PeftModel& model, const std::filesystem::path& dir);

// ---------------------------------------------------------------- progress.cpp

/// What a run reports, on rank 0 only: metrics.jsonl, TensorBoard scalars, a progress bar with an
/// ETA on a terminal (a line per logging step otherwise), and loss.png at the end.
class Progress {
 public:
  Progress();
  ~Progress();

  /// Opens output_dir/metrics.jsonl (appending) and, with args.tensorboard, the TensorBoard writer
  /// in output_dir/runs; starts the clock of the tokens/s and ETA figures.
  void start(const TrainingArguments& args, bool main_rank, int64_t total);
  /// The point (step, loss) of the training curve in loss.png.
  void add_train_loss(int64_t step, double loss);
  /// After optimizer step `step`: the log line (every logging_steps and at the last step, with
  /// `logged_loss`, the mean since the previous log line) and the bar (with the step's `loss`).
  void step(int64_t step, double loss, double logged_loss, double lr, int64_t epoch, const TunerScalars& tuner,
            int64_t tokens_seen);
  /// An evaluation at `step`: metrics.jsonl, TensorBoard and the eval curve.
  void eval(int64_t step, const EvalResult& e);
  /// Ends the bar's line on the terminal.
  void end_bar();
  /// Flushes TensorBoard and writes output_dir/loss.png ("Training loss — <run_name>", the losses
  /// against `loss_label`, the learning rate of every step on the right axis).
  void finish(const std::string& output_dir, const std::string& loss_label);

 private:
  void log(const nlohmann::json& line);
  bool main_rank_ = false, tty_ = false;
  int64_t logging_steps_ = 0, total_ = 0;
  std::string run_name_;
  std::chrono::steady_clock::time_point t0_;
  std::unique_ptr<TensorBoardWriter> tb_;
  std::ofstream metrics_;
  std::vector<std::pair<int64_t, double>> train_curve_, eval_curve_, lr_curve_;
};

// ---------------------------------------------------------------- multitask.cpp

/// The loss of a multi-task classification batch: the model's logits masked to each row's task
/// (mask_to_tasks), then the cross-entropy against `labels` (in's labels are set aside).
at::Tensor multitask_loss(PeftModel& model, models::ModelInputs in, const std::vector<int64_t>& row_tasks,
                          TaskFormat task, const std::vector<TaskSpan>& tasks);

/// Throws ConfigError unless the evaluation set joins the training set's tasks with the same labels.
void check_same_tasks(const std::vector<TaskSpan>& train, const std::vector<TaskSpan>& eval);

}  // namespace detail
}  // namespace peft::train
