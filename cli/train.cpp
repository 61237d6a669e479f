// peft train / peft eval / peft merge. The configuration comes from a YAML file whose keys are
// PEFT config and transformers TrainingArguments field names, plus `key=value` overrides.
#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include <filesystem>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "commands.h"
#include "launch.h"
#include "peft/distributed/collective.h"
#include "peft/core/check.h"
#include "peft/core/file_util.h"
#include "peft/core/json_file.h"
#include "peft/core/runtime.h"
#include "peft/export/gguf_merge.h"
#include "peft/io/gguf.h"
#include "peft/io/tokenizer.h"
#include "peft/models/adaptable_linear.h"
#include "peft/models/generation.h"
#include "peft/models/gguf_model.h"
#include "peft/models/model.h"
#include "peft/models/quantized_model.h"
#include "peft/peft_model.h"
#include "peft/train/data.h"
#include "peft/train/metrics.h"
#include "peft/train/run_config.h"
#include "peft/train/trainer.h"

namespace peft::cli {

namespace {

namespace fs = std::filesystem;

using train::RunConfig;
using train::TaskEntry;

// Classification tasks load the model with their head, sized for the labels of the training data
// when config.json says otherwise (a new head is initialised, as transformers does).
std::shared_ptr<models::PretrainedModel> load_for_task(const RunConfig& c, int64_t num_labels, int64_t pad_id) {
  if (c.task != "seq_cls" && c.task != "token_cls") return models::load_model(c.model, c.load_options());
  const auto head = c.task == "seq_cls" ? models::TaskHead::SeqCls : models::TaskHead::TokenCls;
  PEFT_CHECK(!io::is_gguf_file(c.model), NotSupported, "[train] task '", c.task, "' on a GGUF model (", c.model,
             ") is not supported; convert it first: peft convert ", c.model, " OUT_DIR");
  const std::string cfg_path = (fs::path(c.model) / "config.json").string();
  nlohmann::json j = read_json_file(cfg_path);
  const int64_t have = j.contains("id2label") ? static_cast<int64_t>(j["id2label"].size()) : j.value("num_labels", 2);
  if (num_labels > 0 && have != num_labels) {
    std::cerr << "note: " << cfg_path << " has " << have << " labels; the data has " << num_labels << "\n";
    j["num_labels"] = num_labels;
    j.erase("id2label");
    j.erase("label2id");
  }
  // Decoder-only classifiers pool the last non-padding token: they need the padding id
  // (model.config.pad_token_id = tokenizer.pad_token_id in transformers).
  if (!j.contains("pad_token_id") || j["pad_token_id"].is_null()) j["pad_token_id"] = pad_id;
  auto m = models::create_model(models::ModelConfig(j, cfg_path), head);
  models::load_weights(*m, c.model);
  if (c.load_in_4bit) {  // the classification head stays in full precision, as transformers keeps it
    models::BnbConfig b;
    b.load_in_4bit = true;
    b.quant_type = c.bnb_4bit_quant_type;
    b.use_double_quant = c.bnb_4bit_use_double_quant;
    b.compute_dtype = c.bnb_4bit_compute_dtype;
    models::quantize_model(*m, b, {"lm_head", "score", "classifier"});
  }
  return m;
}

std::string join_names(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

// "{mr} ||" with row fields; an unknown {name} is an error naming the file and line.
std::string fill(const std::string& tmpl, const train::Row& r) {
  std::string out;
  for (std::size_t i = 0; i < tmpl.size(); ++i) {
    if (tmpl[i] != '{') {
      out.push_back(tmpl[i]);
      continue;
    }
    const auto j = tmpl.find('}', i);
    PEFT_CHECK(j != std::string::npos, ConfigError, "[config] template '", tmpl, "' has an unclosed '{'");
    const std::string key = tmpl.substr(i + 1, j - i - 1);
    auto it = r.fields.find(key);
    PEFT_CHECK(it != r.fields.end(), FormatError, "[train::data] ", r.file, ":", r.line, ": no column '", key,
               "' (used by the template '", tmpl, "')");
    out += it->second;
    i = j;
  }
  return out;
}

struct Loaded {
  std::vector<train::Row> rows;
  train::Dataset data;
};

// Which rows of a file a split takes: all, or with validation_split_percentage the training part
// (the first rows) or the validation part (the last ones).
enum class Part { All, Train, Validation };

template <typename T>
void take_part(std::vector<T>& v, Part part, int64_t pct, const std::string& file) {
  if (part == Part::All) return;
  const auto n = static_cast<int64_t>(v.size());
  const int64_t n_val = std::max<int64_t>(1, n * pct / 100);
  PEFT_CHECK(n_val < n, FormatError, "[train] ", file, ": ", n, " rows are too few for a ", pct,
             "% validation split");
  if (part == Part::Train) v.resize(static_cast<std::size_t>(n - n_val));
  else v.erase(v.begin(), v.begin() + (n - n_val));
}

Loaded load_split(const RunConfig& c, const std::string& file, int64_t limit, const io::Tokenizer& tok,
                  const std::vector<std::string>& labels, Part part = Part::All) {
  Loaded l;
  if (c.task != "token_cls") l.rows = train::read_rows(file);  // CoNLL files are read below
  take_part(l.rows, part, c.validation_split_percentage, file);
  if (limit > 0 && static_cast<int64_t>(l.rows.size()) > limit) l.rows.resize(limit);
  train::DataOptions o;
  o.max_length = c.max_length;
  o.skip_bad_rows = c.skip_bad_rows;
  o.text_column = c.text_column;
  o.text_pair_column = c.text_pair_column;
  o.label_column = c.label_column;
  o.label_regex = c.label_regex;
  o.source_column = c.source_column;
  o.target_column = c.target_column;
  o.label_names = labels;
  if (c.task == "causal_lm" && !c.prompt_template.empty()) {
    for (auto& r : l.rows) {
      r.fields["__prompt"] = fill(c.prompt_template, r);
      r.fields["__completion"] = fill(c.completion_template.empty() ? "" : c.completion_template, r);
    }
    o.prompt_column = "__prompt";
    o.completion_column = "__completion";
  }
  if (c.task == "seq_cls") o.task = train::TaskFormat::SeqCls;
  if (c.task == "seq2seq") {
    o.task = train::TaskFormat::Seq2Seq;
    // decoder_input_ids start with the model's decoder_start_token_id (T5: the pad id).
    const nlohmann::json j = read_json_file((fs::path(c.model) / "config.json").string());
    if (auto it = j.find("decoder_start_token_id"); it != j.end() && it->is_number_integer())
      o.decoder_start_token_id = it->get<int64_t>();
  }
  if (c.task == "token_cls") {
    o.task = train::TaskFormat::TokenCls;
    auto sentences = train::read_conll(file, static_cast<int>(c.tag_column));
    take_part(sentences, part, c.validation_split_percentage, file);
    if (limit > 0 && static_cast<int64_t>(sentences.size()) > limit) sentences.resize(limit);
    l.data = train::build_token_dataset(sentences, tok, o);
  } else {
    l.data = train::build_dataset(l.rows, tok, o);
  }
  if (l.data.skipped)
    std::cerr << file << (part == Part::Validation ? " (validation split)" : part == Part::Train ? " (training split)" : "")
              << (c.task_name.empty() ? "" : ", task " + c.task_name) << ": skipped " << l.data.skipped << " bad rows\n";
  return l;
}

// Greedy generation on the first n distinct prompts of the eval rows; BLEU against all the
// references of each prompt (E2E has several per meaning representation).
struct GenEval {
  double bleu = 0;
  std::size_t prompts = 0;
  std::string sample_prompt, sample;
};

GenEval generation_eval(const RunConfig& c, models::PretrainedModel& model, const io::Tokenizer& tok,
                        const std::vector<train::Row>& rows, PeftModel* pm = nullptr) {
  GenEval g;
  std::vector<std::string> prompts;
  std::map<std::string, std::vector<std::string>> refs;
  for (const auto& r : rows) {
    const std::string p = fill(c.prompt_template, r);
    std::string ref = fill(c.completion_template, r);
    while (!ref.empty() && ref.front() == ' ') ref.erase(ref.begin());
    if (!refs.count(p)) prompts.push_back(p);
    refs[p].push_back(ref);
  }
  if (static_cast<int64_t>(prompts.size()) > c.eval_generate) prompts.resize(c.eval_generate);
  auto gc = models::generation_config_from(model.config());
  gc.max_new_tokens = c.max_new_tokens;
  if (auto e = tok.eos_token_id()) gc.eos_token_id = {*e};
  std::vector<std::string> hyps;
  std::vector<std::vector<std::string>> all_refs;
  model.eval();
  for (const auto& p : prompts) {
    const auto enc = tok.encode(p);
    const at::Tensor ids = torch::tensor(std::vector<int64_t>(enc.ids.begin(), enc.ids.end())).unsqueeze(0);
    const at::Tensor out = (pm ? pm->generate(ids, {}, gc) : models::generate(model, ids, {}, gc))[0].contiguous();
    std::vector<io::TokenId> gen(out.data_ptr<int64_t>() + ids.size(1), out.data_ptr<int64_t>() + out.numel());
    std::string text = tok.decode(gen, true);
    if (auto nl = text.find('\n'); nl != std::string::npos) text.resize(nl);
    while (!text.empty() && text.front() == ' ') text.erase(text.begin());
    hyps.push_back(text);
    all_refs.push_back(refs[p]);
  }
  g.bleu = train::corpus_bleu(hyps, all_refs);
  g.prompts = prompts.size();
  if (!prompts.empty()) {
    g.sample_prompt = prompts.front();
    g.sample = hyps.front();
  }
  return g;
}

// Accuracy of a classification adapter on a split: per sequence (seq_cls) or per labelled token
// (token_cls; with prompt methods the logits over virtual tokens are trimmed). Multi-task data:
// each row's prediction is taken over its own task's head, and per_task has one figure per task.
struct Accuracy {
  double all = 0;
  std::vector<double> per_task;
  std::string str(const train::Dataset& d) const {
    std::ostringstream o;
    o << all;
    for (std::size_t t = 0; t < per_task.size(); ++t) o << (t ? ", " : " (") << d.tasks[t].name << " " << per_task[t];
    if (!per_task.empty()) o << ")";
    return o.str();
  }
};

Accuracy classification_accuracy(PeftModel& pm, const train::Dataset& d, int64_t pad, bool tokens) {
  auto& m = pm.base_model();
  const bool was = m.is_training();
  m.eval();
  torch::NoGradGuard ng;
  const bool trim = pm.trim_prompt_logits;
  pm.trim_prompt_logits = true;
  std::vector<int64_t> pred, gold, task;
  const auto L = at::TensorOptions().dtype(at::kLong);
  for (const auto& idx : train::make_batches(d, 32, false, 0, false)) {
    const train::Batch b = train::collate(d, idx, pad);
    models::ModelInputs in;
    in.input_ids = at::tensor(b.input_ids, L).view({b.rows, b.cols});
    in.attention_mask = at::tensor(b.attention_mask, L).view({b.rows, b.cols});
    if (!b.token_type_ids.empty()) in.token_type_ids = at::tensor(b.token_type_ids, L).view({b.rows, b.cols});
    at::Tensor logits = pm.forward(in).logits;
    if (!d.tasks.empty()) logits = train::mask_to_tasks(logits.to(at::kFloat), b.seq_tasks, d.tasks);
    const at::Tensor p = logits.argmax(-1).contiguous();
    if (tokens) {
      for (int64_t i = 0; i < b.rows * b.cols; ++i)
        if (b.labels[i] != -100) {
          pred.push_back(p.data_ptr<int64_t>()[i]);
          gold.push_back(b.labels[i]);
          if (!d.tasks.empty()) task.push_back(b.seq_tasks[i / b.cols]);
        }
    } else {
      for (int64_t r = 0; r < b.rows; ++r) {
        pred.push_back(p.data_ptr<int64_t>()[r]);
        gold.push_back(b.seq_labels[r]);
        if (!d.tasks.empty()) task.push_back(b.seq_tasks[r]);
      }
    }
  }
  pm.trim_prompt_logits = trim;
  if (was) m.train();
  Accuracy a;
  a.all = train::accuracy(pred, gold);
  for (std::size_t t = 0; t < d.tasks.size(); ++t) {
    std::vector<int64_t> p, g;
    for (std::size_t i = 0; i < task.size(); ++i)
      if (task[i] == static_cast<int64_t>(t)) {
        p.push_back(pred[i]);
        g.push_back(gold[i]);
      }
    a.per_task.push_back(p.empty() ? 0.0 : train::accuracy(p, g));
  }
  return a;
}

// The training and evaluation data: one split each, or for a multi-task run every task's splits
// joined (merge_tasks), the eval sets with their task's training labels.
struct Splits {
  Loaded train, eval;
  bool has_eval = false;
};

// One task's (or a single-task run's) splits: train_file, and eval_file or the tail of train_file.
Splits load_splits(const RunConfig& c, const io::Tokenizer& tok, const std::string& who) {
  PEFT_CHECK(!c.train_file.empty(), ConfigError, "[config] ", who, "key 'train_file' is required");
  const bool split = c.eval_file.empty() && c.validation_split_percentage > 0;
  Splits s;
  s.train = load_split(c, c.train_file, c.max_train_samples, tok, {}, split ? Part::Train : Part::All);
  PEFT_CHECK(!s.train.data.examples.empty(), FormatError, "[train] ", who, c.train_file, ": the dataset is empty");
  if (!c.eval_file.empty() || split) {
    s.eval = load_split(c, split ? c.train_file : c.eval_file, c.max_eval_samples, tok, s.train.data.label_names,
                        split ? Part::Validation : Part::All);
    s.has_eval = true;
  }
  return s;
}

Splits load_train_eval(const RunConfig& c, const io::Tokenizer& tok) {
  if (c.tasks.empty()) return load_splits(c, tok, "");
  std::vector<std::string> names;
  std::vector<train::Dataset> tr, ev;
  Splits s;
  for (const auto& t : c.tasks) {
    Splits one = load_splits(train::task_config(c, t), tok, "task '" + t.name + "': ");
    PEFT_CHECK(names.empty() || one.has_eval == s.has_eval, ConfigError, "[config] key 'tasks': give every task an "
               "evaluation set (eval_file or validation_split_percentage) or none (task '", t.name, "')");
    s.has_eval = one.has_eval;
    std::cout << "task " << t.name << ": " << one.train.data.examples.size() << " training examples, labels ["
              << join_names(one.train.data.label_names) << "]\n";
    names.push_back(t.name);
    tr.push_back(std::move(one.train.data));
    if (one.has_eval) ev.push_back(std::move(one.eval.data));
  }
  s.train.data = train::merge_tasks(names, tr);
  if (s.has_eval) s.eval.data = train::merge_tasks(names, ev);
  return s;
}

void run_train(const std::string& cfg_path, const std::vector<std::string>& overrides, const std::string& resume) {
  const RunConfig c = train::load_run_config(cfg_path, overrides);
  // A rank of a data-parallel run (RANK/WORLD_SIZE set by the launcher or torchrun): only rank 0 prints.
  const auto denv = distributed::env_from_environment();
  if (denv.rank != 0) std::cout.setstate(std::ios_base::badbit);
  const auto tok = io::Tokenizer::from_pretrained(c.model);
  Splits splits = load_train_eval(c, tok);
  Loaded& train_split = splits.train;
  Loaded& eval_split = splits.eval;
  const bool has_eval = splits.has_eval;
  // Seeded before the model is built, as transformers' set_seed: a new classification head is
  // initialised from the seed, so a run (and every rank of a data-parallel run) starts the same.
  at::manual_seed(static_cast<uint64_t>(c.args.seed));
  auto model = load_for_task(c, static_cast<int64_t>(train_split.data.label_names.size()),
                             tok.pad_token_id().value_or(tok.eos_token_id().value_or(0)));
  if (c.load_in_4bit) {
    models::prepare_model_for_kbit_training(*model, c.args.gradient_checkpointing);
    std::cout << "4-bit base (" << c.bnb_4bit_quant_type << (c.bnb_4bit_use_double_quant ? ", double quant" : "")
              << "): weights " << models::weight_bytes(*model) << " bytes\n";
  }
  at::manual_seed(static_cast<uint64_t>(c.args.seed));
  const PeftConfig& pcfg = *c.peft;
  if (!c.adapter.empty()) {
    // A per-task adapter of a multi-task run names its labels: the data must have the same ones.
    const fs::path task_json = fs::path(c.adapter) / "task.json";
    if (fs::exists(task_json) && c.tasks.empty()) {
      const auto j = read_json_file(task_json.string());
      const auto want = j.at("label_names").get<std::vector<std::string>>();
      PEFT_CHECK(want == train_split.data.label_names, ConfigError, "[train] ", task_json.string(), ": the head of task '",
                 j.value("task", std::string()), "' was trained for labels [", join_names(want),
                 "], but the data has [", join_names(train_split.data.label_names), "]");
    }
  }
  // adapter=DIR: continue training a saved adapter (e.g. a shared multi-task prefix) instead of a fresh one.
  auto pm = c.adapter.empty() ? get_peft_model(model, pcfg) : PeftModel::from_pretrained(model, c.adapter, "default", true);
  if (!c.adapter.empty()) std::cout << "starting from adapter " << c.adapter << "\n";
  std::cout << "method " << c.method << " (" << to_string(pcfg.peft_type) << "): ";
  pm->print_trainable_parameters();
  const int64_t pad = tok.pad_token_id().value_or(tok.eos_token_id().value_or(0));
  train::Trainer trainer(pm, c.args, train_split.data, has_eval ? &eval_split.data : nullptr, pad);
  if (denv.world_size > 1) {
    distributed::ProcessGroupOptions po;
    po.timeout_seconds = c.ddp_timeout;
    trainer.set_collective(distributed::init_process_group(denv, po));
    std::cout << "data-parallel: " << denv.world_size << " ranks, global batch "
              << denv.world_size * c.args.per_device_train_batch_size * c.args.gradient_accumulation_steps << "\n";
  }

  std::optional<double> loss0;
  GenEval g0;
  const bool cls = c.task == "seq_cls" || c.task == "token_cls";
  if (has_eval) {
    loss0 = trainer.evaluate().loss;
    std::cout << "before: eval loss " << *loss0 << "\n";
    if (cls)
      std::cout << "before: eval accuracy "
                << classification_accuracy(*pm, eval_split.data, pad, c.task == "token_cls").str(eval_split.data) << "\n";
    if (c.eval_generate > 0 && !c.prompt_template.empty()) {
      g0 = generation_eval(c, pm->base_model(), tok, eval_split.rows, pm.get());
      std::cout << "before: BLEU " << g0.bleu << " on " << g0.prompts << " prompts\n"
                << "before: " << g0.sample_prompt << " " << g0.sample << "\n";
    }
  }
  const auto res = trainer.train(resume);
  std::cout << "trained " << res.global_step << " steps, mean train loss " << res.train_loss << "\n";
  if (res.eval_loss) std::cout << "after:  eval loss " << *res.eval_loss << (loss0 ? " (was " + std::to_string(*loss0) + ")" : "") << "\n";
  // The run's summary for tools (peft compare): parameters, speed, metrics before and after.
  const auto [trainable, all] = pm->get_nb_trainable_parameters();
  nlohmann::json summary = {{"method", c.method},
                            {"task", c.task},
                            {"trainable_params", trainable},
                            {"all_params", all},
                            {"steps", res.global_step},
                            {"train_loss", res.train_loss},
                            {"train_tokens", res.train_tokens},
                            {"train_seconds", res.train_seconds},
                            {"train_tokens_per_second", res.train_seconds > 0 ? res.train_tokens / res.train_seconds : 0.0},
                            {"peak_rss_mb", peak_rss_mb()},
                            {"metrics", nlohmann::json::object()},
                            {"metrics_before", nlohmann::json::object()}};
  if (res.eval_loss) summary["metrics"]["eval_loss"] = *res.eval_loss;
  if (loss0) summary["metrics_before"]["eval_loss"] = *loss0;
  if (cls && has_eval) {
    const Accuracy acc = classification_accuracy(*pm, eval_split.data, pad, c.task == "token_cls");
    std::cout << "after:  eval accuracy " << acc.str(eval_split.data) << "\n";
    summary["metrics"]["accuracy"] = acc.all;
    for (std::size_t t = 0; t < acc.per_task.size(); ++t)
      summary["metrics"]["accuracy/" + eval_split.data.tasks[t].name] = acc.per_task[t];
  }
  if (!train_split.data.tasks.empty() && denv.rank == 0) {
    const std::string dir = (fs::path(c.args.output_dir) / "tasks").string();
    train::save_task_adapters(*pm, train_split.data.tasks, dir);
    std::cout << "per-task adapters: " << dir << "/{";
    for (std::size_t t = 0; t < train_split.data.tasks.size(); ++t) std::cout << (t ? "," : "") << train_split.data.tasks[t].name;
    std::cout << "} (continue on one task with adapter=" << dir << "/<task>)\n";
  }
  if (c.eval_generate > 0 && !c.prompt_template.empty() && has_eval) {
    const auto g1 = generation_eval(c, pm->base_model(), tok, eval_split.rows, pm.get());
    std::cout << "after:  BLEU " << g1.bleu << " (was " << g0.bleu << ")\n"
              << "after:  " << g1.sample_prompt << " " << g1.sample << "\n";
    summary["metrics"]["bleu"] = g1.bleu;
    summary["metrics_before"]["bleu"] = g0.bleu;
  }
  write_file_atomic((fs::path(c.args.output_dir) / "results.json").string(), summary.dump(1) + "\n");
  std::cout << "adapter:     " << res.adapter_dir << "\n"
            << "checkpoints: " << c.args.output_dir << "/checkpoint-*\n"
            << "metrics:     " << c.args.output_dir << "/metrics.jsonl, " << c.args.output_dir << "/runs (TensorBoard)\n"
            << "loss plot:   " << c.args.output_dir << "/loss.png\n"
            << "summary:     " << c.args.output_dir << "/results.json\n";
}

// peft eval: loss / perplexity (and BLEU with templates) of a model, with an optional adapter.
void run_eval(const std::string& cfg_path, const std::vector<std::string>& overrides) {
  const RunConfig c = train::load_run_config(cfg_path, overrides);
  PEFT_CHECK(!c.eval_file.empty(), ConfigError, "[config] key 'eval_file' is required for peft eval");
  PEFT_CHECK(c.task == "causal_lm", NotSupported, "[eval] peft eval supports task causal_lm in this build");
  const auto tok0 = io::Tokenizer::from_pretrained(c.model);
  auto model = load_for_task(c, 0, tok0.pad_token_id().value_or(tok0.eos_token_id().value_or(0)));
  std::shared_ptr<PeftModel> pm;
  if (!c.adapter.empty()) pm = PeftModel::from_pretrained(model, c.adapter);
  const auto tok = io::Tokenizer::from_pretrained(c.model);
  const auto split = load_split(c, c.eval_file, c.max_eval_samples, tok, {});
  PEFT_CHECK(!split.data.examples.empty(), FormatError, "[eval] ", c.eval_file, ": the dataset is empty");
  const int64_t pad = tok.pad_token_id().value_or(tok.eos_token_id().value_or(0));
  torch::NoGradGuard ng;
  model->eval();
  double total = 0;
  int64_t n = 0;
  for (const auto& idx : train::make_batches(split.data, c.args.per_device_eval_batch_size, false, 0, false)) {
    const train::Batch b = train::collate(split.data, idx, pad);
    models::ModelInputs in;
    const auto L = at::TensorOptions().dtype(at::kLong);
    in.input_ids = at::tensor(b.input_ids, L).view({b.rows, b.cols});
    in.attention_mask = at::tensor(b.attention_mask, L).view({b.rows, b.cols});
    in.labels = at::tensor(b.labels, L).view({b.rows, b.cols});
    int64_t k = 0;
    for (int64_t r = 0; r < b.rows; ++r)
      for (int64_t t = 1; t < b.cols; ++t) k += b.labels[r * b.cols + t] != -100;
    if (k == 0) continue;
    total += (pm ? pm->forward(in) : model->forward(in)).loss.item<double>() * static_cast<double>(k);
    n += k;
  }
  const double loss = n ? total / static_cast<double>(n) : 0.0;
  std::cout << "eval loss " << loss << ", perplexity " << train::perplexity(loss) << " over " << n << " tokens\n";
  if (c.eval_generate > 0 && !c.prompt_template.empty()) {
    const auto g = generation_eval(c, *model, tok, split.rows, pm.get());
    std::cout << "BLEU " << g.bleu << "\n" << g.sample_prompt << " " << g.sample << "\n";
  }
}

}  // namespace

void add_eval_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("eval", "Evaluate a model (and an adapter: adapter=DIR) on eval_file from a YAML config");
  auto cfg = std::make_shared<std::string>();
  auto over = std::make_shared<std::vector<std::string>>();
  cmd->add_option("config", *cfg, "YAML file (same keys as peft train)")->required();
  cmd->add_option("overrides", *over, "key=value overrides, e.g. adapter=build/demo/adapter");
  cmd->callback([cfg, over] { run_eval(*cfg, *over); });
}

void add_train_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("train", "Fine-tune a model with an adapter from a YAML config (+ key=value overrides)");
  auto cfg = std::make_shared<std::string>();
  auto over = std::make_shared<std::vector<std::string>>();
  auto resume = std::make_shared<std::string>();
  cmd->add_option("config", *cfg, "YAML file with PEFT / TrainingArguments keys")->required();
  cmd->add_option("overrides", *over, "key=value overrides, e.g. learning_rate=1e-3 max_steps=50");
  cmd->footer(
      "Paper options beyond PEFT (saved configs then need peft.cpp):\n"
      "  p_tuning_template (method p_tuning, CAUSAL_LM / SEQ_2_SEQ_LM): whitespace-separated items\n"
      "    [x] the input (once), [v] a virtual token (num_virtual_tokens of them, one LSTM/MLP encoder),\n"
      "    [v:word] a virtual token initialised from word, [id:N] an anchor token id, any other word an\n"
      "    anchor (real, frozen embedding; tokenizer_name_or_path, default the model). E.g.\n"
      "    p_tuning_template='[x] [v] [v] capital [v]'. CAUSAL_LM: y follows the template.\n"
      "  prefix_on=encoder_and_decoder (prefix_tuning, SEQ_2_SEQ_LM): a prefix for the encoder too.\n"
      "  prefix_placement=infix|embedding (prefix_tuning, CAUSAL_LM): [x; INFIX; y] or input layer only.\n"
      "  tasks (task seq_cls / token_cls, P-Tuning v2's multi-task prompts): a list of {name, data keys:\n"
      "    train_file, eval_file, text_column, text_pair_column, label_column, label_regex, tag_column,\n"
      "    max_train_samples, max_eval_samples, max_length, skip_bad_rows, validation_split_percentage};\n"
      "    one shared adapter on mixed batches, a classifier head per task; writes output_dir/tasks/<name>/,\n"
      "    one plain PEFT adapter per task (continue on one with adapter=output_dir/tasks/<name>).\n"
      "Data keys: label_regex (a regex whose first group is the label, searched in label_column),\n"
      "  validation_split_percentage (without eval_file: the last N% of train_file is the eval set),\n"
      "  tag_column (token_cls: the CoNLL column of the tags, -1 = the last).");
  cmd->add_option("--resume", *resume, "Continue from a checkpoint folder (output_dir/checkpoint-N)")
      ->check(CLI::ExistingDirectory);
  auto launch = std::make_shared<LaunchFlags>();
  add_launch_options(*cmd, *launch);
  cmd->callback([cfg, over, resume, launch] {
    std::vector<std::string> rank_args = {"train", *cfg};
    rank_args.insert(rank_args.end(), over->begin(), over->end());
    if (!resume->empty()) rank_args.insert(rank_args.end(), {"--resume", *resume});
    if (!launch_if_asked(*launch, rank_args)) run_train(*cfg, *over, *resume);
  });
}

void add_merge_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("merge", "Merge an adapter into its base model and write a full HF folder "
                                           "(or, with --format gguf, a llama.cpp GGUF model)");
  struct A {
    std::string model, adapter, out, quant, format = "hf", type;
    bool double_quant = false, requantize = false;
  };
  auto a = std::make_shared<A>();
  cmd->add_option("model", a->model, "Base model folder or GGUF file")->required()->check(CLI::ExistingPath);
  cmd->add_option("adapter", a->adapter, "PEFT adapter folder")->required()->check(CLI::ExistingDirectory);
  cmd->add_option("out", a->out, "Output folder (--format gguf: output .gguf file)")->required();
  cmd->add_option("--format", a->format, "hf: a Hugging Face folder; gguf: a llama.cpp GGUF model laid out like "
                                         "the GGUF base (metadata and tokenizer copied)")
      ->check(CLI::IsMember({"hf", "gguf"}));
  cmd->add_option("--type", a->type, "--format gguf: type of the weight matrices (norms stay f32; default f32)")
      ->check(CLI::IsMember({"f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1"}));
  // QLoRA adapters: merge into the 4-bit base they were trained on (PEFT issues #1080, #2105).
  cmd->add_option("--4bit", a->quant, "The adapter was trained on a 4-bit base of this type (nf4 or fp4): "
                                      "merge into that base's dequantised weights")
      ->check(CLI::IsMember({"nf4", "fp4"}));
  cmd->add_flag("--double-quant", a->double_quant, "With --4bit: the base used double quantisation");
  cmd->add_flag("--requantize", a->requantize, "Keep the merged model 4-bit (bitsandbytes format) and report "
                                               "the re-quantisation error; default: full precision");
  cmd->callback([a] {
    const bool to_gguf = a->format == "gguf";
    PEFT_CHECK(to_gguf || a->type.empty(), ConfigError, "[merge] --type applies to --format gguf");
    if (to_gguf) {
      PEFT_CHECK(fs::is_regular_file(a->model) && io::is_gguf_file(a->model), NotSupported, "[merge] --format gguf: ",
                 a->model, " is not a GGUF file; the output copies the base's llama.cpp metadata and tokenizer, so "
                 "give the GGUF base (convert an HF folder with llama.cpp's convert_hf_to_gguf.py), or merge to an "
                 "HF folder and convert that");
      PEFT_CHECK(!a->requantize && a->quant.empty(), ConfigError, "[merge] --format gguf: --4bit / --requantize "
                 "apply to bitsandbytes bases; choose the GGUF weight type with --type");
    }
    models::LoadOptions o;
    if (!a->quant.empty()) {
      o.load_in_4bit = true;
      o.bnb_4bit_quant_type = a->quant;
      o.bnb_4bit_use_double_quant = a->double_quant;
    }
    auto base = models::load_model(a->model, o);
    std::vector<models::AdaptableLinearImpl*> q4;
    for (const auto& m : base->modules())
      if (auto* l = dynamic_cast<models::AdaptableLinearImpl*>(m.get()); l && l->quantized()) q4.push_back(l);
    PEFT_CHECK(!a->requantize || !q4.empty(), ConfigError,
               "[merge] --requantize needs a 4-bit base (--4bit or a bitsandbytes-quantised model folder)");
    if (!q4.empty() && !a->requantize) models::dequantize_model(*base);
    auto pm = PeftModel::from_pretrained(base, a->adapter);
    auto merged = pm->merge_and_unload(/*safe_merge=*/true);
    if (a->requantize) {
      double worst = 0.0;
      for (auto* l : q4) worst = std::max(worst, l->last_requant_error());
      std::cout << "re-quantised " << q4.size() << " 4-bit layers; largest |merged - 4-bit| " << worst << "\n";
    }
    if (to_gguf) {
      const auto type = *io::parse_ggml_type(a->type.empty() ? "f32" : a->type);
      const auto r = exporter::write_merged_gguf(*merged, io::GgufFile::open(a->model), a->out, type);
      std::cout << "wrote merged GGUF " << a->out << ": " << r.tensors << " tensors, " << r.quantized << " in "
                << io::ggml_type_name(static_cast<uint32_t>(type))
                << (r.untied_output ? " (output.weight written: the merge changed the tied lm_head)" : "") << "\n";
      return;
    }
    models::save_pretrained(*merged, a->out);
    if (fs::is_regular_file(a->model) && io::is_gguf_file(a->model)) {  // a GGUF base carries its tokenizer
      const auto g = io::GgufFile::open(a->model);
      write_json_file((fs::path(a->out) / "generation_config.json").string(), models::gguf_generation_config(g));
      if (g.has("tokenizer.ggml.model")) io::write_gguf_tokenizer(g, a->out);
    }
    for (const char* f : {"tokenizer.json", "tokenizer_config.json", "tokenizer.model", "tokenizer.bin", "generation_config.json"})
      if (fs::is_directory(a->model) && fs::exists(fs::path(a->model) / f))
        fs::copy_file(fs::path(a->model) / f, fs::path(a->out) / f, fs::copy_options::overwrite_existing);
    std::cout << "wrote merged model to " << a->out << "\n";
  });
}

}  // namespace peft::cli
