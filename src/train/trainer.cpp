// The training loop. Mirrors transformers' Trainer (gradient accumulation, clipping, the log and
// checkpoint cadence); the optimiser and schedule are optim.cpp, checkpoints and resume
// checkpoint.cpp, the reports progress.cpp and the multi-task heads multitask.cpp.
#include "peft/train/trainer.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <torch/optim/adamw.h>
#include <torch/version.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <limits>
#include <optional>
#include <sstream>

#include "peft/core/check.h"
#include "peft/core/error_context.h"
#include "peft/distributed/collective.h"
#include "peft/models/blocks.h"
#include "peft/train/metrics.h"
#include "peft/train/sampler.h"
#include "peft/tuners/tuner_model.h"
#include "trainer_impl.h"

namespace peft::train {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct Trainer::State {
  std::shared_ptr<PeftModel> model;
  TrainingArguments args;
  Dataset train, eval;
  bool has_eval = false;
  int64_t pad = 0;
  std::unique_ptr<torch::optim::AdamW> opt;
  std::vector<at::Tensor> params;
  detail::Progress progress;
  std::shared_ptr<distributed::Collective> dist;  // null: a single process
  int rank() const { return dist ? dist->rank() : 0; }
  int world() const { return dist ? dist->world_size() : 1; }

  /// What one optimizer step did: its loss, its input tokens (all ranks) and the tuner's scalars.
  struct Step {
    double loss = 0;
    double grad_norm = 0;
    bool nonfinite = false;  ///< loss or gradient norm NaN/inf: the optimizer did not step
    int64_t tokens = 0;
    detail::TunerScalars tuner;
  };
  Step optimizer_step(const std::vector<std::vector<int64_t>>& batches, int64_t first, TaskFormat task,
                      int64_t global_step);
};

namespace {

// bf16 autocast on the CPU for the training loop's lifetime, off again however the loop ends.
struct ScopedCpuAutocast {
  explicit ScopedCpuAutocast(bool on) : on_(on) {
    if (on_) set(true);
  }
  ~ScopedCpuAutocast() {
    if (on_) set(false);
  }
  ScopedCpuAutocast(const ScopedCpuAutocast&) = delete;
  ScopedCpuAutocast& operator=(const ScopedCpuAutocast&) = delete;

 private:
  static void set(bool enabled) {
#if TORCH_VERSION_MAJOR >= 2
    at::autocast::set_autocast_enabled(at::kCPU, enabled);
    if (enabled) at::autocast::set_autocast_dtype(at::kCPU, at::kBFloat16);
#else
    at::autocast::set_cpu_enabled(enabled);
    if (enabled) at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
#endif
  }
  bool on_;
};

// The batch loss: the model's own; for sequence classification the loss of the data's problem type
// (whatever config.json's problem_type says); for multi-task data the cross-entropy over each row's head.
at::Tensor forward_loss(PeftModel& model, const Batch& b, TaskFormat task, const Dataset& d) {
  models::ModelInputs in = to_model_inputs(b, task);
  if (!d.tasks.empty() && (task == TaskFormat::SeqCls || task == TaskFormat::TokenCls))
    return detail::multitask_loss(model, std::move(in), b.seq_tasks, task, d.tasks);
  if (task != TaskFormat::SeqCls) {
    in.loss_only = true;  // no [B, T, vocab] logits when the model can do without
    return model.forward(in).loss;
  }
  const at::Tensor labels = in.labels;
  in.labels = at::Tensor();
  return models::sequence_classification_loss(model.forward(in).logits, labels, problem_type(d));
}

// The left axis of loss.png: the loss forward_loss computes.
std::string loss_label(TaskFormat task, const Dataset& d) {
  if (task != TaskFormat::SeqCls) return "loss (cross-entropy, nats per token)";
  const std::string p = d.tasks.empty() ? problem_type(d) : "single_label_classification";
  if (p == "regression") return "loss (mean squared error)";
  if (p == "multi_label_classification") return "loss (binary cross-entropy, nats per label)";
  return "loss (cross-entropy, nats per example)";
}

TaskFormat task_of(const models::PretrainedModel& m) {
  switch (m.head()) {
    case models::TaskHead::SeqCls: return TaskFormat::SeqCls;
    case models::TaskHead::TokenCls: return TaskFormat::TokenCls;
    case models::TaskHead::Seq2SeqLM: return TaskFormat::Seq2Seq;
    default: return TaskFormat::CausalLM;
  }
}

// Tokens that carry loss in a batch (the weight of its mean loss).
int64_t loss_tokens(const Batch& b, TaskFormat task) {
  if (task == TaskFormat::SeqCls) return b.rows;
  int64_t n = 0;
  const int64_t shift = task == TaskFormat::CausalLM ? 1 : 0;
  const int64_t cols = task == TaskFormat::Seq2Seq ? static_cast<int64_t>(b.labels.size()) / std::max<int64_t>(1, b.rows) : b.cols;
  for (int64_t r = 0; r < b.rows; ++r)
    for (int64_t c = shift; c < cols; ++c) n += b.labels[r * cols + c] != -100;
  return n;
}

// Sums the trainable parameters' gradients and the step loss over the ranks, in one bucketed
// all-reduce. A presence flag per parameter keeps "no gradient on any rank" undefined, as in a
// single process (AdamW skips such parameters); a rank with an empty batch contributes zeros.
void all_reduce_grads(distributed::Collective& dist, const std::vector<at::Tensor>& params, double& step_loss) {
  at::Tensor extra = at::zeros({static_cast<int64_t>(params.size()) + 1}, at::kDouble);
  auto* e = extra.data_ptr<double>();
  std::vector<at::Tensor> grads;
  for (std::size_t i = 0; i < params.size(); ++i) {
    at::Tensor p = params[i];
    e[i] = p.grad().defined() ? 1.0 : 0.0;
    if (!p.grad().defined()) p.mutable_grad() = at::zeros_like(p);
    grads.push_back(p.grad());
  }
  e[params.size()] = step_loss;
  grads.push_back(extra);
  dist.all_reduce_sum(grads);
  for (std::size_t i = 0; i < params.size(); ++i)
    if (e[i] == 0.0) at::Tensor(params[i]).mutable_grad() = at::Tensor();
  step_loss = e[params.size()];
}

}  // namespace

// gradient_accumulation_steps micro-batches from batches[first], weighted by their loss tokens so
// accumulation equals one big batch; gradients summed over the ranks; clip; AdamW; the tuner's
// work between the optimizer step and zero_grad (AdaLoRA's rank allocation).
models::ModelInputs to_model_inputs(const Batch& b, TaskFormat task, bool with_labels) {
  const auto L = at::TensorOptions().dtype(at::kLong);
  models::ModelInputs in;
  in.input_ids = at::tensor(b.input_ids, L).view({b.rows, b.cols});
  in.attention_mask = at::tensor(b.attention_mask, L).view({b.rows, b.cols});
  if (!b.token_type_ids.empty()) in.token_type_ids = at::tensor(b.token_type_ids, L).view({b.rows, b.cols});
  if (!with_labels) return in;
  switch (task) {
    case TaskFormat::SeqCls:
      // Class ids; float multi-hot rows (multi-label); float targets (regression).
      if (!b.seq_multi_hot.empty()) in.labels = at::tensor(b.seq_multi_hot, at::kFloat).view({b.rows, -1});
      else if (!b.seq_labels.empty()) in.labels = at::tensor(b.seq_labels, L);
      else in.labels = at::tensor(b.seq_values, at::kDouble).to(at::kFloat);
      break;
    case TaskFormat::Seq2Seq:
      in.labels = at::tensor(b.labels, L).view({b.rows, -1});
      if (!b.decoder_input_ids.empty()) in.decoder_input_ids = at::tensor(b.decoder_input_ids, L).view({b.rows, b.decoder_cols});
      break;
    default:
      in.labels = at::tensor(b.labels, L).view({b.rows, b.cols});
  }
  return in;
}

Trainer::State::Step Trainer::State::optimizer_step(const std::vector<std::vector<int64_t>>& batches, int64_t first,
                                                    TaskFormat task, int64_t global_step) {
  std::vector<Batch> micro;
  int64_t n_all = 0;
  Step out;
  for (int64_t k = 0; k < args.gradient_accumulation_steps; ++k) {
    const auto& idx = batches[first + k];  // empty on a rank past the end of a short last batch
    micro.push_back(idx.empty() ? Batch{} : collate(train, idx, pad));
    n_all += loss_tokens(micro.back(), task);
    out.tokens += micro.back().n_tokens;
  }
  if (dist) {  // weights over the loss tokens of all ranks: N ranks x b equals 1 x N*b
    at::Tensor counts = at::tensor({n_all, out.tokens}, at::kLong);
    dist->all_reduce_sum({counts});
    n_all = counts[0].item<int64_t>();
    out.tokens = counts[1].item<int64_t>();
  }
  for (const auto& b : micro) {
    const int64_t n = loss_tokens(b, task);
    if (n == 0) continue;
    at::Tensor loss = forward_loss(*model, b, task, train);
    const double w = static_cast<double>(n) / static_cast<double>(std::max<int64_t>(1, n_all));
    (loss * w).backward();
    out.loss += loss.item<double>() * w;
  }
  if (dist) all_reduce_grads(*dist, params, out.loss);
  // The total gradient norm (clipped to max_grad_norm; an infinite bound only measures it). A NaN
  // or infinite loss or norm stops here, before the optimizer touches a weight.
  out.grad_norm = detail::clip_grad_norm(
      params, args.max_grad_norm > 0 ? args.max_grad_norm : std::numeric_limits<double>::infinity());
  if (!std::isfinite(out.loss) || !std::isfinite(out.grad_norm)) {
    out.nonfinite = true;
    opt->zero_grad();
    return out;
  }
  opt->step();
  out.tuner = model->on_optimizer_step(global_step);
  opt->zero_grad();
  return out;
}

Trainer::Trainer(std::shared_ptr<PeftModel> model, TrainingArguments args, Dataset train, const Dataset* eval,
                 int64_t pad_token_id)
    : s_(std::make_unique<State>()) {
  args.validate();
  PEFT_CHECK(!train.examples.empty(), ConfigError, "[Trainer] the training dataset is empty");
  s_->model = std::move(model);
  s_->args = std::move(args);
  s_->train = std::move(train);
  if (eval) {
    s_->eval = *eval;
    s_->has_eval = !eval->examples.empty();
  }
  s_->pad = pad_token_id;
  if (s_->has_eval && !s_->train.tasks.empty()) detail::check_same_tasks(s_->train.tasks, s_->eval.tasks);
  s_->opt = detail::make_optimizer(*s_->model, s_->args, s_->params);
}

Trainer::~Trainer() = default;

LossSum eval_loss_sum(PeftModel& model, const Dataset& d, int64_t pad, int64_t batch_size, int rank, int world) {
  auto& m = model.base_model();
  const bool was_training = m.is_training();
  m.eval();
  torch::NoGradGuard ng;
  const TaskFormat task = task_of(m);
  LossSum r;
  int64_t i = -1;
  for (const auto& idx : make_batches(d, batch_size, false, 0, false)) {
    if (++i % world != rank) continue;  // eval batches are dealt out over the ranks
    const Batch b = collate(d, idx, pad);
    const int64_t n = loss_tokens(b, task);
    if (n == 0) continue;
    r.total += forward_loss(model, b, task, d).item<double>() * static_cast<double>(n);
    r.tokens += n;
  }
  if (was_training) m.train();
  return r;
}

double logged_train_loss(const std::vector<double>& step_losses, int64_t step, int64_t logging_steps) {
  PEFT_CHECK(step >= 1 && step <= static_cast<int64_t>(step_losses.size()), std::invalid_argument,
             "[logged_train_loss] step ", step, " of ", step_losses.size(), " step losses");
  // transformers accumulates tr_loss over the steps since the last log and logs its mean.
  // Skipped non-finite steps are left out (transformers' logging_nan_inf_filter).
  const int64_t last = logging_steps > 0 ? (step - 1) / logging_steps * logging_steps : step - 1;
  double sum = 0;
  int64_t n = 0;
  for (int64_t k = last; k < step; ++k)
    if (const double l = step_losses[static_cast<std::size_t>(k)]; std::isfinite(l)) {
      sum += l;
      ++n;
    }
  return n > 0 ? sum / static_cast<double>(n) : std::numeric_limits<double>::quiet_NaN();
}

void Trainer::set_collective(std::shared_ptr<distributed::Collective> collective) { s_->dist = std::move(collective); }

EvalResult Trainer::evaluate() {
  EvalResult r;
  if (!s_->has_eval) return r;
  auto& m = s_->model->base_model();
  const bool was_training = m.is_training();
  m.eval();
  torch::NoGradGuard ng;
  const LossSum sum = eval_loss_sum(*s_->model, s_->eval, s_->pad, s_->args.per_device_eval_batch_size, s_->rank(),
                                    s_->world());
  double total = sum.total;
  r.tokens = sum.tokens;
  if (s_->dist) {
    at::Tensor sums = at::tensor({total, static_cast<double>(r.tokens)}, at::kDouble);
    s_->dist->all_reduce_sum({sums});
    total = sums[0].item<double>();
    r.tokens = static_cast<int64_t>(sums[1].item<double>());
  }
  r.loss = r.tokens ? total / static_cast<double>(r.tokens) : 0.0;
  r.perplexity = perplexity(r.loss);
  if (was_training) m.train();
  return r;
}

TrainResult Trainer::train(const std::string& resume_from) {
  auto& a = s_->args;
  auto& m = s_->model->base_model();
  const TaskFormat task = task_of(m);
  // Rank 0 alone writes (logs, checkpoints, adapter). Every rank draws the same epoch order and
  // takes its slice of each global batch (world x per-device batch), so one process is world 1.
  const bool main_rank = s_->rank() == 0;
  if (main_rank) {
    fs::create_directories(a.output_dir);
    detail::remove_stale_temp_folders(a.output_dir);
  }
  const DistributedSampler sampler(a.per_device_train_batch_size, s_->rank(), s_->world(), a.shuffle,
                                   static_cast<uint64_t>(a.seed), a.group_by_length);
  detail::RunState run;
  run.examples = static_cast<int64_t>(s_->train.examples.size());
  run.global_batch = run.order_batch = sampler.global_batch();
  run.world = s_->world();
  const detail::Schedule schedule = detail::make_schedule(a, run.examples, run.global_batch);
  run.total = schedule.total;
  run.total_from = a.max_steps > 0 ? "max_steps" : "num_train_epochs";
  at::manual_seed(static_cast<uint64_t>(a.seed));
  if (!resume_from.empty()) {
    ErrorContext ctx("resuming from " + resume_from);
    detail::load_checkpoint(resume_from, *s_->model, *s_->opt, a.per_device_train_batch_size, run);
  }
  s_->progress.start(a, main_rank, run.total);
  auto checkpoint = [&] {
    ErrorContext ctx("writing the checkpoint of step " + std::to_string(run.step) + " to " + a.output_dir);
    if (main_rank) detail::save_checkpoint(a.output_dir, *s_->model, *s_->opt, run);
  };
  auto evaluate_and_log = [&] {
    ErrorContext ctx("evaluating after step " + std::to_string(run.step));
    const EvalResult e = evaluate();
    s_->progress.eval(run.step, e);
    return e;
  };

  TrainResult res;
  m.train();
  m.set_gradient_checkpointing(a.gradient_checkpointing);
  std::optional<ScopedCpuAutocast> autocast(std::in_place, a.bf16);
  while (run.step < run.total) {
    const auto batches = sampler.rank_batches(s_->train, run.epoch, run.order_batch, run.epoch_start);
    while (run.step < run.total && run.batch_pos + a.gradient_accumulation_steps <= static_cast<int64_t>(batches.size())) {
      ErrorContext ctx("training step " + std::to_string(run.step + 1));
      const auto t0 = Clock::now();
      const std::clock_t c0 = std::clock();  // CPU time of every thread of the process
      const double lr = schedule.lr_at(run.step);
      detail::set_learning_rate(*s_->opt, lr);
      const State::Step st = s_->optimizer_step(batches, run.batch_pos, task, run.step + 1);
      if (st.nonfinite) {
        auto show = [](double v) {  // "nan" whatever the sign bit; inf with its sign
          if (std::isnan(v)) return std::string("nan");
          std::ostringstream o;
          o << v;
          return o.str();
        };
        std::ostringstream what;
        what << "step " << run.step + 1 << ": the training loss is " << show(st.loss) << " and the gradient norm "
             << show(st.grad_norm);
        if (a.on_nonfinite == "stop") {
          const std::string last = detail::newest_checkpoint(a.output_dir, run.step);
          const std::string saved =
              last.empty() ? "no checkpoint was written before it" : "the last checkpoint, " + last + ", is intact";
          throw std::runtime_error("[train] " + what.str() + "; stopped before updating the weights (" + saved +
                                   "; no adapter was saved). Lower learning_rate, check the data and the base "
                                   "model's weights, or set on_nonfinite: skip to skip such steps");
        }
        ++res.skipped_steps;
        if (main_rank) std::cerr << "warning: " << what.str() << "; step skipped (on_nonfinite: skip)\n";
      }
      run.batch_pos += a.gradient_accumulation_steps;
      ++run.step;
      res.train_seconds += std::chrono::duration<double>(Clock::now() - t0).count();
      res.train_cpu_seconds += static_cast<double>(std::clock() - c0) / CLOCKS_PER_SEC;
      res.train_tokens += st.tokens;
      run.step_losses.push_back(st.loss);
      if (!st.nonfinite) s_->progress.add_train_loss(run.step, st.loss);
      if (on_step) on_step(run.step, st.loss, lr);
      s_->progress.step(run.step, st.loss, logged_train_loss(run.step_losses, run.step, a.logging_steps), lr,
                        run.epoch, st.tuner, res.train_tokens);
      const bool last = run.step == run.total;
      if (a.eval_steps > 0 && run.step % a.eval_steps == 0 && !last && s_->has_eval) evaluate_and_log();
      if (a.save_steps > 0 && run.step % a.save_steps == 0 && !last) checkpoint();
    }
    if (run.step < run.total) run.next_epoch();
  }
  s_->progress.end_bar();
  autocast.reset();
  m.eval();
  if (s_->dist) s_->dist->barrier();  // every rank finished: nothing is written after a lost rank
  checkpoint();
  res.global_step = run.step;
  res.step_losses = run.step_losses;
  double sum = 0;
  int64_t counted = 0;
  for (double l : res.step_losses)
    if (std::isfinite(l)) {  // skipped non-finite steps are left out
      sum += l;
      ++counted;
    }
  res.train_loss = counted == 0 ? 0 : sum / static_cast<double>(counted);
  if (s_->has_eval) res.eval_loss = evaluate_and_log().loss;
  // A full fine-tune is a model folder, not an adapter.
  res.adapter_dir = (fs::path(a.output_dir) / (s_->model->tuner().saves_adapter_config() ? "adapter" : "model")).string();
  if (!main_rank) return res;
  detail::save_final_adapter(res.adapter_dir, *s_->model);
  s_->progress.finish(a.output_dir, loss_label(task, s_->train));
  return res;
}

}  // namespace peft::train
