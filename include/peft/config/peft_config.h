#pragma once
// PeftConfig: the fields every adapter_config.json has, PEFT's type strings, and JSON I/O that
// keeps unknown keys (tier 0: torch-free). Mirrors peft/config.py and peft/utils/peft_types.py.
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace peft {

/// `Full` is not a PEFT method: full fine-tuning, the baseline (tuners/full), never in an adapter file.
enum class PeftType { Lora, AdaLora, PrefixTuning, PTuning, PromptTuning, Ia3, Full };
enum class TaskType { None, SeqCls, Seq2SeqLM, CausalLM, TokenCls, QuestionAns, FeatureExtraction };

/// "LORA", "ADALORA", "PREFIX_TUNING", "P_TUNING", "PROMPT_TUNING", "IA3" ("FULL" for Full).
std::string to_string(PeftType t);
/// Throws ConfigError listing the supported values (and NotSupported for PEFT types we lack).
PeftType parse_peft_type(const std::string& s);
/// "SEQ_CLS", "SEQ_2_SEQ_LM", "CAUSAL_LM", "TOKEN_CLS", "QUESTION_ANS", "FEATURE_EXTRACTION"; None -> "".
std::string to_string(TaskType t);
TaskType parse_task_type(const std::string& s);

/// Fields common to every PEFT config.
struct PeftConfig {
  virtual ~PeftConfig() = default;
  PeftType peft_type = PeftType::Lora;
  TaskType task_type = TaskType::None;
  std::string base_model_name_or_path;
  std::optional<std::string> revision;
  bool inference_mode = false;
  /// Keys this build does not know, kept for the round trip (and warned about once on load).
  nlohmann::json unknown = nlohmann::json::object();

  /// PEFT's __post_init__ rules; throws ConfigError with PEFT's wording.
  virtual void validate() const {}
  /// The whole adapter_config.json object (sorted keys, all known fields, unknown ones kept).
  virtual nlohmann::json to_json() const;
  virtual std::unique_ptr<PeftConfig> clone() const = 0;
  /// The method's modules_to_save field (trained and saved in full beside the adapter), or
  /// nullptr for methods without one.
  virtual std::optional<std::vector<std::string>>* modules_to_save_field() { return nullptr; }
  /// Fields this build has beyond PEFT's, which to_json writes only when set (so PEFT still reads
  /// the file); with to_json's keys, the config's whole schema.
  virtual std::vector<std::string> optional_fields() const { return {}; }
};

namespace detail {

/// Reads the base fields of `j` into `c`, removing them from `rest`.
void read_base_fields(PeftConfig& c, nlohmann::json& rest, const std::string& source);
/// Typed field access for config parsers: erase the key from `rest` and convert, or throw
/// ConfigError "[config] <source>: field 'k' must be <what>, got <value>".
bool take_bool(nlohmann::json& rest, const char* key, bool dflt, const std::string& source);
int64_t take_int(nlohmann::json& rest, const char* key, int64_t dflt, const std::string& source);
double take_double(nlohmann::json& rest, const char* key, double dflt, const std::string& source);
std::optional<std::string> take_opt_string(nlohmann::json& rest, const char* key, const std::string& source);

}  // namespace detail

}  // namespace peft
