// The one table of PEFT methods (no static self-registration). Adding a method adds one row here.
#include "peft/tuners/registry.h"

#include <filesystem>
#include <iostream>

#include "peft/core/check.h"
#include "peft/io/hf_checkpoint.h"
#include "peft/tuners/adalora/config.h"
#include "peft/tuners/adalora/model.h"
#include "peft/tuners/full/config.h"
#include "peft/tuners/full/model.h"
#include "peft/tuners/ia3/config.h"
#include "peft/tuners/ia3/model.h"
#include "peft/tuners/lora/config.h"
#include "peft/tuners/lora/model.h"
#include "peft/tuners/p_tuning/config.h"
#include "peft/tuners/prefix_tuning/config.h"
#include "peft/tuners/prompt_learning/model.h"
#include "peft/tuners/prompt_tuning/config.h"

namespace peft {

namespace {

template <typename Config>
std::unique_ptr<PeftConfig> defaults() {
  return std::make_unique<Config>();
}

template <typename Config>
std::unique_ptr<PeftConfig> parse(const nlohmann::json& j, const std::string& source) {
  return std::make_unique<Config>(Config::from_json(j, source));
}

template <typename Model>
std::unique_ptr<TunerModel> make(PeftModel& owner) {
  return std::make_unique<Model>(owner);
}

const std::vector<TunerRow> kTuners = {
    {PeftType::Lora, "lora", defaults<LoraConfig>, parse<LoraConfig>, make<lora::LoraModel>},
    {PeftType::AdaLora, "adalora", defaults<AdaLoraConfig>, parse<AdaLoraConfig>, make<adalora::AdaLoraModel>},
    {PeftType::PrefixTuning, "prefix_tuning", defaults<PrefixTuningConfig>, parse<PrefixTuningConfig>, make<prompt::PromptLearningModel>},
    {PeftType::PTuning, "p_tuning", defaults<PromptEncoderConfig>, parse<PromptEncoderConfig>, make<prompt::PromptLearningModel>},
    {PeftType::PromptTuning, "prompt_tuning", defaults<PromptTuningConfig>, parse<PromptTuningConfig>, make<prompt::PromptLearningModel>},
    {PeftType::Ia3, "ia3", defaults<Ia3Config>, parse<Ia3Config>, make<ia3::Ia3Model>},
    // Not a PEFT method: the full fine-tuning baseline (saved as a model folder, never as an adapter).
    {PeftType::Full, "full", defaults<FullConfig>, parse<FullConfig>, make<full::FullModel>},
};

}  // namespace

const std::vector<TunerRow>& tuner_rows() { return kTuners; }

const TunerRow& tuner_row(PeftType type) {
  for (const auto& row : kTuners)
    if (row.type == type) return row;
  throw NotSupported("[config] peft_type '" + to_string(type) + "' is not implemented yet in this build");
}

const TunerRow& tuner_row(const std::string& name) {
  std::string names;
  for (const auto& row : kTuners) {
    if (name == row.name) return row;
    names += std::string(names.empty() ? "" : ", ") + row.name;
  }
  throw ConfigError("[config] method '" + name + "' is not one of " + names);
}

std::unique_ptr<PeftConfig> peft_config_from_json(const nlohmann::json& j, const std::string& source) {
  PEFT_CHECK(j.is_object(), ConfigError, "[config] ", source, ": expected a JSON object");
  auto it = j.find("peft_type");
  PEFT_CHECK(it != j.end() && it->is_string(), ConfigError, "[config] ", source,
             ": missing required string field 'peft_type'");
  const PeftType t = parse_peft_type(it->get<std::string>());
  auto c = tuner_row(t).parse(j, source);
  if (!c->unknown.empty()) {
    std::string keys;
    for (auto u = c->unknown.begin(); u != c->unknown.end(); ++u)
      if (u.key() != "peft_version" && u.key() != "auto_mapping" && u.key() != "megatron_core" &&
          u.key() != "qalora_group_size" && !u->is_null() && !(u->is_boolean() && !u->get<bool>()) &&
          !((u->is_object() || u->is_array()) && u->empty()))
        keys += " " + u.key();  // only keys whose value could change behaviour
    if (!keys.empty()) std::cerr << "warning: " << source << ": unknown keys kept as they are:" << keys << "\n";
  }
  return c;
}

std::unique_ptr<PeftConfig> load_peft_config(const std::string& path_or_dir) {
  namespace fs = std::filesystem;
  std::string p = path_or_dir;
  if (fs::is_directory(p)) p = (fs::path(p) / "adapter_config.json").string();
  if (!fs::exists(p) && fs::is_directory(path_or_dir) && fs::exists(fs::path(path_or_dir) / "config.json"))
    throw FormatError("[config] " + path_or_dir + ": no adapter_config.json; this is a model folder (config.json), "
                      "e.g. a base model or a full fine-tune: use it as the model, not as an adapter");
  PEFT_CHECK(fs::exists(p), FormatError, "[config] ", path_or_dir, ": no adapter_config.json found");
  auto cfg = peft_config_from_json(io::read_json_file(p), p);
  PEFT_CHECK(cfg->peft_type != PeftType::Full, FormatError, "[config] ", p,
             ": peft_type FULL is not an adapter (a full fine-tune is saved as a model folder: use that as the model)");
  return cfg;
}

}  // namespace peft
