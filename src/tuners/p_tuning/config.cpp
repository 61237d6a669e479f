// Mirrors peft/tuners/p_tuning/config.py (PromptEncoderConfig) and the encoder_hidden_size
// default of peft/utils/other.py (_prepare_prompt_learning_config).
#include "peft/tuners/p_tuning/config.h"

#include <iostream>

#include "peft/core/check.h"

namespace peft {

using nlohmann::json;

void PromptEncoderConfig::validate() const {
  PromptLearningConfig::validate();
  PEFT_CHECK(encoder_reparameterization_type == "MLP" || encoder_reparameterization_type == "LSTM", ConfigError,
             "[P_TUNING] Prompt encoder type not recognized: '", encoder_reparameterization_type,
             "'. Please use one of MLP (recommended) or LSTM.");
  PEFT_CHECK(encoder_hidden_size >= 0, ConfigError, "[P_TUNING] encoder_hidden_size must be positive, got ",
             encoder_hidden_size);
  PEFT_CHECK(encoder_num_layers >= 1, ConfigError, "[P_TUNING] encoder_num_layers must be >= 1, got ",
             encoder_num_layers);
  PEFT_CHECK(encoder_dropout >= 0 && encoder_dropout < 1, ConfigError,
             "[P_TUNING] encoder_dropout must be in [0, 1), got ", encoder_dropout);
}

json PromptEncoderConfig::to_json() const {
  json j = PromptLearningConfig::to_json();
  j["encoder_reparameterization_type"] = encoder_reparameterization_type;
  j["encoder_hidden_size"] = detail::int_or_null(encoder_hidden_size);
  j["encoder_num_layers"] = encoder_num_layers;
  j["encoder_dropout"] = encoder_dropout;
  return j;
}

void PromptEncoderConfig::fill_from_model(const models::ModelConfig& m) {
  PromptLearningConfig::fill_from_model(m);
  if (encoder_hidden_size == 0) encoder_hidden_size = token_dim;
  if (encoder_reparameterization_type == "MLP" && encoder_num_layers != 2 && !inference_mode)
    std::cerr << "warning: for MLP, the argument `encoder_num_layers` is ignored. Exactly 2 MLP layers are used.\n";
}

PromptEncoderConfig PromptEncoderConfig::from_json(const json& in, const std::string& source) {
  PEFT_CHECK(in.is_object(), ConfigError, "[config] ", source, ": expected a JSON object");
  json rest = in;
  PromptEncoderConfig c;
  c.read_prompt_fields(rest, source);
  c.encoder_reparameterization_type =
      detail::take_opt_string(rest, "encoder_reparameterization_type", source).value_or("MLP");
  c.encoder_hidden_size = detail::take_int(rest, "encoder_hidden_size", 0, source);
  c.encoder_num_layers = detail::take_int(rest, "encoder_num_layers", 2, source);
  c.encoder_dropout = detail::take_double(rest, "encoder_dropout", 0.0, source);
  for (auto it = rest.begin(); it != rest.end(); ++it) c.unknown[it.key()] = it.value();
  c.peft_type = PeftType::PTuning;
  c.validate();
  return c;
}

}  // namespace peft
