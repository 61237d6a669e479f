#pragma once
// The one table of PEFT methods (src/tuners/registry.cpp): per method its PeftType, its name in
// run configs and on the command line, its adapter_config.json parser and its TunerModel factory
// (no static self-registration). Torch-free header; the table lives in the LibTorch library.
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "peft/config/peft_config.h"

namespace peft {

class PeftModel;
class TunerModel;

struct TunerRow {
  PeftType type;
  /// The method's name in run configs and on the command line ("lora", "prefix_tuning", ...).
  const char* name;
  /// The config with PEFT's defaults (its to_json() keys are the method's fields).
  std::unique_ptr<PeftConfig> (*make_config)();
  /// Parses an adapter_config.json object of this type (base fields included; not yet validated).
  std::unique_ptr<PeftConfig> (*parse)(const nlohmann::json& j, const std::string& source);
  /// The method's TunerModel for a PeftModel (created with the model's first adapter).
  std::unique_ptr<TunerModel> (*make_model)(PeftModel& owner);
};

/// Every row, in the order of the PeftType enum.
const std::vector<TunerRow>& tuner_rows();
/// The row of `type`; NotSupported when this build has no such method.
const TunerRow& tuner_row(PeftType type);
/// The row named `name` ("lora"); ConfigError listing the names otherwise.
const TunerRow& tuner_row(const std::string& name);

/// Parses an adapter_config.json object by its peft_type through the row's parser. Unknown keys
/// are kept and reported on stderr; missing keys take PEFT's defaults. `source` names the file in
/// errors.
std::unique_ptr<PeftConfig> peft_config_from_json(const nlohmann::json& j, const std::string& source);
/// Reads `path_or_dir` (a folder holding adapter_config.json, or the file itself).
std::unique_ptr<PeftConfig> load_peft_config(const std::string& path_or_dir);

}  // namespace peft
