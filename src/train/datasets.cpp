// The data of a run (train/datasets.h).
#include "peft/train/datasets.h"

#include <algorithm>
#include <filesystem>
#include <iostream>

#include "peft/core/check.h"
#include "peft/core/strings.h"
#include "peft/io/hf_checkpoint.h"

namespace peft::train {

namespace fs = std::filesystem;

// "{mr} ||" with row fields; an unknown {name} is an error naming the file and line.
std::string fill_template(const std::string& tmpl, const Row& r) {
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
    if (it == r.fields.end()) {
      std::string cols;
      for (const auto& [k, v] : r.fields) cols += (cols.empty() ? "{" : ", {") + k + "}";
      throw FormatError("[data] " + r.file + ":" + std::to_string(r.line) + ": no column '" + key +
                        "' (used by the template '" + tmpl + "'); the file's columns are " + cols +
                        ": write the template with those (prompt_template / completion_template)");
    }
    out += it->second;
    i = j;
  }
  return out;
}

template <typename T>
void take_part(std::vector<T>& v, SplitPart part, int64_t pct, const std::string& file) {
  if (part == SplitPart::All) return;
  const auto n = static_cast<int64_t>(v.size());
  const int64_t n_val = std::max<int64_t>(1, n * pct / 100);
  PEFT_CHECK(n_val < n, FormatError, "[train] ", file, ": ", n, " rows are too few for a ", pct,
             "% validation split");
  if (part == SplitPart::Train) v.resize(static_cast<std::size_t>(n - n_val));
  else v.erase(v.begin(), v.begin() + (n - n_val));
}

LoadedSplit load_split(const RunConfig& c, const std::string& file, int64_t limit, const io::Tokenizer& tok,
                       const std::vector<std::string>& labels, SplitPart part) {
  LoadedSplit l;
  const InvalidUtf8 utf8 = c.invalid_utf8 == "replace" ? InvalidUtf8::Replace : InvalidUtf8::Error;
  if (c.task != "token_cls") l.rows = read_rows(file, {}, utf8);  // CoNLL files are read below
  take_part(l.rows, part, c.validation_split_percentage, file);
  if (limit > 0 && static_cast<int64_t>(l.rows.size()) > limit) l.rows.resize(limit);
  DataOptions o;
  o.max_length = c.max_length;
  o.skip_bad_rows = c.skip_bad_rows;
  o.text_column = c.text_column;
  o.text_pair_column = c.text_pair_column;
  o.label_column = c.label_column;
  o.label_regex = c.label_regex;
  o.source_column = c.source_column;
  o.target_column = c.target_column;
  o.label_names = labels;
  const std::string problem = c.problem();
  if (problem == "regression") o.label_names = {kRegressionLabel};
  o.multi_label = problem == "multi_label_classification";
  if (c.task == "causal_lm" && !c.prompt_template.empty()) {
    for (auto& r : l.rows) {
      r.fields["__prompt"] = fill_template(c.prompt_template, r);
      r.fields["__completion"] = fill_template(c.completion_template.empty() ? "" : c.completion_template, r);
    }
    o.prompt_column = "__prompt";
    o.completion_column = "__completion";
  }
  if (c.task == "seq_cls") o.task = TaskFormat::SeqCls;
  if (c.task == "seq2seq") {
    o.task = TaskFormat::Seq2Seq;
    // decoder_input_ids start with the model's decoder_start_token_id (T5: the pad id).
    const nlohmann::json j = io::read_json_file((fs::path(c.model) / "config.json").string());
    if (auto it = j.find("decoder_start_token_id"); it != j.end() && it->is_number_integer())
      o.decoder_start_token_id = it->get<int64_t>();
  }
  if (c.task == "token_cls") {
    o.task = TaskFormat::TokenCls;
    l.sentences = read_conll(file, static_cast<int>(c.tag_column), utf8);
    take_part(l.sentences, part, c.validation_split_percentage, file);
    if (limit > 0 && static_cast<int64_t>(l.sentences.size()) > limit) l.sentences.resize(limit);
    l.data = build_token_dataset(l.sentences, tok, o);
  } else {
    l.data = build_dataset(l.rows, tok, o);
  }
  if (l.data.skipped)
    std::cerr << file << (part == SplitPart::Validation ? " (validation split)" : part == SplitPart::Train ? " (training split)" : "")
              << (c.task_name.empty() ? "" : ", task " + c.task_name) << ": skipped " << l.data.skipped << " bad rows\n";
  return l;
}

// One task's (or a single-task run's) splits: train_file, and eval_file or the tail of train_file.
namespace {
Splits load_splits(const RunConfig& c, const io::Tokenizer& tok, const std::string& who) {
  PEFT_CHECK(!c.train_file.empty(), ConfigError, "[config] ", who, "key 'train_file' is required");
  const bool split = c.eval_file.empty() && c.validation_split_percentage > 0;
  Splits s;
  s.train = load_split(c, c.train_file, c.max_train_samples, tok, {}, split ? SplitPart::Train : SplitPart::All);
  PEFT_CHECK(!s.train.data.examples.empty(), FormatError, "[train] ", who, c.train_file, ": the dataset is empty");
  const auto n_labels = static_cast<int64_t>(s.train.data.label_names.size());
  PEFT_CHECK(c.task != "seq_cls" || c.num_labels <= 1 || c.num_labels == n_labels, ConfigError, "[config] ", who,
             "key 'num_labels': ", c.num_labels, ", but ", c.train_file, " has ", n_labels, " labels [",
             join(s.train.data.label_names, 20), "]");
  if (!c.eval_file.empty() || split) {
    s.eval = load_split(c, split ? c.train_file : c.eval_file, c.max_eval_samples, tok, s.train.data.label_names,
                        split ? SplitPart::Validation : SplitPart::All);
    s.has_eval = true;
  }
  return s;
}

}  // namespace

Splits load_train_eval(const RunConfig& c, const io::Tokenizer& tok) {
  if (c.tasks.empty()) return load_splits(c, tok, "");
  std::vector<std::string> names;
  std::vector<Dataset> tr, ev;
  Splits s;
  for (const auto& t : c.tasks) {
    Splits one = load_splits(task_config(c, t), tok, "task '" + t.name + "': ");
    PEFT_CHECK(names.empty() || one.has_eval == s.has_eval, ConfigError, "[config] key 'tasks': give every task an "
               "evaluation set (eval_file or validation_split_percentage) or none (task '", t.name, "')");
    s.has_eval = one.has_eval;
    std::cout << "task " << t.name << ": " << one.train.data.examples.size() << " training examples, labels ["
              << join(one.train.data.label_names, 1000) << "]\n";
    names.push_back(t.name);
    tr.push_back(std::move(one.train.data));
    if (one.has_eval) ev.push_back(std::move(one.eval.data));
  }
  s.train.data = merge_tasks(names, tr);
  if (s.has_eval) s.eval.data = merge_tasks(names, ev);
  return s;
}

}  // namespace peft::train
