// Mirrors peft/tuners/lora/model.py (LoraModel: _create_and_replace, _mark_only_adapters_as_trainable,
// _mixed_batch_forward, add_weighted_adapter) and the LoRA part of peft/utils/save_and_load.py
// (get_peft_model_state_dict: bias handling, save_embedding_layers).
#include "peft/tuners/lora/model.h"

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <set>

#include "peft/core/check.h"
#include "peft/core/memory_bounds.h"
#include "peft/tuners/lora/layer.h"

namespace peft::lora {

using models::AdaptableEmbeddingImpl;
using models::AdaptableLinearImpl;

namespace {
const std::string kPrefix = "base_model.model.";

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() > tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}
}  // namespace

std::string LoraModel::saved_key(const std::string& p, const std::string& name) {
  for (const char* d : {".lora_A.", ".lora_B."}) {
    const std::string mid = std::string(d) + name + ".";
    auto pos = p.find(mid);
    if (pos != std::string::npos && p.find('.', pos + mid.size()) == std::string::npos)
      return p.substr(0, pos) + d + p.substr(pos + mid.size());
  }
  for (const char* d : {".lora_embedding_A.", ".lora_embedding_B.", ".lora_A.", ".lora_B.", ".lora_E."})
    if (ends_with(p, std::string(d) + name)) return p.substr(0, p.size() - name.size() - 1);
  const std::string mag = ".lora_magnitude_vector." + name + ".weight";
  if (ends_with(p, mag)) return p.substr(0, p.size() - mag.size()) + ".lora_magnitude_vector";
  return "";
}

std::vector<std::string> LoraModel::default_targets(const std::string& model_type) const {
  return default_lora_targets(model_type);
}

std::vector<std::string> LoraModel::inject(const std::string& name, PeftConfig& any) {
  auto* lc = dynamic_cast<LoraConfig*>(&any);
  PEFT_CHECK(lc != nullptr, std::invalid_argument, "[lora::inject] adapter '", name, "' has peft_type ",
             to_string(any.peft_type), ", not a LoRA-family config");
  LoraConfig& cfg = *lc;
  prepare(name, cfg);
  const Candidates c = candidates(cfg.task_type);
  const std::string mt = base().config().model_type();
  const auto targets =
      resolve_targets(cfg, default_targets(mt), "[lora::inject]", mt, c.all, c.linear, c.embedding, c.output_layer);
  {  // The A and B matrices' size, before any is allocated.
    double params = 0;
    int64_t r_max = 0;
    for (const auto& t : targets) {
      const auto r = static_cast<double>(cfg.rank_for(t));
      r_max = std::max<int64_t>(r_max, cfg.rank_for(t));
      if (auto it = c.linear_slots.find(t); it != c.linear_slots.end())
        params += r * static_cast<double>(it->second->in_features() + it->second->out_features());
      else if (auto e = c.embedding_slots.find(t); e != c.embedding_slots.end())
        params += r * static_cast<double>(e->second->num_embeddings() + e->second->embedding_dim());
    }
    check_fits_in_memory("[" + to_string(cfg.peft_type) + "] adapter '" + name + "'", 4.0 * params,
                         "r up to " + std::to_string(r_max) + " on " + std::to_string(targets.size()) + " modules");
  }
  for (const auto& t : targets) {
    if (auto it = c.linear_slots.find(t); it != c.linear_slots.end()) {
      // PEFT forces fan_in_fan_out to match the layer (Conv1D: true, Linear: false) with a warning.
      if (cfg.fan_in_fan_out != it->second->fan_in_fan_out()) {
        std::cerr << "warning: fan_in_fan_out is set to " << (cfg.fan_in_fan_out ? "True" : "False")
                  << " but the target module '" << t << "' is "
                  << (it->second->fan_in_fan_out() ? "`Conv1D`" : "`torch.nn.Linear`") << ". Setting fan_in_fan_out to "
                  << (it->second->fan_in_fan_out() ? "True" : "False") << ".\n";
        cfg.fan_in_fan_out = it->second->fan_in_fan_out();
      }
      attach(*it->second, t, name, cfg);
    } else {
      attach(*c.embedding_slots.at(t), t, name, cfg);
    }
  }
  return targets;
}

namespace {
LoraSettings settings_for(const LoraConfig& cfg, const std::string& module) {
  LoraSettings s;
  s.r = cfg.rank_for(module);
  s.alpha = cfg.alpha_for(module);
  s.dropout = cfg.lora_dropout;
  s.use_rslora = cfg.use_rslora;
  s.use_dora = cfg.use_dora;
  s.lora_bias = cfg.lora_bias;
  s.init = cfg.init_lora_weights;
  return s;
}
}  // namespace

void LoraModel::attach(AdaptableLinearImpl& slot, const std::string& module, const std::string& name,
                       const LoraConfig& cfg) {
  add_lora(slot, name, settings_for(cfg, module));
}

void LoraModel::attach(AdaptableEmbeddingImpl& slot, const std::string& module, const std::string& name,
                       const LoraConfig& cfg) {
  add_lora(slot, name, settings_for(cfg, module));
}

void LoraModel::detach(AdaptableLinearImpl* l, AdaptableEmbeddingImpl* e, const std::string& name) {
  if (l) remove_lora(*l, name);
  else remove_lora(*e, name);
}

void LoraModel::mark_trainable(const std::string& name) {
  // LoraModel._mark_only_adapters_as_trainable.
  for (const auto& p : base().named_parameters(true))
    if (!saved_key(p.key(), name).empty()) p.value().set_requires_grad(true);
  mark_biases_trainable(config_of<LoraConfig>(name).bias, owner_.adapted_modules(name));
}

bool LoraModel::required_key(const std::string& key) const { return key.find("lora_") != std::string::npos; }

std::map<std::string, at::Tensor> LoraModel::state_dict(const std::string& name) const {
  const auto& cfg = config_of<LoraConfig>(name);
  std::map<std::string, at::Tensor> out;
  const auto params = base().named_parameters(true);
  for (const auto& p : params) {
    const std::string k = saved_key(p.key(), name);
    if (!k.empty()) out[kPrefix + k] = p.value().detach();
  }
  // Biases: adapted layers' biases live under base_layer in PEFT's module tree.
  const auto tg = owner_.adapted_modules(name);
  const std::set<std::string> adapted(tg.begin(), tg.end());
  if (cfg.bias != "none") {
    for (const auto& p : params) {
      const std::string& k = p.key();
      if (k.size() < 5 || k.compare(k.size() - 5, 5, ".bias") != 0 || k.find("lora_") != std::string::npos) continue;
      const std::string mod = k.substr(0, k.size() - 5);
      if (adapted.count(mod)) out[kPrefix + mod + ".base_layer.bias"] = p.value().detach();
      else if (cfg.bias == "all") out[kPrefix + k] = p.value().detach();
    }
    // bias="all" also collects the modules_to_save wrapper's inner biases under these names.
    if (cfg.bias == "all")
      for (const auto& m : owner_.modules_to_save_params(name)) {
        const std::string leaf = m.param.substr(m.module.size() + 1);
        if (leaf.size() < 4 || leaf.compare(leaf.size() - 4, 4, "bias") != 0) continue;
        out[kPrefix + m.module + ".modules_to_save." + leaf] = m.value;
        out[kPrefix + m.module + ".original_module." + leaf] = m.original;
      }
  }
  // save_embedding_layers="auto": when embed_tokens / lm_head are listed targets, PEFT also saves
  // their base weights (under base_layer).
  if (cfg.target_modules.is_list()) {
    const auto& tl = cfg.target_modules.list();
    const bool emb_targeted = std::find(tl.begin(), tl.end(), "embed_tokens") != tl.end() ||
                              std::find(tl.begin(), tl.end(), "lm_head") != tl.end();
    if (emb_targeted)
      for (const auto& m : tg) {
        const std::string leaf = m.substr(m.rfind('.') == std::string::npos ? 0 : m.rfind('.') + 1);
        if (leaf != "embed_tokens" && leaf != "lm_head") continue;
        for (const char* pn : {"weight", "bias"})
          if (auto* t = params.find(m + "." + pn)) out[kPrefix + m + ".base_layer." + pn] = t->detach();
      }
  }
  return out;
}

models::ModelOutput LoraModel::forward(const models::ModelInputs& in, const std::vector<std::string>& adapter_names) {
  if (adapter_names.empty()) return base().forward(in);
  for (const auto& n : adapter_names)
    if (n != "__base__")
      PEFT_CHECK(!config_of<LoraConfig>(n).use_dora, std::invalid_argument,
                 "[PeftModel::forward] Cannot pass `adapter_names` when DoRA is enabled.");
  models::ScopedAdapterRouting routing(adapter_names);
  return base().forward(in);
}

// ---------------------------------------------------------------- add_weighted_adapter

namespace {

// One module of add_weighted_adapter: the new adapter's A and B from the inputs' (absent ones
// have undefined tensors) with weights × scalings `ws`.
void combine_into(const LoraTensors& target, const std::vector<LoraTensors>& parts, const std::vector<double>& ws,
                  const std::string& combination_type, int64_t new_rank, bool emb) {
  if (!target.A.defined()) return;
  target.A.zero_();
  target.B.zero_();
  if (combination_type == "svd") {
    at::Tensor delta;
    for (std::size_t i = 0; i < parts.size(); ++i) {
      const auto& t = parts[i];
      if (!t.A.defined()) continue;
      at::Tensor d = emb ? at::matmul(t.B, t.A).t() : at::matmul(t.B, t.A);  // [out,in] / [V,D]
      d = d.to(at::kFloat) * ws[i];
      delta = delta.defined() ? delta + d : d;
    }
    if (!delta.defined()) return;
    at::Tensor M = emb ? delta.t() : delta;  // [D, V] for embeddings, as B @ A
    auto [U, S, Vh] = at::linalg_svd(M, /*full_matrices=*/true);
    const int64_t k = std::min<int64_t>(new_rank, S.size(0));
    U = U.narrow(1, 0, k) * S.narrow(0, 0, k);
    Vh = Vh.narrow(0, 0, k);
    target.B.narrow(1, 0, k).copy_(U);
    target.A.narrow(0, 0, k).copy_(Vh);
    return;
  }
  int64_t off = 0;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    const auto& t = parts[i];
    if (!t.A.defined()) continue;
    const int64_t r = t.A.size(0);
    if (combination_type == "linear") {
      // PEFT splits the weight between A and B: both scaled by sqrt(|w·s|), sign on A.
      const double m = std::sqrt(std::abs(ws[i])) * (ws[i] < 0 ? -1.0 : 1.0);
      target.A.add_(t.A * m);
      target.B.add_(t.B * std::sqrt(std::abs(ws[i])));
    } else {  // cat
      target.A.narrow(0, off, r).copy_(t.A * ws[i]);
      target.B.narrow(1, off, r).copy_(t.B);
    }
    off += r;
  }
}

}  // namespace

void LoraModel::add_weighted_adapter(const std::vector<std::string>& adapters, const std::vector<double>& weights,
                                     const std::string& adapter_name, const std::string& combination_type,
                                     int64_t svd_rank) {
  PEFT_CHECK(!adapters.empty() && adapters.size() == weights.size(), std::invalid_argument,
             "[add_weighted_adapter] need as many weights as adapters, got ", adapters.size(), " and ", weights.size());
  PEFT_CHECK(combination_type == "linear" || combination_type == "cat" || combination_type == "svd", NotSupported,
             "[add_weighted_adapter] combination_type '", combination_type, "' is not supported (linear, cat, svd)");
  std::set<std::string> target_set;
  std::vector<int64_t> ranks;
  for (const auto& a : adapters) {
    const auto& c = config_of<LoraConfig>(a);
    PEFT_CHECK(!c.use_dora, NotSupported, "[add_weighted_adapter] DoRA adapters cannot be combined");
    ranks.push_back(c.r);
    for (const auto& t : owner_.adapted_modules(a)) target_set.insert(t);
  }
  int64_t new_rank = 0;
  if (combination_type == "linear") {
    for (auto r : ranks)
      PEFT_CHECK(r == ranks[0], std::invalid_argument,
                 "[add_weighted_adapter] All adapters must have the same r value when using combination_type linear.");
    new_rank = ranks[0];
  } else if (combination_type == "cat") {
    for (auto r : ranks) new_rank += r;
  } else {
    new_rank = svd_rank > 0 ? svd_rank : *std::max_element(ranks.begin(), ranks.end());
  }
  // The new adapter: rank new_rank, alpha = new_rank (scaling 1), same targets (union).
  LoraConfig nc = config_of<LoraConfig>(adapters[0]);
  nc.r = new_rank;
  nc.lora_alpha = static_cast<double>(new_rank);
  nc.rank_pattern.clear();
  nc.alpha_pattern.clear();
  nc.target_modules = TargetSpec(std::vector<std::string>(target_set.begin(), target_set.end()));
  owner_.add_adapter(adapter_name, nc);
  torch::NoGradGuard ng;
  for_each_slot([&](const std::string& mod, AdaptableLinearImpl* l, AdaptableEmbeddingImpl* e) {
    if (!target_set.count(mod)) return;
    auto tensors = [&](const std::string& a) { return l ? lora_tensors(*l, a) : lora_tensors(*e, a); };
    std::vector<LoraTensors> parts;
    std::vector<double> scaled;  // weight × the adapter's scaling on this module
    for (std::size_t i = 0; i < adapters.size(); ++i) {
      parts.push_back(tensors(adapters[i]));
      scaled.push_back(weights[i] * config_of<LoraConfig>(adapters[i]).scaling_for(mod));
    }
    combine_into(tensors(adapter_name), parts, scaled, combination_type, new_rank, e != nullptr);
  });
}

}  // namespace peft::lora
