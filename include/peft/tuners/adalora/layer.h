#pragma once
// AdaLoRA adapters for linear slots, the rank allocator and the orthogonal regulariser (tier 2).
// Mirrors peft/tuners/adalora/layer.py (AdaLoraLayer, SVDLinear, RankAllocator) and the
// orth-reg term of peft/tuners/adalora/model.py (AdaLoraModel.forward).
#include <array>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "peft/models/adaptable_linear.h"
#include "peft/tuners/adalora/config.h"

namespace peft::adalora {

struct AdaLoraSettings {
  int64_t r = 12;          ///< number of triplets held (init_r, or the kept rank after a reload)
  double alpha = 8;        ///< lora_alpha; <= 0 means r, as PEFT
  double dropout = 0.0;
  double ranknum = 12;     ///< the scale's denominator: init_r, also after pruning
  bool random_init = true; ///< PEFT's init_lora_weights: E = 0, A and B ~ N(0, 0.02)
};

/// Registers `lora_A.<name>` [r, in], `lora_E.<name>` [r, 1], `lora_B.<name>` [out, r] and the
/// frozen `ranknum.<name>` [1] on the slot (raw parameters, as PEFT's ParameterDicts) and attaches
/// the adapter: delta(x) = (x·(A⊙E)ᵀ·Bᵀ)·alpha/(ranknum + 1e-5).
void add_adalora(models::AdaptableLinearImpl& slot, const std::string& name, const AdaLoraSettings& s);
void remove_adalora(models::AdaptableLinearImpl& slot, const std::string& name);

struct AdaLoraTensors {
  at::Tensor A, E, B, ranknum;  ///< undefined when the slot has no AdaLoRA adapter of that name
};
AdaLoraTensors adalora_tensors(models::AdaptableLinearImpl& slot, const std::string& name);

/// Σ_M ‖G_M − I‖_F / N over the given matrices' A (G = A·Aᵀ) and B (G = Bᵀ·B), N = 2·modules;
/// a zero scalar for no modules.
at::Tensor orthogonal_regularization(const std::vector<AdaLoraTensors>& modules);

/// PEFT's RankAllocator plus AdaLoraModel.update_and_allocate: importance scores with EMAs, the
/// cubic budget schedule, masking of E and the final freeze of the rank pattern.
class RankAllocator {
 public:
  struct Module {
    std::string name;  ///< module path, e.g. "model.layers.0.self_attn.q_proj"
    at::Tensor A, E, B;
  };
  RankAllocator(const AdaLoraConfig& cfg, std::vector<Module> modules);

  /// (budget, mask now?) at `step` (PEFT's budget_schedule).
  std::pair<int64_t, bool> budget_schedule(int64_t step) const;

  struct StepResult {
    int64_t budget = 0;  ///< the schedule's budget at this step
    bool masked = false; ///< E was masked from fresh scores at this step
  };
  /// Call after optimizer.step() and before zero_grad() with the 1-based optimizer step. Updates
  /// the scores (needs the gradients), masks E when the schedule says so, and stores the pattern
  /// of kept triplets in cfg.adalora_rank_pattern ("<module>.lora_E" -> booleans).
  StepResult update_and_allocate(int64_t step, AdaLoraConfig& cfg);

  /// The current per-triplet scores S_i = s(E_i) + mean_j s(A_ij) + mean_k s(B_ki), per module
  /// (empty before the first update and after the final freeze).
  std::map<std::string, at::Tensor> triplet_scores() const;
  /// The scores' EMAs for a training checkpoint ("<module>.<A|E|B>.ipt" / ".unc") and back.
  std::map<std::string, at::Tensor> state() const;
  void load_state(const std::map<std::string, at::Tensor>& state);
  int64_t init_budget() const { return init_bgt_; }
  int64_t target_budget() const { return target_bgt_; }
  const std::vector<Module>& modules() const { return modules_; }

 private:
  struct Ema {
    at::Tensor ipt, unc;
  };
  void update_ipt();
  std::map<std::string, std::vector<bool>> mask_to_budget(int64_t budget);
  void mask_using_rank_pattern(const std::map<std::string, std::vector<bool>>& pattern);

  AdaLoraConfig cfg_;
  std::vector<Module> modules_;
  std::vector<std::array<Ema, 3>> ema_;  ///< per module: A, E, B
  bool have_scores_ = false;
  int64_t init_bgt_ = 0, target_bgt_ = 0;
};

}  // namespace peft::adalora
