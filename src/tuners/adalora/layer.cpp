// Mirrors peft/tuners/adalora/layer.py (AdaLoraLayer.update_layer/reset_lora_parameters,
// SVDLinear.forward/get_delta_weight, RankAllocator) and peft/tuners/adalora/model.py
// (AdaLoraModel.forward's orthogonal regularisation, update_and_allocate).
#include "../slot_dict.h"
#include "peft/tuners/adalora/layer.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/nn/module.h>

#include <cmath>
#include <limits>

#include "peft/core/check.h"
#include "peft/quant/quantized_base.h"

namespace peft::adalora {

namespace {

using tuners::dict_of;
using tuners::erase_entry;
using tuners::find_tensor;

class SvdLinear : public models::LinearAdapter {
 public:
  SvdLinear(models::AdaptableLinearImpl& slot, at::Tensor A, at::Tensor E, at::Tensor B, at::Tensor ranknum,
            AdaLoraSettings s)
      : slot_(slot), A_(std::move(A)), E_(std::move(E)), B_(std::move(B)), ranknum_(std::move(ranknum)),
        s_(std::move(s)) {}

  // alpha (or r when alpha <= 0) / (ranknum + 1e-5), with ranknum + 1e-5 rounded to float as PEFT's tensor.
  double scaling() const {
    const double num = s_.alpha > 0 ? s_.alpha : static_cast<double>(s_.r);
    const float den = ranknum_.item<float>() + 1e-5f;
    return num / static_cast<double>(den);
  }

  at::Tensor delta(const at::Tensor& x_in, const at::Tensor&) override {
    at::Tensor x = x_in.to(A_.scalar_type());
    if (s_.dropout > 0 && slot_.is_training()) x = at::dropout(x, s_.dropout, true);
    const double num = s_.alpha > 0 ? s_.alpha : static_cast<double>(s_.r);
    return at::matmul(at::matmul(x, (A_ * E_).t()), B_.t()) * num / (ranknum_ + 1e-5);
  }
  at::Tensor delta_weight() override {
    return at::matmul(B_.to(at::kFloat), (A_ * E_).to(at::kFloat)) * scaling();
  }
  bool low_rank_factors(at::Tensor& A, at::Tensor& B, double& s) override {
    if (s_.dropout > 0 && slot_.is_training()) return false;
    A = A_ * E_;
    B = B_;
    s = scaling();
    return true;
  }

 private:
  models::AdaptableLinearImpl& slot_;
  at::Tensor A_, E_, B_, ranknum_;
  AdaLoraSettings s_;
};

}  // namespace

void add_adalora(models::AdaptableLinearImpl& slot, const std::string& name, const AdaLoraSettings& s) {
  PEFT_CHECK(s.r >= 0, ConfigError, "[adalora] `r` should be a positive integer or 0, but the value passed is ", s.r);
  at::Tensor A = at::randn({s.r, slot.in_features()});
  at::Tensor E = at::randn({s.r, 1});
  at::Tensor B = at::randn({slot.out_features(), s.r});
  if (s.random_init) {
    E.zero_();
    A.normal_(0.0, 0.02);
    B.normal_(0.0, 0.02);
  }
  // Registration order follows PEFT's named_parameters: lora_A, lora_B, lora_E, ranknum.
  A = dict_of(slot, "lora_A")->register_parameter(name, A);
  B = dict_of(slot, "lora_B")->register_parameter(name, B);
  E = dict_of(slot, "lora_E")->register_parameter(name, E);
  at::Tensor rn = dict_of(slot, "ranknum")->register_parameter(name, at::full({1}, s.ranknum), /*requires_grad=*/false);
  slot.adapters.add(name, std::make_shared<SvdLinear>(slot, A, E, B, rn, s));
}

void remove_adalora(models::AdaptableLinearImpl& slot, const std::string& name) {
  slot.adapters.remove(name);
  for (const char* d : {"lora_A", "lora_B", "lora_E", "ranknum"}) erase_entry(slot, d, name);
}

AdaLoraTensors adalora_tensors(models::AdaptableLinearImpl& slot, const std::string& name) {
  AdaLoraTensors t;
  t.A = find_tensor(slot, "lora_A." + name);
  t.E = find_tensor(slot, "lora_E." + name);
  t.B = find_tensor(slot, "lora_B." + name);
  t.ranknum = find_tensor(slot, "ranknum." + name);
  return t;
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

bool fp32_cpu(const at::Tensor& t) { return t.defined() && t.device().is_cpu() && t.scalar_type() == at::kFloat; }

// Σ ‖G − I‖_F / N over matrices given as (A, B) pairs, G = A·Aᵀ and Bᵀ·B, in fp32 on the CPU.
// The forward is one GEMM per matrix and one pass over the r × r G; it keeps the normalised
// residual (G − I)/‖G − I‖ (zero where the norm is zero, as the norm's gradient) so the backward is
// one more GEMM per matrix: ∂‖G − I‖/∂A = (R + Rᵀ)·A and ∂/∂B = B·(R + Rᵀ). The plain path builds
// eye, sub, norm and their autograd nodes per matrix (about 20 operator calls each way).
struct OrthRegFn : public torch::autograd::Function<OrthRegFn> {
  static variable_list forward(AutogradContext* ctx, at::TensorList ps) {
    float total = 0.0f;  // accumulated in fp32 term by term, as the plain path's scalar tensor
    std::vector<at::Tensor> residuals;
    residuals.reserve(ps.size());
    for (std::size_t i = 0; i < ps.size(); ++i) {
      const at::Tensor& P = ps[i];
      at::Tensor G = (i % 2 == 0 ? at::mm(P, P.t()) : at::mm(P.t(), P)).contiguous();
      float* g = G.data_ptr<float>();
      const int64_t r = G.size(0);
      double ss = 0.0;
      for (int64_t j = 0; j < r; ++j) g[j * r + j] -= 1.0f;
      for (int64_t j = 0; j < r * r; ++j) ss += static_cast<double>(g[j]) * g[j];
      const float norm = static_cast<float>(std::sqrt(ss));
      const float inv = norm > 0.0f ? 1.0f / norm : 0.0f;
      for (int64_t j = 0; j < r * r; ++j) g[j] *= inv;
      total += norm;
      residuals.push_back(std::move(G));
    }
    std::vector<at::Tensor> saved(ps.begin(), ps.end());
    saved.insert(saved.end(), residuals.begin(), residuals.end());
    ctx->save_for_backward(saved);
    const float n = static_cast<float>(ps.size());
    return {at::scalar_tensor(ps.empty() ? 0.0f : total / n, at::TensorOptions().dtype(at::kFloat))};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const std::size_t n = saved.size() / 2;
    const float go = grads[0].item<float>() / static_cast<float>(n);
    variable_list out(n);
    for (std::size_t i = 0; i < n; ++i) {
      if (!ctx->needs_input_grad(i)) continue;
      const at::Tensor& P = saved[i];
      const at::Tensor& R = saved[n + i];
      const int64_t r = R.size(0);
      at::Tensor S = at::empty({r, r}, R.options());
      const float* a = R.data_ptr<float>();
      float* d = S.data_ptr<float>();
      for (int64_t j = 0; j < r; ++j)
        for (int64_t k = 0; k < r; ++k) d[j * r + k] = go * a[j * r + k] + go * a[k * r + j];
      out[i] = i % 2 == 0 ? at::mm(S, P) : at::mm(P, S);
    }
    return out;
  }
};

}  // namespace

at::Tensor orthogonal_regularization(const std::vector<AdaLoraTensors>& modules) {
  if (modules.empty()) return at::zeros({});
  bool fused = !quant::cpu_autocast_dtype();
  std::vector<at::Tensor> ps;
  for (const auto& m : modules) {
    fused = fused && fp32_cpu(m.A) && fp32_cpu(m.B);
    ps.push_back(m.A);
    ps.push_back(m.B);
  }
  // Under autocast the GEMMs run in its dtype (as PEFT's matmuls): the plain path below.
  if (fused) return OrthRegFn::apply(at::TensorList(ps))[0];
  at::Tensor sum;
  for (std::size_t i = 0; i < ps.size(); ++i) {
    const at::Tensor& p = ps[i];
    const at::Tensor cov = i % 2 == 0 ? at::matmul(p, p.t()) : at::matmul(p.t(), p);
    // Made in fp32 and cast: under bf16 autocast cov is bf16, for which LibTorch 1.13 has no eye.
    const at::Tensor I = at::eye(cov.size(0), cov.options().dtype(at::kFloat)).to(cov.scalar_type());
    const at::Tensor term = at::norm(cov - I);  // Frobenius norm over all elements (p = 2)
    sum = sum.defined() ? sum + term : term;
  }
  return sum / static_cast<double>(ps.size());
}

// ---------------------------------------------------------------- RankAllocator

RankAllocator::RankAllocator(const AdaLoraConfig& cfg, std::vector<Module> modules)
    : cfg_(cfg), modules_(std::move(modules)) {
  PEFT_CHECK(cfg_.beta1 > 0 && cfg_.beta1 < 1 && cfg_.beta2 > 0 && cfg_.beta2 < 1, ConfigError,
             "[RankAllocator] beta1 and beta2 must be in (0, 1), got ", cfg_.beta1, " and ", cfg_.beta2);
  for (const auto& m : modules_) init_bgt_ += m.A.size(0);
  target_bgt_ = cfg_.target_r * static_cast<int64_t>(modules_.size());
  ema_.resize(modules_.size());
}

std::pair<int64_t, bool> RankAllocator::budget_schedule(int64_t step) const {
  const int64_t tinit = cfg_.tinit, tfinal = cfg_.tfinal, total = *cfg_.total_step;
  if (step <= tinit) return {init_bgt_, false};
  if (step > total - tfinal) return {target_bgt_, true};
  const double mul = 1.0 - static_cast<double>(step - tinit) / static_cast<double>(total - tfinal - tinit);
  // Python's int() truncates toward zero; ** is C pow.
  const double b = static_cast<double>(init_bgt_ - target_bgt_) * std::pow(mul, 3.0) + static_cast<double>(target_bgt_);
  return {static_cast<int64_t>(b), step % cfg_.deltaT == 0};
}

void RankAllocator::update_ipt() {
  at::NoGradGuard ng;
  const double b1 = cfg_.beta1, b2 = cfg_.beta2;
  // The scalars round to fp32 as in torch's `beta * tensor` on fp32 tensors.
  const float fb1 = static_cast<float>(b1), fc1 = static_cast<float>(1 - b1);
  const float fb2 = static_cast<float>(b2), fc2 = static_cast<float>(1 - b2);
  for (std::size_t i = 0; i < modules_.size(); ++i) {
    const at::Tensor* ps[3] = {&modules_[i].A, &modules_[i].E, &modules_[i].B};
    for (int k = 0; k < 3; ++k) {
      const at::Tensor& p = *ps[k];
      Ema& e = ema_[i][k];
      if (!e.ipt.defined()) {
        e.ipt = at::zeros_like(p, at::MemoryFormat::Contiguous);
        e.unc = at::zeros_like(p, at::MemoryFormat::Contiguous);
      }
      const at::Tensor g = p.grad().defined() ? p.grad() : at::zeros_like(p);
      if (fp32_cpu(p) && fp32_cpu(g) && p.is_contiguous() && g.is_contiguous() && fp32_cpu(e.ipt) &&
          fp32_cpu(e.unc) && e.ipt.is_contiguous() && e.unc.is_contiguous()) {
        // One pass in place, each product and sum rounded to fp32 as the tensor ops below.
        const float* pp = p.data_ptr<float>();
        const float* gg = g.data_ptr<float>();
        float* ei = e.ipt.data_ptr<float>();
        float* eu = e.unc.data_ptr<float>();
        at::parallel_for(0, p.numel(), 4096, [&](int64_t begin, int64_t end) {
          for (int64_t j = begin; j < end; ++j) {
            const float ipt = std::fabs(pp[j] * gg[j]);
            const float a = fb1 * ei[j], b = fc1 * ipt;
            const float ema = a + b;
            const float c = fb2 * eu[j], d = fc2 * std::fabs(ipt - ema);
            ei[j] = ema;
            eu[j] = c + d;
          }
        });
        continue;
      }
      const at::Tensor ipt = (p * g).abs();
      e.ipt = b1 * e.ipt + (1 - b1) * ipt;                 // sensitivity smoothing
      e.unc = b2 * e.unc + (1 - b2) * (ipt - e.ipt).abs(); // uncertainty
    }
  }
  have_scores_ = true;
}

std::map<std::string, at::Tensor> RankAllocator::triplet_scores() const {
  std::map<std::string, at::Tensor> out;
  if (!have_scores_) return out;
  at::NoGradGuard ng;
  for (std::size_t i = 0; i < modules_.size(); ++i) {
    const auto score = [&](int k) { return ema_[i][k].ipt * ema_[i][k].unc; };
    const at::Tensor a = at::mean(score(0), {1}, /*keepdim=*/true);       // [r, 1]
    const at::Tensor b = at::mean(score(2), {0}, /*keepdim=*/false).view({-1, 1});
    const at::Tensor ab = at::cat({a, b}, 1).sum(1);
    out[modules_[i].name] = score(1).view(-1) + ab.view(-1);
  }
  return out;
}

std::map<std::string, std::vector<bool>> RankAllocator::mask_to_budget(int64_t budget) {
  PEFT_CHECK(have_scores_, std::logic_error,
             "[RankAllocator] no importance scores yet: the budget phase needs at least one step before "
             "total_step - tfinal");
  const auto scores = triplet_scores();
  std::vector<at::Tensor> all;
  for (const auto& m : modules_) all.push_back(scores.at(m.name));
  const int64_t k = init_bgt_ - budget;
  // PEFT's kthvalue needs k >= 1; a budget that keeps everything masks nothing.
  const double threshold = k >= 1 ? std::get<0>(at::kthvalue(at::cat(all), k)).item<double>()
                                  : -std::numeric_limits<double>::infinity();
  std::map<std::string, std::vector<bool>> pattern;
  at::NoGradGuard ng;
  for (const auto& m : modules_) {
    const at::Tensor drop = scores.at(m.name).view({-1, 1}) <= threshold;
    m.E.masked_fill_(drop, 0.0);
    const at::Tensor keep = drop.logical_not().view(-1).contiguous();
    std::vector<bool> v(static_cast<std::size_t>(keep.numel()));
    const bool* d = keep.data_ptr<bool>();
    for (int64_t j = 0; j < keep.numel(); ++j) v[static_cast<std::size_t>(j)] = d[j];
    pattern[m.name + ".lora_E"] = std::move(v);
  }
  return pattern;
}

void RankAllocator::mask_using_rank_pattern(const std::map<std::string, std::vector<bool>>& pattern) {
  at::NoGradGuard ng;
  for (const auto& m : modules_) {
    auto it = pattern.find(m.name + ".lora_E");
    PEFT_CHECK(it != pattern.end() && static_cast<int64_t>(it->second.size()) == m.E.size(0), ConfigError,
               "[RankAllocator] rank_pattern has no ", m.E.size(0), "-entry list for '", m.name, ".lora_E'");
    at::Tensor mask = at::empty({m.E.size(0), 1}, at::kBool);
    bool* d = mask.data_ptr<bool>();
    for (std::size_t j = 0; j < it->second.size(); ++j) d[j] = !it->second[j];
    m.E.masked_fill_(mask, 0.0);
  }
}

std::map<std::string, at::Tensor> RankAllocator::state() const {
  std::map<std::string, at::Tensor> out;
  if (!have_scores_) return out;
  static const char* kPart[3] = {"A", "E", "B"};
  for (std::size_t i = 0; i < modules_.size(); ++i)
    for (int k = 0; k < 3; ++k) {
      // Copies: the scores are updated in place at every step.
      out[modules_[i].name + "." + kPart[k] + ".ipt"] = ema_[i][k].ipt.clone();
      out[modules_[i].name + "." + kPart[k] + ".unc"] = ema_[i][k].unc.clone();
    }
  return out;
}

void RankAllocator::load_state(const std::map<std::string, at::Tensor>& state) {
  static const char* kPart[3] = {"A", "E", "B"};
  for (auto& m : ema_)
    for (auto& e : m) e = Ema{};
  have_scores_ = !state.empty();
  if (!have_scores_) return;
  for (std::size_t i = 0; i < modules_.size(); ++i)
    for (int k = 0; k < 3; ++k) {
      const std::string key = modules_[i].name + "." + kPart[k];
      auto ipt = state.find(key + ".ipt"), unc = state.find(key + ".unc");
      const at::Tensor& p = k == 0 ? modules_[i].A : k == 1 ? modules_[i].E : modules_[i].B;
      PEFT_CHECK(ipt != state.end() && unc != state.end() && ipt->second.sizes() == p.sizes() &&
                     unc->second.sizes() == p.sizes(),
                 FormatError, "[RankAllocator] the saved scores lack '", key, "' of shape ", p.sizes());
      ema_[i][k] = Ema{ipt->second.clone(), unc->second.clone()};
    }
}

RankAllocator::StepResult RankAllocator::update_and_allocate(int64_t step, AdaLoraConfig& cfg) {
  const int64_t freeze_at = *cfg_.total_step - cfg_.tfinal;
  StepResult r;
  r.budget = budget_schedule(step).first;
  if (step < freeze_at) {
    update_ipt();
    const auto [budget, mask_now] = budget_schedule(step);
    if (mask_now) {
      cfg.adalora_rank_pattern = mask_to_budget(budget);
      r.masked = true;
    }
  } else if (step == freeze_at) {
    // The final allocation from the last scores (no update at this step), then the scores go.
    cfg.adalora_rank_pattern = mask_to_budget(budget_schedule(step).first);
    r.masked = true;
    for (auto& m : ema_)
      for (auto& e : m) e = Ema{};
    have_scores_ = false;
  } else if (cfg.adalora_rank_pattern) {
    mask_using_rank_pattern(*cfg.adalora_rank_pattern);
  }
  return r;
}

}  // namespace peft::adalora
