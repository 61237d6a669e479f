// A whole run (train/run.h), as `peft train` does it.
#include "peft/train/run.h"

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include <filesystem>
#include <iostream>
#include <optional>

#include "peft/core/check.h"
#include "peft/core/file_util.h"
#include "peft/core/json_file.h"
#include "peft/core/runtime.h"
#include "peft/core/strings.h"
#include "peft/distributed/collective.h"
#include "peft/io/gguf.h"
#include "peft/io/hf_checkpoint.h"
#include "peft/peft_model.h"
#include "peft/models/quantized_model.h"
#include "peft/train/datasets.h"
#include "peft/train/evaluate.h"
#include "peft/train/trainer.h"

namespace peft::train {

namespace fs = std::filesystem;

std::shared_ptr<models::PretrainedModel> load_run_model(const RunConfig& c, int64_t num_labels, int64_t pad_id) {
  models::LoadOptions o = c.load_options();
  if (c.task != "seq_cls" && c.task != "token_cls") return models::load_model(c.model, o);
  PEFT_CHECK(!io::is_gguf_file(c.model), NotSupported, "[train] task '", c.task, "' on a GGUF model (", c.model,
             ") is not supported; convert it first: peft convert ", c.model, " OUT_DIR");
  o.head = c.task == "seq_cls" ? models::TaskHead::SeqCls : models::TaskHead::TokenCls;
  o.num_labels = num_labels;
  o.pad_token_id = pad_id;
  auto m = models::load_model(c.model, o);
  m->train();
  return m;
}

namespace {

/// Everything a run builds before training.
struct Run {
  const RunConfig& c;
  io::Tokenizer tok;
  Splits splits;
  std::shared_ptr<PeftModel> pm;
  std::unique_ptr<Trainer> trainer;
  int64_t pad = 0;
  distributed::DistributedEnv denv;
  bool cls = false;
};

std::shared_ptr<PeftModel> make_peft_model(const RunConfig& c, std::shared_ptr<models::PretrainedModel> model,
                                           const Dataset& train_data) {
  if (!c.adapter.empty()) {
    // A per-task adapter of a multi-task run names its labels: the data must have the same ones.
    const fs::path task_json = fs::path(c.adapter) / "task.json";
    if (fs::exists(task_json) && c.tasks.empty()) {
      const auto j = read_json_file(task_json.string());
      const auto want = j.at("label_names").get<std::vector<std::string>>();
      PEFT_CHECK(want == train_data.label_names, ConfigError, "[train] ", task_json.string(), ": the head of task '",
                 j.value("task", std::string()), "' was trained for labels [", join(want, 1000),
                 "], but the data has [", join(train_data.label_names, 1000), "]");
    }
  }
  // adapter=DIR: continue training a saved adapter (e.g. a shared multi-task prefix) instead of a fresh one.
  auto pm = c.adapter.empty() ? get_peft_model(std::move(model), *c.peft)
                              : PeftModel::from_pretrained(std::move(model), c.adapter, "default", true);
  if (!c.adapter.empty()) std::cout << "starting from adapter " << c.adapter << "\n";
  std::cout << "method " << c.method << " (" << to_string(c.peft->peft_type) << "): ";
  pm->print_trainable_parameters();
  return pm;
}

void prepare(Run& r) {
  const RunConfig& c = r.c;
  r.splits = load_train_eval(c, r.tok);
  r.pad = r.tok.pad_token_id().value_or(r.tok.eos_token_id().value_or(0));
  // Seeded before the model is built, as transformers' set_seed: a new classification head is
  // initialised from the seed, so a run (and every rank of a data-parallel run) starts the same.
  at::manual_seed(static_cast<uint64_t>(c.args.seed));
  auto model = load_run_model(c, static_cast<int64_t>(r.splits.train.data.label_names.size()), r.pad);
  if (c.load_in_4bit) {
    models::prepare_model_for_kbit_training(*model, c.args.gradient_checkpointing);
    std::cout << "4-bit base (" << c.bnb_4bit_quant_type << (c.bnb_4bit_use_double_quant ? ", double quant" : "")
              << "): weights " << models::weight_bytes(*model) << " bytes\n";
  }
  at::manual_seed(static_cast<uint64_t>(c.args.seed));
  r.pm = make_peft_model(c, std::move(model), r.splits.train.data);
  r.trainer = std::make_unique<Trainer>(r.pm, c.args, r.splits.train.data,
                                        r.splits.has_eval ? &r.splits.eval.data : nullptr, r.pad);
  if (r.denv.world_size > 1) {
    distributed::ProcessGroupOptions po;
    po.timeout_seconds = c.ddp_timeout;
    r.trainer->set_collective(distributed::init_process_group(r.denv, po));
    std::cout << "data-parallel: " << r.denv.world_size << " ranks, global batch "
              << r.denv.world_size * c.args.per_device_train_batch_size * c.args.gradient_accumulation_steps << "\n";
  }
  r.cls = c.task == "seq_cls" || c.task == "token_cls";
}

/// The task metrics of the current model on the eval split, printed with `when` ("before", "after:").
void task_metrics(Run& r, const std::string& when, nlohmann::json& into, const GenerationScore* before) {
  const RunConfig& c = r.c;
  if (!r.splits.has_eval) return;
  const Dataset& eval = r.splits.eval.data;
  if (r.cls) {
    const Accuracy acc = classification_accuracy(*r.pm, eval, r.pad, c.task == "token_cls");
    std::cout << when << " eval accuracy " << acc.str(eval) << "\n";
    into["accuracy"] = acc.all;
    for (std::size_t t = 0; t < acc.per_task.size(); ++t) into["accuracy/" + eval.tasks[t].name] = acc.per_task[t];
  }
  if (c.eval_generate > 0 && !c.prompt_template.empty()) {
    const auto g = generation_eval(c, r.pm->base_model(), r.tok, r.splits.eval.rows, r.pm.get());
    std::cout << when << " BLEU " << g.bleu;
    if (before) std::cout << " (was " << before->bleu << ")\n";
    else std::cout << " on " << g.prompts << " prompts\n";
    std::cout << when << " " << g.sample_prompt << " " << g.sample << "\n";
    into["bleu"] = g.bleu;
  }
}

}  // namespace

RunResult run_training(const RunConfig& c, const std::string& resume) {
  Run r{c, io::Tokenizer::from_pretrained(c.model), {}, nullptr, nullptr, 0, distributed::env_from_environment(), false};
  prepare(r);
  nlohmann::json before = nlohmann::json::object(), after = nlohmann::json::object();
  std::optional<double> loss0;
  if (r.splits.has_eval) {
    loss0 = r.trainer->evaluate().loss;
    std::cout << "before: eval loss " << *loss0 << "\n";
    before["eval_loss"] = *loss0;
    task_metrics(r, "before:", before, nullptr);
  }
  const auto res = r.trainer->train(resume);
  std::cout << "trained " << res.global_step << " steps, mean train loss " << res.train_loss << "\n";
  if (res.eval_loss) {
    std::cout << "after:  eval loss " << *res.eval_loss << (loss0 ? " (was " + std::to_string(*loss0) + ")" : "") << "\n";
    after["eval_loss"] = *res.eval_loss;
  }
  GenerationScore g0;
  if (before.contains("bleu")) g0.bleu = before["bleu"].get<double>();
  task_metrics(r, "after: ", after, &g0);
  const auto& tasks = r.splits.train.data.tasks;
  if (!tasks.empty() && r.denv.rank == 0) {
    const std::string dir = (fs::path(c.args.output_dir) / "tasks").string();
    save_task_adapters(*r.pm, tasks, dir);
    std::cout << "per-task adapters: " << dir << "/{";
    for (std::size_t t = 0; t < tasks.size(); ++t) std::cout << (t ? "," : "") << tasks[t].name;
    std::cout << "} (continue on one task with adapter=" << dir << "/<task>)\n";
  }
  // The run's summary for tools (peft compare): parameters, speed, metrics before and after.
  const auto [trainable, all] = r.pm->get_nb_trainable_parameters();
  RunResult out;
  out.adapter_dir = res.adapter_dir;
  out.summary = {{"method", c.method},
                 {"task", c.task},
                 {"trainable_params", trainable},
                 {"all_params", all},
                 {"steps", res.global_step},
                 {"train_loss", res.train_loss},
                 {"train_tokens", res.train_tokens},
                 {"train_seconds", res.train_seconds},
                 {"train_tokens_per_second", res.train_seconds > 0 ? res.train_tokens / res.train_seconds : 0.0},
                 {"peak_rss_mb", peak_rss_mb()},
                 {"metrics", after},
                 {"metrics_before", before}};
  write_file_atomic((fs::path(c.args.output_dir) / "results.json").string(), out.summary.dump(1) + "\n");
  return out;
}

}  // namespace peft::train
