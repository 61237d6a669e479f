#pragma once
// Task metrics of a model on a split (tier 2): generation BLEU for causal LM runs with templates,
// accuracy for classification.
#include <cstddef>
#include <string>
#include <vector>

#include "peft/io/tokenizer.h"
#include "peft/peft_model.h"
#include "peft/train/data.h"
#include "peft/train/run_config.h"

namespace peft::train {

/// Greedy generation on the first `c.eval_generate` distinct prompts of the eval rows; BLEU
/// against all the references of each prompt (E2E has several per meaning representation).
struct GenerationScore {
  double bleu = 0;
  std::size_t prompts = 0;
  std::string sample_prompt, sample;
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

}  // namespace peft::train
