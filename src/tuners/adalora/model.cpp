// Mirrors peft/tuners/adalora/model.py (AdaLoraModel: _check_new_adapter_config, forward's
// orthogonal regularisation, update_and_allocate, resize_modules_by_rank_pattern,
// resize_state_dict_by_rank_pattern).
#include "peft/tuners/adalora/model.h"

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include <algorithm>
#include <set>

#include "peft/core/check.h"

namespace peft::adalora {

using models::AdaptableEmbeddingImpl;
using models::AdaptableLinearImpl;

namespace {
const std::string kPrefix = "base_model.model.";

std::string module_of(const std::string& key) {
  return key.size() > 7 && key.compare(key.size() - 7, 7, ".lora_E") == 0 ? key.substr(0, key.size() - 7) : key;
}

std::vector<int64_t> kept(const std::vector<bool>& keep) {
  std::vector<int64_t> idx;
  for (std::size_t i = 0; i < keep.size(); ++i)
    if (keep[i]) idx.push_back(static_cast<int64_t>(i));
  return idx;
}
}  // namespace

AdaLoraModel::~AdaLoraModel() = default;

void AdaLoraModel::prepare(const std::string& name, LoraConfig& cfg) {
  // AdaLoraModel: one trainable adapter at most.
  if (cfg.inference_mode) return;
  for (const auto& n : owner_.adapter_names())
    PEFT_CHECK(n == name || owner_.peft_config(n).inference_mode, std::invalid_argument,
               "[PeftModel] AdaLoraModel supports only 1 trainable adapter. When using multiple adapters, set "
               "inference_mode to True for all adapters except the one you want to train.");
}

std::vector<std::string> AdaLoraModel::default_targets(const std::string& model_type) const {
  auto d = default_adalora_targets(model_type);
  return d.empty() ? LoraModel::default_targets(model_type) : d;
}

void AdaLoraModel::attach(AdaptableLinearImpl& slot, const std::string&, const std::string& name, const LoraConfig& cfg) {
  const auto& ada = dynamic_cast<const AdaLoraConfig&>(cfg);
  AdaLoraSettings s;
  s.r = ada.init_r;
  s.alpha = ada.lora_alpha;
  s.dropout = ada.lora_dropout;
  s.ranknum = static_cast<double>(ada.init_r);
  s.random_init = ada.init_lora_weights != "false";
  add_adalora(slot, name, s);
}

void AdaLoraModel::attach(AdaptableEmbeddingImpl&, const std::string& module, const std::string&, const LoraConfig&) {
  throw NotSupported("[PeftModel] Target module " + module +
                     " is not supported by AdaLoRA: only linear layers can be adapted");
}

void AdaLoraModel::detach(AdaptableLinearImpl* l, AdaptableEmbeddingImpl* e, const std::string& name) {
  if (l) remove_adalora(*l, name);
  else LoraModel::detach(l, e, name);
}

void AdaLoraModel::remove(const std::string& name, bool keep_merged) {
  allocator_.reset();
  LoraModel::remove(name, keep_merged);
}

void AdaLoraModel::add_weighted_adapter(const std::vector<std::string>&, const std::vector<double>&,
                                        const std::string&, const std::string&, int64_t) {
  throw NotSupported("[add_weighted_adapter] AdaLoraModel does not support add_weighted_adapter method.");
}

std::string AdaLoraModel::trainable() const {
  for (const auto& n : owner_.adapter_names())
    if (!owner_.peft_config(n).inference_mode) return n;
  return "";
}

// AdaLoraModel.resize_state_dict_by_rank_pattern: only the kept triplets are saved.
std::map<std::string, at::Tensor> AdaLoraModel::saved_state_dict(const std::string& name) const {
  auto out = state_dict(name);
  const auto& cfg = config_of<AdaLoraConfig>(name);
  if (!cfg.adalora_rank_pattern) return out;
  for (const auto& [key, keep] : *cfg.adalora_rank_pattern) {
    const std::string mod = module_of(key);
    const auto idx = kept(keep);
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

// AdaLoraModel.resize_modules_by_rank_pattern: before loading a saved AdaLoRA adapter, every
// module named in rank_pattern is rebuilt with its kept rank (the kept triplets carried over) and
// ranknum left at init_r, so the scale is the one of training.
void AdaLoraModel::before_load(const std::string& name) {
  const auto& cfg = config_of<AdaLoraConfig>(name);
  if (!cfg.adalora_rank_pattern) return;
  std::set<std::string> named;
  for (const auto& [key, keep] : *cfg.adalora_rank_pattern) named.insert(module_of(key));
  std::set<std::string> seen;
  for_each_slot([&](const std::string& mod, AdaptableLinearImpl* l, AdaptableEmbeddingImpl*) {
    if (!l || !l->adapters.get(name) || !named.count(mod)) return;
    seen.insert(mod);
    const auto idx = kept(cfg.adalora_rank_pattern->at(mod + ".lora_E"));
    const auto old = adalora_tensors(*l, name);
    if (static_cast<int64_t>(idx.size()) == old.A.size(0)) return;
    const at::Tensor index = at::tensor(idx, at::kLong);
    const at::Tensor A = old.A.detach().index_select(0, index), E = old.E.detach().index_select(0, index),
                     B = old.B.detach().index_select(1, index);
    remove_adalora(*l, name);
    AdaLoraSettings s;
    s.r = static_cast<int64_t>(idx.size());
    s.alpha = cfg.lora_alpha;
    s.dropout = cfg.lora_dropout;
    s.ranknum = static_cast<double>(cfg.init_r);
    add_adalora(*l, name, s);
    const auto now = adalora_tensors(*l, name);
    torch::NoGradGuard ng;
    now.A.copy_(A);
    now.E.copy_(E);
    now.B.copy_(B);
  });
  for (const auto& m : named)
    PEFT_CHECK(seen.count(m), FormatError, "[from_pretrained] rank_pattern names '", m,
               ".lora_E' but adapter '", name, "' has no such module in this model");
}

// AdaLoraModel.forward: the trainable adapter's orthogonal regularisation joins the loss.
at::Tensor AdaLoraModel::extra_loss() {
  const std::string n = trainable();
  if (n.empty()) return {};
  const auto& cfg = config_of<AdaLoraConfig>(n);
  if (cfg.orth_reg_weight == 0) return {};
  std::vector<AdaLoraTensors> mods;
  for_each_slot([&](const std::string&, AdaptableLinearImpl* l, AdaptableEmbeddingImpl*) {
    if (l && l->adapters.get(n)) mods.push_back(adalora_tensors(*l, n));
  });
  return cfg.orth_reg_weight * orthogonal_regularization(mods);
}

RankAllocator* AdaLoraModel::rank_allocator() {
  if (allocator_) return allocator_.get();
  const std::string n = trainable();
  if (n.empty()) return nullptr;
  std::vector<RankAllocator::Module> mods;
  for_each_slot([&](const std::string& mod, AdaptableLinearImpl* l, AdaptableEmbeddingImpl*) {
    if (!l || !l->adapters.get(n)) return;
    const auto t = adalora_tensors(*l, n);
    mods.push_back({mod, t.A, t.E, t.B});
  });
  allocator_ = std::make_unique<RankAllocator>(config_of<AdaLoraConfig>(n), std::move(mods));
  return allocator_.get();
}

std::vector<std::pair<std::string, double>> AdaLoraModel::on_optimizer_step(int64_t global_step) {
  std::vector<std::pair<std::string, double>> out;
  auto* alloc = rank_allocator();
  if (!alloc) return out;
  auto& cfg = config_of<AdaLoraConfig>(trainable());
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

std::map<std::string, at::Tensor> AdaLoraModel::training_state() {
  std::map<std::string, at::Tensor> out;
  auto* alloc = rank_allocator();
  if (!alloc) return out;
  const std::string n = trainable();
  const auto& cfg = config_of<AdaLoraConfig>(n);
  for (const auto& [k, v] : state_dict(n)) out["adapter/" + k] = v.detach().clone();
  if (cfg.adalora_rank_pattern)
    for (const auto& [k, keep] : *cfg.adalora_rank_pattern) {
      at::Tensor t = at::empty({static_cast<int64_t>(keep.size())}, at::kByte);
      for (std::size_t i = 0; i < keep.size(); ++i) t.data_ptr<uint8_t>()[i] = keep[i] ? 1 : 0;
      out["rank_pattern/" + k] = t;
    }
  for (const auto& [k, v] : alloc->state()) out["allocator/" + k] = v;
  return out;
}

void AdaLoraModel::load_training_state(const std::map<std::string, at::Tensor>& state) {
  auto* alloc = rank_allocator();
  PEFT_CHECK(alloc != nullptr, std::invalid_argument,
             "[PeftModel] no trainable AdaLoRA adapter to restore a training state into");
  const std::string name = trainable();
  auto& cfg = config_of<AdaLoraConfig>(name);
  auto live = state_dict(name);
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

}  // namespace peft::adalora
