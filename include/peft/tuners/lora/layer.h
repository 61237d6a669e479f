#pragma once
// LoRA adapters for the model slots (tier 2). Mirrors peft/tuners/lora/layer.py (LoraLayer,
// Linear, Embedding) and peft/tuners/lora/dora.py (DoraLinearLayer).
#include <memory>
#include <string>

#include "peft/models/adaptable_linear.h"
#include "peft/tuners/lora/config.h"

namespace peft::lora {

/// Per-module settings resolved from the config (rank_pattern / alpha_pattern applied).
struct LoraSettings {
  int64_t r = 8;
  double alpha = 8;
  double dropout = 0.0;
  bool use_rslora = false;
  bool use_dora = false;
  bool lora_bias = false;
  std::string init = "true";
  double scaling() const;
};

/// Creates LoRA parameters on `slot` under PEFT's names (`lora_A.<name>.weight`,
/// `lora_B.<name>.weight`, DoRA: `lora_magnitude_vector.<name>.weight`) and attaches the adapter.
void add_lora(models::AdaptableLinearImpl& slot, const std::string& name, const LoraSettings& s);
/// `lora_embedding_A.<name>` [r, num_embeddings] and `lora_embedding_B.<name>` [dim, r].
void add_lora(models::AdaptableEmbeddingImpl& slot, const std::string& name, const LoraSettings& s);
/// Removes the adapter and its parameters from the slot.
void remove_lora(models::AdaptableLinearImpl& slot, const std::string& name);
void remove_lora(models::AdaptableEmbeddingImpl& slot, const std::string& name);

/// A LoRA adapter's tensors and settings as held by a slot (for save/merge/weighted combination).
struct LoraTensors {
  at::Tensor A, B, B_bias, magnitude;  ///< A [r, in], B [out, r]; embedding: A [r, V], B [D, r]
  LoraSettings settings;
};
/// nullptr-equivalent (A undefined) when the slot has no LoRA adapter of that name.
LoraTensors lora_tensors(models::AdaptableLinearImpl& slot, const std::string& name);
LoraTensors lora_tensors(models::AdaptableEmbeddingImpl& slot, const std::string& name);

}  // namespace peft::lora
