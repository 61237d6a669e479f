#pragma once
// P-Tuning templates (the seed's [P0..Pi] x [Pi+1..Pm] y with anchors): resolving the template
// against a tokenizer and laying the embeddings out (private to src/tuners).
#include <cstdint>
#include <vector>

#include "peft/models/model.h"
#include "peft/tuners/p_tuning/config.h"
#include "peft/tuners/prompt_learning/encoder.h"

namespace peft::prompt {

/// Tokenises the template's words (anchors, [v:word] inits), checks the ids and initialises the
/// virtual tokens named [v:word] with the mean embedding of the word's tokens.
std::vector<TemplateItem> resolve_template(const PromptEncoderConfig& c, const at::Tensor& words, PromptEncoder& enc);

/// The input embeddings, mask and labels of a P-Tuning template: per sample, the template with
/// x (the first `split[b]` positions) at [x], then the rest of the sample (y). Virtual tokens come
/// from `virt` [P, d] in template order; anchors are frozen word embeddings. Labels of template
/// tokens are -100.
struct Templated {
  at::Tensor embeds, mask, labels;
};
Templated apply_template(models::PretrainedModel& base, const std::vector<TemplateItem>& items, const at::Tensor& virt,
                         const at::Tensor& embeds, const at::Tensor& mask, const at::Tensor& labels,
                         const std::vector<int64_t>& split);

}  // namespace peft::prompt
