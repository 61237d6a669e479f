// Mirrors peft/tuners/tuners_utils.py (BaseTuner: set_adapter, enable/disable_adapter_layers,
// merge_adapter, unmerge_adapter, _unload_and_optionally_merge, delete_adapter).
#include "peft/tuners/layer_tuner.h"

#include <algorithm>

#include "peft/core/check.h"

namespace peft {

using models::AdaptableEmbeddingImpl;
using models::AdaptableLinearImpl;

void LayerTuner::for_each_slot(const SlotFn& f) const {
  for (const auto& item : base().named_modules("", /*include_self=*/false)) {
    if (auto* lin = dynamic_cast<AdaptableLinearImpl*>(item.value().get())) f(item.key(), lin, nullptr);
    else if (auto* emb = dynamic_cast<AdaptableEmbeddingImpl*>(item.value().get())) f(item.key(), nullptr, emb);
  }
}

LayerTuner::Candidates LayerTuner::candidates(TaskType task) const {
  Candidates c;
  for (const auto& item : base().named_modules("", false)) c.all.push_back(item.key());
  for_each_slot([&](const std::string& n, AdaptableLinearImpl* l, AdaptableEmbeddingImpl* e) {
    if (l) {
      c.linear.push_back(n);
      c.linear_slots[n] = l;
    } else {
      c.embedding.push_back(n);
      c.embedding_slots[n] = e;
    }
  });
  const auto head = base().head();
  c.output_layer = head == models::TaskHead::CausalLM || head == models::TaskHead::Seq2SeqLM ? "lm_head"
                   : task == TaskType::SeqCls ? (c.linear_slots.count("score") ? "score" : "classifier")
                                              : "";
  return c;
}

void LayerTuner::set_active(const std::vector<std::string>& names) {
  for_each_slot([&](const std::string&, AdaptableLinearImpl* l, AdaptableEmbeddingImpl* e) {
    if (l) l->adapters.set_active(names);
    else e->adapters.set_active(names);
  });
}

void LayerTuner::set_disabled(bool disabled) {
  for_each_slot([&](const std::string&, AdaptableLinearImpl* l, AdaptableEmbeddingImpl* e) {
    if (l) {
      if (disabled) l->unmerge();
      l->adapters.disabled = disabled;
    } else {
      if (disabled) e->unmerge();
      e->adapters.disabled = disabled;
    }
  });
}

void LayerTuner::merge(const std::vector<std::string>& names, bool safe_merge) {
  for_each_slot([&](const std::string&, AdaptableLinearImpl* l, AdaptableEmbeddingImpl* e) {
    std::vector<std::string> here;
    for (const auto& n : names)
      if (l ? l->adapters.get(n) != nullptr : e->adapters.get(n) != nullptr) here.push_back(n);
    if (here.empty()) return;
    if (l) l->merge(here, safe_merge);
    else e->merge(here, safe_merge);
  });
}

void LayerTuner::unmerge() {
  for_each_slot([&](const std::string&, AdaptableLinearImpl* l, AdaptableEmbeddingImpl* e) {
    if (l) l->unmerge();
    else e->unmerge();
  });
}

void LayerTuner::remove(const std::string& name, bool keep_merged) {
  for_each_slot([&](const std::string&, AdaptableLinearImpl* l, AdaptableEmbeddingImpl* e) {
    const bool here = l ? l->adapters.get(name) != nullptr : e->adapters.get(name) != nullptr;
    if (!here) return;
    if (keep_merged) {
      if (l) l->adapters.clear_merged();
      else e->adapters.clear_merged();
    }
    detach(l, e, name);
  });
}

void LayerTuner::mark_biases_trainable(const std::string& bias, const std::vector<std::string>& targets) const {
  if (bias == "none") return;
  for (const auto& p : base().named_parameters(true)) {
    const std::string& k = p.key();
    const bool is_bias = k.size() >= 5 && k.compare(k.size() - 5, 5, ".bias") == 0 && k.find("lora_") == std::string::npos;
    if (!is_bias) continue;
    if (bias == "all" ||
        (bias == "lora_only" && std::find(targets.begin(), targets.end(), k.substr(0, k.size() - 5)) != targets.end()))
      p.value().set_requires_grad(true);
  }
}

}  // namespace peft
