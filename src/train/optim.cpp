// The optimiser and the learning-rate schedule. Mirrors transformers' Trainer.create_optimizer
// (no weight decay on biases and norm weights) and optimization.get_scheduler.
#include <torch/optim/adamw.h>

#include <algorithm>
#include <cmath>

#include "peft/core/check.h"
#include "trainer_impl.h"

namespace peft::train {

double lr_lambda(const std::string& type, int64_t step, int64_t warmup, int64_t total) {
  if (type == "constant") return 1.0;
  if (step < warmup) return static_cast<double>(step) / std::max<int64_t>(1, warmup);
  if (type == "constant_with_warmup") return 1.0;
  const double progress = static_cast<double>(step - warmup) / std::max<int64_t>(1, total - warmup);
  if (type == "cosine") return std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * progress)));
  return std::max(0.0, static_cast<double>(total - step) / std::max<int64_t>(1, total - warmup));
}

namespace detail {

std::unique_ptr<torch::optim::AdamW> make_optimizer(PeftModel& model, const TrainingArguments& args,
                                                    std::vector<at::Tensor>& params) {
  // AdamW over trainable parameters only: the base model's, then the tuner's own (prompt encoders,
  // PEFT's prompt_encoder). No decay on biases, and on the base model's norm weights.
  std::vector<at::Tensor> decay, no_decay;
  const auto base_params = model.base_model().named_parameters(true);
  for (const auto& [n, p] : model.named_trainable_parameters()) {
    const bool in_base = base_params.contains(n) && base_params[n].is_same(p);
    const bool nd = in_base ? n.size() >= 5 && (n.compare(n.size() - 5, 5, ".bias") == 0 ||
                                                n.find("norm") != std::string::npos ||
                                                n.find("LayerNorm") != std::string::npos)
                            : n.size() >= 4 && n.compare(n.size() - 4, 4, "bias") == 0;
    (nd ? no_decay : decay).push_back(p);
    params.push_back(p);
  }
  PEFT_CHECK(!params.empty(), ConfigError, "[Trainer] the model has no trainable parameters (is the adapter in inference mode?)");
  auto opts = torch::optim::AdamWOptions(args.learning_rate)
                  .betas({args.adam_beta1, args.adam_beta2})
                  .eps(args.adam_epsilon)
                  .weight_decay(args.weight_decay);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  if (!decay.empty()) groups.emplace_back(decay, std::make_unique<torch::optim::AdamWOptions>(opts));
  if (!no_decay.empty()) {
    auto o = std::make_unique<torch::optim::AdamWOptions>(opts);
    o->weight_decay(0.0);
    groups.emplace_back(no_decay, std::move(o));
  }
  return std::make_unique<torch::optim::AdamW>(groups, opts);
}

void set_learning_rate(torch::optim::AdamW& opt, double lr) {
  for (auto& g : opt.param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
}

Schedule make_schedule(const TrainingArguments& args, int64_t examples, int64_t global_batch) {
  const int64_t batches_per_epoch = (examples + global_batch - 1) / global_batch;
  const int64_t steps_per_epoch = std::max<int64_t>(1, batches_per_epoch / args.gradient_accumulation_steps);
  Schedule s;
  s.total = args.max_steps > 0 ? args.max_steps : static_cast<int64_t>(std::ceil(args.num_train_epochs * steps_per_epoch));
  s.warmup = args.warmup_steps > 0 ? args.warmup_steps : static_cast<int64_t>(std::ceil(args.warmup_ratio * s.total));
  s.learning_rate = args.learning_rate;
  s.type = args.lr_scheduler_type;
  return s;
}

}  // namespace detail
}  // namespace peft::train
