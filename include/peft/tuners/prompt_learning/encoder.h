#pragma once
// Prompt encoders of the prompt-learning methods (tier 2): PEFT's PromptEmbedding (Prompt
// Tuning), PromptEncoder (P-Tuning, MLP or LSTM) and PrefixEncoder (Prefix Tuning / P-Tuning v2).
// Parameters are registered under PEFT's names (embedding.weight, mlp_head.0.weight,
// lstm_head.weight_ih_l0, transform.0.weight, ...), so a PEFT prompt_encoder state dict loads as is.
#include <torch/nn/module.h>

#include <cstdint>
#include <map>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "peft/models/model.h"
#include "peft/tuners/prompt_learning/config.h"

namespace peft::prompt {

class PromptEncoder : public torch::nn::Module {
 public:
  /// The output for every virtual token, one sample: [P·S, token_dim] (prompt tuning, P-tuning)
  /// or [P, 2·num_layers·token_dim] (prefix tuning). This is what PEFT saves as prompt_embeddings.
  virtual at::Tensor forward() = 0;
  /// True when the encoder is just the output table (inference mode, prompt tuning, prefix
  /// tuning without projection): prompt_embeddings load straight into it.
  virtual bool table_only() const = 0;
  /// The embedding table (embedding.weight).
  virtual at::Tensor table() = 0;
};

/// Builds the encoder for `cfg` (model-derived fields already filled). `word_embeddings` [V, d]
/// seeds TEXT / SAMPLE_VOCAB prompt tuning; `init_ids` are the tokenised init text (TEXT).
/// `lookup`, when given, maps ids to their input embeddings as the model's input embedding module
/// does (PEFT calls `word_embeddings(ids)`: Gemma's module scales the rows by sqrt(hidden_size));
/// otherwise the rows of `word_embeddings` are copied. Random initialisation uses the global
/// LibTorch generator (torch.manual_seed).
std::shared_ptr<PromptEncoder> make_prompt_encoder(const PromptLearningConfig& cfg, const at::Tensor& word_embeddings,
                                                   const std::vector<int64_t>& init_ids = {},
                                                   const std::function<at::Tensor(const at::Tensor&)>& lookup = {});

/// PEFT's TEXT init ids: `ids` truncated to `total`, or repeated until long enough.
std::vector<int64_t> repeat_or_truncate(const std::vector<int64_t>& ids, int64_t total);

/// The per-layer key/value prefix from a prefix encoder output `flat` [B, P, 2·L·d] exactly as
/// PEFT's get_prompt lays it out: view [B, P, 2L, H, d/H], permute to [2L, B, H, P, d/H]; layer l
/// takes slots 2l (key) and 2l+1 (value). With `submodules` == 2 (encoder-decoder) the slot axis
/// is doubled and grouped by four per layer (PEFT's quirk): layer l takes slots 4l and 4l+1 of
/// the doubled axis. Returns num_layers entries of [B, H, P, d/H].
std::vector<models::KeyValue> prefix_key_values(const at::Tensor& flat, int64_t num_layers, int64_t heads,
                                                int64_t token_dim, int64_t submodules);

}  // namespace peft::prompt
