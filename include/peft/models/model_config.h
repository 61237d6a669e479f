#pragma once
// Architecture-independent view of a Hugging Face config.json (tier 0: torch-free).
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>

namespace peft::models {

/// Typed access to config.json with the error wording used across models:
/// "[config] config.json: field 'n_head' must be a positive integer, got -1".
class ModelConfig {
 public:
  ModelConfig();
  explicit ModelConfig(const nlohmann::json& j, std::string source = "config.json");

  const nlohmann::json& json() const { return *json_; }
  const std::string& source() const { return source_; }
  std::string model_type() const;
  bool has(const std::string& key) const;

  /// Required fields (throw ConfigError naming the field when missing or of the wrong type).
  int64_t get_int(const std::string& key) const;
  double get_double(const std::string& key) const;
  /// Optional fields with defaults (still type-checked when present and not null).
  int64_t get_int(const std::string& key, int64_t dflt) const;
  double get_double(const std::string& key, double dflt) const;
  bool get_bool(const std::string& key, bool dflt) const;
  std::string get_string(const std::string& key, const std::string& dflt) const;
  /// A positive integer field (ConfigError otherwise).
  int64_t get_positive(const std::string& key) const;
  int64_t get_positive(const std::string& key, int64_t dflt) const;

 private:
  std::shared_ptr<nlohmann::json> json_;
  std::string source_;
};

}  // namespace peft::models
