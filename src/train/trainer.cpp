// The training loop. Mirrors transformers' Trainer (optimizer grouping, get_scheduler,
// gradient accumulation, clipping, checkpoint layout) in one readable file.
#include "peft/train/trainer.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adamw.h>
#include <torch/serialize.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "peft/core/check.h"
#include "peft/core/file_util.h"
#include "peft/distributed/collective.h"
#include "peft/train/sampler.h"
#include "peft/core/json_file.h"
#include "peft/io/tensor_bridge.h"
#include "peft/train/event_writer.h"
#include "peft/train/metrics.h"
#include "peft/train/plot.h"

namespace peft::train {

namespace fs = std::filesystem;
using nlohmann::json;

void TrainingArguments::validate() const {
  auto need = [](bool ok, const char* field, const std::string& what) {
    PEFT_CHECK(ok, ConfigError, "[TrainingArguments] ", field, ": ", what);
  };
  need(learning_rate > 0, "learning_rate", "must be > 0, got " + std::to_string(learning_rate));
  need(weight_decay >= 0, "weight_decay", "must be >= 0");
  need(per_device_train_batch_size > 0, "per_device_train_batch_size", "must be > 0");
  need(per_device_eval_batch_size > 0, "per_device_eval_batch_size", "must be > 0");
  need(gradient_accumulation_steps > 0, "gradient_accumulation_steps", "must be > 0");
  need(max_steps > 0 || num_train_epochs > 0, "num_train_epochs", "must be > 0 when max_steps is not set");
  need(warmup_ratio >= 0 && warmup_ratio <= 1, "warmup_ratio", "must be in [0, 1]");
  need(max_grad_norm >= 0, "max_grad_norm", "must be >= 0");
  need(lr_scheduler_type == "linear" || lr_scheduler_type == "cosine" || lr_scheduler_type == "constant" ||
           lr_scheduler_type == "constant_with_warmup",
       "lr_scheduler_type", "'" + lr_scheduler_type + "' is not one of linear, cosine, constant, constant_with_warmup");
  need(logging_steps >= 0 && eval_steps >= 0 && save_steps >= 0, "logging_steps/eval_steps/save_steps", "must be >= 0");
}

double lr_lambda(const std::string& type, int64_t step, int64_t warmup, int64_t total) {
  if (type == "constant") return 1.0;
  if (step < warmup) return static_cast<double>(step) / std::max<int64_t>(1, warmup);
  if (type == "constant_with_warmup") return 1.0;
  const double progress = static_cast<double>(step - warmup) / std::max<int64_t>(1, total - warmup);
  if (type == "cosine") return std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * progress)));
  return std::max(0.0, static_cast<double>(total - step) / std::max<int64_t>(1, total - warmup));
}

namespace {

// The active adapter's files (adapter_config.json, adapter_model.safetensors and the prompt
// encoder sidecar) directly in `dir`, whatever the adapter's name (save_pretrained puts a
// non-default adapter in a sub-folder).
void save_active_adapter_flat(const PeftModel& model, const fs::path& dir) {
  const std::string name = model.active_adapters().front();
  fs::create_directories(dir);
  model.save_pretrained(dir.string(), {name});
  if (name == "default") return;
  for (const auto& f : {"adapter_model.safetensors", "adapter_config.json", "prompt_encoder.safetensors"})
    if (fs::exists(dir / name / f)) fs::rename(dir / name / f, dir / f);
  fs::remove_all(dir / name);
}

}  // namespace

at::Tensor mask_to_tasks(const at::Tensor& logits, const std::vector<int64_t>& row_tasks,
                         const std::vector<TaskSpan>& tasks) {
  PEFT_CHECK((logits.dim() == 2 || logits.dim() == 3) && logits.size(0) == static_cast<int64_t>(row_tasks.size()),
             std::invalid_argument, "[mask_to_tasks] logits ", logits.sizes(), " for ", row_tasks.size(),
             " rows; expected [rows, classes] or [rows, tokens, classes]");
  const int64_t C = tasks.empty() ? 0 : tasks.back().label_offset + tasks.back().num_labels;
  PEFT_CHECK(logits.size(-1) == C, ConfigError, "[mask_to_tasks] the classifier has ", logits.size(-1),
             " outputs; the tasks have ", C, " labels together");
  at::Tensor allowed = at::zeros({static_cast<int64_t>(tasks.size()), C}, at::kBool);
  for (std::size_t t = 0; t < tasks.size(); ++t) allowed[t].narrow(0, tasks[t].label_offset, tasks[t].num_labels).fill_(true);
  for (auto t : row_tasks)
    PEFT_CHECK(t >= 0 && t < static_cast<int64_t>(tasks.size()), std::invalid_argument, "[mask_to_tasks] row task ", t,
               " is not one of the ", tasks.size(), " tasks");
  at::Tensor rows = allowed.index_select(0, at::tensor(row_tasks, at::kLong)).to(logits.device());
  if (logits.dim() == 3) rows = rows.unsqueeze(1);  // every token of a row takes the row's task
  return logits.masked_fill(rows.logical_not(), -std::numeric_limits<double>::infinity());
}

void save_task_adapters(const PeftModel& model, const std::vector<TaskSpan>& tasks, const std::string& dir) {
  PEFT_CHECK(!tasks.empty(), ConfigError, "[save_task_adapters] no tasks");
  const int64_t C = tasks.back().label_offset + tasks.back().num_labels;
  const fs::path shared = fs::path(dir) / ".shared.tmp";
  fs::remove_all(shared);
  save_active_adapter_flat(model, shared);  // written once; each task takes its rows of the head
  const auto tensors = io::load_safetensors((shared / "adapter_model.safetensors").string());
  std::vector<std::string> head;
  for (const auto& [k, v] : tensors) {
    // The head's own tensors (modules_to_save copies, or a LoRA B on the head, whose rows are the
    // classes); a LoRA A on the head is [r, hidden] and shared by all rows.
    const bool on_head = (k.find("score.") != std::string::npos || k.find("classifier.") != std::string::npos) &&
                         k.find("lora_A") == std::string::npos && k.find("lora_E") == std::string::npos;
    if (on_head && v.dim() >= 1 && v.size(0) == C) head.push_back(k);
  }
  PEFT_CHECK(!head.empty(), ConfigError, "[save_task_adapters] adapter '", model.active_adapters().front(),
             "' has no classifier head with ", C, " outputs (score / classifier in modules_to_save) to split into "
             "per-task heads");
  for (const auto& t : tasks) {
    const fs::path tmp = fs::path(dir) / ("." + t.name + ".tmp");
    const fs::path dst = fs::path(dir) / t.name;
    fs::remove_all(tmp);
    fs::create_directories(tmp);
    for (const auto& e : fs::directory_iterator(shared))
      if (e.path().filename() != "adapter_model.safetensors") fs::copy_file(e.path(), tmp / e.path().filename());
    auto mine = tensors;
    for (const auto& k : head) mine[k] = mine[k].narrow(0, t.label_offset, t.num_labels).contiguous();
    io::save_safetensors((tmp / "adapter_model.safetensors").string(), mine);
    write_json_file((tmp / "task.json").string(), {{"task", t.name}, {"label_names", t.label_names}});
    fs::remove_all(dst);
    fs::rename(tmp, dst);
  }
  fs::remove_all(shared);
}

struct Trainer::State {
  std::shared_ptr<PeftModel> model;
  TrainingArguments args;
  Dataset train, eval;
  bool has_eval = false;
  int64_t pad = 0;
  std::unique_ptr<torch::optim::AdamW> opt;
  std::vector<at::Tensor> params;
  std::unique_ptr<TensorBoardWriter> tb;
  std::ofstream metrics;
  std::vector<std::pair<int64_t, double>> train_curve, eval_curve;
  std::shared_ptr<distributed::Collective> dist;  // null: a single process
  int rank() const { return dist ? dist->rank() : 0; }
  int world() const { return dist ? dist->world_size() : 1; }
};

namespace {

models::ModelInputs to_inputs(const Batch& b, TaskFormat task) {
  const auto L = at::TensorOptions().dtype(at::kLong);
  models::ModelInputs in;
  in.input_ids = at::tensor(b.input_ids, L).view({b.rows, b.cols});
  in.attention_mask = at::tensor(b.attention_mask, L).view({b.rows, b.cols});
  if (!b.token_type_ids.empty()) in.token_type_ids = at::tensor(b.token_type_ids, L).view({b.rows, b.cols});
  switch (task) {
    case TaskFormat::SeqCls:
      // Class ids for classification; float targets for regression (seq_values).
      in.labels = !b.seq_labels.empty() ? at::tensor(b.seq_labels, L) : at::tensor(b.seq_values, at::kDouble).to(at::kFloat);
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

// The batch loss: the model's own, or for multi-task data the cross-entropy over each row's head.
at::Tensor forward_loss(PeftModel& model, const Batch& b, TaskFormat task, const std::vector<TaskSpan>& tasks) {
  models::ModelInputs in = to_inputs(b, task);
  if (tasks.empty() || (task != TaskFormat::SeqCls && task != TaskFormat::TokenCls)) return model.forward(in).loss;
  const at::Tensor labels = in.labels;
  in.labels = at::Tensor();
  at::Tensor logits = model.forward(in).logits.to(at::kFloat);
  if (task == TaskFormat::SeqCls) return at::cross_entropy_loss(mask_to_tasks(logits, b.seq_tasks, tasks), labels);
  // Token classification: prompt methods that prepend virtual tokens return logits for them too; the
  // labels cover the input tokens, which come last.
  logits = logits.narrow(1, logits.size(1) - labels.size(1), labels.size(1));
  const at::Tensor masked = mask_to_tasks(logits, b.seq_tasks, tasks);
  return at::cross_entropy_loss(masked.reshape({-1, masked.size(-1)}), labels.reshape(-1), {}, at::Reduction::Mean, -100);
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

void write_rng(const std::string& path) {
  at::Tensor state = at::detail::getDefaultCPUGenerator().get_state();
  io::save_safetensors(path, {{"cpu_rng", state}});
}

void read_rng(const std::string& path) {
  auto t = io::load_safetensors(path);
  at::Generator g = at::detail::getDefaultCPUGenerator();  // shares the global generator
  g.set_state(t.at("cpu_rng"));
}

}  // namespace

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
  if (s_->has_eval && !s_->train.tasks.empty()) {
    bool same = s_->eval.tasks.size() == s_->train.tasks.size();
    for (std::size_t t = 0; same && t < s_->eval.tasks.size(); ++t)
      same = s_->eval.tasks[t].name == s_->train.tasks[t].name &&
             s_->eval.tasks[t].label_names == s_->train.tasks[t].label_names;
    PEFT_CHECK(same, ConfigError, "[Trainer] the evaluation set must join the same tasks with the same labels as "
               "the training set (build both with merge_tasks, the eval sets with the training label names)");
  }
  // AdamW over trainable parameters only; no weight decay on biases and norm weights.
  // The base model's trainable parameters, then the tuner's own (prompt encoders, PEFT's
  // prompt_encoder): no decay on biases, and on the base model's norm weights.
  std::vector<at::Tensor> decay, no_decay;
  const auto base_params = s_->model->base_model().named_parameters(true);
  for (const auto& [n, p] : s_->model->named_trainable_parameters()) {
    const bool in_base = base_params.contains(n) && base_params[n].is_same(p);
    const bool nd = in_base ? n.size() >= 5 && (n.compare(n.size() - 5, 5, ".bias") == 0 ||
                                                n.find("norm") != std::string::npos ||
                                                n.find("LayerNorm") != std::string::npos)
                            : n.size() >= 4 && n.compare(n.size() - 4, 4, "bias") == 0;
    (nd ? no_decay : decay).push_back(p);
    s_->params.push_back(p);
  }
  PEFT_CHECK(!s_->params.empty(), ConfigError, "[Trainer] the model has no trainable parameters (is the adapter in inference mode?)");
  auto opts = torch::optim::AdamWOptions(s_->args.learning_rate)
                  .betas({s_->args.adam_beta1, s_->args.adam_beta2})
                  .eps(s_->args.adam_epsilon)
                  .weight_decay(s_->args.weight_decay);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  if (!decay.empty()) groups.emplace_back(decay, std::make_unique<torch::optim::AdamWOptions>(opts));
  if (!no_decay.empty()) {
    auto o = std::make_unique<torch::optim::AdamWOptions>(opts);
    o->weight_decay(0.0);
    groups.emplace_back(no_decay, std::move(o));
  }
  s_->opt = std::make_unique<torch::optim::AdamW>(groups, opts);
}

Trainer::~Trainer() = default;

void Trainer::set_collective(std::shared_ptr<distributed::Collective> collective) { s_->dist = std::move(collective); }

EvalResult Trainer::evaluate() {
  EvalResult r;
  if (!s_->has_eval) return r;
  auto& m = s_->model->base_model();
  const bool was_training = m.is_training();
  m.eval();
  torch::NoGradGuard ng;
  const TaskFormat task = task_of(m);
  double total = 0;
  int64_t i = -1;
  for (const auto& idx : make_batches(s_->eval, s_->args.per_device_eval_batch_size, false, 0, false)) {
    if (++i % s_->world() != s_->rank()) continue;  // eval batches are dealt out over the ranks
    const Batch b = collate(s_->eval, idx, s_->pad);
    const int64_t n = loss_tokens(b, task);
    if (n == 0) continue;
    total += forward_loss(*s_->model, b, task, s_->eval.tasks).item<double>() * static_cast<double>(n);
    r.tokens += n;
  }
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
  if (main_rank) fs::create_directories(a.output_dir);
  const DistributedSampler sampler(a.per_device_train_batch_size, s_->rank(), s_->world(), a.shuffle,
                                                static_cast<uint64_t>(a.seed), a.group_by_length);
  const int64_t global_batch = sampler.global_batch();
  const auto n_examples = static_cast<int64_t>(s_->train.examples.size());
  const int64_t batches_per_epoch = (n_examples + global_batch - 1) / global_batch;
  const int64_t steps_per_epoch = std::max<int64_t>(1, batches_per_epoch / a.gradient_accumulation_steps);
  const int64_t total = a.max_steps > 0 ? a.max_steps
                                        : static_cast<int64_t>(std::ceil(a.num_train_epochs * steps_per_epoch));
  const int64_t warmup = a.warmup_steps > 0 ? a.warmup_steps : static_cast<int64_t>(std::ceil(a.warmup_ratio * total));

  TrainResult res;
  int64_t step = 0, epoch = 0, batch_pos = 0;
  // The epoch's batches start after epoch_start examples of an order drawn with order_batch; both
  // are saved, so a resume with another world size continues the same order.
  int64_t epoch_start = 0, order_batch = global_batch;
  at::manual_seed(static_cast<uint64_t>(a.seed));
  if (!resume_from.empty()) {
    const json st = read_json_file((fs::path(resume_from) / "trainer_state.json").string());
    step = st.at("global_step").get<int64_t>();
    epoch = st.at("epoch").get<int64_t>();
    if (st.contains("epoch_samples")) {
      epoch_start = st.at("epoch_samples").get<int64_t>();
      order_batch = st.at("epoch_order_batch").get<int64_t>();
    } else {  // written before data-parallel support: a single process
      epoch_start = st.at("batch_pos").get<int64_t>() * a.per_device_train_batch_size;
      order_batch = a.per_device_train_batch_size;
    }
    res.step_losses = st.at("step_losses").get<std::vector<double>>();
    // A tuner state (AdaLoRA: full-rank tensors and scores; its saved adapter is pruned) replaces
    // the adapter file when the checkpoint has one.
    const fs::path tuner_state = fs::path(resume_from) / "tuner_state.safetensors";
    if (fs::exists(tuner_state)) s_->model->load_training_state(io::load_safetensors(tuner_state.string()));
    else s_->model->load_adapter_weights((fs::path(resume_from) / "adapter_model.safetensors").string(),
                                         s_->model->active_adapters().front());
    torch::load(*s_->opt, (fs::path(resume_from) / "optimizer.pt").string());
    read_rng((fs::path(resume_from) / "rng_state.safetensors").string());
  }
  if (a.tensorboard && main_rank) s_->tb = std::make_unique<TensorBoardWriter>((fs::path(a.output_dir) / "runs").string());
  if (main_rank) s_->metrics.open((fs::path(a.output_dir) / "metrics.jsonl"), std::ios::app);
  const bool tty = a.progress_bar && main_rank && ::isatty(2);
  const auto t0 = std::chrono::steady_clock::now();
  int64_t tokens_seen = 0;

  auto log = [&](const json& j) {
    if (!main_rank) return;
    s_->metrics << j.dump() << "\n";
    s_->metrics.flush();
  };
  auto save_checkpoint = [&](int64_t at_step) {
    if (!main_rank) return;
    // Written into a temp folder, then renamed: a kill leaves either the old state or the new.
    const fs::path dst = fs::path(a.output_dir) / ("checkpoint-" + std::to_string(at_step));
    const fs::path tmp = fs::path(a.output_dir) / (".checkpoint-" + std::to_string(at_step) + ".tmp");
    fs::remove_all(tmp);
    fs::create_directories(tmp);
    save_active_adapter_flat(*s_->model, tmp);
    if (auto ts = s_->model->training_state(); !ts.empty())
      io::save_safetensors((tmp / "tuner_state.safetensors").string(), ts);
    torch::save(*s_->opt, (tmp / "optimizer.pt").string());
    write_rng((tmp / "rng_state.safetensors").string());
    write_json_file((tmp / "trainer_state.json").string(),
                        {{"global_step", at_step}, {"epoch", epoch}, {"batch_pos", batch_pos},
                         {"epoch_samples", std::min(n_examples, epoch_start + batch_pos * global_batch)},
                         {"epoch_order_batch", order_batch}, {"world_size", s_->world()},
                         {"step_losses", res.step_losses}, {"total_steps", total}});
    fs::remove_all(dst);
    fs::rename(tmp, dst);
  };

  m.train();
  m.set_gradient_checkpointing(a.gradient_checkpointing);
  if (a.bf16) {
    at::autocast::set_cpu_enabled(true);
    at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
  }
  while (step < total) {
    const auto batches = sampler.rank_batches(s_->train, epoch, order_batch, epoch_start);
    while (step < total && batch_pos + a.gradient_accumulation_steps <= static_cast<int64_t>(batches.size())) {
      const auto step_t0 = std::chrono::steady_clock::now();
      const double lr = a.learning_rate * lr_lambda(a.lr_scheduler_type, step, warmup, total);
      for (auto& g : s_->opt->param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
      // Micro-batches weighted by their loss tokens, so accumulation equals one big batch.
      std::vector<Batch> micro;
      int64_t n_all = 0;
      int64_t step_tokens = 0;
      for (int64_t k = 0; k < a.gradient_accumulation_steps; ++k) {
        const auto& idx = batches[batch_pos + k];  // empty on a rank past the end of a short last batch
        micro.push_back(idx.empty() ? Batch{} : collate(s_->train, idx, s_->pad));
        n_all += loss_tokens(micro.back(), task);
        step_tokens += micro.back().n_tokens;
      }
      if (s_->dist) {  // weights over the loss tokens of all ranks: N ranks x b equals 1 x N*b
        at::Tensor counts = at::tensor({n_all, step_tokens}, at::kLong);
        s_->dist->all_reduce_sum({counts});
        n_all = counts[0].item<int64_t>();
        step_tokens = counts[1].item<int64_t>();
      }
      double step_loss = 0;
      for (const auto& b : micro) {
        const int64_t n = loss_tokens(b, task);
        if (n == 0) continue;
        at::Tensor loss = forward_loss(*s_->model, b, task, s_->train.tasks);
        const double w = static_cast<double>(n) / static_cast<double>(std::max<int64_t>(1, n_all));
        (loss * w).backward();
        step_loss += loss.item<double>() * w;
      }
      tokens_seen += step_tokens;
      if (s_->dist) all_reduce_grads(*s_->dist, s_->params, step_loss);
      if (a.max_grad_norm > 0) torch::nn::utils::clip_grad_norm_(s_->params, a.max_grad_norm);
      s_->opt->step();
      // Tuner work between the optimizer step and zero_grad (AdaLoRA's rank allocation).
      const auto tuner_scalars = s_->model->on_optimizer_step(step + 1);
      s_->opt->zero_grad();
      batch_pos += a.gradient_accumulation_steps;
      ++step;
      res.train_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - step_t0).count();
      res.step_losses.push_back(step_loss);
      s_->train_curve.emplace_back(step, step_loss);
      if (on_step) on_step(step, step_loss, lr);
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (a.logging_steps > 0 && (step % a.logging_steps == 0 || step == total)) {
        json line = {{"step", step}, {"loss", step_loss}, {"learning_rate", lr}, {"epoch", epoch}, {"tokens_per_second", tokens_seen / std::max(secs, 1e-9)}};
        for (const auto& [k, v] : tuner_scalars) line[k] = v;
        log(line);
        if (s_->tb) {
          s_->tb->add_scalar("train/loss", step_loss, step);
          s_->tb->add_scalar("train/learning_rate", lr, step);
          for (const auto& [k, v] : tuner_scalars) s_->tb->add_scalar(k, v, step);
        }
        if (!tty && main_rank)
          std::cerr << "step " << step << "/" << total << "  loss " << std::fixed << std::setprecision(4) << step_loss
                    << "  lr " << std::scientific << std::setprecision(2) << lr << std::defaultfloat << "  "
                  << (tuner_scalars.empty() ? "" : tuner_scalars.front().first + " " + std::to_string(static_cast<int64_t>(tuner_scalars.front().second)) + "  ")
                    << static_cast<int64_t>(tokens_seen / std::max(secs, 1e-9)) << " tok/s\n";
      }
      if (tty) {
        const double eta = secs / step * (total - step);
        const int width = 30, done = static_cast<int>(width * step / total);
        std::cerr << "\r[" << std::string(done, '#') << std::string(width - done, '.') << "] " << step << "/" << total
                  << " loss " << std::fixed << std::setprecision(4) << step_loss << " lr " << std::scientific
                  << std::setprecision(2) << lr << std::defaultfloat << " " << static_cast<int64_t>(tokens_seen / std::max(secs, 1e-9))
                  << " tok/s ETA " << static_cast<int64_t>(eta) << "s   " << std::flush;
      }
      if (a.eval_steps > 0 && step % a.eval_steps == 0 && step < total && s_->has_eval) {
        const auto e = evaluate();
        s_->eval_curve.emplace_back(step, e.loss);
        log({{"step", step}, {"eval_loss", e.loss}, {"eval_perplexity", e.perplexity}});
        if (s_->tb) s_->tb->add_scalar("eval/loss", e.loss, step);
      }
      if (a.save_steps > 0 && step % a.save_steps == 0 && step < total) save_checkpoint(step);
    }
    if (step < total) {
      ++epoch;
      batch_pos = 0;
      epoch_start = 0;
      order_batch = global_batch;
    }
  }
  if (tty) std::cerr << "\n";
  if (a.bf16) at::autocast::set_cpu_enabled(false);
  m.eval();
  if (s_->dist) s_->dist->barrier();  // every rank finished: nothing is written after a lost rank
  save_checkpoint(step);
  res.global_step = step;
  res.train_tokens = tokens_seen;
  double sum = 0;
  for (double l : res.step_losses) sum += l;
  res.train_loss = res.step_losses.empty() ? 0 : sum / static_cast<double>(res.step_losses.size());
  if (s_->has_eval) {
    const auto e = evaluate();
    res.eval_loss = e.loss;
    s_->eval_curve.emplace_back(step, e.loss);
    log({{"step", step}, {"eval_loss", e.loss}, {"eval_perplexity", e.perplexity}});
    if (s_->tb) s_->tb->add_scalar("eval/loss", e.loss, step);
  }
  res.adapter_dir = (fs::path(a.output_dir) / "adapter").string();
  if (!main_rank) return res;
  // Written into a temp folder, then renamed, as checkpoints are.
  const fs::path tmp = fs::path(a.output_dir) / ".adapter.tmp";
  fs::remove_all(tmp);
  s_->model->save_pretrained(tmp.string(), {s_->model->active_adapters().front()});
  fs::remove_all(res.adapter_dir);
  fs::rename(tmp, res.adapter_dir);
  if (s_->tb) s_->tb->flush();
  write_loss_curve_png((fs::path(a.output_dir) / "loss.png").string(), s_->train_curve, s_->eval_curve, "loss");
  return res;
}

}  // namespace peft::train
