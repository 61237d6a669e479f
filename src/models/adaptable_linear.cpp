#include "peft/models/adaptable_linear.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "peft/core/check.h"

namespace peft::models {

AdaptableLinearImpl::AdaptableLinearImpl(int64_t in_features, int64_t out_features, bool with_bias,
                                         bool fan_in_fan_out)
    : in_features_(in_features), out_features_(out_features), fan_in_fan_out_(fan_in_fan_out) {
  weight = register_parameter("weight", fan_in_fan_out ? at::empty({in_features, out_features})
                                                       : at::empty({out_features, in_features}));
  if (with_bias) bias = register_parameter("bias", at::zeros({out_features}));
  // transformers' default init (normal(0, 0.02)); checkpoints overwrite it.
  torch::NoGradGuard ng;
  weight.normal_(0.0, 0.02);
}

at::Tensor AdaptableLinearImpl::weight_out_in() const { return fan_in_fan_out_ ? weight.t() : weight; }

at::Tensor AdaptableLinearImpl::base_forward(const at::Tensor& x) {
  PEFT_CHECK(x.size(-1) == in_features_, std::invalid_argument, "[AdaptableLinear] input has ",
             x.size(-1), " features, expected ", in_features_);
  if (fan_in_fan_out_) {
    // GPT-2 Conv1D: addmm(bias, x.view(-1, in), weight).
    auto sizes = x.sizes().vec();
    sizes.back() = out_features_;
    at::Tensor x2 = x.reshape({-1, in_features_});
    at::Tensor y = bias.defined() ? at::addmm(bias, x2, weight) : at::mm(x2, weight);
    return y.view(sizes);
  }
  return at::linear(x, weight, bias.defined() ? c10::optional<at::Tensor>(bias) : c10::nullopt);
}

at::Tensor AdaptableLinearImpl::forward(const at::Tensor& x) {
  at::Tensor y = base_forward(x);
  if (disabled_ || active_.empty()) return y;
  for (const auto& name : active_) y = y + adapter(name)->delta(x);
  return y;
}

void AdaptableLinearImpl::add_adapter(const std::string& name, std::shared_ptr<LinearAdapter> a) {
  PEFT_CHECK(!adapter(name), std::invalid_argument, "[AdaptableLinear] adapter '", name,
             "' already exists");
  adapters_.emplace_back(name, std::move(a));
  active_.push_back(name);
}

void AdaptableLinearImpl::delete_adapter(const std::string& name) {
  auto it = std::find_if(adapters_.begin(), adapters_.end(), [&](auto& p) { return p.first == name; });
  PEFT_CHECK(it != adapters_.end(), std::invalid_argument, "[AdaptableLinear] no adapter '", name, "'");
  adapters_.erase(it);
  active_.erase(std::remove(active_.begin(), active_.end(), name), active_.end());
}

std::shared_ptr<LinearAdapter> AdaptableLinearImpl::adapter(const std::string& name) const {
  for (const auto& [n, a] : adapters_)
    if (n == name) return a;
  return nullptr;
}

std::vector<std::string> AdaptableLinearImpl::adapter_names() const {
  std::vector<std::string> out;
  for (const auto& p : adapters_) out.push_back(p.first);
  return out;
}

void AdaptableLinearImpl::set_active_adapters(std::vector<std::string> names) {
  for (const auto& n : names)
    PEFT_CHECK(adapter(n) != nullptr, std::invalid_argument, "[AdaptableLinear] no adapter '", n, "'");
  active_ = std::move(names);
}

}  // namespace peft::models
