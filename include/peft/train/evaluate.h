#pragma once
// Task metrics of a model on a split (tier 2): generation BLEU for causal LM runs with templates,
// classification, regression, multi-label, token-classification and seq2seq metrics — what the
// end of a run and `peft eval` report, computed by one function.
#include <cstddef>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "peft/io/tokenizer.h"
#include "peft/peft_model.h"
#include "peft/train/data.h"
#include "peft/train/datasets.h"
#include "peft/train/run_config.h"

namespace peft::train {

/// Greedy generation on the first `c.eval_generate` distinct prompts of the eval rows; BLEU
/// against all the references of each prompt (E2E has several per meaning representation).
struct GenerationScore {
  double bleu = 0;
  std::size_t prompts = 0;
  std::string sample_prompt, sample;
  std::vector<std::string> prompt_texts, hyps;   ///< one per prompt
  std::vector<std::vector<std::string>> refs;    ///< the references of each prompt
};
GenerationScore generation_eval(const RunConfig& c, models::PretrainedModel& model, const io::Tokenizer& tok,
                                const std::vector<Row>& rows, PeftModel* pm = nullptr);

/// Accuracy of a classification adapter on a split: per sequence (seq_cls) or per labelled token
/// (token_cls; with prompt methods the logits over virtual tokens are trimmed). Multi-task data:
/// each row's prediction is taken over its own task's head, and per_task has one figure per task.
struct Accuracy {
  double all = 0;
  std::vector<double> per_task;
  /// "0.83 (a 0.8, b 0.86)".
  std::string str(const Dataset& d) const;
};
Accuracy classification_accuracy(PeftModel& pm, const Dataset& d, int64_t pad, bool tokens);

/// The task metrics of `pm` on an evaluation split of run `c` (what run_training reports after
/// training and `peft eval` prints), as JSON keys:
///   seq_cls single-label: accuracy, f1 (binary F1 of label index 1 with two labels, as GLUE's
///     MRPC; macro F1 with more); multi-task data: accuracy and accuracy/<task>
///   seq_cls regression: mse, pearson, spearman
///   seq_cls multi-label: micro_f1, macro_f1, subset_accuracy (a label is predicted when its
///     sigmoid is > 0.5, i.e. its logit > 0)
///   token_cls: accuracy (per labelled token), precision, recall, f1 (entity level, seqeval);
///     multi-task data: accuracy and accuracy/<task>
///   causal_lm with prompt_template and eval_generate: bleu (generation_eval)
///   seq2seq with eval_generate: bleu and rouge_l of greedy generations from the first
///     eval_generate sources against their targets
/// With `predictions`, one JSON object per example: input (the text, "text ||| pair" for pairs, or
/// the words), gold, prediction and the probabilities (softmax, sigmoid) or value.
nlohmann::json task_metrics(const RunConfig& c, PeftModel& pm, const io::Tokenizer& tok, const LoadedSplit& split,
                            int64_t pad, std::vector<nlohmann::json>* predictions = nullptr);

}  // namespace peft::train
