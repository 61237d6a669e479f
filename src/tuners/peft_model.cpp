// Mirrors peft/peft_model.py (PeftModel: add_adapter, set_adapter, disable_adapter, forward,
// get_nb_trainable_parameters) and the modules_to_save part of peft/utils/other.py
// (ModulesToSaveWrapper). Everything method-specific goes through the TunerModel
// (tuners/tuner_model.h) that the first adapter's registry row makes; saving and loading are in
// save_and_load.cpp.
#include "peft/peft_model.h"

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include <algorithm>
#include <cstdio>
#include <iostream>

#include "modules_to_save.h"
#include "peft/core/check.h"
#include "peft/core/strings.h"
#include "peft/models/adaptable_linear.h"
#include "peft/tuners/registry.h"
#include "peft/tuners/tuner_model.h"

namespace peft {

// ---------------------------------------------------------------- construction

PeftModel::PeftModel(std::shared_ptr<models::PretrainedModel> base, const PeftConfig& config,
                     const std::string& adapter_name)
    : base_(std::move(base)), mts_(std::make_unique<detail::ModulesToSave>()) {
  PEFT_CHECK(base_ != nullptr, std::invalid_argument, "[get_peft_model] the base model is null");
  for (auto& p : base_->parameters()) p.set_requires_grad(false);
  inject(adapter_name, config);
  active_ = {adapter_name};
  set_adapter(adapter_name);
}

PeftModel::~PeftModel() = default;

std::shared_ptr<PeftModel> get_peft_model(std::shared_ptr<models::PretrainedModel> base, const PeftConfig& config,
                                          const std::string& adapter_name) {
  return std::make_shared<PeftModel>(std::move(base), config, adapter_name);
}

TunerModel& PeftModel::tuner() const {
  PEFT_CHECK(tuner_ != nullptr, std::invalid_argument, "[PeftModel] the model holds no adapter");
  return *tuner_;
}

void PeftModel::inject(const std::string& name, const PeftConfig& cfg_in) {
  PEFT_CHECK(!configs_.count(name), std::invalid_argument, "[PeftModel] adapter '", name, "' already exists");
  PEFT_CHECK(!name.empty() && name != "__base__" && name.find('.') == std::string::npos, std::invalid_argument,
             "[PeftModel] invalid adapter name '", name, "' (non-empty, no '.', not '__base__')");
  if (!configs_.empty())
    PEFT_CHECK(configs_.begin()->second->peft_type == cfg_in.peft_type, std::invalid_argument,
               "[PeftModel] all adapters of a model must have the same peft_type; have ",
               to_string(configs_.begin()->second->peft_type), ", got ", to_string(cfg_in.peft_type));
  cfg_in.validate();
  const TunerRow& row = tuner_row(cfg_in.peft_type);
  if (!tuner_) tuner_ = row.make_model(*this);
  // The config is stored first so the tuner can look it up by name while it injects.
  PeftConfig& cfg = *(configs_[name] = cfg_in.clone());
  try {
    targets_[name] = tuner_->inject(name, cfg);
  } catch (...) {
    configs_.erase(name);
    targets_.erase(name);
    if (configs_.empty()) tuner_.reset();
    throw;
  }
  if (auto* m = cfg.modules_to_save_field()) {
    // Classification heads are trained and saved in full (PeftModelForSequenceClassification /
    // ForTokenClassification add them after injection).
    if (cfg.task_type == TaskType::SeqCls || cfg.task_type == TaskType::TokenCls) {
      std::vector<std::string> v = m->value_or(std::vector<std::string>{});
      for (const char* h : {"classifier", "score"})
        if (std::find(v.begin(), v.end(), h) == v.end()) v.push_back(h);
      *m = v;
    }
    setup_modules_to_save(name, *m, cfg.task_type);
  }
  order_.push_back(name);
}

void PeftModel::setup_modules_to_save(const std::string& name, std::optional<std::vector<std::string>> modules,
                                      TaskType) {
  if (!modules) return;
  auto params = base_->named_parameters(true);
  for (const auto& item : base_->named_modules("", false)) {
    const std::string& mod = item.key();
    bool hit = false;
    // PEFT's _set_trainable: a plain `key.endswith(name)`, so SEQ_CLS's "classifier" also takes
    // DistilBERT's "pre_classifier" (and PEFT's adapters save it).
    for (const auto& s : *modules)
      hit = hit || (mod.size() >= s.size() && mod.compare(mod.size() - s.size(), s.size(), s) == 0);
    if (!hit) continue;
    auto& e = mts_->modules[mod];
    if (e.params.empty()) {
      for (const auto& p : item.value()->named_parameters(true)) {
        if (p.key().find("lora_") != std::string::npos || p.key().find("ia3_") != std::string::npos) continue;
        e.params.push_back(mod + "." + p.key());
        e.original.push_back(p.value().detach().clone());
      }
    }
    std::vector<at::Tensor> copy;
    for (const auto& n : e.params) copy.push_back(params[n].detach().clone());
    e.copies[name] = std::move(copy);
  }
}

// ---------------------------------------------------------------- adapter management

std::vector<std::string> PeftModel::adapter_names() const { return order_; }

const PeftConfig& PeftModel::peft_config(const std::string& name) const {
  const std::string n = name.empty() ? active_.front() : name;
  auto it = configs_.find(n);
  PEFT_CHECK(it != configs_.end(), std::invalid_argument, "[PeftModel] no adapter named '", n, "'");
  return *it->second;
}

PeftConfig& PeftModel::mutable_config(const std::string& name) { return const_cast<PeftConfig&>(peft_config(name)); }

void PeftModel::add_adapter(const std::string& name, const PeftConfig& cfg) {
  inject(name, cfg);
  set_adapters(active_);  // a new adapter is not activated
}

void PeftModel::set_adapter(const std::string& name) { set_adapters({name}); }

void PeftModel::set_adapters(const std::vector<std::string>& names) {
  PEFT_CHECK(!names.empty(), std::invalid_argument, "[set_adapter] give at least one adapter name");
  for (const auto& n : names)
    PEFT_CHECK(configs_.count(n), std::invalid_argument, "[set_adapter] Adapter ", n,
               " not found. Available adapters: ", join(order_));
  const std::size_t most = tuner().max_active_adapters();
  PEFT_CHECK(most == 0 || names.size() <= most, std::invalid_argument, "[set_adapter] ",
             to_string(peft_config(names.front()).peft_type), " takes ", most,
             " active adapter at a time, got ", names.size());
  active_ = names;
  tuner_->set_active(names);
  std::string who;
  for (auto& [mod, e] : mts_->modules) {
    who.clear();
    for (const auto& n : names)
      if (e.copies.count(n)) who = n;
    detail::swap_in(*base_, e, disabled_ ? "" : who);
  }
  update_trainable();
}

void PeftModel::update_trainable() {
  // Mirrors _mark_only_adapters_as_trainable + set_adapter's requires_grad handling.
  for (auto& p : base_->parameters()) p.set_requires_grad(false);
  for (const auto& n : order_)
    for (auto& [k, p] : tuner_->own_parameters(n)) p.set_requires_grad(false);
  auto params = base_->named_parameters(true);
  for (const auto& a : active_) {
    if (configs_.at(a)->inference_mode) continue;
    tuner_->mark_trainable(a);
    for (auto& [mod, e] : mts_->modules)
      if (e.live == a)
        for (const auto& n : e.params) params[n].set_requires_grad(true);
  }
}

void PeftModel::delete_adapter(const std::string& name) {
  PEFT_CHECK(configs_.count(name), std::invalid_argument, "[delete_adapter] Adapter ", name, " does not exist");
  tuner_->remove(name, /*keep_merged=*/false);
  for (auto& [mod, e] : mts_->modules) {
    if (e.live == name) detail::swap_in(*base_, e, "");
    e.copies.erase(name);
  }
  configs_.erase(name);
  targets_.erase(name);
  order_.erase(std::remove(order_.begin(), order_.end(), name), order_.end());
  active_.erase(std::remove(active_.begin(), active_.end(), name), active_.end());
  if (active_.empty() && !order_.empty()) active_ = {order_.front()};
  if (!active_.empty()) set_adapters(active_);
}

std::vector<std::string> PeftModel::adapted_modules(const std::string& name) const {
  auto it = targets_.find(name);
  PEFT_CHECK(it != targets_.end(), std::invalid_argument, "[PeftModel] no adapter named '", name, "'");
  return it->second;
}

PeftModel::DisableGuard::DisableGuard(PeftModel& m) : m_(m) {
  if (m_.disabled_++ > 0) return;
  m_.tuner().set_disabled(true);
  for (auto& [mod, e] : m_.mts_->modules) detail::swap_in(*m_.base_, e, "");
}

PeftModel::DisableGuard::~DisableGuard() {
  if (--m_.disabled_ > 0) return;
  m_.tuner().set_disabled(false);
  m_.set_adapters(m_.active_);
}

// ---------------------------------------------------------------- running

models::ModelOutput PeftModel::forward(const models::ModelInputs& in, const std::vector<std::string>& adapter_names) {
  if (!adapter_names.empty()) {
    PEFT_CHECK(!base_->is_training(), std::invalid_argument,
               "[PeftModel::forward] Cannot pass `adapter_names` when the model is in training mode.");
    for (const auto& n : adapter_names)
      PEFT_CHECK(n == "__base__" || configs_.count(n), std::invalid_argument,
                 "[PeftModel::forward] Trying to infer with non-existing adapter(s): ", n);
    PEFT_CHECK(mts_->modules.empty(), NotSupported,
               "[PeftModel::forward] mixed-adapter batches with modules_to_save are not supported");
    return tuner().forward(in, adapter_names);
  }
  if (disabled_) return base_->forward(in);
  models::ModelOutput out = tuner().forward(in, {});
  // The tuner's regulariser joins the loss only when gradients are recorded, so evaluation
  // losses stay the task loss (AdaLoraModel.forward).
  if (out.loss.defined() && at::GradMode::is_enabled())
    if (const at::Tensor extra = tuner_->extra_loss(); extra.defined()) out.loss = out.loss + extra;
  return out;
}

at::Tensor PeftModel::generate(const at::Tensor& input_ids, const at::Tensor& attention_mask,
                               const models::GenerationConfig& gc) {
  if (disabled_ || !tuner_)
    return base_->is_encoder_decoder() ? models::generate_seq2seq(*base_, input_ids, attention_mask, gc)
                                       : models::generate(*base_, input_ids, attention_mask, gc);
  return tuner_->generate(input_ids, attention_mask, gc);
}

std::vector<std::pair<std::string, double>> PeftModel::on_optimizer_step(int64_t global_step) {
  return tuner().on_optimizer_step(global_step);
}

std::map<std::string, at::Tensor> PeftModel::training_state() { return tuner().training_state(); }

void PeftModel::load_training_state(const std::map<std::string, at::Tensor>& state) {
  tuner().load_training_state(state);
}

// ---------------------------------------------------------------- merging

void PeftModel::merge_adapter(const std::vector<std::string>& names, bool safe_merge) {
  tuner().merge(names.empty() ? active_ : names, safe_merge);
}

void PeftModel::unmerge_adapter() { tuner().unmerge(); }

std::shared_ptr<models::PretrainedModel> PeftModel::merge_and_unload(bool safe_merge, const std::vector<std::string>& names) {
  merge_adapter(names, safe_merge);
  // modules_to_save copies of the active adapter are already live and replace the originals.
  remove_all_adapters();
  return base_;
}

std::shared_ptr<models::PretrainedModel> PeftModel::unload() {
  unmerge_adapter();
  for (auto& [mod, e] : mts_->modules) detail::swap_in(*base_, e, "");
  remove_all_adapters();
  return base_;
}

void PeftModel::remove_all_adapters() {
  // Adapter parameters go; merged weights (if any) stay in the base.
  for (const auto& n : order_) tuner_->remove(n, /*keep_merged=*/true);
  tuner_.reset();
  configs_.clear();
  targets_.clear();
  order_.clear();
  active_.clear();
  mts_->modules.clear();
}

// ---------------------------------------------------------------- parameters

std::pair<int64_t, int64_t> PeftModel::get_nb_trainable_parameters() const {
  int64_t trainable = 0, all = 0;
  for (const auto& p : base_->parameters()) {
    all += p.numel();
    if (p.requires_grad()) trainable += p.numel();
  }
  // PEFT counts each modules_to_save module twice or more: the frozen original plus one copy per
  // adapter. The live module stands for the original here; add the copies.
  for (const auto& [mod, e] : mts_->modules)
    for (const auto& [name, values] : e.copies)
      for (const auto& v : values) all += v.numel();
  if (tuner_)
    for (const auto& n : order_)
      for (const auto& [k, p] : tuner_->own_parameters(n)) {
        all += p.numel();
        if (p.requires_grad()) trainable += p.numel();
      }
  // A 4-bit base weight is no parameter here; PEFT counts bitsandbytes' packed Params4bit as
  // 2 values per byte, i.e. the original element count rounded up to even.
  for (const auto& item : base_->named_modules("", false))
    if (auto* l = dynamic_cast<models::AdaptableLinearImpl*>(item.value().get()); l && l->quantized())
      all += (l->in_features() * l->out_features() + 1) / 2 * 2;
  return {trainable, all};
}

std::string PeftModel::print_trainable_parameters() const {
  const auto [t, a] = get_nb_trainable_parameters();
  char pct[32];
  std::snprintf(pct, sizeof(pct), "%.4f", a ? 100.0 * static_cast<double>(t) / static_cast<double>(a) : 0.0);
  std::string line = "trainable params: " + thousands(t) + " || all params: " + thousands(a) +
                     " || trainable%: " + pct;
  std::cout << line << "\n";
  return line;
}

std::vector<std::pair<std::string, at::Tensor>> PeftModel::named_trainable_parameters() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& p : base_->named_parameters(true))
    if (p.value().requires_grad()) out.emplace_back(p.key(), p.value());
  if (tuner_)
    for (const auto& n : order_)
      for (const auto& [k, p] : tuner_->own_parameters(n))
        if (p.requires_grad()) out.emplace_back(k, p);
  return out;
}

std::vector<at::Tensor> PeftModel::trainable_parameters() const {
  std::vector<at::Tensor> out;
  for (auto& [k, p] : named_trainable_parameters()) out.push_back(p);
  return out;
}

std::vector<PeftModel::SavedModuleParam> PeftModel::modules_to_save_params(const std::string& name) const {
  std::vector<SavedModuleParam> out;
  const auto params = base_->named_parameters(true);
  for (const auto& [mod, e] : mts_->modules) {
    auto it = e.copies.find(name);
    if (it == e.copies.end()) continue;
    for (std::size_t i = 0; i < e.params.size(); ++i)
      out.push_back({mod, e.params[i], e.live == name ? params[e.params[i]].detach() : it->second[i],
                     e.live.empty() ? params[e.params[i]].detach() : e.original[i]});
  }
  return out;
}

}  // namespace peft
