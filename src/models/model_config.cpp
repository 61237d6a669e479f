#include "peft/models/model_config.h"

#include <nlohmann/json.hpp>

#include "peft/core/check.h"

namespace peft::models {

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
  return v.get<int64_t>();
}

double ModelConfig::get_double(const std::string& key, double dflt) const {
  if (!has(key)) return dflt;
  const auto& v = json_->at(key);
  PEFT_CHECK(v.is_number(), ConfigError, "[config] ", source_, ": field '", key,
             "' must be a number, got ", v.dump());
  return v.get<double>();
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

}  // namespace peft::models
