#pragma once
// PEFT's ModulesToSaveWrapper without module surgery (private to src/tuners): the live module's
// parameters hold the active adapter's copy; the original values and every other adapter's copy
// are kept aside and swapped in place (tensor identity is kept, so optimizers stay valid).
#include <torch/nn/module.h>

#include <map>
#include <string>
#include <vector>

namespace peft::detail {

struct ModulesToSave {
  struct Entry {
    std::vector<std::string> params;                        ///< full names of the module's params
    std::vector<at::Tensor> original;                       ///< frozen base values
    std::map<std::string, std::vector<at::Tensor>> copies;  ///< adapter -> values
    std::string live = "";                                  ///< whose values are in the module ("" = original)
  };
  std::map<std::string, Entry> modules;  ///< module name -> entry
};

/// Puts adapter `who`'s values ("" = the original ones) into the live module of `e`.
inline void swap_in(torch::nn::Module& root, ModulesToSave::Entry& e, const std::string& who) {
  if (e.live == who) return;
  torch::NoGradGuard ng;
  auto params = root.named_parameters(true);
  std::vector<at::Tensor> live;
  for (const auto& n : e.params) live.push_back(params[n]);
  auto& store = e.live.empty() ? e.original : e.copies[e.live];
  for (std::size_t i = 0; i < live.size(); ++i) store[i].copy_(live[i]);
  const auto& src = who.empty() ? e.original : e.copies.at(who);
  for (std::size_t i = 0; i < live.size(); ++i) live[i].copy_(src[i]);
  e.live = who;
}

}  // namespace peft::detail
