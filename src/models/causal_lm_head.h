#pragma once
// The causal-LM head of the decoder architectures (private to src/models): logits, or in the
// trainer's step the loss alone, from the final hidden states.
#include <ATen/core/Tensor.h>

#include "peft/models/adaptable_linear.h"
#include "peft/models/blocks.h"
#include "peft/models/model.h"

namespace peft::models {

/// Fills out.loss and out.logits for final hidden states h. When `in` asks for the loss alone
/// (loss_only, with labels) and the output projection is a plain matrix (`lm_head`'s
/// plain_weight(), or `tied`, the embedding table, when lm_head is null) and `plain_projection`
/// holds (false for soft-capped logits), the loss comes from h without logits
/// (causal_lm_loss_from_hidden) and out.logits stays undefined. Otherwise out.logits =
/// project(h) and, with labels, out.loss = causal_lm_loss.
template <class Project>
void causal_lm_output(ModelOutput& out, const at::Tensor& h, const ModelInputs& in, const AdaptableLinear& lm_head,
                      const at::Tensor& tied, bool plain_projection, Project&& project) {
  if (plain_projection && in.loss_only && in.labels.defined())
    out.loss = causal_lm_loss_from_hidden(h, lm_head ? lm_head->plain_weight() : tied,
                                          lm_head ? lm_head->bias : at::Tensor(), in.labels);
  if (out.loss.defined()) return;
  out.logits = project(h);
  if (in.labels.defined()) out.loss = causal_lm_loss(out.logits, in.labels);
}

}  // namespace peft::models
