#include "peft/models/model_config.h"

#include <cmath>
#include <nlohmann/json.hpp>
#include <string>

#include "peft/core/check.h"
#include "peft/core/memory_bounds.h"
#include "peft/models/model_size.h"

namespace peft::models {

// ------------------------------------------------------------------------------------------ bounds

namespace {

struct SizeField {
  const char* key;
  int64_t max;
  const char* what;
};

// Every spelling of a size field the architectures here read, with the largest value a model
// this program can build holds. Real models sit far below each cap (Llama-3-405B: 126 layers,
// hidden 16384; Gemma 3: vocab 262144).
constexpr SizeField kSizeFields[] = {
    {"num_hidden_layers", 4096, "layers"},   {"n_layer", 4096, "layers"},
    {"num_layers", 4096, "layers"},          {"n_layers", 4096, "layers"},
    {"num_decoder_layers", 4096, "layers"},  {"hidden_size", 1 << 17, "hidden size"},
    {"n_embd", 1 << 17, "hidden size"},      {"d_model", 1 << 17, "hidden size"},
    {"dim", 1 << 17, "hidden size"},         {"vocab_size", 1 << 23, "vocabulary size"},
    {"intermediate_size", 1 << 20, "MLP size"}, {"n_inner", 1 << 20, "MLP size"},
    {"d_ff", 1 << 20, "MLP size"},           {"hidden_dim", 1 << 20, "MLP size"},
    {"ffn_dim", 1 << 20, "MLP size"},        {"num_attention_heads", 1 << 14, "heads"},
    {"n_head", 1 << 14, "heads"},            {"num_heads", 1 << 14, "heads"},
    {"n_heads", 1 << 14, "heads"},           {"num_key_value_heads", 1 << 14, "heads"},
    {"head_dim", 1 << 14, "head size"},      {"d_kv", 1 << 14, "head size"},
    {"max_position_embeddings", int64_t{1} << 24, "positions"},
    {"n_positions", int64_t{1} << 24, "positions"}, {"n_ctx", int64_t{1} << 24, "positions"},
    {"num_labels", 1 << 20, "labels"},       {"type_vocab_size", 1 << 16, "token types"},
};

const SizeField* size_field(const std::string& key) {
  for (const auto& f : kSizeFields)
    if (key == f.key) return &f;
  return nullptr;
}

}  // namespace

ModelConfig::ModelConfig() : json_(std::make_shared<nlohmann::json>(nlohmann::json::object())) {}

ModelConfig::ModelConfig(const nlohmann::json& j, std::string source)
    : json_(std::make_shared<nlohmann::json>(j)), source_(std::move(source)) {
  PEFT_CHECK(j.is_object(), ConfigError, "[config] ", source_, ": expected a JSON object");
}

std::string ModelConfig::model_type() const { return get_string("model_type", ""); }

bool ModelConfig::has(const std::string& key) const {
  auto it = json_->find(key);
  return it != json_->end() && !it->is_null();
}

int64_t ModelConfig::get_int(const std::string& key) const {
  PEFT_CHECK(has(key), ConfigError, "[config] ", source_, ": missing required field '", key, "'");
  return get_int(key, 0);
}

double ModelConfig::get_double(const std::string& key) const {
  PEFT_CHECK(has(key), ConfigError, "[config] ", source_, ": missing required field '", key, "'");
  return get_double(key, 0.0);
}

int64_t ModelConfig::get_int(const std::string& key, int64_t dflt) const {
  if (!has(key)) return dflt;
  const auto& v = json_->at(key);
  PEFT_CHECK(v.is_number_integer(), ConfigError, "[config] ", source_, ": field '", key,
             "' must be an integer, got ", v.dump());
  const int64_t out = v.get<int64_t>();
  // Sizes are bounded before anything is allocated from them.
  if (const SizeField* f = size_field(key))
    PEFT_CHECK(out <= f->max, ConfigError, "[config] ", source_, ": field '", key, "' is ", out, "; a ", f->what,
               " of at most ", f->max, " is accepted");
  return out;
}

double ModelConfig::get_double(const std::string& key, double dflt) const {
  if (!has(key)) return dflt;
  const auto& v = json_->at(key);
  PEFT_CHECK(v.is_number(), ConfigError, "[config] ", source_, ": field '", key,
             "' must be a number, got ", v.dump());
  const double out = v.get<double>();
  // Ranges every architecture shares: epsilons and rope bases positive, probabilities in [0, 1].
  auto ends = [&](const char* suffix) {
    const std::size_t n = std::char_traits<char>::length(suffix);
    return key.size() >= n && key.compare(key.size() - n, n, suffix) == 0;
  };
  if (key.find("eps") != std::string::npos || key == "rope_theta")
    PEFT_CHECK(out > 0 && std::isfinite(out), ConfigError, "[config] ", source_, ": field '", key,
               "' must be a positive number, got ", v.dump());
  if (ends("dropout") || ends("_prob") || ends("dropout_rate"))
    PEFT_CHECK(out >= 0 && out <= 1, ConfigError, "[config] ", source_, ": field '", key,
               "' is a probability (0 to 1), got ", v.dump());
  return out;
}

bool ModelConfig::get_bool(const std::string& key, bool dflt) const {
  if (!has(key)) return dflt;
  const auto& v = json_->at(key);
  PEFT_CHECK(v.is_boolean(), ConfigError, "[config] ", source_, ": field '", key,
             "' must be true or false, got ", v.dump());
  return v.get<bool>();
}

std::string ModelConfig::get_string(const std::string& key, const std::string& dflt) const {
  if (!has(key)) return dflt;
  const auto& v = json_->at(key);
  PEFT_CHECK(v.is_string(), ConfigError, "[config] ", source_, ": field '", key,
             "' must be a string, got ", v.dump());
  return v.get<std::string>();
}

int64_t ModelConfig::get_positive(const std::string& key) const {
  const int64_t v = get_int(key);
  PEFT_CHECK(v > 0, ConfigError, "[config] ", source_, ": field '", key,
             "' must be a positive integer, got ", v);
  return v;
}

int64_t ModelConfig::get_positive(const std::string& key, int64_t dflt) const {
  const int64_t v = get_int(key, dflt);
  PEFT_CHECK(v > 0, ConfigError, "[config] ", source_, ": field '", key,
             "' must be a positive integer, got ", v);
  return v;
}

double min_parameter_count(const ModelConfig& cfg) {
  const nlohmann::json& j = cfg.json();
  // The first present spelling of each size; absent sizes count as zero (a lower bound).
  auto first = [&](std::initializer_list<const char*> keys) -> double {
    for (const char* k : keys) {
      auto it = j.find(k);
      if (it != j.end() && it->is_number_integer() && it->get<int64_t>() > 0)
        return static_cast<double>(it->get<int64_t>());
    }
    return 0.0;
  };
  const double layers = first({"num_hidden_layers", "n_layer", "num_layers", "n_layers"}) +
                        first({"num_decoder_layers"});
  const double hidden = first({"hidden_size", "n_embd", "d_model", "dim"});
  const double vocab = first({"vocab_size"});
  const double mlp = first({"intermediate_size", "n_inner", "d_ff", "hidden_dim", "ffn_dim"});
  // Learned position tables (GPT-2's wpe, BERT's and DistilBERT's position embeddings); rotary
  // models allocate nothing per position.
  const std::string mt = cfg.model_type();
  const bool learned_positions = mt == "gpt2" || mt == "bert" || mt == "roberta" || mt == "distilbert" ||
                                 mt == "xlm-roberta" || mt == "camembert";
  const double positions = learned_positions ? first({"n_positions", "max_position_embeddings"}) : 0.0;
  // Per layer at least the query and output projections (hidden x hidden between them) and two
  // MLP matrices (hidden x mlp each).
  return vocab * hidden + positions * hidden + layers * (hidden * hidden + 2.0 * hidden * mlp);
}

std::string describe_sizes(const ModelConfig& cfg) {
  const nlohmann::json& j = cfg.json();
  std::string s;
  for (const auto& f : kSizeFields) {
    auto it = j.find(f.key);
    if (it == j.end() || !it->is_number_integer()) continue;
    const std::string k = f.key;
    if (k == "num_labels" || k == "type_vocab_size" || k == "n_ctx") continue;
    s += (s.empty() ? "" : ", ") + k + " " + std::to_string(it->get<int64_t>());
  }
  return s;
}

void check_model_size(const ModelConfig& cfg, double bytes_per_param, double weight_bytes) {
  const double params = min_parameter_count(cfg);
  auto sizes = [&] { return describe_sizes(cfg); };
  // A quantised checkpoint stores >= 1 bit per parameter; anything far above that is not the
  // model config.json describes.
  if (weight_bytes >= 0 && params / 8.0 > 2.0 * weight_bytes + (1 << 20))
    throw ConfigError("[config] " + cfg.source() + " describes a model of at least " + std::to_string(static_cast<int64_t>(params)) +
                      " parameters (" + sizes() + "), but the checkpoint holds only " + format_bytes(weight_bytes) +
                      " of weights: config.json does not belong to these weights");
  check_fits_in_memory("[config] " + cfg.source() + ": the model", params * bytes_per_param,
                       std::to_string(static_cast<int64_t>(params)) + " parameters from " + sizes());
}

}  // namespace peft::models
