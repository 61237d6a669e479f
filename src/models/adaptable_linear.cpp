// Adapter slots. Mirrors the forward/merge/unmerge contract of peft/tuners/lora/layer.py
// (Linear.forward, merge(safe_merge), unmerge) and tuners_utils.BaseTunerLayer bookkeeping.
#include "peft/models/adaptable_linear.h"
#include "peft/models/model.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "cpu_kernels.h"
#include "peft/core/check.h"

namespace peft::models {

// ---------------------------------------------------------------- routing

namespace {
thread_local const std::vector<std::string>* g_routing = nullptr;
}

ScopedAdapterRouting::ScopedAdapterRouting(std::vector<std::string> per_row)
    : previous_(g_routing), rows_(std::move(per_row)) {
  g_routing = &rows_;
}
ScopedAdapterRouting::~ScopedAdapterRouting() { g_routing = previous_; }
const std::vector<std::string>* ScopedAdapterRouting::current() { return g_routing; }

// ---------------------------------------------------------------- AdapterSet

template <typename A>
void AdapterSet<A>::add(const std::string& name, std::shared_ptr<A> a) {
  PEFT_CHECK(!get(name), std::invalid_argument, "[adapters] adapter '", name, "' already exists on this layer");
  items_.emplace_back(name, std::move(a));
}
template <typename A>
void AdapterSet<A>::remove(const std::string& name) {
  PEFT_CHECK(!is_merged(name), std::invalid_argument, "[adapters] adapter '", name,
             "' is merged; unmerge before deleting it");
  auto it = std::find_if(items_.begin(), items_.end(), [&](auto& p) { return p.first == name; });
  PEFT_CHECK(it != items_.end(), std::invalid_argument, "[adapters] no adapter named '", name, "'");
  items_.erase(it);
  active_.erase(std::remove(active_.begin(), active_.end(), name), active_.end());
}
template <typename A>
std::shared_ptr<A> AdapterSet<A>::get(const std::string& name) const {
  for (const auto& [n, a] : items_)
    if (n == name) return a;
  return nullptr;
}
template <typename A>
std::vector<std::string> AdapterSet<A>::names() const {
  std::vector<std::string> out;
  for (const auto& p : items_) out.push_back(p.first);
  return out;
}
template <typename A>
void AdapterSet<A>::set_active(std::vector<std::string> names) {
  // Names this layer does not hold are skipped: an adapter may target other layers only.
  std::vector<std::string> keep;
  for (auto& n : names)
    if (get(n)) keep.push_back(n);
  active_ = std::move(keep);
}
template <typename A>
bool AdapterSet<A>::is_merged(const std::string& n) const {
  return std::find(merged_.begin(), merged_.end(), n) != merged_.end();
}
template <typename A>
std::vector<std::pair<std::string, std::shared_ptr<A>>> AdapterSet<A>::pending_merge(
    const std::vector<std::string>& names_in) const {
  std::vector<std::pair<std::string, std::shared_ptr<A>>> out;
  for (const auto& n : names_in.empty() ? active_ : names_in) {
    auto a = get(n);
    PEFT_CHECK(a != nullptr, std::invalid_argument, "[merge] no adapter named '", n, "' on this layer");
    if (!is_merged(n)) out.emplace_back(n, a);
  }
  return out;
}
template class AdapterSet<LinearAdapter>;
template class AdapterSet<EmbeddingAdapter>;

// ---------------------------------------------------------------- AdaptableLinear

namespace {
thread_local bool tl_no_init = false;
}

NoInitWeights::NoInitWeights() : previous_(tl_no_init) { tl_no_init = true; }
NoInitWeights::~NoInitWeights() { tl_no_init = previous_; }
bool NoInitWeights::active() { return tl_no_init; }

AdaptableLinearImpl::AdaptableLinearImpl(int64_t in_features, int64_t out_features, bool with_bias,
                                         bool fan_in_fan_out)
    : in_features_(in_features), out_features_(out_features), fan_in_fan_out_(fan_in_fan_out) {
  weight = register_parameter("weight", fan_in_fan_out ? at::empty({in_features, out_features})
                                                       : at::empty({out_features, in_features}));
  if (with_bias) bias = register_parameter("bias", at::zeros({out_features}));
  // transformers' default init (normal(0, 0.02)); checkpoints overwrite it.
  if (NoInitWeights::active()) return;
  torch::NoGradGuard ng;
  weight.normal_(0.0, 0.02);
}

at::Tensor AdaptableLinearImpl::weight_out_in() const {
  if (quantized_) return quantized_->dequantize();
  return fan_in_fan_out_ ? weight.t() : weight;
}

void AdaptableLinearImpl::set_quantized(std::shared_ptr<quant::QuantizedBase> q) {
  torch::NoGradGuard ng;
  if (q) {
    PEFT_CHECK(adapters.merged().empty(), std::invalid_argument,
               "[AdaptableLinear] unmerge adapters before quantising the base weight");
    if (parameters_.contains("weight")) parameters_.erase("weight");
    weight = at::Tensor();
  } else if (quantized_) {
    at::Tensor w = quantized_->dequantize();
    weight = register_parameter("weight", fan_in_fan_out_ ? w.t().contiguous() : w, /*requires_grad=*/false);
  }
  quantized_ = std::move(q);
}

const at::Tensor& AutocastWeightCache::get(const at::Tensor& weight) {
  const auto dt = quant::cpu_autocast_dtype();
  if (!dt || !weight.defined() || !weight.device().is_cpu() || !weight.is_floating_point() || weight.requires_grad()) {
    cast_ = at::Tensor();  // training ended or the weight became trainable: drop the copy
    return weight;
  }
  if (weight.scalar_type() == *dt) return weight;
  if (!cast_.defined() || cast_.scalar_type() != *dt || source_ != weight.data_ptr() || version_ != weight._version()) {
    torch::NoGradGuard ng;
    cast_ = weight.to(*dt);
    source_ = weight.data_ptr();
    version_ = weight._version();
  }
  return cast_;
}

at::Tensor AdaptableLinearImpl::plain_weight() const {
  if (quantized_ || !weight.defined() || ScopedAdapterRouting::current() != nullptr) return {};
  if (!adapters.disabled)
    for (const auto& name : adapters.active())
      if (!adapters.is_merged(name)) return {};
  return weight_out_in();
}

at::Tensor AdaptableLinearImpl::base_forward(const at::Tensor& x) {
  PEFT_CHECK(x.size(-1) == in_features_, std::invalid_argument, "[AdaptableLinear] input has ",
             x.size(-1), " features, expected ", in_features_);
  if (quantized_) {
    at::Tensor y = quantized_->forward(x);
    return bias.defined() ? y + bias.to(y.scalar_type()) : y;
  }
  if (x.numel() == in_features_ && x.scalar_type() == at::kFloat && x.device().is_cpu()) {
    // One row (token-by-token decoding): a matrix-vector product. OpenBLAS's sgemm packs the
    // whole weight when M = 1, which makes decoding ~3x slower than gemv.
    auto sizes = x.sizes().vec();
    sizes.back() = out_features_;
    at::Tensor v = x.reshape({in_features_});
    at::Tensor y = bias.defined() ? at::addmv(bias, weight_out_in(), v) : at::mv(weight_out_in(), v);
    return y.view(sizes);
  }
  const at::Tensor& w = autocast_weight_.get(weight);
  if (kernels::linear_rows_applicable(x, w, bias)) return kernels::linear_rows(x, w, bias, fan_in_fan_out_);
  if (fan_in_fan_out_) {
    // GPT-2 Conv1D: addmm(bias, x.view(-1, in), weight).
    auto sizes = x.sizes().vec();
    sizes.back() = out_features_;
    at::Tensor x2 = x.reshape({-1, in_features_});
    at::Tensor y = bias.defined() ? at::addmm(bias, x2, w) : at::mm(x2, w);
    return y.view(sizes);
  }
  return at::linear(x, w, bias.defined() ? c10::optional<at::Tensor>(bias) : c10::nullopt);
}

namespace {
// Plain low-rank adapters whose factors share the dtype of the input and the base output: their
// term s·(x·Aᵀ)·Bᵀ is added by one GEMM accumulating into the output (no bias-free copy of the
// base output, no separate scaling and addition passes).
bool fusable(LinearAdapter& a, const at::Tensor& x, const at::Tensor& y, at::Tensor& A, at::Tensor& B, double& s) {
  return a.low_rank_factors(A, B, s) && A.scalar_type() == y.scalar_type() && B.scalar_type() == y.scalar_type() &&
         x.scalar_type() == y.scalar_type();
}
}  // namespace

at::Tensor AdaptableLinearImpl::forward(const at::Tensor& x) {
  if (adapters.disabled) return base_forward(x);
  const auto* rows = ScopedAdapterRouting::current();
  if (rows != nullptr && !adapters.names().empty()) {
    PEFT_CHECK(adapters.merged().empty(), std::invalid_argument,
               "[AdaptableLinear] mixed-adapter batches need unmerged adapters; call unmerge_adapter() first");
    return routed_delta(x, base_forward(x), *rows);
  }
  std::vector<std::shared_ptr<LinearAdapter>> live;
  std::vector<at::Tensor> out_scales;
  at::Tensor xin = x;
  for (const auto& name : adapters.active()) {
    if (adapters.is_merged(name)) continue;
    auto a = adapters.get(name);
    const at::Tensor si = a->input_scale(), so = a->output_scale();
    if (!si.defined() && !so.defined()) {
      live.push_back(std::move(a));
      continue;
    }
    // (IA)³: several active vectors multiply together, as PEFT's IA3 layers do.
    if (si.defined()) xin = xin * si.to(x.scalar_type());
    if (so.defined()) out_scales.push_back(so);
  }
  at::Tensor y = base_forward(xin);
  for (const auto& s : out_scales) y = y * s.to(y.scalar_type());
  if (live.empty()) return y;
  bool fused = true;
  std::vector<std::tuple<at::Tensor, at::Tensor, double>> factors;
  for (const auto& a : live) {
    at::Tensor A, B;
    double s = 1.0;
    fused = fused && fusable(*a, x, y, A, B, s);
    if (!fused) break;
    factors.emplace_back(A, B, s);
  }
  if (fused) {
    const at::Tensor x2 = x.reshape({-1, in_features_});
    const bool in_place = !at::GradMode::is_enabled() && y.is_contiguous();
    at::Tensor y2 = y.view({-1, out_features_});
    for (const auto& [A, B, s] : factors) {
      const at::Tensor h = at::mm(x2, A.t());  // [N, r]
      if (in_place) y2.addmm_(h, B.t(), 1.0, s);
      else y2 = at::addmm(y2, h, B.t(), 1.0, s);
    }
    return in_place ? y : y2.view(y.sizes());
  }
  const at::Tensor base_out = bias.defined() ? y - bias : y;
  for (const auto& a : live)
    if (at::Tensor d = a->delta(x, base_out); d.defined()) y = y + d.to(y.scalar_type());
  return y;
}

// One gathered computation for all rows: per-row A and B are picked from stacked (rank-padded)
// factors, so the cost does not grow with the number of distinct adapters. Takes the base output
// `y` (bias included) and returns it plus each row's adapter term.
at::Tensor AdaptableLinearImpl::routed_delta(const at::Tensor& x, const at::Tensor& y,
                                             const std::vector<std::string>& rows) {
  const int64_t B = x.size(0);
  PEFT_CHECK(static_cast<int64_t>(rows.size()) == B, std::invalid_argument, "[AdaptableLinear] ",
             rows.size(), " adapter names for a batch of ", B);
  std::vector<std::string> used;
  std::vector<int64_t> slot(B, -1);
  for (int64_t i = 0; i < B; ++i) {
    if (rows[i] == "__base__" || !adapters.get(rows[i])) continue;  // not on this layer: base only
    auto it = std::find(used.begin(), used.end(), rows[i]);
    if (it == used.end()) {
      used.push_back(rows[i]);
      it = used.end() - 1;
    }
    slot[i] = it - used.begin();
  }
  if (used.empty()) return y;
  std::vector<at::Tensor> As, Bs;
  std::vector<double> scales;
  int64_t rmax = 0;
  bool factored = true;
  for (const auto& n : used) {
    at::Tensor a, b;
    double s = 1.0;
    factored = factored && adapters.get(n)->low_rank_factors(a, b, s);
    if (!factored) break;
    As.push_back(a);
    Bs.push_back(b);
    scales.push_back(s);
    rmax = std::max(rmax, a.size(0));
  }
  if (!factored) {
    // DoRA and other non-factored adapters: per-adapter sub-batches.
    const at::Tensor base_out = bias.defined() ? y - bias : y;
    at::Tensor out = at::zeros_like(base_out);
    for (std::size_t k = 0; k < used.size(); ++k) {
      std::vector<int64_t> idx;
      for (int64_t i = 0; i < B; ++i)
        if (slot[i] == static_cast<int64_t>(k)) idx.push_back(i);
      const at::Tensor ix = at::tensor(idx, at::TensorOptions().dtype(at::kLong).device(x.device()));
      out.index_copy_(0, ix, adapters.get(used[k])->delta(x.index_select(0, ix), base_out.index_select(0, ix)).to(out.scalar_type()));
    }
    return y + out;
  }
  // Stack [n+1, rmax, in] and [n+1, out, rmax] (slot 0 = zeros for base rows), scale folded into B.
  const auto dt = As[0].scalar_type();
  at::Tensor A = at::zeros({static_cast<int64_t>(used.size()) + 1, rmax, in_features_}, x.options().dtype(dt));
  at::Tensor Bm = at::zeros({static_cast<int64_t>(used.size()) + 1, out_features_, rmax}, x.options().dtype(dt));
  for (std::size_t k = 0; k < used.size(); ++k) {
    A[k + 1].narrow(0, 0, As[k].size(0)).copy_(As[k]);
    Bm[k + 1].narrow(1, 0, Bs[k].size(1)).copy_(Bs[k] * scales[k]);
  }
  std::vector<int64_t> sel(B);
  for (int64_t i = 0; i < B; ++i) sel[i] = slot[i] + 1;
  const at::Tensor ix = at::tensor(sel, at::TensorOptions().dtype(at::kLong).device(x.device()));
  const at::Tensor x3 = x.reshape({B, -1, in_features_}).to(dt);
  at::Tensor h = at::bmm(x3, A.index_select(0, ix).transpose(1, 2));  // [B, T, r]
  const at::Tensor Bt = Bm.index_select(0, ix).transpose(1, 2);       // [B, r, out]
  if (dt == y.scalar_type()) {
    // Accumulate into the base output: one batched GEMM, no separate addition pass.
    if (!at::GradMode::is_enabled() && y.is_contiguous()) {
      y.view({B, -1, out_features_}).baddbmm_(h, Bt);
      return y;
    }
    return at::baddbmm(y.reshape({B, -1, out_features_}), h, Bt).view(y.sizes());
  }
  at::Tensor d = at::bmm(h, Bt);  // [B, T, out]
  return y + d.view(y.sizes()).to(y.scalar_type());
}

void AdaptableLinearImpl::merge(const std::vector<std::string>& names_in, bool safe_merge) {
  torch::NoGradGuard ng;
  for (const auto& [n, a] : adapters.pending_merge(names_in)) {
    at::Tensor w = a->merge_into(weight_out_in().to(at::kFloat));
    const at::Tensor db = a->delta_bias();
    PEFT_CHECK(!db.defined() || bias.defined(), std::invalid_argument, "[merge] adapter '", n,
               "' has a bias (lora_bias) but the base layer has none");
    const at::Tensor b = bias.defined() ? a->merge_bias_into(bias) : at::Tensor();
    if (safe_merge) {
      PEFT_CHECK(at::isfinite(w).all().item<bool>() && (!b.defined() || at::isfinite(b).all().item<bool>()),
                 std::runtime_error, "[merge] NaNs detected in the merged weights. The adapter ", n,
                 " seems to be broken");
    }
    if (quantized_) last_requant_error_ = quantized_->requantize(w);  // lossy: PEFT's bnb merge
    else weight.copy_(fan_in_fan_out_ ? w.t() : w);
    if (b.defined()) bias.copy_(b);
    adapters.mark_merged(n);
  }
}

void AdaptableLinearImpl::unmerge() {
  torch::NoGradGuard ng;
  auto merged = adapters.merged();
  for (auto it = merged.rbegin(); it != merged.rend(); ++it) {
    auto a = adapters.get(*it);
    at::Tensor w = a->unmerge_from(weight_out_in().to(at::kFloat));
    if (quantized_) last_requant_error_ = quantized_->requantize(w);
    else weight.copy_(fan_in_fan_out_ ? w.t() : w);
    if (bias.defined())
      if (const at::Tensor b = a->unmerge_bias_from(bias); b.defined()) bias.copy_(b);
  }
  adapters.clear_merged();
}

// ---------------------------------------------------------------- AdaptableEmbedding

AdaptableEmbeddingImpl::AdaptableEmbeddingImpl(int64_t n, int64_t dim, std::optional<int64_t> padding_idx)
    : padding_idx_(padding_idx) {
  weight = register_parameter("weight", at::empty({n, dim}));
  if (NoInitWeights::active()) return;
  torch::NoGradGuard ng;
  weight.normal_(0.0, 0.02);
  if (padding_idx_) weight[*padding_idx_].zero_();
}

at::Tensor AdaptableEmbeddingImpl::forward(const at::Tensor& ids) {
  at::Tensor y = at::embedding(weight, ids, padding_idx_ ? *padding_idx_ : -1);
  if (adapters.disabled) return y;
  const auto* rows = ScopedAdapterRouting::current();
  for (const auto& name : adapters.active()) {
    if (adapters.is_merged(name)) continue;
    at::Tensor d = adapters.get(name)->delta(ids).to(y.scalar_type());
    if (rows != nullptr) {
      std::vector<float> keep(rows->size());
      for (std::size_t i = 0; i < rows->size(); ++i) keep[i] = (*rows)[i] == name ? 1.f : 0.f;
      d = d * at::tensor(keep, y.options()).view({-1, 1, 1});
    }
    y = y + d;
  }
  return y;
}

void AdaptableEmbeddingImpl::merge(const std::vector<std::string>& names_in, bool safe_merge) {
  torch::NoGradGuard ng;
  for (const auto& [n, a] : adapters.pending_merge(names_in)) {
    at::Tensor w = weight + a->delta_weight().to(weight.scalar_type());
    PEFT_CHECK(!safe_merge || at::isfinite(w).all().item<bool>(), std::runtime_error,
               "[merge] NaNs detected in the merged weights. The adapter ", n, " seems to be broken");
    weight.copy_(w);
    adapters.mark_merged(n);
  }
}

void AdaptableEmbeddingImpl::unmerge() {
  torch::NoGradGuard ng;
  auto merged = adapters.merged();
  for (auto it = merged.rbegin(); it != merged.rend(); ++it)
    weight.sub_(adapters.get(*it)->delta_weight().to(weight.scalar_type()));
  adapters.clear_merged();
}

}  // namespace peft::models
