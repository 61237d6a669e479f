#pragma once
// The trainer's settings (tier 0: torch-free), named as transformers' TrainingArguments; what a run
// config's training keys set (train/run_config.h) and what the Trainer runs with (train/trainer.h).
#include <cstdint>
#include <string>

namespace peft::train {

struct TrainingArguments {
  std::string output_dir = "output";
  /// Names the run in loss.png's title (transformers' run_name); empty = output_dir's folder name.
  std::string run_name;
  double learning_rate = 5e-5;
  double weight_decay = 0.0;
  double adam_beta1 = 0.9, adam_beta2 = 0.999, adam_epsilon = 1e-8;
  double max_grad_norm = 1.0;  ///< 0 = no clipping
  double num_train_epochs = 3.0;
  int64_t max_steps = -1;  ///< > 0 overrides num_train_epochs
  int64_t per_device_train_batch_size = 8;
  int64_t per_device_eval_batch_size = 8;
  int64_t gradient_accumulation_steps = 1;
  std::string lr_scheduler_type = "linear";  ///< linear | cosine | constant | constant_with_warmup
  double warmup_ratio = 0.0;
  int64_t warmup_steps = 0;  ///< > 0 overrides warmup_ratio
  int64_t logging_steps = 10;
  int64_t eval_steps = 0;  ///< 0 = evaluate only at the end
  int64_t save_steps = 0;  ///< 0 = checkpoint only at the end
  int64_t seed = 42;
  bool group_by_length = false;
  bool gradient_checkpointing = false;
  bool bf16 = false;
  bool shuffle = true;
  bool progress_bar = true;  ///< on a terminal; plain log lines otherwise
  bool tensorboard = true;
  /// A step whose loss or gradient norm is NaN or infinite: "stop" (the default) ends the run
  /// with an error naming the step, before any weight changes, and nothing is saved after the last
  /// checkpoint; "skip" leaves the weights and the optimizer state as they were and goes on (the
  /// step counts for the schedule; its loss is left out of the logged means).
  std::string on_nonfinite = "stop";

  /// Rejects impossible values with "[TrainingArguments] field: ..." (ConfigError).
  void validate() const;
};

}  // namespace peft::train
