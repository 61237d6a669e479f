// The optimiser and the learning-rate schedule. Mirrors transformers' Trainer.create_optimizer
// (no weight decay on biases and norm weights) and optimization.get_scheduler.
#include <ATen/Parallel.h>
#include <torch/types.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adamw.h>

#include <algorithm>
#include <cmath>
#include <initializer_list>

#include "adamw_kernel.h"
#include "models/cpu_kernels.h"
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

namespace {

bool fp32_dense_cpu(const at::Tensor& t) {
  return t.defined() && t.device().is_cpu() && t.scalar_type() == at::kFloat && t.layout() == at::kStrided &&
         t.is_contiguous();
}

// Elements per task of at::parallel_for: below this a parameter's update runs on one thread.
constexpr int64_t kGrain = 1 << 15;

// LibTorch's AdamW with the update of each fp32 CPU parameter as one pass over the parameter, its
// gradient and its two moments, instead of nine tensor operations and their temporaries. The
// state stays LibTorch's (AdamWParamState under LibTorch's key), so optimizer.pt is the same file
// either way; amsgrad, other dtypes and devices, and PEFT_FUSED_KERNELS=0 take AdamW::step.
class FusedAdamW : public torch::optim::AdamW {
 public:
  using AdamW::AdamW;
  using Key = std::decay_t<decltype(std::declval<torch::optim::AdamW&>().state())>::key_type;

  at::Tensor step(LossClosure closure = nullptr) override {
    // The parameters to update, each with its state (null before its first step); any that does
    // not fit the fused loop, a closure (it makes the gradients this check reads) or amsgrad sends
    // the whole step to LibTorch's.
    struct Item {
      at::Tensor p;
      const torch::optim::AdamWOptions* o;
      Key key;
      torch::optim::AdamWParamState* st;
    };
    std::vector<Item> items;
    bool fused = closure == nullptr && models::kernels::enabled();
    for (auto& group : param_groups_) {
      const auto* o = static_cast<const torch::optim::AdamWOptions*>(&group.options());
      fused = fused && !o->amsgrad();
      for (auto& p : group.params()) {
        if (!fused) break;
        if (!p.grad().defined()) continue;
        Key key = optimizer_state_key<Key>(p);
        torch::optim::AdamWParamState* st = nullptr;
        if (auto it = state_.find(key); it != state_.end()) {
          st = dynamic_cast<torch::optim::AdamWParamState*>(it->second.get());
          fused = st != nullptr && fp32_dense_cpu(st->exp_avg()) && fp32_dense_cpu(st->exp_avg_sq()) &&
                  st->exp_avg().numel() == p.numel() && st->exp_avg_sq().numel() == p.numel();
        }
        fused = fused && fp32_dense_cpu(p) && fp32_dense_cpu(p.grad());
        items.push_back({p, o, std::move(key), st});
      }
    }
    if (!fused) return AdamW::step(std::move(closure));
    at::NoGradGuard no_grad;
    for (auto& it : items) {
      const at::Tensor& p = it.p;
      const auto& o = *it.o;
      if (it.st == nullptr) {
        auto st = std::make_unique<torch::optim::AdamWParamState>();
        st->step(0);
        st->exp_avg(at::zeros_like(p, at::MemoryFormat::Preserve));
        st->exp_avg_sq(at::zeros_like(p, at::MemoryFormat::Preserve));
        it.st = st.get();
        state_[it.key] = std::move(st);
      }
      auto& st = *it.st;
      st.step(st.step() + 1);
      const double b1 = std::get<0>(o.betas()), b2 = std::get<1>(o.betas());
      const double bc1 = 1 - std::pow(b1, st.step()), bc2 = 1 - std::pow(b2, st.step());
      AdamWStep s;
      s.decay = o.weight_decay() != 0 ? static_cast<float>(1 - o.lr() * o.weight_decay()) : 1.0f;
      s.beta1 = static_cast<float>(b1);
      s.one_minus_beta1 = static_cast<float>(1 - b1);
      s.beta2 = static_cast<float>(b2);
      s.one_minus_beta2 = static_cast<float>(1 - b2);
      s.sqrt_bias_correction2 = static_cast<float>(std::sqrt(bc2));
      s.eps = static_cast<float>(o.eps());
      s.neg_step_size = static_cast<float>(-(o.lr() / bc1));
      float* pp = p.data_ptr<float>();
      const float* g = p.grad().data_ptr<float>();
      float* m = st.exp_avg().data_ptr<float>();
      float* v = st.exp_avg_sq().data_ptr<float>();
      at::parallel_for(0, p.numel(), kGrain,
                       [&](int64_t begin, int64_t end) { adamw_update(pp, g, m, v, begin, end, s); });
      // Written in place as LibTorch's in-place ops would, so bump the versions as they do: a
      // graph still holding the old values then fails loudly instead of using the new ones.
      for (const at::Tensor* t : std::initializer_list<const at::Tensor*>{&p, &st.exp_avg(), &st.exp_avg_sq()})
        t->unsafeGetTensorImpl()->bump_version();
    }
    return {};
  }
};

}  // namespace

std::unique_ptr<torch::optim::AdamW> make_fused_adamw(const std::vector<torch::optim::OptimizerParamGroup>& groups,
                                                      const torch::optim::AdamWOptions& defaults) {
  return std::make_unique<FusedAdamW>(groups, defaults);
}

double clip_grad_norm(const std::vector<at::Tensor>& params, double max_norm) {
  bool fused = models::kernels::enabled();
  std::vector<at::Tensor> grads;
  for (const auto& p : params) {
    if (!p.grad().defined()) continue;
    fused = fused && fp32_dense_cpu(p.grad());
    grads.push_back(p.grad());
  }
  if (!fused) return torch::nn::utils::clip_grad_norm_(params, max_norm);
  if (grads.empty()) return 0.0;
  double sum = 0.0;
  for (const auto& g : grads) {
    const float* d = g.data_ptr<float>();
    sum += at::parallel_reduce(
        0, g.numel(), kGrain, 0.0, [&](int64_t b, int64_t e, double acc) { return acc + sum_of_squares(d, b, e); },
        std::plus<double>());
  }
  // The norm and the coefficient round to fp32 as LibTorch's float tensors do: max_norm /
  // (norm + 1e-6) is reciprocal() * max_norm there, clamped at 1 (a factor of 1 changes nothing).
  const float total = static_cast<float>(std::sqrt(sum));
  const float coef = (1.0f / (total + 1e-6f)) * static_cast<float>(max_norm);
  if (!(coef >= 1.0f)) {  // NaN scales too, as LibTorch's clamp passes it on
    for (auto& g : grads) {
      float* d = g.data_ptr<float>();
      at::parallel_for(0, g.numel(), kGrain, [&](int64_t b, int64_t e) { scale_in_place(d, b, e, coef); });
      g.unsafeGetTensorImpl()->bump_version();
    }
  }
  return static_cast<double>(total);
}

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
  return make_fused_adamw(groups, opts);
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
