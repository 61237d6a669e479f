#pragma once
// Prompt ensembling (Lester et al. 2021, "The Power of Scale for Parameter-Efficient Prompt
// Tuning", §5): several prompts trained for one task, evaluated on one batch in a single forward
// (the batch is repeated once per prompt) and combined (tier 2).
//
//   auto r = peft::prompt::ensemble(*pm, {"p1", "p2", "p3"}, inputs, peft::prompt::Combine::MajorityVote);
//   at::Tensor labels = r.prediction;   // [B] for SEQ_CLS
#include <string>
#include <vector>

#include "peft/models/model.h"
#include "peft/peft_model.h"

namespace peft::prompt {

enum class Combine { MajorityVote, MeanProbability };

struct EnsembleResult {
  at::Tensor probs;       ///< [K, B, ..., C]: each prompt's class probabilities (softmax of its logits)
  at::Tensor mean_probs;  ///< [B, ..., C]
  at::Tensor votes;       ///< [B, ..., C]: how many prompts chose each class
  at::Tensor prediction;  ///< [B, ...]: the combined choice (ties in a vote go to the higher mean probability)
};

/// Runs the Prompt Tuning / P-Tuning adapters `adapters` of `pm` (same task and num_virtual_tokens)
/// on `in` in one forward of K·B rows and combines them. Logits over virtual-token positions are
/// dropped (CAUSAL_LM, TOKEN_CLS), so positions line up with the input. Inference only.
EnsembleResult ensemble(PeftModel& pm, const std::vector<std::string>& adapters, const models::ModelInputs& in,
                        Combine combine = Combine::MajorityVote);

}  // namespace peft::prompt
