// Full fine-tuning (tuners/full/model.h): the same trainer, every parameter, a model folder out.
#include "peft/tuners/full/model.h"

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "peft/core/check.h"
#include "peft/core/json_file.h"
#include "peft/models/adaptable_linear.h"

namespace peft::full {

namespace fs = std::filesystem;

std::vector<std::string> FullModel::inject(const std::string& name, PeftConfig& cfg) {
  (void)cfg;
  PEFT_CHECK(name_.empty() || name_ == name, std::invalid_argument, "[full] full fine-tuning trains the model's own "
             "weights: there is one set ('", name_, "'), so adapter '", name, "' cannot be added");
  for (const auto& item : base().named_modules("", /*include_self=*/false)) {
    const auto* slot = dynamic_cast<const models::AdaptableLinearImpl*>(item.value().get());
    PEFT_CHECK(!slot || !slot->quantized(), NotSupported, "[full] ", item.key(),
               " is quantised (4-bit or GGUF blocks), and quantised weights have no gradient: fine-tune a float "
               "base in full (load it without load_in_4bit, or dequantize: true for a GGUF file)");
  }
  name_ = name;
  return {};
}

void FullModel::remove(const std::string& name, bool keep_merged) {
  (void)keep_merged;
  if (name == name_) name_.clear();
}

void FullModel::set_disabled(bool disabled) {
  PEFT_CHECK(!disabled, NotSupported, "[full] a full fine-tune has no adapter to disable: its weights are the "
             "model's own (load the original base model to compare)");
}

void FullModel::mark_trainable(const std::string& name) {
  (void)name;
  for (auto& p : base().parameters(true))
    if (at::isFloatingType(p.scalar_type())) p.set_requires_grad(true);
}

std::map<std::string, at::Tensor> FullModel::state_dict(const std::string& name) const {
  (void)name;
  std::map<std::string, at::Tensor> out;
  for (const auto& p : base().named_parameters(true)) out[p.key()] = p.value();
  for (const auto& b : base().named_buffers(true)) out[b.key()] = b.value();
  return out;
}

void FullModel::save_extra(const std::string& dir, const std::string& name) const {
  (void)name;
  const auto& cfg = base().config();
  nlohmann::json j = cfg.json();
  j["architectures"] = {models::architecture_name(cfg, base().head())};
  write_json_file((fs::path(dir) / "config.json").string(), j);
  // The tokenizer travels with the weights, so the folder is a model every command can load.
  if (cfg.source().empty()) return;
  const fs::path from = fs::path(cfg.source()).parent_path();
  if (!fs::is_directory(from) || fs::equivalent(from, dir)) return;
  for (const char* f : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                        "vocab.txt", "vocab.json", "merges.txt", "added_tokens.json", "spiece.model",
                        "generation_config.json"})
    if (fs::is_regular_file(from / f)) fs::copy_file(from / f, fs::path(dir) / f, fs::copy_options::overwrite_existing);
}

void FullModel::merge(const std::vector<std::string>& names, bool safe_merge) {
  (void)names;
  (void)safe_merge;
}

}  // namespace peft::full
