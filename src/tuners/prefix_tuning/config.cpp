// Mirrors peft/tuners/prefix_tuning/config.py (PrefixTuningConfig) and the GQA override of
// peft/utils/other.py (_prepare_prompt_learning_config, PEFT issue #1901).
#include "peft/tuners/prefix_tuning/config.h"

#include "peft/core/check.h"
#include "peft/models/model_config.h"

namespace peft {

using nlohmann::json;

void PrefixTuningConfig::validate() const {
  PromptLearningConfig::validate();
  PEFT_CHECK(!init_weights || *init_weights == "zero", ConfigError,
             "[PREFIX_TUNING] init_weights must be null (random) or \"zero\", got '", init_weights.value_or(""), "'");
  PEFT_CHECK(encoder_hidden_size >= 0, ConfigError, "[PREFIX_TUNING] encoder_hidden_size must be positive, got ",
             encoder_hidden_size);
  PEFT_CHECK(prefix_dropout >= 0 && prefix_dropout < 1, ConfigError,
             "[PREFIX_TUNING] prefix_dropout must be in [0, 1), got ", prefix_dropout);
  if (token_dim > 0 && num_attention_heads > 0)
    PEFT_CHECK(token_dim % num_attention_heads == 0, ConfigError, "[PREFIX_TUNING] token_dim (", token_dim,
               ") must be a multiple of num_attention_heads (", num_attention_heads, ")");
  PEFT_CHECK(prefix_on == "peft" || prefix_on == "encoder_and_decoder", ConfigError,
             "[PREFIX_TUNING] prefix_on must be \"peft\" or \"encoder_and_decoder\", got '", prefix_on, "'");
  PEFT_CHECK(prefix_placement == "prefix" || prefix_placement == "infix" || prefix_placement == "embedding",
             ConfigError, "[PREFIX_TUNING] prefix_placement must be \"prefix\", \"infix\" or \"embedding\", got '",
             prefix_placement, "'");
  PEFT_CHECK(prefix_on == "peft" || task_type == TaskType::Seq2SeqLM, ConfigError,
             "[PREFIX_TUNING] prefix_on: encoder_and_decoder needs task_type SEQ_2_SEQ_LM, got ", to_string(task_type));
  PEFT_CHECK(prefix_placement == "prefix" || task_type == TaskType::CausalLM, ConfigError,
             "[PREFIX_TUNING] prefix_placement: ", prefix_placement, " is for decoder-only models (task_type CAUSAL_LM), got ",
             to_string(task_type));
}

json PrefixTuningConfig::to_json() const {
  json j = PromptLearningConfig::to_json();
  j["encoder_hidden_size"] = detail::int_or_null(encoder_hidden_size);
  j["prefix_projection"] = prefix_projection;
  j["init_weights"] = init_weights ? json(*init_weights) : json(nullptr);
  if (prefix_dropout > 0) j["prefix_dropout"] = prefix_dropout;
  if (prefix_on != "peft") j["prefix_on"] = prefix_on;
  if (prefix_placement != "prefix") j["prefix_placement"] = prefix_placement;
  return j;
}

void PrefixTuningConfig::fill_from_model(const models::ModelConfig& m) {
  PromptLearningConfig::fill_from_model(m);
  // Grouped-query attention: the prefix holds key/value heads only (embedding-only vectors are
  // input embeddings and keep the model width).
  if (m.has("num_key_value_heads") && !embedding_only()) {
    const int64_t kv = m.get_positive("num_key_value_heads");
    const int64_t head_dim = m.has("head_dim") ? m.get_positive("head_dim") : token_dim / num_attention_heads;
    token_dim = head_dim * kv;
    num_attention_heads = kv;
  }
  if (encoder_hidden_size == 0) encoder_hidden_size = token_dim;
  validate();
}

PrefixTuningConfig PrefixTuningConfig::from_json(const json& in, const std::string& source) {
  PEFT_CHECK(in.is_object(), ConfigError, "[config] ", source, ": expected a JSON object");
  json rest = in;
  PrefixTuningConfig c;
  c.read_prompt_fields(rest, source);
  c.encoder_hidden_size = detail::take_int(rest, "encoder_hidden_size", 0, source);
  c.prefix_projection = detail::take_bool(rest, "prefix_projection", false, source);
  c.init_weights = detail::take_opt_string(rest, "init_weights", source);
  c.prefix_dropout = detail::take_double(rest, "prefix_dropout", 0.0, source);
  c.prefix_on = detail::take_opt_string(rest, "prefix_on", source).value_or("peft");
  c.prefix_placement = detail::take_opt_string(rest, "prefix_placement", source).value_or("prefix");
  for (auto it = rest.begin(); it != rest.end(); ++it) c.unknown[it.key()] = it.value();
  c.peft_type = PeftType::PrefixTuning;
  c.validate();
  return c;
}

PrefixTuningConfig p_tuning_v2_config(TaskType task, int64_t num_virtual_tokens, bool with_dropout) {
  PEFT_CHECK(task == TaskType::SeqCls || task == TaskType::TokenCls, ConfigError,
             "[p_tuning_v2] P-Tuning v2 is for SEQ_CLS or TOKEN_CLS models, got task_type '", to_string(task), "'");
  PrefixTuningConfig c;
  c.task_type = task;
  c.num_virtual_tokens = num_virtual_tokens;
  c.prefix_projection = false;
  c.prefix_dropout = with_dropout ? 0.1 : 0.0;
  c.validate();
  return c;
}

}  // namespace peft
