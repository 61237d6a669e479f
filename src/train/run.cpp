// A whole run (train/run.h), as `peft train` does it.
#include "peft/train/run.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/nn/module.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <optional>
#include <set>
#include <sstream>

#include "peft/core/check.h"
#include "peft/core/file_util.h"
#include "peft/core/json_file.h"
#include "peft/core/runtime.h"
#include "peft/core/strings.h"
#include "peft/distributed/collective.h"
#include "peft/io/gguf.h"
#include "peft/io/hf_checkpoint.h"
#include "peft/io/safetensors.h"
#include "peft/peft_model.h"
#include "peft/models/quantized_model.h"
#include "peft/train/datasets.h"
#include "peft/train/evaluate.h"
#include "peft/train/metrics.h"
#include "peft/train/trainer.h"

namespace peft::train {

namespace fs = std::filesystem;

namespace {

// An environment variable's value, "" when unset (for the run's summary).
std::string env_or(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// The tensors an adapter folder supplies for the base model's own modules (modules_to_save
// copies such as classifier.weight), as base-model keys.
std::set<std::string> adapter_supplied(const std::string& adapter_dir) {
  std::set<std::string> out;
  const fs::path f = fs::path(adapter_dir) / "adapter_model.safetensors";
  if (adapter_dir.empty() || !fs::exists(f)) return out;
  // LoRA-style adapters save base_model.model.<key>; prompt-learning ones base_model.<key>.
  const auto file = io::SafetensorsFile::open(f.string());
  for (const auto& k : file.names())
    for (const std::string prefix : {"base_model.model.", "base_model."})
      if (k.rfind(prefix, 0) == 0) {
        out.insert(k.substr(prefix.size()));
        break;
      }
  return out;
}

// load_model notes on stderr the head tensors it initialised; with an adapter that holds them
// (modules_to_save) they are not new, so that note keeps only the ones nothing supplies.
std::shared_ptr<models::PretrainedModel> load_quietly(const std::string& path, const models::LoadOptions& o,
                                                      const std::set<std::string>& supplied) {
  if (supplied.empty()) return models::load_model(path, o);
  std::ostringstream captured;
  std::streambuf* old = std::cerr.rdbuf(captured.rdbuf());
  std::shared_ptr<models::PretrainedModel> m;
  try {
    m = models::load_model(path, o);
  } catch (...) {
    std::cerr.rdbuf(old);
    std::cerr << captured.str();
    throw;
  }
  std::cerr.rdbuf(old);
  std::istringstream lines(captured.str());
  const std::string marker = "newly initialised (not in the checkpoint):";
  for (std::string line; std::getline(lines, line);) {
    const auto at = line.find(marker);
    if (at == std::string::npos) {
      std::cerr << line << "\n";
      continue;
    }
    std::istringstream names(line.substr(at + marker.size()));
    std::string kept;
    for (std::string n; names >> n;)
      if (!supplied.count(n)) kept += " " + n;
    if (!kept.empty()) std::cerr << line.substr(0, at + marker.size()) << kept << "\n";
  }
  return m;
}

}  // namespace

namespace {

/// Where the adapter of a run records its 4-bit base.
std::string base_quantization_file(const RunConfig& c) {
  return (fs::path(c.adapter) / models::kBaseQuantizationFile).string();
}

}  // namespace

std::shared_ptr<models::PretrainedModel> load_run_model(const RunConfig& c, int64_t num_labels, int64_t pad_id) {
  models::LoadOptions o = c.load_options();
  if (c.task != "seq_cls" && c.task != "token_cls") return models::load_model(c.model, o);
  PEFT_CHECK(!io::is_gguf_file(c.model), NotSupported, "[train] task '", c.task, "' on a GGUF model (", c.model,
             ") is not supported; convert it first: peft convert ", c.model, " OUT_DIR");
  o.head = c.task == "seq_cls" ? models::TaskHead::SeqCls : models::TaskHead::TokenCls;
  o.num_labels = num_labels;
  o.pad_token_id = pad_id;
  auto m = load_quietly(c.model, o, adapter_supplied(c.adapter));
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
  models::check_tokenizer_fits(*model, r.tok.vocab_size(), c.model);
  if (c.load_in_4bit) {
    models::prepare_model_for_kbit_training(*model, c.args.gradient_checkpointing);
    std::cout << "4-bit base (" << c.bnb_4bit_quant_type << (c.bnb_4bit_use_double_quant ? ", double quant" : "")
              << "): weights " << models::weight_bytes(*model) << " bytes"
              << (c.base_quantization_from_adapter ? " (as the adapter records: " + base_quantization_file(c) + ")" : "")
              << "\n";
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

/// The label set (and problem type) a classification adapter was trained for, beside it in
/// task.json, so `peft eval` builds the same head and label ids.
void write_label_file(const std::string& adapter_dir, const Dataset& train, const RunConfig& c) {
  nlohmann::json j = {{"label_names", train.label_names}};
  if (c.task == "seq_cls") j["problem_type"] = problem_type(train);
  write_json_file((fs::path(adapter_dir) / "task.json").string(), j);
}

/// Prints task metrics as "<when> eval accuracy 0.83 (a 0.8, b 0.86)" and "<when> eval <key> <value>".
void print_metrics(const std::string& when, const nlohmann::json& m, const Dataset& d, const GenerationScore* before) {
  const std::string w = when.empty() ? "" : when + " ";
  if (m.contains("accuracy")) {
    std::cout << w << "eval accuracy " << m["accuracy"].get<double>();
    for (std::size_t t = 0; t < d.tasks.size(); ++t)
      std::cout << (t ? ", " : " (") << d.tasks[t].name << " " << m["accuracy/" + d.tasks[t].name].get<double>();
    std::cout << (d.tasks.empty() ? "" : ")") << "\n";
  }
  for (auto it = m.begin(); it != m.end(); ++it) {
    if (it.key().rfind("accuracy", 0) == 0 || it.key() == "bleu") continue;
    std::cout << w << "eval " << it.key() << " ";
    if (it.value().is_number()) std::cout << it.value().get<double>() << "\n";
    else std::cout << it.value().dump() << "\n";
  }
  if (m.contains("bleu")) {
    std::cout << w << "BLEU " << m["bleu"].get<double>();
    if (before) std::cout << " (was " << before->bleu << ")";
    std::cout << "\n";
  }
}

/// The task metrics of the current model on the eval split, printed with `when` ("before", "after:").
void report_metrics(Run& r, const std::string& when, nlohmann::json& into, const GenerationScore* before) {
  if (!r.splits.has_eval) return;
  std::vector<nlohmann::json> rows;
  const bool sample = r.c.task == "causal_lm" || r.c.task == "seq2seq";  // show one generation
  const nlohmann::json m = task_metrics(r.c, *r.pm, r.tok, r.splits.eval, r.pad, sample ? &rows : nullptr);
  print_metrics(when, m, r.splits.eval.data, before);
  if (!rows.empty())
    std::cout << when << " " << rows.front()["input"].get<std::string>() << " "
              << rows.front()["prediction"].get<std::string>() << "\n";
  into.update(m);
}

}  // namespace

RunResult run_training(const RunConfig& c, const std::string& resume) {
  // The run writes checkpoints, the adapter and logs under output_dir: never over an input.
  PEFT_CHECK(!fs::exists(c.args.output_dir) || fs::is_directory(c.args.output_dir), ConfigError,
             "[config] key 'output_dir': ", c.args.output_dir, " is a file; the run writes a folder there");
  {
    // Not inside the model, a data file or the adapter it continues; nor holding that adapter
    // (output_dir/adapter and the checkpoints would replace it). The data may sit inside.
    std::error_code ec;
    const fs::path out = fs::weakly_canonical(fs::absolute(c.args.output_dir), ec);
    for (const std::string* in : {&c.model, &c.train_file, &c.eval_file, &c.adapter}) {
      if (in->empty() || !fs::exists(*in) || ec) continue;
      const fs::path i = fs::weakly_canonical(fs::absolute(*in), ec);
      const auto rel = out.lexically_relative(i);
      PEFT_CHECK(ec || rel.empty() || *rel.begin() == "..", ConfigError, "[config] key 'output_dir': ",
                 c.args.output_dir, " is the input ", *in, " or inside it; the run would write into it. Choose "
                 "another output_dir");
    }
    if (!c.adapter.empty()) check_output_apart("config: output_dir", c.args.output_dir, {c.adapter});
  }
  Run r{c, io::Tokenizer::from_pretrained(c.model), {}, nullptr, nullptr, 0, distributed::env_from_environment(), false};
  prepare(r);
  nlohmann::json before = nlohmann::json::object(), after = nlohmann::json::object();
  std::optional<double> loss0;
  if (r.splits.has_eval) {
    loss0 = r.trainer->evaluate().loss;
    std::cout << "before: eval loss " << *loss0 << "\n";
    before["eval_loss"] = *loss0;
    report_metrics(r, "before:", before, nullptr);
  }
  const auto res = r.trainer->train(resume);
  std::cout << "trained " << res.global_step << " steps, mean train loss " << res.train_loss << "\n";
  if (res.eval_loss) {
    std::cout << "after:  eval loss " << *res.eval_loss << (loss0 ? " (was " + std::to_string(*loss0) + ")" : "") << "\n";
    after["eval_loss"] = *res.eval_loss;
  }
  GenerationScore g0;
  if (before.contains("bleu")) g0.bleu = before["bleu"].get<double>();
  report_metrics(r, "after: ", after, &g0);
  const auto& tasks = r.splits.train.data.tasks;
  if (r.cls && tasks.empty() && r.denv.rank == 0) write_label_file(res.adapter_dir, r.splits.train.data, c);
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
                 {"train_cpu_seconds", res.train_cpu_seconds},
                 {"train_tokens_per_second", res.train_seconds > 0 ? res.train_tokens / res.train_seconds : 0.0},
                 {"train_tokens_per_cpu_second", res.train_cpu_seconds > 0 ? res.train_tokens / res.train_cpu_seconds : 0.0},
                 {"peak_rss_mb", peak_rss_mb()},
                 {"cpu", cpu_model_name()},
                 {"load_average", load_average()},
                 {"threads", {{"libtorch", at::get_num_threads()}, {"OPENBLAS_NUM_THREADS", env_or("OPENBLAS_NUM_THREADS")},
                              {"OMP_NUM_THREADS", env_or("OMP_NUM_THREADS")}}},
                 {"metrics", after},
                 {"metrics_before", before}};
  write_file_atomic((fs::path(c.args.output_dir) / "results.json").string(), out.summary.dump(1) + "\n");
  return out;
}

nlohmann::json run_evaluation(const RunConfig& c, const std::string& predictions_path) {
  // The evaluation set the trainer used: eval_file, or the validation tail of train_file.
  const bool tail = c.eval_file.empty() && c.validation_split_percentage > 0 && !c.train_file.empty();
  PEFT_CHECK(!c.eval_file.empty() || tail, ConfigError, "[config] key 'eval_file' (or train_file with "
             "validation_split_percentage) is required for peft eval");
  const std::string file = tail ? c.train_file : c.eval_file;
  PEFT_CHECK(c.tasks.empty(), NotSupported, "[eval] a multi-task config: evaluate one task's adapter "
             "(adapter=output_dir/tasks/<name>) with that task's data keys instead");
  const bool cls = c.task == "seq_cls" || c.task == "token_cls";
  PEFT_CHECK(!cls || !c.adapter.empty(), ConfigError, "[eval] task ", c.task, " needs adapter=DIR: the classifier "
             "head is trained with the adapter (modules_to_save)");
  const io::Tokenizer tok = io::Tokenizer::from_pretrained(c.model);
  const int64_t pad = tok.pad_token_id().value_or(tok.eos_token_id().value_or(0));
  // The label set the adapter's head was trained for (run_training writes it beside the adapter).
  std::vector<std::string> labels;
  const fs::path task_json = fs::path(c.adapter) / "task.json";
  if (cls && fs::exists(task_json)) {
    const auto j = read_json_file(task_json.string());
    labels = j.at("label_names").get<std::vector<std::string>>();
    const std::string trained = j.value("problem_type", std::string());
    PEFT_CHECK(c.task != "seq_cls" || trained.empty() || trained == c.problem(), ConfigError, "[eval] ",
               task_json.string(), ": the adapter was trained with problem_type ", trained, ", the config says ",
               c.problem(), "; set problem_type: ", trained);
  } else if (cls) {
    std::cerr << "note: " << task_json.string() << " not found: the labels are taken from " << file << "\n";
  }
  const LoadedSplit split =
      load_split(c, file, c.max_eval_samples, tok, labels, tail ? SplitPart::Validation : SplitPart::All);
  PEFT_CHECK(!split.data.examples.empty(), FormatError, "[eval] ", file, ": the dataset is empty");
  at::manual_seed(static_cast<uint64_t>(c.args.seed));
  auto model = load_run_model(c, static_cast<int64_t>(split.data.label_names.size()), pad);
  models::check_tokenizer_fits(*model, tok.vocab_size(), c.model);
  model->eval();
  if (c.base_quantization_from_adapter)
    std::cout << "4-bit base (" << c.bnb_4bit_quant_type << (c.bnb_4bit_use_double_quant ? ", double quant" : "")
              << ") as the adapter was trained (" << base_quantization_file(c)
              << "; load_in_4bit=false for the full-precision base)\n";
  // Without an adapter: the base model (a fresh adapter of the run's method, disabled).
  auto pm = c.adapter.empty() ? get_peft_model(model, *c.peft) : PeftModel::from_pretrained(model, c.adapter);
  std::optional<PeftModel::DisableGuard> base_only;
  if (c.adapter.empty()) base_only.emplace(*pm);
  const LossSum l = eval_loss_sum(*pm, split.data, pad, c.args.per_device_eval_batch_size);
  nlohmann::json m = nlohmann::json::object();
  m["eval_loss"] = l.tokens ? l.total / static_cast<double>(l.tokens) : 0.0;
  const bool lm = c.task == "causal_lm" || c.task == "seq2seq";
  std::cout << "eval loss " << m["eval_loss"].get<double>();
  if (lm) std::cout << ", perplexity " << perplexity(m["eval_loss"].get<double>()) << " over " << l.tokens << " tokens";
  std::cout << " (" << split.data.examples.size() << " examples)\n";
  std::vector<nlohmann::json> rows;
  const nlohmann::json t = task_metrics(c, *pm, tok, split, pad, predictions_path.empty() ? nullptr : &rows);
  print_metrics("", t, split.data, nullptr);
  m.update(t);
  if (!predictions_path.empty()) {
    std::string text;
    for (const auto& r : rows) text += r.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    write_file_atomic(predictions_path, text);
    std::cout << "predictions: " << predictions_path << " (" << rows.size() << " rows)\n";
  }
  return m;
}

}  // namespace peft::train
