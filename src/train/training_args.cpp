// TrainingArguments' checks (torch-free).
#include "peft/train/training_args.h"

#include "peft/core/check.h"

namespace peft::train {

void TrainingArguments::validate() const {
  auto need = [](bool ok, const char* field, const std::string& what) {
    PEFT_CHECK(ok, ConfigError, "[TrainingArguments] ", field, ": ", what);
  };
  need(learning_rate > 0, "learning_rate", "must be > 0, got " + std::to_string(learning_rate));
  // The optimizer keeps it in float32 next to the weights.
  need(learning_rate <= 1e6, "learning_rate", "must be at most 1e6 (a float32 update step), got " +
                                                  std::to_string(learning_rate));
  need(weight_decay >= 0 && weight_decay <= 1e6, "weight_decay", "must be in [0, 1e6]");
  need(per_device_train_batch_size > 0, "per_device_train_batch_size", "must be > 0");
  need(per_device_eval_batch_size > 0, "per_device_eval_batch_size", "must be > 0");
  need(gradient_accumulation_steps > 0, "gradient_accumulation_steps", "must be > 0");
  need(max_steps > 0 || num_train_epochs > 0, "num_train_epochs", "must be > 0 when max_steps is not set");
  need(warmup_ratio >= 0 && warmup_ratio <= 1, "warmup_ratio", "must be in [0, 1]");
  need(max_grad_norm >= 0, "max_grad_norm", "must be >= 0");
  need(on_nonfinite == "stop" || on_nonfinite == "skip", "on_nonfinite",
       "must be stop or skip, got '" + on_nonfinite + "'");
  need(lr_scheduler_type == "linear" || lr_scheduler_type == "cosine" || lr_scheduler_type == "constant" ||
           lr_scheduler_type == "constant_with_warmup",
       "lr_scheduler_type", "'" + lr_scheduler_type + "' is not one of linear, cosine, constant, constant_with_warmup");
  need(logging_steps >= 0 && eval_steps >= 0 && save_steps >= 0, "logging_steps/eval_steps/save_steps", "must be >= 0");
}

}  // namespace peft::train
