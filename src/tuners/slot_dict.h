#pragma once
// Internal to the tuners: adapter parameters live on a slot in named child modules used as dicts
// (slot.<dict>.<adapter>, e.g. lora_A.default.weight), as PEFT's ModuleDict / ParameterDict.
#include <torch/nn/module.h>

#include <memory>
#include <string>

namespace peft::tuners {

/// The dict module `dict` of `slot`, created on first use.
inline std::shared_ptr<torch::nn::Module> dict_of(torch::nn::Module& slot, const std::string& dict) {
  for (const auto& c : slot.named_children())
    if (c.key() == dict) return c.value();
  return slot.register_module(dict, std::make_shared<torch::nn::Module>());
}

/// Removes one entry (child module or parameter) of a dict module; the dict is rebuilt because
/// LibTorch cannot unregister a parameter, and dropped when it ends up empty.
inline void erase_entry(torch::nn::Module& slot, const std::string& dict, const std::string& name) {
  std::shared_ptr<torch::nn::Module> d;
  for (const auto& c : slot.named_children())
    if (c.key() == dict) d = c.value();
  if (!d) return;
  auto fresh = std::make_shared<torch::nn::Module>();
  for (const auto& c : d->named_children())
    if (c.key() != name) fresh->register_module(c.key(), c.value());
  for (const auto& p : d->named_parameters(false))
    if (p.key() != name) fresh->register_parameter(p.key(), p.value(), p.value().requires_grad());
  slot.unregister_module(dict);
  if (!fresh->named_children().is_empty() || !fresh->named_parameters(false).is_empty())
    slot.register_module(dict, fresh);
}

/// The parameter at dotted `key` under `slot`, or an undefined tensor.
inline at::Tensor find_tensor(torch::nn::Module& slot, const std::string& key) {
  auto params = slot.named_parameters(true);
  if (auto* p = params.find(key)) return *p;
  return {};
}

}  // namespace peft::tuners
