#pragma once
// The data of a run (tier 2, torch-free in substance): the training and evaluation splits a run
// config names, tokenised for its task, one split per task joined for multi-task runs.
//
//   const auto rc = peft::train::load_run_config("examples/configs/e2e_lora.yaml");
//   const auto tok = peft::io::Tokenizer::from_pretrained(rc.model);
//   auto splits = peft::train::load_train_eval(rc, tok);
#include <string>
#include <vector>

#include "peft/io/tokenizer.h"
#include "peft/train/data.h"
#include "peft/train/run_config.h"

namespace peft::train {

/// The rows (or, token_cls, the sentences) of a file as read and the dataset built from them.
struct LoadedSplit {
  std::vector<Row> rows;
  std::vector<TaggedSentence> sentences;
  Dataset data;
};

/// Which rows of a file a split takes: all, or with validation_split_percentage the training part
/// (the first rows) or the validation part (the last ones).
enum class SplitPart { All, Train, Validation };

/// One file of the run's task, at most `limit` rows (0: all), labels as given (empty: from the data).
LoadedSplit load_split(const RunConfig& c, const std::string& file, int64_t limit, const io::Tokenizer& tok,
                       const std::vector<std::string>& labels, SplitPart part = SplitPart::All);

struct Splits {
  LoadedSplit train, eval;
  bool has_eval = false;
};

/// The training and evaluation data: train_file, and eval_file or the tail of train_file; for a
/// multi-task run every task's splits joined (merge_tasks), the eval sets with their task's
/// training labels.
Splits load_train_eval(const RunConfig& c, const io::Tokenizer& tok);

/// "{mr} ||" with the row's fields; an unknown {name} is an error naming the file and line.
std::string fill_template(const std::string& tmpl, const Row& r);

}  // namespace peft::train
