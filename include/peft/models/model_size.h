#pragma once
// How big the model a config.json describes is, checked before it is built (tier 0: torch-free).
//
//   peft::models::check_model_size(cfg, 4.0, checkpoint_bytes);  // before create_model(cfg)
#include <string>

#include "peft/models/model_config.h"

namespace peft::models {

/// A lower bound on the parameters `cfg` describes, from the size fields every architecture here
/// spells one of several ways (layers, hidden size, vocabulary, MLP size, learned positions); a
/// double, so hostile sizes cannot wrap.
double min_parameter_count(const ModelConfig& cfg);

/// "num_hidden_layers 5, hidden_size 64, vocab_size 512, ...": the size fields `cfg` sets, for
/// messages about a config that disagrees with its weights.
std::string describe_sizes(const ModelConfig& cfg);

/// Throws ConfigError naming config.json and its size fields when the model it describes
/// cannot be the checkpoint's (`weight_bytes` >= 0: the bytes of weights the checkpoint holds;
/// even at 1 bit per parameter they are far too few) or would not fit in this machine's memory at
/// `bytes_per_param`.
void check_model_size(const ModelConfig& cfg, double bytes_per_param, double weight_bytes = -1);

}  // namespace peft::models
