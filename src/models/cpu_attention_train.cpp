// Fused fp32 CPU attention for training, flash-attention style (Dao et al., FlashAttention-2
// §3.1): the forward keeps only the output and each row's log-sum-exp, the backward recomputes the
// probabilities from them, so no [B, H, T, S] tensor lives between the two. The loops of
// cpu_attention_train.inc are compiled for AVX-512, AVX2+FMA and portable code, picked once from
// the CPU's features (portable only off x86).
#include "cpu_kernels.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

namespace peft::models::kernels {

namespace {

constexpr float kTrainMasked = kMaskedBias;

// A [B, heads, positions, D] tensor whose rows (dim 3) are contiguous; broadcast dims stride 0.
struct Rows {
  float* p = nullptr;
  int64_t s0 = 0, s1 = 0, s2 = 0;
  float* at(int64_t b, int64_t h, int64_t i) const { return p + b * s0 + h * s1 + i * s2; }
};

struct TrainArgs {
  Rows q, k, v, bias, out, dout, dq, dk, dv;  // dq/dk/dv null when that gradient is not wanted
  float* lse;                                 // [B, H, T] contiguous
  int64_t B, H, KVH, T, S, D;
  int64_t bias_heads;  // 1 or H
  float scale;
  const int32_t* lo;  // per bias row: first and one-past-last key that is not masked; lo >= hi
  const int32_t* hi;  // marks a row that attends nowhere
  const uint8_t* keep = nullptr;  // dropout: [B, H, T, S] keep bytes (1 kept), 16 readable bytes past the end
  float keep_scale = 1.0f;        // 1/(1 - dropout)
};

// Query rows the backward handles together.
constexpr int kTrainRows = 4;

// Scratch of one worker: K and V of one (batch, kv head) transposed to [D, Sp] (Sp = S rounded
// up to 16, plus 16; zero past S), dK and dV likewise, kTrainRows rows of scores, of bias and of
// score gradients, and D zeros (the q and dO of the rows that fill a last block).
struct TrainBuffers {
  float *kt, *vt, *dkt, *dvt, *sc, *bb, *ds, *zero;
  int64_t Sp;
};

#if defined(__x86_64__) || defined(__i386__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"  // 64-byte vectors passed between inlined helpers
namespace avx512 {
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")
#include "cpu_attention_train.inc"
#pragma GCC pop_options
}  // namespace avx512

namespace avx2 {
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#include "cpu_attention_train.inc"
#pragma GCC pop_options
}  // namespace avx2
#pragma GCC diagnostic pop
#define PEFT_TRAIN_X86 1
#else
#define PEFT_TRAIN_X86 0
#endif

namespace baseline {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"
#include "cpu_attention_train.inc"
#pragma GCC diagnostic pop
}  // namespace baseline

using RangeFn = void (*)(const TrainArgs&, const TrainBuffers&, int64_t, int64_t);
struct TrainLoops {
  const char* isa;
  RangeFn forward, backward;
};

// The compiled copies this CPU can run, best first.
const std::vector<TrainLoops>& runnable_loops() {
  static const std::vector<TrainLoops> l = [] {
    std::vector<TrainLoops> r;
#if PEFT_TRAIN_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma"))
      r.push_back({"avx512", &avx512::forward_range, &avx512::backward_range});
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
      r.push_back({"avx2", &avx2::forward_range, &avx2::backward_range});
#endif
    r.push_back({"portable", &baseline::forward_range, &baseline::backward_range});
    return r;
  }();
  return l;
}

std::atomic<const TrainLoops*> chosen_loops{nullptr};

const TrainLoops& train_loops() {
  const TrainLoops* l = chosen_loops.load(std::memory_order_acquire);
  return l != nullptr ? *l : runnable_loops().front();
}

bool fp32_cpu(const at::Tensor& t) { return t.defined() && t.device().is_cpu() && t.scalar_type() == at::kFloat; }

// The tensor itself when its rows are contiguous, else a contiguous copy.
at::Tensor with_contiguous_rows(const at::Tensor& t) { return t.stride(3) == 1 ? t : t.contiguous(); }

Rows rows_of(const at::Tensor& t) {
  return {t.data_ptr<float>(), t.size(0) == 1 ? 0 : t.stride(0), t.size(1) == 1 ? 0 : t.stride(1),
          t.size(2) == 1 ? 0 : t.stride(2)};
}

// q, k, v, bias (already with contiguous rows) into the arguments. `spans` holds the key span of
// every bias row as int32 [2, rows] (first key, one past the last): the forward scans the bias
// for them (one scan, shared by the heads when the bias is [B, 1, T, S]) and the backward reuses them.
TrainArgs make_args(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& bias,
                    double scale, at::Tensor& spans) {
  TrainArgs a{};
  a.B = q.size(0), a.H = q.size(1), a.T = q.size(2), a.D = q.size(3), a.KVH = k.size(1), a.S = k.size(2);
  a.q = rows_of(q);
  a.k = rows_of(k);
  a.v = rows_of(v);
  a.scale = static_cast<float>(scale);
  if (bias.defined()) {
    a.bias = rows_of(bias);
    a.bias_heads = bias.size(1);
    const int64_t rows = a.B * a.bias_heads * a.T;
    if (!spans.defined()) {
      std::vector<int32_t> lo, hi;
      bias_key_spans(a.bias.p, a.B, a.bias_heads, a.T, a.S, a.bias.s0, a.bias.s1, a.bias.s2, lo, hi);
      spans = at::empty({2, rows}, at::kInt);
      std::copy(lo.begin(), lo.end(), spans.data_ptr<int32_t>());
      std::copy(hi.begin(), hi.end(), spans.data_ptr<int32_t>() + rows);
    }
    a.lo = spans.data_ptr<int32_t>();
    a.hi = a.lo + rows;
  }
  return a;
}

// Dropout's keep bytes (dropout_keep_mask over [B, H, T, S]) and multiplier 1/(1 - p) into the arguments.
void use_keep_mask(TrainArgs& a, const at::Tensor& keep, double p) {
  a.keep = keep.data_ptr<uint8_t>();
  a.keep_scale = 1.0f / static_cast<float>(1.0 - p);
}

// Whether autograd records a product of q, k and v.
bool records_gradient(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  return at::GradMode::is_enabled() && (q.requires_grad() || k.requires_grad() || v.requires_grad());
}

// Subnormal floats flushed to zero (results and inputs) while alive, on this thread. The
// backward multiplies probabilities near e^-86 by small output gradients and makes subnormals
// by the thousand; on Intel cores every operation on one takes a microcode assist of ~100
// cycles (a LoRA step on stories260K spent 3x longer in this backward than its data needed).
// Flushing changes only values below 1.2e-38, which are 0 against the fp32 tolerance anyway.
struct FlushDenormals {
#if defined(__SSE2__)
  unsigned saved = _mm_getcsr();
  FlushDenormals() { _mm_setcsr(saved | 0x8040u); }  // FTZ (bit 15) and DAZ (bit 6)
  ~FlushDenormals() { _mm_setcsr(saved); }
#else
  FlushDenormals() = default;
#endif
  FlushDenormals(const FlushDenormals&) = delete;
  FlushDenormals& operator=(const FlushDenormals&) = delete;
};

// One worker's scratch per call of `fn` over a range of (batch, kv head) tasks.
void run_tasks(const TrainArgs& a, RangeFn fn) {
  at::parallel_for(0, a.B * a.KVH, 1, [&](int64_t begin, int64_t end) {
    const int64_t Sp = (a.S + 15) / 16 * 16 + 16;
    const auto n = static_cast<std::size_t>(a.D * Sp);
    const auto sp = static_cast<std::size_t>(Sp), rows = static_cast<std::size_t>(kTrainRows);
    std::vector<float> buf(4 * n + 3 * rows * sp + static_cast<std::size_t>(a.D) + 16, 0.0f);
    // Every buffer is read and written as 16-lane vectors at multiples of 16 floats from its
    // start: with the base 64-byte aligned no access splits a cache line (a split store and the
    // load that reads it back cost several times an aligned pair on recent Intel cores).
    const auto base = (reinterpret_cast<std::uintptr_t>(buf.data()) + 63) & ~std::uintptr_t{63};
    float* p = reinterpret_cast<float*>(base);
    float* rest = p + 4 * n;
    const TrainBuffers w{p,    p + n,          p + 2 * n,          p + 3 * n,
                         rest, rest + rows * sp, rest + 2 * rows * sp, rest + 3 * rows * sp, Sp};
    const FlushDenormals ftz;
    fn(a, w, begin, end);
  });
}

struct AttentionTrainFn : public torch::autograd::Function<AttentionTrainFn> {
  // Returns [B, T, H, D] (attention_train_f32 hands out its [B, H, T, D] view).
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const at::Tensor& q_in,
                                                const at::Tensor& k_in, const at::Tensor& v_in,
                                                const c10::optional<at::Tensor>& bias_opt, double scale,
                                                double dropout) {
    // The bias is no autograd input (it gets no gradient, and may be undefined).
    const at::Tensor bias_in = bias_opt.value_or(at::Tensor());
    const at::Tensor q = with_contiguous_rows(q_in), k = with_contiguous_rows(k_in), v = with_contiguous_rows(v_in);
    const at::Tensor bias = bias_in.defined() ? with_contiguous_rows(bias_in) : at::Tensor();
    at::Tensor spans;
    TrainArgs a = make_args(q, k, v, bias, scale, spans);
    at::Tensor out = at::empty({a.B, a.T, a.H, a.D}, q.options());
    at::Tensor lse = at::empty({a.B, a.H, a.T}, q.options());
    a.out = rows_of(out.permute({0, 2, 1, 3}));
    a.lse = lse.data_ptr<float>();
    at::Tensor keep;
    if (dropout > 0) {
      keep = dropout_keep_mask(a.B * a.H * a.T * a.S, dropout);
      use_keep_mask(a, keep, dropout);
      ctx->saved_data["keep"] = keep;
      ctx->saved_data["dropout"] = dropout;
    }
    run_tasks(a, train_loops().forward);
    ctx->save_for_backward({q_in, k_in, v_in, out, lse});
    if (bias_in.defined()) {
      ctx->saved_data["bias"] = bias_in;
      ctx->saved_data["spans"] = spans;
    }
    ctx->saved_data["scale"] = scale;
    return {out};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor q = with_contiguous_rows(saved[0]), k = with_contiguous_rows(saved[1]),
                     v = with_contiguous_rows(saved[2]);
    const auto b = ctx->saved_data.find("bias");
    const at::Tensor bias = b != ctx->saved_data.end() ? with_contiguous_rows(b->second.toTensor()) : at::Tensor();
    const at::Tensor out = saved[3], lse = saved[4].contiguous();
    const double scale = ctx->saved_data["scale"].toDouble();
    const bool want_q = ctx->needs_input_grad(0), want_k = ctx->needs_input_grad(1),
               want_v = ctx->needs_input_grad(2);
    const auto sp = ctx->saved_data.find("spans");
    at::Tensor spans = sp != ctx->saved_data.end() ? sp->second.toTensor() : at::Tensor();
    TrainArgs a = make_args(q, k, v, bias, scale, spans);
    a.out = rows_of(out.permute({0, 2, 1, 3}));
    a.lse = lse.data_ptr<float>();
    at::Tensor keep;
    if (const auto kp = ctx->saved_data.find("keep"); kp != ctx->saved_data.end()) {
      keep = kp->second.toTensor();
      use_keep_mask(a, keep, ctx->saved_data["dropout"].toDouble());
    }
    const at::Tensor dout = with_contiguous_rows(grads[0].permute({0, 2, 1, 3}));
    a.dout = rows_of(dout);
    at::Tensor dq, dk, dv;
    if (want_q) {
      dq = at::empty({a.B, a.T, a.H, a.D}, q.options()).permute({0, 2, 1, 3});
      a.dq = rows_of(dq);
    }
    if (want_k) {
      dk = at::empty({a.B, a.KVH, a.S, a.D}, k.options());
      a.dk = rows_of(dk);
    }
    if (want_v) {
      dv = at::empty({a.B, a.KVH, a.S, a.D}, v.options());
      a.dv = rows_of(dv);
    }
    run_tasks(a, train_loops().backward);
    return {dq, dk, dv, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

std::vector<std::string> attention_train_isas() {
  std::vector<std::string> r;
  for (const TrainLoops& l : runnable_loops()) r.emplace_back(l.isa);
  return r;
}

void use_attention_train_isa(const std::string& isa) {
  if (isa.empty()) {
    chosen_loops.store(nullptr, std::memory_order_release);
    return;
  }
  for (const TrainLoops& l : runnable_loops())
    if (isa == l.isa) {
      chosen_loops.store(&l, std::memory_order_release);
      return;
    }
  throw std::invalid_argument("use_attention_train_isa: '" + isa + "' is not a copy this CPU runs");
}

bool attention_train_f32_applicable(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                    const at::Tensor& bias, bool dropout) {
  if (!enabled() || !fp32_cpu(q) || !fp32_cpu(k) || !fp32_cpu(v)) return false;
  if (!dropout && !records_gradient(q, k, v)) return false;
  if (q.dim() != 4 || k.dim() != 4 || v.dim() != 4 || k.sizes() != v.sizes() || q.size(0) != k.size(0) ||
      q.size(3) != k.size(3) || k.size(1) == 0 || q.size(1) % k.size(1) != 0)
    return false;
  if (bias.defined()) {
    if (!fp32_cpu(bias) || (at::GradMode::is_enabled() && bias.requires_grad()) || bias.dim() != 4) return false;
    const bool heads_ok = bias.size(1) == 1 || bias.size(1) == q.size(1);
    if (!heads_ok || bias.size(0) != q.size(0) || bias.size(2) != q.size(2) || bias.size(3) != k.size(2))
      return false;
  }
  return q.numel() > 0 && k.size(2) > 0 && k.size(2) < std::numeric_limits<int32_t>::max();
}

bool attention_train_bf16_candidate(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, bool dropout) {
  if (!enabled()) return false;
  for (const at::Tensor* t : {&q, &k, &v})
    if (!t->defined() || t->scalar_type() != at::kBFloat16 || !t->device().is_cpu()) return false;
  return dropout || records_gradient(q, k, v);
}

at::Tensor attention_train_f32(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                               const at::Tensor& bias, double scale, double dropout) {
  TORCH_CHECK(dropout >= 0 && dropout < 1, "attention_train_f32: dropout must be in [0, 1), got ", dropout);
  const c10::optional<at::Tensor> b = bias.defined() ? c10::optional<at::Tensor>(bias) : c10::nullopt;
  return AttentionTrainFn::apply(q, k, v, b, scale, dropout)[0].permute({0, 2, 1, 3});
}

}  // namespace peft::models::kernels
