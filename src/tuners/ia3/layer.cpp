// Mirrors peft/tuners/ia3/layer.py (IA3Layer.update_layer, reset_ia3_parameters, Linear.merge,
// Linear.unmerge, Linear.forward).
#include "../slot_dict.h"
#include "peft/tuners/ia3/layer.h"

#include <ATen/ATen.h>

#include "peft/core/check.h"

namespace peft::ia3 {

namespace {

using tuners::dict_of;
using tuners::erase_entry;
using tuners::find_tensor;

// PEFT's unmerge divides by the vector plus this, against division by zero.
constexpr double kUnmergeEps = 1e-8;

class Ia3Linear : public models::LinearAdapter {
 public:
  Ia3Linear(at::Tensor l, bool is_feedforward) : l_(std::move(l)), ff_(is_feedforward) {}

  // Nothing is added: the slot applies input_scale / output_scale around its base projection.
  at::Tensor delta(const at::Tensor&, const at::Tensor&) override { return {}; }
  bool is_feedforward() const { return ff_; }
  at::Tensor input_scale() override { return ff_ ? l_.flatten() : at::Tensor(); }
  at::Tensor output_scale() override { return ff_ ? at::Tensor() : l_.flatten(); }

  at::Tensor delta_weight() override {
    throw NotSupported("[ia3] (IA)³ rescales the weight; it has no additive weight update");
  }
  // W [out, in]: feedforward scales the columns (inputs), otherwise the rows (outputs).
  at::Tensor merge_into(const at::Tensor& w) override { return w * weight_scale(w); }
  at::Tensor unmerge_from(const at::Tensor& w) override { return w / (weight_scale(w) + kUnmergeEps); }
  at::Tensor merge_bias_into(const at::Tensor& b) override {
    if (ff_) return {};
    return (b * l_.detach().reshape(b.sizes()).to(b.scalar_type()));
  }
  at::Tensor unmerge_bias_from(const at::Tensor& b) override {
    if (ff_) return {};
    return b / (l_.detach().reshape(b.sizes()).to(b.scalar_type()) + kUnmergeEps);
  }

 private:
  at::Tensor weight_scale(const at::Tensor& w) const {
    const at::Tensor v = l_.detach().to(w.scalar_type());
    return ff_ ? v.reshape({1, -1}) : v.reshape({-1, 1});
  }
  at::Tensor l_;  ///< [1, in] (feedforward) or [out, 1]
  bool ff_;
};

}  // namespace

void add_ia3(models::AdaptableLinearImpl& slot, const std::string& name, bool is_feedforward, bool init_ones) {
  // PEFT's IA3Layer fixes is_feedforward when the layer is created: a later adapter on the same
  // layer takes the first one's kind, whatever its own feedforward_modules say.
  for (const auto& other : slot.adapters.names())
    if (auto a = std::dynamic_pointer_cast<Ia3Linear>(slot.adapters.get(other))) {
      is_feedforward = a->is_feedforward();
      break;
    }
  at::Tensor l = is_feedforward ? at::randn({1, slot.in_features()}) : at::randn({slot.out_features(), 1});
  if (init_ones) l.fill_(1.0);
  if (slot.weight.defined()) l = l.to(slot.weight.device());
  l = dict_of(slot, "ia3_l")->register_parameter(name, l);
  slot.adapters.add(name, std::make_shared<Ia3Linear>(l, is_feedforward));
}

void remove_ia3(models::AdaptableLinearImpl& slot, const std::string& name) {
  slot.adapters.remove(name);
  erase_entry(slot, "ia3_l", name);
}

at::Tensor ia3_vector(models::AdaptableLinearImpl& slot, const std::string& name) {
  return find_tensor(slot, "ia3_l." + name);
}

}  // namespace peft::ia3
