// Mirrors peft/tuners/ia3/model.py (IA3Model: _prepare_adapter_config, _create_and_replace,
// _create_new_module's fan_in_fan_out handling, _unload_and_optionally_merge, add_weighted_adapter)
// and the (IA)³ part of peft/utils/save_and_load.py (saved key '<module>.ia3_l').
#include "peft/tuners/ia3/model.h"

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include <algorithm>
#include <iostream>
#include <set>

#include "peft/core/check.h"
#include "peft/tuners/ia3/layer.h"

namespace peft::ia3 {

using models::AdaptableEmbeddingImpl;
using models::AdaptableLinearImpl;

namespace {
const std::string kPrefix = "base_model.model.";
const std::string kDict = ".ia3_l";

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() > tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}
}  // namespace

std::string Ia3Model::saved_key(const std::string& p, const std::string& name) {
  const std::string tail = kDict + "." + name;
  return ends_with(p, tail) ? p.substr(0, p.size() - name.size() - 1) : "";
}

std::vector<std::string> Ia3Model::inject(const std::string& name, PeftConfig& any) {
  auto* ic = dynamic_cast<Ia3Config*>(&any);
  PEFT_CHECK(ic != nullptr, std::invalid_argument, "[ia3::inject] adapter '", name, "' has peft_type ",
             to_string(any.peft_type), ", not an (IA)³ config");
  Ia3Config& cfg = *ic;
  const std::string mt = base().config().model_type();
  // _prepare_adapter_config: the architecture's defaults for unset target / feedforward modules.
  const auto default_targets = default_ia3_targets(mt);
  PEFT_CHECK(!cfg.target_modules.is_null() || !default_targets.empty(), ConfigError,
             "[ia3::inject] Please specify `target_modules` in `peft_config`: there are no default target modules "
             "for model_type '", mt, "'");
  if (cfg.feedforward_modules.is_null()) {
    const auto ff = default_ia3_feedforward(mt);
    PEFT_CHECK(ff.has_value(), ConfigError,
               "[ia3::inject] Please specify `feedforward_modules` in `peft_config`: there are no default "
               "feedforward modules for model_type '", mt, "'");
    cfg.feedforward_modules = TargetSpec(*ff);
  }
  const Candidates c = candidates(cfg.task_type);
  // (IA)³ adapts linear layers only (PEFT also takes Conv2d/Conv3d, which our models do not have).
  const auto targets = resolve_targets(cfg, default_targets, "[ia3::inject]", mt, c.all, c.linear, {}, c.output_layer);
  for (const auto& t : targets) {
    AdaptableLinearImpl& slot = *c.linear_slots.at(t);
    // PEFT forces fan_in_fan_out to match the layer (Conv1D: true, Linear: false) with a warning.
    if (cfg.fan_in_fan_out != slot.fan_in_fan_out()) {
      std::cerr << "warning: fan_in_fan_out is set to " << (cfg.fan_in_fan_out ? "True" : "False")
                << " but the target module is " << (slot.fan_in_fan_out() ? "`Conv1D`" : "`torch.nn.Linear`")
                << ". Setting fan_in_fan_out to " << (slot.fan_in_fan_out() ? "True" : "False") << ".\n";
      cfg.fan_in_fan_out = slot.fan_in_fan_out();
    }
    add_ia3(slot, name, cfg.is_feedforward(t), cfg.init_ia3_weights);
  }
  return targets;
}

void Ia3Model::detach(AdaptableLinearImpl* l, AdaptableEmbeddingImpl*, const std::string& name) {
  if (l) remove_ia3(*l, name);
}

void Ia3Model::mark_trainable(const std::string& name) {
  // BaseTuner._mark_only_adapters_as_trainable: only the adapter's ia3_l vectors.
  for (const auto& p : base().named_parameters(true))
    if (!saved_key(p.key(), name).empty()) p.value().set_requires_grad(true);
}

std::map<std::string, at::Tensor> Ia3Model::state_dict(const std::string& name) const {
  (void)config_of<Ia3Config>(name);
  std::map<std::string, at::Tensor> out;
  for (const auto& p : base().named_parameters(true))
    if (const std::string k = saved_key(p.key(), name); !k.empty()) out[kPrefix + k] = p.value().detach();
  return out;
}

std::string Ia3Model::mismatch_hint(const std::string& key, const std::string&) const {
  if (!ends_with(key, kDict)) return "";
  return " ((IA)³ vectors are [1, in_features] on feedforward modules and [out_features, 1] on the others: "
         "does feedforward_modules agree with the file's?)";
}

void Ia3Model::merge(const std::vector<std::string>& names, bool safe_merge) {
  for (const auto& n : names)
    for (const auto& item : base().named_modules("", false))
      if (auto* l = dynamic_cast<AdaptableLinearImpl*>(item.value().get()); l && l->quantized() && l->adapters.get(n))
        throw NotSupported("[merge_adapter] Cannot merge ia3 layers when the model is loaded in 4-bit mode");
  LayerTuner::merge(names, safe_merge);
}

void Ia3Model::add_weighted_adapter(const std::vector<std::string>& adapters, const std::vector<double>& weights,
                                    const std::string& adapter_name) {
  const auto existing = owner_.adapter_names();
  if (std::find(existing.begin(), existing.end(), adapter_name) != existing.end()) return;
  PEFT_CHECK(!adapters.empty() && adapters.size() == weights.size(), std::invalid_argument,
             "[add_weighted_adapter] need as many weights as adapters, got ", adapters.size(), " and ",
             weights.size());
  for (const auto& a : adapters)
    PEFT_CHECK(std::find(existing.begin(), existing.end(), a) != existing.end(), std::invalid_argument,
               "[add_weighted_adapter] Adapter ", a, " does not exist");
  // _check_add_weighted_adapter: one modules_to_save module may not belong to two of them.
  std::map<std::string, int> holders;
  for (const auto& a : adapters) {
    std::set<std::string> mods;
    for (const auto& m : owner_.modules_to_save_params(a)) mods.insert(m.module);
    for (const auto& m : mods)
      PEFT_CHECK(++holders[m] <= 1, std::invalid_argument,
                 "[add_weighted_adapter] Cannot add weighted adapters targeting the same module with modules_to_save.");
  }
  // The union of the target and feedforward modules (regexes are joined with '|').
  const Ia3Config& first = config_of<Ia3Config>(adapters[0]);
  auto combine = [&](const TargetSpec Ia3Config::*field) {
    const bool regex = (first.*field).is_regex();
    std::string joined;
    std::set<std::string> names;
    for (const auto& a : adapters) {
      const TargetSpec& t = config_of<Ia3Config>(a).*field;
      PEFT_CHECK(t.is_regex() == regex && t.is_list() == (first.*field).is_list(), std::invalid_argument,
                 "[add_weighted_adapter] All adapter configs should have the same type for target and feedforward "
                 "modules.");
      if (regex) joined += (joined.empty() ? "(" : "|(") + t.regex() + ")";
      else if (t.is_list()) names.insert(t.list().begin(), t.list().end());
    }
    return regex ? TargetSpec(joined) : TargetSpec(std::vector<std::string>(names.begin(), names.end()));
  };
  Ia3Config nc = first;
  nc.target_modules = combine(&TargetFields::target_modules);
  nc.feedforward_modules = combine(&Ia3Config::feedforward_modules);
  owner_.add_adapter(adapter_name, nc);
  torch::NoGradGuard ng;
  for_each_slot([&](const std::string&, AdaptableLinearImpl* l, AdaptableEmbeddingImpl*) {
    if (!l) return;
    at::Tensor target = ia3_vector(*l, adapter_name);
    if (!target.defined()) return;
    target.zero_();
    for (std::size_t i = 0; i < adapters.size(); ++i)
      if (const at::Tensor v = ia3_vector(*l, adapters[i]); v.defined()) target.add_(v * weights[i]);
  });
}

}  // namespace peft::ia3
