#pragma once
// (IA)³ vectors on the model's linear slots (tier 2). Mirrors peft/tuners/ia3/layer.py
// (IA3Layer, Linear): multiplicative, through LinearAdapter's input_scale / output_scale.
#include <string>

#include "peft/models/adaptable_linear.h"

namespace peft::ia3 {

/// Creates `ia3_l.<name>` on `slot` ([1, in] when `is_feedforward`, else [out, 1]; ones with
/// `init_ones`, standard normal otherwise) and attaches the adapter. A slot that holds another
/// (IA)³ adapter keeps that adapter's kind, as PEFT's layers do.
void add_ia3(models::AdaptableLinearImpl& slot, const std::string& name, bool is_feedforward, bool init_ones);
/// Removes the adapter and its vector from the slot.
void remove_ia3(models::AdaptableLinearImpl& slot, const std::string& name);
/// The slot's `ia3_l.<name>` (undefined when the slot has no (IA)³ adapter of that name).
at::Tensor ia3_vector(models::AdaptableLinearImpl& slot, const std::string& name);

}  // namespace peft::ia3
