// Mirrors peft/peft_model.py (PeftModel: set_adapter, disable_adapter, save_pretrained,
// from_pretrained, load_adapter, get_nb_trainable_parameters), peft/tuners/lora/model.py
// (LoraModel: _create_and_replace, _mark_only_adapters_as_trainable, merge_and_unload,
// add_weighted_adapter) and peft/utils/save_and_load.py (get_peft_model_state_dict,
// set_peft_model_state_dict).
#include "peft/peft_model.h"

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <set>
#include <sstream>

#include "peft/core/check.h"
#include "peft/core/regex.h"
#include "peft/io/hf_checkpoint.h"
#include "peft/io/tensor_bridge.h"
#include "peft/models/adaptable_linear.h"
#include "peft/tuners/lora/config.h"
#include "peft/tuners/lora/layer.h"
#include "peft/tuners/adalora/config.h"
#include "peft/tuners/adalora/layer.h"
#include "peft/tuners/target_match.h"
#include "prompt_learning/prompt_state.h"

namespace peft {

namespace fs = std::filesystem;
using models::AdaptableEmbeddingImpl;
using models::AdaptableLinearImpl;

// ---------------------------------------------------------------- modules_to_save

// PEFT's ModulesToSaveWrapper without module surgery: the live module's parameters hold the
// active adapter's copy; the original values and every other adapter's copy are kept aside and
// swapped in place (tensor identity is kept, so optimizers stay valid).
struct detail::ModulesToSave {
  struct Entry {
    std::vector<std::string> params;                       // full names of the module's params
    std::vector<at::Tensor> original;                      // frozen base values
    std::map<std::string, std::vector<at::Tensor>> copies; // adapter -> values
    std::string live = "";                                 // whose values are in the module ("" = original)
  };
  std::map<std::string, Entry> modules;  // module name -> entry
};

namespace {

const std::string kPrefix = "base_model.model.";

std::vector<at::Tensor> live_values(torch::nn::Module& root, const std::vector<std::string>& names) {
  std::vector<at::Tensor> out;
  auto params = root.named_parameters(true);
  for (const auto& n : names) out.push_back(params[n]);
  return out;
}

void swap_in(torch::nn::Module& root, detail::ModulesToSave::Entry& e, const std::string& who) {
  if (e.live == who) return;
  torch::NoGradGuard ng;
  auto live = live_values(root, e.params);
  auto& store = e.live.empty() ? e.original : e.copies[e.live];
  for (std::size_t i = 0; i < live.size(); ++i) store[i].copy_(live[i]);
  const auto& src = who.empty() ? e.original : e.copies.at(who);
  for (std::size_t i = 0; i < live.size(); ++i) live[i].copy_(src[i]);
  e.live = who;
}

template <typename F>
void for_each_slot(torch::nn::Module& root, F&& f) {
  for (const auto& item : root.named_modules("", /*include_self=*/false)) {
    if (auto* lin = dynamic_cast<AdaptableLinearImpl*>(item.value().get())) f(item.key(), lin, nullptr);
    else if (auto* emb = dynamic_cast<AdaptableEmbeddingImpl*>(item.value().get())) f(item.key(), nullptr, emb);
  }
}

const LoraConfig& as_lora(const PeftConfig& c) {
  auto* l = dynamic_cast<const LoraConfig*>(&c);
  PEFT_CHECK(l != nullptr, NotSupported, "[PeftModel] peft_type ", to_string(c.peft_type),
             " is not implemented yet in this build");
  return *l;
}

const AdaLoraConfig* as_adalora(const PeftConfig& c) { return dynamic_cast<const AdaLoraConfig*>(&c); }

// Removes adapter `n` from a slot, whichever tuner put it there.
void remove_from_slot(AdaptableLinearImpl* l, AdaptableEmbeddingImpl* e, const std::string& n, bool adalora) {
  if (l && l->adapters.get(n)) {
    if (adalora) adalora::remove_adalora(*l, n);
    else lora::remove_lora(*l, n);
  }
  if (e && e->adapters.get(n)) lora::remove_lora(*e, n);
}

// AdaLoraModel.resize_modules_by_rank_pattern: before loading a saved AdaLoRA adapter, every
// module named in rank_pattern is rebuilt with its kept rank (the kept triplets carried over) and
// ranknum left at init_r, so the scale is the one of training.
void rebuild_saved_ranks(torch::nn::Module& root, const std::string& name, const AdaLoraConfig& cfg) {
  if (!cfg.adalora_rank_pattern) return;
  std::set<std::string> named;
  for (const auto& [key, keep] : *cfg.adalora_rank_pattern)
    named.insert(key.size() > 7 && key.compare(key.size() - 7, 7, ".lora_E") == 0 ? key.substr(0, key.size() - 7) : key);
  std::set<std::string> seen;
  for_each_slot(root, [&](const std::string& mod, AdaptableLinearImpl* l, AdaptableEmbeddingImpl*) {
    if (!l || !l->adapters.get(name) || !named.count(mod)) return;
    seen.insert(mod);
    const auto& keep = cfg.adalora_rank_pattern->at(mod + ".lora_E");
    const auto old = adalora::adalora_tensors(*l, name);
    std::vector<int64_t> idx;
    for (std::size_t i = 0; i < keep.size(); ++i)
      if (keep[i]) idx.push_back(static_cast<int64_t>(i));
    if (static_cast<int64_t>(idx.size()) == old.A.size(0)) return;
    const at::Tensor index = at::tensor(idx, at::kLong);
    const at::Tensor A = old.A.detach().index_select(0, index), E = old.E.detach().index_select(0, index),
                     B = old.B.detach().index_select(1, index);
    adalora::remove_adalora(*l, name);
    adalora::AdaLoraSettings s;
    s.r = static_cast<int64_t>(idx.size());
    s.alpha = cfg.lora_alpha;
    s.dropout = cfg.lora_dropout;
    s.ranknum = static_cast<double>(cfg.init_r);
    adalora::add_adalora(*l, name, s);
    const auto now = adalora::adalora_tensors(*l, name);
    torch::NoGradGuard ng;
    now.A.copy_(A);
    now.E.copy_(E);
    now.B.copy_(B);
  });
  for (const auto& m : named)
    PEFT_CHECK(seen.count(m), FormatError, "[from_pretrained] rank_pattern names '", m,
               ".lora_E' but adapter '", name, "' has no such module in this model");
}

// Our parameter name -> PEFT's saved key for adapter `name` (empty when not the adapter's).
std::string saved_key(const std::string& p, const std::string& name) {
  for (const char* d : {".lora_A.", ".lora_B."}) {
    const std::string mid = std::string(d) + name + ".";
    auto pos = p.find(mid);
    if (pos != std::string::npos && p.find('.', pos + mid.size()) == std::string::npos)
      return p.substr(0, pos) + d + p.substr(pos + mid.size());
  }
  for (const char* d : {".lora_embedding_A.", ".lora_embedding_B.", ".lora_A.", ".lora_B.", ".lora_E."}) {
    const std::string tail = std::string(d) + name;
    if (p.size() > tail.size() && p.compare(p.size() - tail.size(), tail.size(), tail) == 0)
      return p.substr(0, p.size() - name.size() - 1);
  }
  const std::string mag = ".lora_magnitude_vector." + name + ".weight";
  if (p.size() > mag.size() && p.compare(p.size() - mag.size(), mag.size(), mag) == 0)
    return p.substr(0, p.size() - mag.size()) + ".lora_magnitude_vector";
  return "";
}

}  // namespace

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

void PeftModel::inject(const std::string& name, const PeftConfig& cfg_in) {
  PEFT_CHECK(!configs_.count(name), std::invalid_argument, "[PeftModel] adapter '", name, "' already exists");
  PEFT_CHECK(!name.empty() && name != "__base__" && name.find('.') == std::string::npos, std::invalid_argument,
             "[PeftModel] invalid adapter name '", name, "' (non-empty, no '.', not '__base__')");
  if (!configs_.empty())
    PEFT_CHECK(configs_.begin()->second->peft_type == cfg_in.peft_type, std::invalid_argument,
               "[PeftModel] all adapters of a model must have the same peft_type; have ",
               to_string(configs_.begin()->second->peft_type), ", got ", to_string(cfg_in.peft_type));
  cfg_in.validate();
  if (cfg_in.is_prompt_learning()) {
    auto owned = cfg_in.clone();
    inject_prompt(name, *owned);
    auto& pc = dynamic_cast<PromptLearningConfig&>(*owned);
    setup_modules_to_save(name, pc.modules_to_save, pc.task_type);
    targets_[name] = {};
    order_.push_back(name);
    configs_[name] = std::move(owned);
    return;
  }
  (void)as_lora(cfg_in);
  auto owned = cfg_in.clone();
  auto& cfg = dynamic_cast<LoraConfig&>(*owned);
  const AdaLoraConfig* ada = as_adalora(cfg);
  if (ada) {
    // AdaLoraModel: one trainable adapter at most; its own default targets.
    if (!cfg.inference_mode)
      for (const auto& [n, c] : configs_)
        PEFT_CHECK(c->inference_mode, std::invalid_argument,
                   "[PeftModel] AdaLoraModel supports only 1 trainable adapter. When using multiple adapters, set "
                   "inference_mode to True for all adapters except the one you want to train.");
    if (cfg.target_modules.is_null()) {
      auto d = default_adalora_targets(base_->config().model_type());
      if (!d.empty()) cfg.target_modules = TargetSpec(d);
    }
  }

  // Candidates in model order; "all-linear" drops the LM head.
  std::vector<std::string> all, linear, embedding;
  for (const auto& item : base_->named_modules("", false)) all.push_back(item.key());
  std::map<std::string, AdaptableLinearImpl*> lin_slots;
  std::map<std::string, AdaptableEmbeddingImpl*> emb_slots;
  for_each_slot(*base_, [&](const std::string& n, AdaptableLinearImpl* l, AdaptableEmbeddingImpl* e) {
    if (l) {
      linear.push_back(n);
      lin_slots[n] = l;
    } else {
      embedding.push_back(n);
      emb_slots[n] = e;
    }
  });
  const std::string output_layer =
      base_->head() == models::TaskHead::CausalLM || base_->head() == models::TaskHead::Seq2SeqLM ? "lm_head"
      : cfg.task_type == TaskType::SeqCls ? (lin_slots.count("score") ? "score" : "classifier")
                                          : "";
  const auto targets = resolve_lora_targets(cfg, base_->config().model_type(), all, linear, embedding, output_layer);
  for (const auto& t : targets) {
    lora::LoraSettings s;
    s.r = cfg.rank_for(t);
    s.alpha = cfg.alpha_for(t);
    s.dropout = cfg.lora_dropout;
    s.use_rslora = cfg.use_rslora;
    s.use_dora = cfg.use_dora;
    s.lora_bias = cfg.lora_bias;
    s.init = cfg.init_lora_weights;
    if (auto it = lin_slots.find(t); it != lin_slots.end()) {
      // PEFT forces fan_in_fan_out to match the layer (Conv1D: true, Linear: false) with a warning.
      if (cfg.fan_in_fan_out != it->second->fan_in_fan_out()) {
        std::cerr << "warning: fan_in_fan_out is set to " << (cfg.fan_in_fan_out ? "True" : "False") << " but the target module '"
                  << t << "' is " << (it->second->fan_in_fan_out() ? "`Conv1D`" : "`torch.nn.Linear`")
                  << ". Setting fan_in_fan_out to " << (it->second->fan_in_fan_out() ? "True" : "False") << ".\n";
        cfg.fan_in_fan_out = it->second->fan_in_fan_out();
      }
      if (ada) {
        adalora::AdaLoraSettings as;
        as.r = ada->init_r;
        as.alpha = ada->lora_alpha;
        as.dropout = ada->lora_dropout;
        as.ranknum = static_cast<double>(ada->init_r);
        as.random_init = ada->init_lora_weights != "false";
        adalora::add_adalora(*it->second, name, as);
      } else {
        lora::add_lora(*it->second, name, s);
      }
    } else {
      PEFT_CHECK(!ada, NotSupported, "[PeftModel] Target module ", t,
                 " is not supported by AdaLoRA: only linear layers can be adapted");
      lora::add_lora(*emb_slots.at(t), name, s);
    }
  }
  targets_[name] = targets;
  setup_modules_to_save(name, cfg.modules_to_save, cfg.task_type);
  order_.push_back(name);
  configs_[name] = std::move(owned);
}

void PeftModel::setup_modules_to_save(const std::string& name, std::optional<std::vector<std::string>>& modules,
                                      TaskType task) {
  // Classification heads are trained and saved in full (PeftModelForSequenceClassification /
  // ForTokenClassification add them after injection).
  if (task == TaskType::SeqCls || task == TaskType::TokenCls) {
    std::vector<std::string> m = modules.value_or(std::vector<std::string>{});
    for (const char* h : {"classifier", "score"})
      if (std::find(m.begin(), m.end(), h) == m.end()) m.push_back(h);
    modules = m;
  }
  if (modules) {
    auto params = base_->named_parameters(true);
    for (const auto& item : base_->named_modules("", false)) {
      const std::string& mod = item.key();
      bool hit = false;
      for (const auto& s : *modules)
        hit = hit || mod == s || (mod.size() > s.size() && mod.compare(mod.size() - s.size(), s.size(), s) == 0 &&
                                  mod[mod.size() - s.size() - 1] == '.');
      if (!hit) continue;
      auto& e = mts_->modules[mod];
      if (e.params.empty()) {
        for (const auto& p : item.value()->named_parameters(true)) {
          if (p.key().find("lora_") != std::string::npos) continue;
          e.params.push_back(mod + "." + p.key());
          e.original.push_back(p.value().detach().clone());
        }
      }
      std::vector<at::Tensor> copy;
      for (const auto& n : e.params) copy.push_back(params[n].detach().clone());
      e.copies[name] = std::move(copy);
    }
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

void PeftModel::add_adapter(const std::string& name, const PeftConfig& cfg) {
  inject(name, cfg);
  set_adapters(active_);  // a new adapter is not activated
}

void PeftModel::set_adapter(const std::string& name) { set_adapters({name}); }

void PeftModel::set_adapters(const std::vector<std::string>& names) {
  PEFT_CHECK(!names.empty(), std::invalid_argument, "[set_adapter] give at least one adapter name");
  for (const auto& n : names)
    PEFT_CHECK(configs_.count(n), std::invalid_argument, "[set_adapter] Adapter ", n,
               " not found. Available adapters: ", [&] {
                 std::string s;
                 for (const auto& o : order_) s += (s.empty() ? "" : ", ") + o;
                 return s;
               }());
  PEFT_CHECK(names.size() == 1 || !configs_.at(names.front())->is_prompt_learning(), std::invalid_argument,
             "[set_adapter] prompt-learning methods take one active adapter at a time, got ", names.size());
  active_ = names;
  for_each_slot(*base_, [&](const std::string&, AdaptableLinearImpl* l, AdaptableEmbeddingImpl* e) {
    if (l) l->adapters.set_active(names);
    else e->adapters.set_active(names);
  });
  for (auto& [mod, e] : mts_->modules) {
    std::string who;
    for (const auto& n : names)
      if (e.copies.count(n)) who = n;
    swap_in(*base_, e, disabled_ ? "" : who);
  }
  update_trainable();
}

void PeftModel::update_trainable() {
  // Mirrors LoraModel._mark_only_adapters_as_trainable + set_adapter's requires_grad handling.
  for (auto& p : base_->parameters()) p.set_requires_grad(false);
  for (const auto& n : order_) prompt_set_trainable(n, false);
  auto params = base_->named_parameters(true);
  for (const auto& a : active_) {
    const auto& cfg = *configs_.at(a);
    if (cfg.inference_mode) continue;
    if (cfg.is_prompt_learning()) {
      prompt_set_trainable(a, true);
      for (auto& [mod, e] : mts_->modules)
        if (e.live == a)
          for (const auto& n : e.params) params[n].set_requires_grad(true);
      continue;
    }
    const auto& lc = as_lora(cfg);
    for (const auto& p : params) {
      if (!saved_key(p.key(), a).empty()) p.value().set_requires_grad(true);
    }
    const auto& tg = targets_.at(a);
    for (const auto& p : params) {
      const std::string& k = p.key();
      const bool is_bias = k.size() >= 5 && k.compare(k.size() - 5, 5, ".bias") == 0 && k.find("lora_") == std::string::npos;
      if (!is_bias) continue;
      if (lc.bias == "all") p.value().set_requires_grad(true);
      if (lc.bias == "lora_only" && std::find(tg.begin(), tg.end(), k.substr(0, k.size() - 5)) != tg.end())
        p.value().set_requires_grad(true);
    }
    for (auto& [mod, e] : mts_->modules)
      if (e.live == a)
        for (const auto& n : e.params) params[n].set_requires_grad(true);
  }
}

void PeftModel::delete_adapter(const std::string& name) {
  PEFT_CHECK(configs_.count(name), std::invalid_argument, "[delete_adapter] Adapter ", name, " does not exist");
  const bool ada = as_adalora(*configs_.at(name)) != nullptr;
  for_each_slot(*base_, [&](const std::string&, AdaptableLinearImpl* l, AdaptableEmbeddingImpl* e) {
    remove_from_slot(l, e, name, ada);
  });
  allocator_.reset();
  for (auto& [mod, e] : mts_->modules) {
    if (e.live == name) swap_in(*base_, e, "");
    e.copies.erase(name);
  }
  if (prompt_) prompt_->encoders.erase(name);
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
  for_each_slot(*m_.base_, [&](const std::string&, AdaptableLinearImpl* l, AdaptableEmbeddingImpl* e) {
    if (l) {
      l->unmerge();
      l->adapters.disabled = true;
    } else {
      e->unmerge();
      e->adapters.disabled = true;
    }
  });
  for (auto& [mod, e] : m_.mts_->modules) swap_in(*m_.base_, e, "");
}

PeftModel::DisableGuard::~DisableGuard() {
  if (--m_.disabled_ > 0) return;
  for_each_slot(*m_.base_, [&](const std::string&, AdaptableLinearImpl* l, AdaptableEmbeddingImpl* e) {
    if (l) l->adapters.disabled = false;
    else e->adapters.disabled = false;
  });
  m_.set_adapters(m_.active_);
}

models::ModelOutput PeftModel::forward(const models::ModelInputs& in, const std::vector<std::string>& adapter_names) {
  if (!active_.empty() && configs_.at(active_.front())->is_prompt_learning()) {
    PEFT_CHECK(adapter_names.empty(), NotSupported,
               "[PeftModel::forward] mixed-adapter batches are for LoRA; prompt learning runs one adapter");
    if (!disabled_) return prompt_forward(in);
  }
  if (adapter_names.empty()) {
    models::ModelOutput out = base_->forward(in);
    // AdaLoraModel.forward: the trainable adapter's orthogonal regularisation joins the loss
    // (only when gradients are recorded, so evaluation losses stay the task loss).
    if (out.loss.defined() && at::GradMode::is_enabled() && !disabled_)
      for (const auto& [n, c] : configs_) {
        const auto* ada = as_adalora(*c);
        if (!ada || c->inference_mode || ada->orth_reg_weight == 0) continue;
        std::vector<adalora::AdaLoraTensors> mods;
        for_each_slot(*base_, [&](const std::string&, AdaptableLinearImpl* l, AdaptableEmbeddingImpl*) {
          if (l && l->adapters.get(n)) mods.push_back(adalora::adalora_tensors(*l, n));
        });
        out.loss = out.loss + ada->orth_reg_weight * adalora::orthogonal_regularization(mods);
      }
    return out;
  }
  PEFT_CHECK(!base_->is_training(), std::invalid_argument,
             "[PeftModel::forward] Cannot pass `adapter_names` when the model is in training mode.");
  for (const auto& n : adapter_names)
    PEFT_CHECK(n == "__base__" || configs_.count(n), std::invalid_argument, "[PeftModel::forward] Trying to infer with non-existing adapter(s): ", n);
  for (const auto& n : adapter_names)
    if (n != "__base__") PEFT_CHECK(!as_lora(*configs_.at(n)).use_dora, std::invalid_argument,
                                    "[PeftModel::forward] Cannot pass `adapter_names` when DoRA is enabled.");
  PEFT_CHECK(mts_->modules.empty(), NotSupported,
             "[PeftModel::forward] mixed-adapter batches with modules_to_save are not supported");
  models::ScopedAdapterRouting routing(adapter_names);
  return base_->forward(in);
}

// ---------------------------------------------------------------- merging

void PeftModel::merge_adapter(const std::vector<std::string>& names, bool safe_merge) {
  const auto use = names.empty() ? active_ : names;
  for (const auto& n : use)
    PEFT_CHECK(!configs_.count(n) || !configs_.at(n)->is_prompt_learning(), NotSupported,
               "[merge_adapter] ", to_string(configs_.at(n)->peft_type),
               " adapters add virtual tokens or a key/value prefix and cannot be merged into the weights");
  for_each_slot(*base_, [&](const std::string&, AdaptableLinearImpl* l, AdaptableEmbeddingImpl* e) {
    std::vector<std::string> here;
    for (const auto& n : use)
      if (l ? l->adapters.get(n) != nullptr : (e != nullptr && e->adapters.get(n) != nullptr)) here.push_back(n);
    if (here.empty()) return;
    if (l) l->merge(here, safe_merge);
    else if (e) e->merge(here, safe_merge);
  });
}

void PeftModel::unmerge_adapter() {
  for_each_slot(*base_, [&](const std::string&, AdaptableLinearImpl* l, AdaptableEmbeddingImpl* e) {
    if (l) l->unmerge();
    else if (e) e->unmerge();
  });
}

std::shared_ptr<models::PretrainedModel> PeftModel::merge_and_unload(bool safe_merge, const std::vector<std::string>& names) {
  merge_adapter(names, safe_merge);
  // modules_to_save copies of the active adapter are already live and replace the originals.
  remove_all_adapters();
  return base_;
}

std::shared_ptr<models::PretrainedModel> PeftModel::unload() {
  unmerge_adapter();
  for (auto& [mod, e] : mts_->modules) swap_in(*base_, e, "");
  remove_all_adapters();
  return base_;
}

void PeftModel::remove_all_adapters() {
  // Adapter parameters go; merged weights (if any) stay in the base.
  for (const auto& n : std::vector<std::string>(order_)) {
    const bool ada = as_adalora(*configs_.at(n)) != nullptr;
    for_each_slot(*base_, [&](const std::string&, AdaptableLinearImpl* l, AdaptableEmbeddingImpl* e) {
      if (l && l->adapters.get(n)) l->adapters.clear_merged();
      if (e && e->adapters.get(n)) e->adapters.clear_merged();
      remove_from_slot(l, e, n, ada);
    });
  }
  allocator_.reset();
  if (prompt_) prompt_->encoders.clear();
  configs_.clear();
  targets_.clear();
  order_.clear();
  active_.clear();
  mts_->modules.clear();
}

// ---------------------------------------------------------------- save / load

std::map<std::string, at::Tensor> PeftModel::adapter_state_dict(const std::string& name) const {
  auto out = live_state_dict(name);
  const auto* ada = as_adalora(*configs_.at(name));
  if (!ada || !ada->adalora_rank_pattern) return out;
  // AdaLoraModel.resize_state_dict_by_rank_pattern: only the kept triplets are saved.
  for (const auto& [key, keep] : *ada->adalora_rank_pattern) {
    const std::string mod = key.size() > 7 && key.compare(key.size() - 7, 7, ".lora_E") == 0
                                ? key.substr(0, key.size() - 7)
                                : key;
    std::vector<int64_t> idx;
    for (std::size_t i = 0; i < keep.size(); ++i)
      if (keep[i]) idx.push_back(static_cast<int64_t>(i));
    const at::Tensor index = at::tensor(idx, at::kLong);
    for (const char* part : {".lora_A", ".lora_E", ".lora_B"}) {
      auto it = out.find(kPrefix + mod + part);
      PEFT_CHECK(it != out.end(), std::invalid_argument, "[save_pretrained] rank_pattern names '", key,
                 "' but the adapter has no module '", mod, "'");
      const int dim = std::string(part) == ".lora_B" ? 1 : 0;
      PEFT_CHECK(it->second.size(dim) == static_cast<int64_t>(keep.size()) ||
                     it->second.size(dim) == static_cast<int64_t>(idx.size()),
                 std::invalid_argument, "[save_pretrained] rank_pattern['", key, "'] has ", keep.size(),
                 " entries but ", mod, part, " has rank ", it->second.size(dim));
      if (it->second.size(dim) != static_cast<int64_t>(idx.size())) it->second = it->second.index_select(dim, index);
    }
  }
  return out;
}

std::map<std::string, at::Tensor> PeftModel::live_state_dict(const std::string& name) const {
  PEFT_CHECK(configs_.count(name), std::invalid_argument, "[save_pretrained] no adapter named '", name, "'");
  if (configs_.at(name)->is_prompt_learning()) {
    // One `prompt_embeddings` tensor (the encoder output) plus modules_to_save under "base_model.".
    std::map<std::string, at::Tensor> out;
    out["prompt_embeddings"] = prompt_embeddings(name).detach();
    const auto params = base_->named_parameters(true);
    for (const auto& [mod, e] : mts_->modules) {
      auto it = e.copies.find(name);
      if (it == e.copies.end()) continue;
      for (std::size_t i = 0; i < e.params.size(); ++i)
        out["base_model." + e.params[i]] = e.live == name ? params[e.params[i]].detach() : it->second[i];
    }
    return out;
  }
  const auto& cfg = as_lora(*configs_.at(name));
  std::map<std::string, at::Tensor> out;
  const auto params = base_->named_parameters(true);
  for (const auto& p : params) {
    const std::string k = saved_key(p.key(), name);
    if (!k.empty()) out[kPrefix + k] = p.value().detach();
  }
  // Biases: adapted layers' biases live under base_layer in PEFT's module tree.
  const auto& tg = targets_.at(name);
  const std::set<std::string> adapted(tg.begin(), tg.end());
  if (cfg.bias != "none") {
    for (const auto& p : params) {
      const std::string& k = p.key();
      if (k.size() < 5 || k.compare(k.size() - 5, 5, ".bias") != 0 || k.find("lora_") != std::string::npos) continue;
      const std::string mod = k.substr(0, k.size() - 5);
      if (adapted.count(mod)) out[kPrefix + mod + ".base_layer.bias"] = p.value().detach();
      else if (cfg.bias == "all") out[kPrefix + k] = p.value().detach();
    }
  }
  for (const auto& [mod, e] : mts_->modules) {
    auto it = e.copies.find(name);
    if (it == e.copies.end()) continue;
    for (std::size_t i = 0; i < e.params.size(); ++i) {
      const at::Tensor v = e.live == name ? params[e.params[i]].detach() : it->second[i];
      out[kPrefix + e.params[i]] = v;
      // PEFT's bias="all" also collects the wrapper's inner biases under these names.
      const std::string leaf = e.params[i].substr(mod.size() + 1);
      if (cfg.bias == "all" && leaf.size() >= 4 && leaf.compare(leaf.size() - 4, 4, "bias") == 0) {
        out[kPrefix + mod + ".modules_to_save." + leaf] = v;
        out[kPrefix + mod + ".original_module." + leaf] = e.live.empty() ? params[e.params[i]].detach() : e.original[i];
      }
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

void PeftModel::save_pretrained(const std::string& dir, const std::vector<std::string>& selected) const {
  const auto names = selected.empty() ? order_ : selected;
  for (const auto& n : names) {
    PEFT_CHECK(configs_.count(n), std::invalid_argument, "[save_pretrained] no adapter named '", n, "'");
    const fs::path out = n == "default" ? fs::path(dir) : fs::path(dir) / n;
    fs::create_directories(out);
    std::map<std::string, at::Tensor> tensors;
    for (const auto& [k, v] : adapter_state_dict(n)) tensors[k] = v.contiguous().clone();
    io::save_safetensors((out / "adapter_model.safetensors").string(), tensors, {{"format", "pt"}});
    if (prompt_ && prompt_->encoders.count(n) && !prompt_->encoders.at(n)->table_only()) {
      // The full encoder (MLP / LSTM / projection), so training can resume (PEFT issue #1247).
      std::map<std::string, at::Tensor> enc;
      for (const auto& [k, v] : prompt_encoder_state(n)) enc[k] = v.detach().contiguous().clone();
      io::save_safetensors((out / "prompt_encoder.safetensors").string(), enc, {{"format", "pt"}});
    }
    nlohmann::json j = configs_.at(n)->to_json();
    j["inference_mode"] = true;
    if (j["base_model_name_or_path"].is_null() && !base_->config().source().empty())
      j["base_model_name_or_path"] = fs::path(base_->config().source()).parent_path().string();
    io::write_json_file((out / "adapter_config.json").string(), j);
  }
}

std::shared_ptr<PeftModel> PeftModel::from_pretrained(std::shared_ptr<models::PretrainedModel> base,
                                                      const std::string& dir, const std::string& adapter_name,
                                                      bool is_trainable) {
  auto cfg = load_peft_config(dir);
  cfg->inference_mode = !is_trainable;
  auto pm = std::make_shared<PeftModel>(std::move(base), *cfg, adapter_name);
  if (const auto* ada = as_adalora(*cfg)) rebuild_saved_ranks(pm->base_model(), adapter_name, *ada);
  pm->load_adapter_weights((fs::path(dir) / "adapter_model.safetensors").string(), adapter_name);
  pm->set_adapter(adapter_name);
  return pm;
}

void PeftModel::load_adapter(const std::string& dir, const std::string& name, bool is_trainable) {
  auto cfg = load_peft_config(dir);
  cfg->inference_mode = !is_trainable;
  inject(name, *cfg);
  if (const auto* ada = as_adalora(*cfg)) rebuild_saved_ranks(*base_, name, *ada);
  load_adapter_weights((fs::path(dir) / "adapter_model.safetensors").string(), name);
  set_adapters(active_);
}

void PeftModel::load_adapter_weights(const std::string& file, const std::string& name) {
  PEFT_CHECK(fs::exists(file), FormatError, "[from_pretrained] ", file,
             ": not found (adapter_model.bin pickles are not read; save adapters as safetensors)");
  const auto f = io::SafetensorsFile::open(file);
  // Every key this adapter expects, by saved name -> our tensor (mirrors the inverse of
  // get_peft_model_state_dict, as set_peft_model_state_dict derives it).
  std::map<std::string, at::Tensor> expected;
  for (const auto& [k, v] : live_state_dict(name)) expected[k] = v;
  std::map<std::string, std::pair<std::string, at::Tensor>> mts_targets;  // key -> (module, live tensor)
  auto params = base_->named_parameters(true);
  const std::string pre = configs_.at(name)->is_prompt_learning() ? "base_model." : kPrefix;
  std::vector<std::string> unexpected, mismatched;
  std::set<std::string> seen;
  torch::NoGradGuard ng;
  for (const auto& key : f.names()) {
    auto it = expected.find(key);
    if (it == expected.end()) {
      unexpected.push_back(key);
      continue;
    }
    const at::Tensor src = io::to_tensor(f, key);
    at::Tensor dst = it->second;
    seen.insert(key);  // present: a shape mismatch is reported as such, not as missing
    if (src.sizes() != dst.sizes()) {
      std::ostringstream os;
      os << "'" << key << "': file " << src.sizes() << " vs model " << dst.sizes();
      if (key == "prompt_embeddings" && configs_.at(name)->peft_type == PeftType::PrefixTuning)
        os << " (a prefix saved with prefix_on: encoder_and_decoder has 2·num_virtual_tokens rows, one with "
              "prefix_placement: embedding has token_dim columns; such an adapter_config.json must keep that field)";
      mismatched.push_back(os.str());
      continue;
    }
    // modules_to_save values go to the adapter's copy (and to the live module if it is live);
    // ".original_module." entries are the untouched base values and are only checked for shape.
    bool done = false;
    for (auto& [mod, e] : mts_->modules) {
      for (std::size_t i = 0; i < e.params.size(); ++i) {
        const std::string leaf = e.params[i].substr(mod.size() + 1);
        if (key == pre + mod + ".original_module." + leaf) done = true;
        if ((pre + e.params[i] == key || key == pre + mod + ".modules_to_save." + leaf) &&
            e.copies.count(name)) {
          e.copies[name][i].copy_(src);
          if (e.live == name) params[e.params[i]].copy_(src);
          done = true;
        }
      }
    }
    if (!done) dst.copy_(src);
  }
  std::vector<std::string> missing;
  for (const auto& [k, v] : expected)
    if (!seen.count(k) && (k.find("lora_") != std::string::npos || k == "prompt_embeddings")) missing.push_back(k);
  std::ostringstream err;
  auto list = [&](const char* what, const std::vector<std::string>& v) {
    if (v.empty()) return;
    err << "\n  " << what << " (" << v.size() << "):";
    for (std::size_t i = 0; i < v.size() && i < 12; ++i) err << "\n    " << v[i];
    if (v.size() > 12) err << "\n    ... and " << v.size() - 12 << " more";
  };
  list("shape mismatches (an adapter trained for another base model?)", mismatched);
  list("missing from the file", missing);
  list("in the file but matching no module of this model (the adapter would have no effect)", unexpected);
  const std::string e = err.str();
  PEFT_CHECK(e.empty(), FormatError, "[from_pretrained] ", file, " does not fit this model:", e);
  // A P-Tuning / projected-prefix encoder that trains is restored from the sidecar beside the file.
  if (configs_.at(name)->is_prompt_learning())
    load_prompt_weights(fs::path(file).parent_path().string(), name, !configs_.at(name)->inference_mode);
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
  for (const auto& p : prompt_parameters()) {
    all += p.numel();
    if (p.requires_grad()) trainable += p.numel();
  }
  // A 4-bit base weight is no parameter here; PEFT counts bitsandbytes' packed Params4bit as
  // 2 values per byte, i.e. the original element count rounded up to even.
  for_each_slot(*base_, [&](const std::string&, AdaptableLinearImpl* l, AdaptableEmbeddingImpl*) {
    if (l && l->quantized()) all += (l->in_features() * l->out_features() + 1) / 2 * 2;
  });
  return {trainable, all};
}

std::string PeftModel::print_trainable_parameters() const {
  const auto [t, a] = get_nb_trainable_parameters();
  auto commas = [](int64_t n) {
    std::string s = std::to_string(n), out;
    for (std::size_t i = 0; i < s.size(); ++i) {
      if (i && (s.size() - i) % 3 == 0) out.push_back(',');
      out.push_back(s[i]);
    }
    return out;
  };
  char pct[32];
  std::snprintf(pct, sizeof(pct), "%.4f", a ? 100.0 * static_cast<double>(t) / static_cast<double>(a) : 0.0);
  std::string line = "trainable params: " + commas(t) + " || all params: " + commas(a) + " || trainable%: " + pct;
  std::cout << line << "\n";
  return line;
}

std::vector<at::Tensor> PeftModel::trainable_parameters() const {
  std::vector<at::Tensor> out;
  for (const auto& p : base_->parameters())
    if (p.requires_grad()) out.push_back(p);
  for (const auto& p : prompt_parameters())
    if (p.requires_grad()) out.push_back(p);
  return out;
}

// ---------------------------------------------------------------- add_weighted_adapter

void PeftModel::add_weighted_adapter(const std::vector<std::string>& adapters, const std::vector<double>& weights,
                                     const std::string& adapter_name, const std::string& combination_type,
                                     int64_t svd_rank) {
  PEFT_CHECK(!adapters.empty() && adapters.size() == weights.size(), std::invalid_argument,
             "[add_weighted_adapter] need as many weights as adapters, got ", adapters.size(), " and ", weights.size());
  PEFT_CHECK(combination_type == "linear" || combination_type == "cat" || combination_type == "svd", NotSupported,
             "[add_weighted_adapter] combination_type '", combination_type, "' is not supported (linear, cat, svd)");
  std::set<std::string> target_set;
  std::vector<int64_t> ranks;
  for (const auto& a : adapters)
    PEFT_CHECK(!as_adalora(peft_config(a)), NotSupported,
               "[add_weighted_adapter] AdaLoraModel does not support add_weighted_adapter method.");
  for (const auto& a : adapters) {
    const auto& c = as_lora(peft_config(a));
    PEFT_CHECK(!c.use_dora, NotSupported, "[add_weighted_adapter] DoRA adapters cannot be combined");
    ranks.push_back(c.r);
    for (const auto& t : targets_.at(a)) target_set.insert(t);
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
  LoraConfig nc = as_lora(peft_config(adapters[0]));
  nc.r = new_rank;
  nc.lora_alpha = static_cast<double>(new_rank);
  nc.rank_pattern.clear();
  nc.alpha_pattern.clear();
  nc.target_modules = TargetSpec(std::vector<std::string>(target_set.begin(), target_set.end()));
  inject(adapter_name, nc);
  torch::NoGradGuard ng;
  for_each_slot(*base_, [&](const std::string& mod, AdaptableLinearImpl* l, AdaptableEmbeddingImpl* e) {
    if (!target_set.count(mod)) return;
    auto target = l ? lora::lora_tensors(*l, adapter_name) : lora::lora_tensors(*e, adapter_name);
    if (!target.A.defined()) return;
    const bool emb = e != nullptr;
    target.A.zero_();
    target.B.zero_();
    if (combination_type == "svd") {
      at::Tensor delta;
      for (std::size_t i = 0; i < adapters.size(); ++i) {
        auto t = l ? lora::lora_tensors(*l, adapters[i]) : lora::lora_tensors(*e, adapters[i]);
        if (!t.A.defined()) continue;
        const double s = as_lora(peft_config(adapters[i])).scaling_for(mod);
        at::Tensor d = emb ? at::matmul(t.B, t.A).t() : at::matmul(t.B, t.A);  // [out,in] / [V,D]
        d = d.to(at::kFloat) * (weights[i] * s);
        delta = delta.defined() ? delta + d : d;
      }
      if (!delta.defined()) return;
      // PEFT: delta is [out, in] for Linear (transposed back for fan_in_fan_out it never is here).
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
    for (std::size_t i = 0; i < adapters.size(); ++i) {
      auto t = l ? lora::lora_tensors(*l, adapters[i]) : lora::lora_tensors(*e, adapters[i]);
      if (!t.A.defined()) continue;
      const int64_t r = t.A.size(0);
      const double ws = weights[i] * as_lora(peft_config(adapters[i])).scaling_for(mod);
      if (combination_type == "linear") {
        // PEFT splits the weight between A and B: both scaled by sqrt(|w·s|), sign on A.
        const double m = std::sqrt(std::abs(ws)) * (ws < 0 ? -1.0 : 1.0);
        target.A.add_(t.A * m);
        target.B.add_(t.B * std::sqrt(std::abs(ws)));
      } else {  // cat
        target.A.narrow(0, off, r).copy_(t.A * ws);
        target.B.narrow(1, off, r).copy_(t.B);
      }
      off += r;
    }
  });
}

// ---------------------------------------------------------------- per-step tuner work

adalora::RankAllocator* PeftModel::rank_allocator() {
  if (allocator_) return allocator_.get();
  for (const auto& n : order_) {
    const auto* ada = as_adalora(*configs_.at(n));
    if (!ada || ada->inference_mode) continue;
    std::vector<adalora::RankAllocator::Module> mods;
    for_each_slot(*base_, [&](const std::string& mod, AdaptableLinearImpl* l, AdaptableEmbeddingImpl*) {
      if (!l || !l->adapters.get(n)) return;
      const auto t = adalora::adalora_tensors(*l, n);
      mods.push_back({mod, t.A, t.E, t.B});
    });
    allocator_ = std::make_unique<adalora::RankAllocator>(*ada, std::move(mods));
    return allocator_.get();
  }
  return nullptr;
}

std::vector<std::pair<std::string, double>> PeftModel::on_optimizer_step(int64_t global_step) {
  std::vector<std::pair<std::string, double>> out;
  auto* alloc = rank_allocator();
  if (!alloc) return out;
  std::string trainable;
  for (const auto& n : order_)
    if (as_adalora(*configs_.at(n)) && !configs_.at(n)->inference_mode) trainable = n;
  auto& cfg = dynamic_cast<AdaLoraConfig&>(*configs_.at(trainable));
  const auto r = alloc->update_and_allocate(global_step, cfg);
  out.emplace_back("adalora/budget", static_cast<double>(r.budget));
  for (const auto& m : alloc->modules()) {
    int64_t rank = m.E.size(0);
    if (cfg.adalora_rank_pattern) {
      auto it = cfg.adalora_rank_pattern->find(m.name + ".lora_E");
      if (it != cfg.adalora_rank_pattern->end())
        rank = static_cast<int64_t>(std::count(it->second.begin(), it->second.end(), true));
    }
    out.emplace_back("adalora/rank/" + m.name, static_cast<double>(rank));
  }
  return out;
}

std::map<std::string, at::Tensor> PeftModel::training_state() {
  std::map<std::string, at::Tensor> out;
  auto* alloc = rank_allocator();
  if (!alloc) return out;
  for (const auto& n : order_) {
    const auto* ada = as_adalora(*configs_.at(n));
    if (!ada || ada->inference_mode) continue;
    for (const auto& [k, v] : live_state_dict(n)) out["adapter/" + k] = v.detach().clone();
    if (ada->adalora_rank_pattern)
      for (const auto& [k, keep] : *ada->adalora_rank_pattern) {
        at::Tensor t = at::empty({static_cast<int64_t>(keep.size())}, at::kByte);
        for (std::size_t i = 0; i < keep.size(); ++i) t.data_ptr<uint8_t>()[i] = keep[i] ? 1 : 0;
        out["rank_pattern/" + k] = t;
      }
  }
  for (const auto& [k, v] : alloc->state()) out["allocator/" + k] = v;
  return out;
}

void PeftModel::load_training_state(const std::map<std::string, at::Tensor>& state) {
  auto* alloc = rank_allocator();
  PEFT_CHECK(alloc != nullptr, std::invalid_argument, "[PeftModel] no trainable AdaLoRA adapter to restore a training state into");
  std::string name;
  for (const auto& n : order_)
    if (as_adalora(*configs_.at(n)) && !configs_.at(n)->inference_mode) name = n;
  auto& cfg = dynamic_cast<AdaLoraConfig&>(*configs_.at(name));
  auto live = live_state_dict(name);
  std::map<std::string, std::vector<bool>> pattern;
  std::map<std::string, at::Tensor> scores;
  torch::NoGradGuard ng;
  for (const auto& [k, v] : state) {
    if (k.rfind("adapter/", 0) == 0) {
      auto it = live.find(k.substr(8));
      PEFT_CHECK(it != live.end() && it->second.sizes() == v.sizes(), FormatError, "[PeftModel] training state '", k,
                 "' does not fit adapter '", name, "'");
      it->second.copy_(v);
    } else if (k.rfind("rank_pattern/", 0) == 0) {
      const at::Tensor b = v.to(at::kByte).contiguous();
      std::vector<bool> keep(static_cast<std::size_t>(b.numel()));
      for (int64_t i = 0; i < b.numel(); ++i) keep[static_cast<std::size_t>(i)] = b.data_ptr<uint8_t>()[i] != 0;
      pattern[k.substr(13)] = std::move(keep);
    } else if (k.rfind("allocator/", 0) == 0) {
      scores[k.substr(10)] = v;
    }
  }
  if (!pattern.empty()) cfg.adalora_rank_pattern = std::move(pattern);
  alloc->load_state(scores);
}

}  // namespace peft
