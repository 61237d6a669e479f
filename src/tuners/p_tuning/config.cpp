// Mirrors peft/tuners/p_tuning/config.py (PromptEncoderConfig) and the encoder_hidden_size
// default of peft/utils/other.py (_prepare_prompt_learning_config).
#include "peft/tuners/p_tuning/config.h"

#include <iostream>
#include <sstream>

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
  if (!p_tuning_template.empty()) {
    const auto items = parse_p_tuning_template(p_tuning_template);
    int64_t v = 0;
    for (const auto& it : items) v += it.kind == TemplateItem::Virtual;
    PEFT_CHECK(v == num_virtual_tokens, ConfigError, "[P_TUNING] p_tuning_template '", p_tuning_template, "' has ", v,
               " virtual tokens [v]; num_virtual_tokens is ", num_virtual_tokens);
    PEFT_CHECK(task_type == TaskType::CausalLM || task_type == TaskType::Seq2SeqLM, ConfigError,
               "[P_TUNING] p_tuning_template needs task_type CAUSAL_LM or SEQ_2_SEQ_LM, got ", to_string(task_type));
  }
}

std::vector<TemplateItem> parse_p_tuning_template(const std::string& tmpl) {
  std::vector<TemplateItem> out;
  std::istringstream ss(tmpl);
  std::string w;
  int inputs = 0;
  while (ss >> w) {
    TemplateItem it;
    if (w == "[x]") {
      it.kind = TemplateItem::Input;
      ++inputs;
    } else if (w == "[v]") {
      it.kind = TemplateItem::Virtual;
    } else if (w.rfind("[v:", 0) == 0 && w.back() == ']' && w.size() > 4) {
      it.kind = TemplateItem::Virtual;
      it.word = w.substr(3, w.size() - 4);
    } else if (w.rfind("[id:", 0) == 0 && w.back() == ']') {
      it.kind = TemplateItem::Anchor;
      const std::string n = w.substr(4, w.size() - 5);
      PEFT_CHECK(!n.empty() && n.find_first_not_of("0123456789") == std::string::npos, ConfigError,
                 "[P_TUNING] p_tuning_template item '", w, "': [id:N] needs a non-negative token id");
      it.ids = {std::stoll(n)};
    } else {
      PEFT_CHECK(w.front() != '[', ConfigError, "[P_TUNING] p_tuning_template item '", w,
                 "' is not one of [x], [v], [v:word], [id:N] (anchor words have no brackets)");
      it.kind = TemplateItem::Anchor;
      it.word = w;
    }
    out.push_back(it);
  }
  PEFT_CHECK(inputs == 1, ConfigError, "[P_TUNING] p_tuning_template '", tmpl, "' must contain [x] exactly once, has ",
             inputs);
  return out;
}

json PromptEncoderConfig::to_json() const {
  json j = PromptLearningConfig::to_json();
  j["encoder_reparameterization_type"] = encoder_reparameterization_type;
  j["encoder_hidden_size"] = detail::int_or_null(encoder_hidden_size);
  j["encoder_num_layers"] = encoder_num_layers;
  j["encoder_dropout"] = encoder_dropout;
  if (!p_tuning_template.empty()) j["p_tuning_template"] = p_tuning_template;
  if (tokenizer_name_or_path) j["tokenizer_name_or_path"] = *tokenizer_name_or_path;
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
  c.p_tuning_template = detail::take_opt_string(rest, "p_tuning_template", source).value_or("");
  c.tokenizer_name_or_path = detail::take_opt_string(rest, "tokenizer_name_or_path", source);
  for (auto it = rest.begin(); it != rest.end(); ++it) c.unknown[it.key()] = it.value();
  c.peft_type = PeftType::PTuning;
  c.validate();
  return c;
}

}  // namespace peft
