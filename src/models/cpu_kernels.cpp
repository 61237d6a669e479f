// Fused fp32 CPU kernels for inference: the loops of cpu_attention.inc, compiled for AVX-512,
// AVX2+FMA and portable code, picked once from the CPU's features (portable only off x86).
#include "cpu_kernels.h"

#include "peft/core/check.h"
#include "peft/core/runtime.h"
#include "../core/gemm_rows.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#define PEFT_X86 1
#include <immintrin.h>
#else
#define PEFT_X86 0
#endif

namespace peft::models::kernels {

namespace {

constexpr float kMasked = kMaskedBias;
constexpr float kDeadRow = kDeadRowBias;

struct AttnArgs {
  const float *q, *k, *v, *bias;
  float* out;
  int64_t B, H, KVH, T, S, D;
  int64_t q0, q1, q2, k0, k1, k2, v0, v1, v2;  // strides (batch, head, position); dim 3 is 1
  int64_t b0, b1, b2;                          // bias strides (batch, head, query); keys 1
  int64_t bias_heads;                          // 1 or H
  float scale;
  const int32_t* lo;                           // per bias row: first and one-past-last key that
  const int32_t* hi;                           // is not masked; lo > hi marks a dead row
};

// exp(x) for x <= 0 (Cephes expf: range reduction by ln 2, degree-5 polynomial, 2^n through the
// exponent bits); about 1 ulp. Inputs below -86 give 0: e^-86 < 1e-37 vanishes next to the
// softmax sum (>= 1), and stopping there keeps every result a normal number (denormal
// products cost a microcode assist each; masked keys and padding lanes arrive as -inf).
// Written without floor() or branches (rounding through the 1.5 * 2^23 shifter).
inline float exp_nonpositive(float x) {
  const float lo = -86.0f, shifter = 12582912.0f;
  const float xc = x < lo ? lo : x;
  const float t = xc * 1.44269504088896341f + shifter;
  int32_t n;
  std::memcpy(&n, &t, sizeof n);
  n -= 0x4B400000;  // the bits of the shifter: what is left is round(x / ln 2)
  const float fx = t - shifter;
  float r = xc - fx * 0.693359375f;
  r = r - fx * -2.12194440e-4f;
  float y = 1.9875691500e-4f;
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * (r * r) + r + 1.0f;
  const int32_t bits = (n + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return x < lo ? 0.0f : y * scale;
}

constexpr int64_t kRowBlock = 32;  // query rows per pass of the attention loop

// Scratch of one worker: keys and values of one (batch, kv head) transposed to [D, Sp]
// (Sp = S rounded up to 16, plus 16; zero past S), kRowBlock rows of scores, one row of bias.
struct Buffers {
  float *kt, *vt, *sc, *bb;
  int64_t Sp;
};

// One copy of the loops per instruction set (see cpu_attention.inc).
#if PEFT_X86
namespace avx512 {
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12's own avx512fintrin.h casts
#define PEFT_VEC_AVX512
#include "cpu_attention.inc"
#undef PEFT_VEC_AVX512
#pragma GCC diagnostic pop
#pragma GCC pop_options
}  // namespace avx512

namespace avx2 {
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define PEFT_VEC_AVX2
#include "cpu_attention.inc"
#undef PEFT_VEC_AVX2
#pragma GCC pop_options
}  // namespace avx2
#endif

namespace baseline {
#include "cpu_attention.inc"
}  // namespace baseline

// The loops of one instruction set.
struct Loops {
  void (*attend)(const AttnArgs&, const Buffers&, int64_t, int64_t);
  void (*rms_norm)(const float*, const float*, float*, int64_t, int64_t, float, float*);
  void (*silu_mul)(const float*, const float*, float*, int64_t);
  void (*rotary)(const float*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, const float*,
                 const float*, int64_t, float*);
  void (*gelu_tanh)(const float*, float*, int64_t);
  void (*rms_norm_backward)(const float*, const float*, const float*, const float*, float*, float*, int64_t,
                            int64_t);
  void (*silu_mul_backward)(const float*, const float*, const float*, float*, float*, int64_t);
  void (*rotary_backward)(const float*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, const float*,
                          const float*, int64_t, float*, int64_t, int64_t);
  void (*gelu_tanh_backward)(const float*, const float*, float*, int64_t);
  float (*row_logsumexp)(const float*, int64_t);
  void (*row_softmax_scaled)(const float*, int64_t, float, float, float*);
};
#define PEFT_LOOPS(ns)                                                                                   \
  Loops{&ns::attend_range,           &ns::rms_norm_rows,     &ns::silu_mul,        &ns::rotary_all,      \
        &ns::gelu_tanh,              &ns::rms_norm_backward_rows, &ns::silu_mul_backward, &ns::rotary_backward, \
        &ns::gelu_tanh_backward,     &ns::row_logsumexp,     &ns::row_softmax_scaled}

const Loops& loops() {
  static const Loops l = [] {
#if PEFT_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma"))
      return PEFT_LOOPS(avx512);
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return PEFT_LOOPS(avx2);
#endif
    return PEFT_LOOPS(baseline);
  }();
  return l;
}
#undef PEFT_LOOPS

bool fp32_cpu(const at::Tensor& t) { return t.defined() && t.device().is_cpu() && t.scalar_type() == at::kFloat; }

// No autograd graph is wanted for these inputs.
bool no_grad_needed(std::initializer_list<const at::Tensor*> ts) {
  if (!at::GradMode::is_enabled()) return true;
  for (const at::Tensor* t : ts)
    if (t->requires_grad()) return false;
  return true;
}

bool rows_contiguous(const at::Tensor& t) { return t.dim() == 4 && t.stride(3) == 1; }

}  // namespace

namespace {
thread_local int g_disabled = 0;
thread_local int g_attention_disabled = 0;
}

ScopedPlainAten::ScopedPlainAten() { ++g_disabled; }
ScopedPlainAten::~ScopedPlainAten() { --g_disabled; }
ScopedPlainAttention::ScopedPlainAttention() { ++g_attention_disabled; }
ScopedPlainAttention::~ScopedPlainAttention() { --g_attention_disabled; }

bool enabled() {
  static const bool on = [] {
    const char* e = std::getenv("PEFT_FUSED_KERNELS");
    return e == nullptr || std::string(e) != "0";
  }();
  return on && g_disabled == 0;
}

int parallel_for_threads(int64_t n) {
  std::mutex m;
  std::set<std::thread::id> ids;
  at::parallel_for(0, n, 1, [&](int64_t, int64_t) {
    const std::lock_guard<std::mutex> lock(m);
    ids.insert(std::this_thread::get_id());
  });
  return static_cast<int>(ids.size());
}

void bias_key_spans(const float* bias, int64_t B, int64_t heads, int64_t T, int64_t S, int64_t s0, int64_t s1,
                    int64_t s2, std::vector<int32_t>& lo, std::vector<int32_t>& hi) {
  const int64_t rows = B * heads * T;
  lo.resize(static_cast<std::size_t>(rows));
  hi.resize(static_cast<std::size_t>(rows));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < T; ++i) {
        const float* br = bias + b * s0 + h * s1 + i * s2;
        const std::size_t row = static_cast<std::size_t>((b * heads + h) * T + i);
        int64_t first = 0, last = S;
        while (first < S && br[first] < kMasked) ++first;
        while (last > first && br[last - 1] < kMasked) --last;
        // Dead when no key reaches kDeadRow (NaN entries count for nothing): stop at the first that does.
        int64_t j = first;
        while (j < last && !(br[j] >= kDeadRow)) ++j;
        const bool dead = j >= last;
        lo[row] = dead ? 1 : static_cast<int32_t>(first);
        hi[row] = dead ? 0 : static_cast<int32_t>(last);
      }
}

bool attention_f32_applicable(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                              const at::Tensor& bias) {
  if (!enabled() || g_attention_disabled > 0) return false;
  if (!q.device().is_cpu() || q.scalar_type() != at::kFloat || k.scalar_type() != at::kFloat ||
      v.scalar_type() != at::kFloat || !k.device().is_cpu() || !v.device().is_cpu())
    return false;
  if (at::GradMode::is_enabled() && (q.requires_grad() || k.requires_grad() || v.requires_grad() ||
                                     (bias.defined() && bias.requires_grad())))
    return false;
  if (q.dim() != 4 || k.dim() != 4 || v.dim() != 4 || k.sizes() != v.sizes() || q.size(0) != k.size(0) ||
      q.size(3) != k.size(3) || k.size(1) == 0 || q.size(1) % k.size(1) != 0)
    return false;
  if (bias.defined()) {
    if (!bias.device().is_cpu() || bias.scalar_type() != at::kFloat || bias.dim() != 4) return false;
    const bool heads_ok = bias.size(1) == 1 || bias.size(1) == q.size(1);
    if (!heads_ok || bias.size(0) != q.size(0) || bias.size(2) != q.size(2) || bias.size(3) != k.size(2))
      return false;
  }
  return q.numel() > 0 && k.size(2) > 0 && k.size(2) < std::numeric_limits<int32_t>::max();
}

at::Tensor attention_f32(const at::Tensor& q_in, const at::Tensor& k_in, const at::Tensor& v_in,
                         const at::Tensor& bias_in, double scale) {
  const auto attend_fn = loops().attend;
  const at::Tensor q = rows_contiguous(q_in) ? q_in : q_in.contiguous();
  const at::Tensor k = rows_contiguous(k_in) ? k_in : k_in.contiguous();
  const at::Tensor v = rows_contiguous(v_in) ? v_in : v_in.contiguous();
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), D = q.size(3), KVH = k.size(1), S = k.size(2);
  at::Tensor out = at::empty({B, T, H, D}, q.options());
  AttnArgs a{};
  a.q = q.data_ptr<float>();
  a.k = k.data_ptr<float>();
  a.v = v.data_ptr<float>();
  a.out = out.data_ptr<float>();
  a.B = B, a.H = H, a.KVH = KVH, a.T = T, a.S = S, a.D = D;
  a.q0 = q.stride(0), a.q1 = q.stride(1), a.q2 = q.stride(2);
  a.k0 = k.stride(0), a.k1 = k.stride(1), a.k2 = k.stride(2);
  a.v0 = v.stride(0), a.v1 = v.stride(1), a.v2 = v.stride(2);
  a.scale = static_cast<float>(scale);
  std::vector<int32_t> lo, hi;
  at::Tensor bias;
  if (bias_in.defined()) {
    bias = rows_contiguous(bias_in) ? bias_in : bias_in.contiguous();
    a.bias = bias.data_ptr<float>();
    a.bias_heads = bias.size(1);
    a.b0 = bias.size(0) == 1 ? 0 : bias.stride(0);
    a.b1 = bias.size(1) == 1 ? 0 : bias.stride(1);
    a.b2 = bias.size(2) == 1 ? 0 : bias.stride(2);
    bias_key_spans(a.bias, B, a.bias_heads, T, S, a.b0, a.b1, a.b2, lo, hi);
    a.lo = lo.data();
    a.hi = hi.data();
  }
  at::parallel_for(0, B * KVH, 1, [&](int64_t begin, int64_t end) {
    const int64_t Sp = (S + 15) / 16 * 16 + 16;
    std::vector<float> kt(static_cast<std::size_t>(D * Sp), 0.0f), vt(kt.size(), 0.0f),
        sc(static_cast<std::size_t>(kRowBlock * Sp), 0.0f), bb(static_cast<std::size_t>(Sp), 0.0f);
    const Buffers w{kt.data(), vt.data(), sc.data(), bb.data(), Sp};
    attend_fn(a, w, begin, end);
  });
  return out.permute({0, 2, 1, 3});
}

bool elementwise_f32_applicable(std::initializer_list<const at::Tensor*> ts) {
  if (!enabled()) return false;
  for (const at::Tensor* t : ts)
    if (!fp32_cpu(*t)) return false;
  return no_grad_needed(ts);
}

bool elementwise_f32_trainable(std::initializer_list<const at::Tensor*> ts) {
  if (!enabled()) return false;
  for (const at::Tensor* t : ts)
    if (!fp32_cpu(*t)) return false;
  return !no_grad_needed(ts);
}

at::Tensor rms_norm_f32(const at::Tensor& x_in, const at::Tensor& weight_in, double eps) {
  const at::Tensor x = x_in.contiguous(), w = weight_in.contiguous();
  const int64_t n = x.size(-1), rows = n ? x.numel() / n : 0;
  at::Tensor y = at::empty_like(x);
  const auto fn = loops().rms_norm;
  const float* xp = x.data_ptr<float>();
  const float* wp = w.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  at::parallel_for(0, rows, 64, [&](int64_t begin, int64_t end) {
    fn(xp + begin * n, wp, yp + begin * n, end - begin, n, static_cast<float>(eps), nullptr);
  });
  return y;
}

namespace {

// y[i] = fn over a[i], b[i] (contiguous copies of a and b, same shape), in chunks over the threads;
// fn(a, b, y, n) is one of the element-wise loops.
at::Tensor map2(const at::Tensor& a_in, const at::Tensor& b_in, void (*fn)(const float*, const float*, float*, int64_t)) {
  const at::Tensor a = a_in.contiguous(), b = b_in.contiguous();
  at::Tensor y = at::empty_like(a, at::MemoryFormat::Contiguous);
  const float* ap = a.data_ptr<float>();
  const float* bp = b.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  at::parallel_for(0, a.numel(), 16384, [&](int64_t begin, int64_t end) {
    fn(ap + begin, bp + begin, yp + begin, end - begin);
  });
  return y;
}

}  // namespace

at::Tensor silu_mul_f32(const at::Tensor& g, const at::Tensor& u) { return map2(g, u, loops().silu_mul); }

at::Tensor rotary_f32(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  return rotary_f32_bthd(x, cos, sin).permute({0, 2, 1, 3});
}

at::Tensor rotary_f32_bthd(const at::Tensor& x_in, const at::Tensor& cos_in, const at::Tensor& sin_in) {
  const at::Tensor x = x_in.stride(3) == 1 ? x_in : x_in.contiguous();
  const at::Tensor c = cos_in.contiguous(), s = sin_in.contiguous();
  const int64_t B = x.size(0), H = x.size(1), T = x.size(2), D = x.size(3);
  at::Tensor y = at::empty({B, T, H, D}, x.options());
  loops().rotary(x.data_ptr<float>(), x.stride(0), x.stride(1), x.stride(2), B, H, T, D, c.data_ptr<float>(),
                 s.data_ptr<float>(), c.size(0) == 1 ? 0 : T * D, y.data_ptr<float>());
  return y;
}

at::Tensor gelu_tanh_f32(const at::Tensor& x_in) {
  const at::Tensor x = x_in.contiguous();
  at::Tensor y = at::empty_like(x);
  const auto fn = loops().gelu_tanh;
  const float* xp = x.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  at::parallel_for(0, x.numel(), 16384, [&](int64_t begin, int64_t end) { fn(xp + begin, yp + begin, end - begin); });
  return y;
}

// ---- training: forward with what the backward needs, and the backward loops ----

namespace {
constexpr int64_t kNormRowBlock = 64;  // rows per partial weight gradient (a fixed summation order)
}

std::pair<at::Tensor, at::Tensor> rms_norm_f32_rstd(const at::Tensor& x_in, const at::Tensor& weight_in, double eps) {
  const at::Tensor x = x_in.contiguous(), w = weight_in.contiguous();
  const int64_t n = x.size(-1), rows = n ? x.numel() / n : 0;
  at::Tensor y = at::empty_like(x, at::MemoryFormat::Contiguous);
  at::Tensor rstd = at::empty({rows}, x.options());
  const auto fn = loops().rms_norm;
  const float* xp = x.data_ptr<float>();
  const float* wp = w.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  float* rp = rstd.data_ptr<float>();
  at::parallel_for(0, rows, 64, [&](int64_t begin, int64_t end) {
    fn(xp + begin * n, wp, yp + begin * n, end - begin, n, static_cast<float>(eps), rp + begin);
  });
  return {y, rstd};
}

std::pair<at::Tensor, at::Tensor> rms_norm_backward_f32(const at::Tensor& dy_in, const at::Tensor& x_in,
                                                        const at::Tensor& weight_in, const at::Tensor& rstd,
                                                        bool need_dx, bool need_dw) {
  const at::Tensor dy = dy_in.contiguous(), x = x_in.contiguous(), w = weight_in.contiguous();
  const int64_t n = x.size(-1), rows = n ? x.numel() / n : 0;
  const auto fn = loops().rms_norm_backward;
  at::Tensor dx, dw;
  if (need_dx) dx = at::empty_like(x, at::MemoryFormat::Contiguous);
  // The weight gradient sums over rows: one partial sum per block of kNormRowBlock rows, then the
  // partials in block order, so the result does not depend on the number of threads.
  const int64_t blocks = (rows + kNormRowBlock - 1) / kNormRowBlock;
  at::Tensor partial;
  if (need_dw) partial = at::zeros({std::max<int64_t>(blocks, 1), n}, x.options());
  const float* dyp = dy.data_ptr<float>();
  const float* xp = x.data_ptr<float>();
  const float* wp = w.data_ptr<float>();
  const float* rp = rstd.data_ptr<float>();
  float* dxp = need_dx ? dx.data_ptr<float>() : nullptr;
  float* pp = need_dw ? partial.data_ptr<float>() : nullptr;
  at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t blk = begin; blk < end; ++blk) {
      const int64_t r0 = blk * kNormRowBlock, nr = std::min(kNormRowBlock, rows - r0);
      fn(dyp + r0 * n, xp + r0 * n, wp, rp + r0, dxp ? dxp + r0 * n : nullptr, pp ? pp + blk * n : nullptr, nr, n);
    }
  });
  if (need_dw) {
    dw = partial[0].clone();
    float* d = dw.data_ptr<float>();
    for (int64_t blk = 1; blk < blocks; ++blk) {
      const float* p = pp + blk * n;
      for (int64_t j = 0; j < n; ++j) d[j] += p[j];
    }
    dw = dw.view(weight_in.sizes());
  }
  if (need_dx) dx = dx.view(x_in.sizes());
  return {dx, dw};
}

std::pair<at::Tensor, at::Tensor> silu_mul_backward_f32(const at::Tensor& dy_in, const at::Tensor& g_in,
                                                        const at::Tensor& u_in) {
  const at::Tensor dy = dy_in.contiguous(), g = g_in.contiguous(), u = u_in.contiguous();
  at::Tensor dg = at::empty_like(g, at::MemoryFormat::Contiguous), du = at::empty_like(u, at::MemoryFormat::Contiguous);
  const auto fn = loops().silu_mul_backward;
  const float* gp = g.data_ptr<float>();
  const float* up = u.data_ptr<float>();
  const float* dyp = dy.data_ptr<float>();
  float* dgp = dg.data_ptr<float>();
  float* dup = du.data_ptr<float>();
  at::parallel_for(0, g.numel(), 16384, [&](int64_t begin, int64_t end) {
    fn(gp + begin, up + begin, dyp + begin, dgp + begin, dup + begin, end - begin);
  });
  return {dg, du};
}

at::Tensor rotary_backward_f32(const at::Tensor& dy_in, const at::Tensor& cos_in, const at::Tensor& sin_in) {
  const at::Tensor dy = dy_in.stride(3) == 1 ? dy_in : dy_in.contiguous();
  const at::Tensor c = cos_in.contiguous(), s = sin_in.contiguous();
  const int64_t B = dy.size(0), T = dy.size(1), H = dy.size(2), D = dy.size(3);
  at::Tensor dx = at::empty({B, T, H, D}, dy.options());
  const auto fn = loops().rotary_backward;
  const float* dyp = dy.data_ptr<float>();
  const float* cp = c.data_ptr<float>();
  const float* sp = s.data_ptr<float>();
  float* dxp = dx.data_ptr<float>();
  const int64_t cb = c.size(0) == 1 ? 0 : T * D, grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(H * D, 1));
  at::parallel_for(0, B * T, grain, [&](int64_t begin, int64_t end) {
    fn(dyp, dy.stride(0), dy.stride(1), dy.stride(2), T, H, D, cp, sp, cb, dxp, begin, end);
  });
  return dx.permute({0, 2, 1, 3});
}

at::Tensor gelu_tanh_backward_f32(const at::Tensor& dy, const at::Tensor& x) {
  return map2(x, dy, loops().gelu_tanh_backward);
}

// ---- bf16 tensors: the fp32 loops over blocks widened to fp32, rounded back to nearest even ----

namespace {

constexpr int64_t kBf16Block = 2048;  // elements widened at a time (stack buffers)

void widen_bf16(const uint16_t* s, float* d, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t u = static_cast<uint32_t>(s[i]) << 16;
    std::memcpy(d + i, &u, 4);
  }
}

// c10::BFloat16's rounding: to nearest even, NaN to the quiet NaN 0x7fc0.
void narrow_bf16(const float* s, uint16_t* d, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint32_t u;
    std::memcpy(&u, s + i, 4);
    d[i] = s[i] != s[i] ? uint16_t{0x7fc0} : static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
  }
}

bool bf16_cpu(const at::Tensor& t) { return t.defined() && t.scalar_type() == at::kBFloat16 && t.device().is_cpu(); }

// y[i] = fn(a[i], b[i]) for bf16 tensors of the same shape (b may be undefined for one-input loops).
at::Tensor map_bf16(const at::Tensor& a_in, const at::Tensor& b_in, void (*fn1)(const float*, float*, int64_t),
                    void (*fn2)(const float*, const float*, float*, int64_t)) {
  const at::Tensor a = a_in.contiguous(), b = b_in.defined() ? b_in.contiguous() : b_in;
  at::Tensor y = at::empty_like(a, at::MemoryFormat::Contiguous);
  const auto* ap = reinterpret_cast<const uint16_t*>(a.data_ptr());
  const auto* bp = b.defined() ? reinterpret_cast<const uint16_t*>(b.data_ptr()) : nullptr;
  auto* yp = reinterpret_cast<uint16_t*>(y.data_ptr());
  at::parallel_for(0, a.numel(), 16384, [&](int64_t begin, int64_t end) {
    alignas(64) float fa[kBf16Block], fb[kBf16Block], fy[kBf16Block];
    for (int64_t i = begin; i < end; i += kBf16Block) {
      const int64_t n = std::min(kBf16Block, end - i);
      widen_bf16(ap + i, fa, n);
      if (bp) {
        widen_bf16(bp + i, fb, n);
        fn2(fa, fb, fy, n);
      } else {
        fn1(fa, fy, n);
      }
      narrow_bf16(fy, yp + i, n);
    }
  });
  return y;
}

}  // namespace

// ---- cross-entropy over rows of logits ----

namespace {

// The rows of [B, R, V] logits (last dimension contiguous) as fp32: row r's pointer, widened
// into `buf` when the logits are bf16.
struct LogitRows {
  const at::Tensor& logits;
  int64_t R, V, s0, s1;
  bool bf16;
  explicit LogitRows(const at::Tensor& l)
      : logits(l), R(l.size(1)), V(l.size(2)), s0(l.stride(0)), s1(l.stride(1)), bf16(l.scalar_type() == at::kBFloat16) {}
  const float* row(int64_t r, float* buf) const {
    const int64_t off = (r / R) * s0 + (r % R) * s1;
    if (!bf16) return logits.data_ptr<float>() + off;
    widen_bf16(reinterpret_cast<const uint16_t*>(logits.data_ptr()) + off, buf, V);
    return buf;
  }
};

}  // namespace

bool cross_entropy_applicable(const at::Tensor& logits, const at::Tensor& targets) {
  return enabled() && logits.defined() && logits.dim() == 3 && logits.device().is_cpu() &&
         (logits.scalar_type() == at::kFloat || logits.scalar_type() == at::kBFloat16) && logits.stride(2) == 1 &&
         logits.size(2) > 0 && targets.defined() && targets.scalar_type() == at::kLong && targets.dim() == 2 &&
         targets.size(0) == logits.size(0) && targets.size(1) == logits.size(1);
}

std::pair<double, int64_t> cross_entropy_rows(const at::Tensor& logits, const at::Tensor& targets_in, at::Tensor& lse) {
  const at::Tensor targets = targets_in.contiguous();
  const LogitRows rows(logits);
  const int64_t N = logits.size(0) * rows.R, V = rows.V;
  const int64_t* tg = targets.data_ptr<int64_t>();
  for (int64_t r = 0; r < N; ++r)
    PEFT_CHECK(tg[r] == -100 || (tg[r] >= 0 && tg[r] < V), std::invalid_argument, "[cross_entropy] target ", tg[r],
               " is out of range for ", V, " classes");
  lse = at::zeros({N}, logits.options().dtype(at::kFloat));
  float* lp = lse.data_ptr<float>();
  std::vector<double> loss(static_cast<std::size_t>(N), 0.0);
  const auto fn = loops().row_logsumexp;
  at::parallel_for(0, N, 8, [&](int64_t begin, int64_t end) {
    std::vector<float> buf(rows.bf16 ? static_cast<std::size_t>(V) : 0);
    for (int64_t r = begin; r < end; ++r) {
      if (tg[r] == -100) continue;
      const float* x = rows.row(r, buf.data());
      lp[r] = fn(x, V);
      loss[static_cast<std::size_t>(r)] = static_cast<double>(lp[r]) - static_cast<double>(x[tg[r]]);
    }
  });
  double sum = 0.0;
  int64_t count = 0;
  for (int64_t r = 0; r < N; ++r)
    if (tg[r] != -100) {
      sum += loss[static_cast<std::size_t>(r)];
      ++count;
    }
  return {sum, count};
}

at::Tensor cross_entropy_rows_backward(const at::Tensor& logits, const at::Tensor& targets_in, const at::Tensor& lse,
                                       double scale) {
  const at::Tensor targets = targets_in.contiguous();
  const LogitRows rows(logits);
  const int64_t N = logits.size(0) * rows.R, V = rows.V;
  at::Tensor grad = at::empty({logits.size(0), rows.R, V}, logits.options());
  const int64_t* tg = targets.data_ptr<int64_t>();
  const float* lp = lse.data_ptr<float>();
  const auto fn = loops().row_softmax_scaled;
  const auto sc = static_cast<float>(scale);
  at::parallel_for(0, N, 8, [&](int64_t begin, int64_t end) {
    std::vector<float> in(rows.bf16 ? static_cast<std::size_t>(V) : 0), out(rows.bf16 ? static_cast<std::size_t>(V) : 0);
    for (int64_t r = begin; r < end; ++r) {
      float* dst = rows.bf16 ? out.data() : grad.data_ptr<float>() + r * V;
      if (tg[r] == -100) {
        std::fill_n(dst, V, 0.0f);
      } else {
        fn(rows.row(r, in.data()), V, lp[r], sc, dst);
        dst[tg[r]] -= sc;
      }
      if (rows.bf16) narrow_bf16(dst, reinterpret_cast<uint16_t*>(grad.data_ptr()) + r * V, V);
    }
  });
  return grad;
}

bool linear_cross_entropy_applicable(const at::Tensor& h, const at::Tensor& w, const at::Tensor& b,
                                     const at::Tensor& targets) {
  auto f32 = [](const at::Tensor& t) {
    return t.defined() && t.device().is_cpu() && t.scalar_type() == at::kFloat && t.is_contiguous();
  };
  return enabled() && f32(h) && f32(w) && h.dim() == 2 && w.dim() == 2 && h.size(1) == w.size(1) &&
         w.size(0) > 0 && (!b.defined() || (f32(b) && b.dim() == 1 && b.size(0) == w.size(0))) &&
         targets.defined() && targets.scalar_type() == at::kLong && targets.dim() == 1 &&
         targets.size(0) == h.size(0);
}

LinearCrossEntropy linear_cross_entropy(const at::Tensor& h, const at::Tensor& w, const at::Tensor& b,
                                        const at::Tensor& targets_in, bool need_dh, bool need_dw, bool need_db,
                                        int64_t chunk_rows) {
  const at::Tensor targets = targets_in.contiguous();
  const int64_t N = h.size(0), V = w.size(0);
  const int64_t* tg = targets.data_ptr<int64_t>();
  std::vector<int64_t> rows;
  rows.reserve(static_cast<std::size_t>(N));
  for (int64_t r = 0; r < N; ++r) {
    PEFT_CHECK(tg[r] == -100 || (tg[r] >= 0 && tg[r] < V), std::invalid_argument, "[cross_entropy] target ", tg[r],
               " is out of range for ", V, " classes");
    if (tg[r] != -100) rows.push_back(r);
  }
  LinearCrossEntropy out;
  out.count = static_cast<int64_t>(rows.size());
  if (need_dh) out.dh = at::zeros_like(h);
  if (need_dw) out.dw = at::zeros_like(w);
  if (need_db && b.defined()) out.db = at::zeros_like(b);
  if (out.count == 0) return out;
  // Chunks of equal size whose logits fill at most 64 MB: each chunk's two GEMMs stream the whole
  // [V, D] weight, so fewer, larger chunks are faster (at GPT-2's vocabulary, 7 chunks of 83 rows
  // made a LoRA step 17% slower than 2 of 256, which is as fast as the full logits).
  int64_t C = chunk_rows;
  if (C <= 0) {
    const int64_t chunks = std::max<int64_t>(1, (out.count * V + (int64_t{1} << 24) - 1) >> 24);
    C = std::max<int64_t>(8, (out.count + chunks - 1) / chunks);
  }
  C = std::min(out.count, C);
  const auto scale = static_cast<float>(1.0 / static_cast<double>(out.count));
  const at::Tensor index = at::from_blob(rows.data(), {out.count}, at::kLong);
  at::Tensor buf = at::empty({C, V}, w.options());
  std::vector<double> loss(static_cast<std::size_t>(C));
  const auto lse_fn = loops().row_logsumexp;
  const auto softmax_fn = loops().row_softmax_scaled;
  for (int64_t start = 0; start < out.count; start += C) {
    const int64_t c = std::min(C, out.count - start);
    const int64_t* rc = rows.data() + start;
    // Consecutive counted rows (the usual case: only the last position of each sequence and
    // padding are skipped) are a view of h; others are gathered.
    const bool dense = rc[c - 1] - rc[0] == c - 1;
    const at::Tensor ix = index.narrow(0, start, c);
    const at::Tensor hc = dense ? h.narrow(0, rc[0], c) : h.index_select(0, ix);
    at::Tensor lg = buf.narrow(0, 0, c);
    if (b.defined()) lg.copy_(b.expand({c, V}));
    mm_rows(lg, hc, w.t(), b.defined() ? 1.0f : 0.0f);
    float* lp = lg.data_ptr<float>();
    at::parallel_for(0, c, 8, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        float* x = lp + i * V;
        const int64_t t = tg[rc[i]];
        const float l = lse_fn(x, V);
        loss[static_cast<std::size_t>(i)] = static_cast<double>(l) - static_cast<double>(x[t]);
        softmax_fn(x, V, l, scale, x);  // in place: each element is read before it is written
        x[t] -= scale;
      }
    });
    for (int64_t i = 0; i < c; ++i) out.sum += loss[static_cast<std::size_t>(i)];
    if (out.dh.defined()) {
      at::Tensor dst = dense ? out.dh.narrow(0, rc[0], c) : at::empty({c, h.size(1)}, h.options());
      mm_rows(dst, lg, w);
      if (!dense) out.dh.index_copy_(0, ix, dst);
    }
    if (out.dw.defined()) mm_rows(out.dw, lg.t(), hc, 1.0f);
    if (out.db.defined()) out.db.add_(lg.sum(0));
  }
  return out;
}

// ---------------------------------------------------------------- products split by rows

bool linear_rows_applicable(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias) {
  if (!enabled() || !gemm_rows_split() || at::get_num_threads() < 2) return false;
  auto f32 = [](const at::Tensor& t) { return t.device().is_cpu() && t.scalar_type() == at::kFloat; };
  if (!f32(x) || !f32(w) || w.dim() != 2 || x.dim() < 1 || (bias.defined() && (!f32(bias) || bias.dim() != 1)))
    return false;
  const int64_t K = x.size(-1), M = K > 0 ? x.numel() / K : 0;
  return gemm_rows_worth_splitting(M, w.numel() / std::max<int64_t>(K, 1), K);
}

namespace {

struct LinearRowsFn : public torch::autograd::Function<LinearRowsFn> {
  // x2 [M, K]; w [N, K] or, with w_in_out, [K, N]; bias [N] or an empty tensor for none (no
  // undefined autograd inputs in LibTorch 1.13).
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x2,
                                                const at::Tensor& w, const at::Tensor& bias, bool w_in_out) {
    const int64_t M = x2.size(0), N = w_in_out ? w.size(1) : w.size(0);
    at::Tensor y = at::empty({M, N}, x2.options());
    const bool has_bias = bias.numel() > 0;
    if (has_bias) y.copy_(bias.expand({M, N}));
    mm_rows(y, x2, w_in_out ? w : w.t(), has_bias ? 1.0f : 0.0f);
    ctx->save_for_backward({w});
    if (w.requires_grad()) ctx->saved_data["x"] = x2;  // only the weight's gradient needs the input
    ctx->saved_data["w_in_out"] = w_in_out;
    ctx->saved_data["has_bias"] = has_bias;
    return {y};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const at::Tensor w = ctx->get_saved_variables()[0];
    const bool w_in_out = ctx->saved_data["w_in_out"].toBool();
    const at::Tensor dy = grads[0].contiguous();
    at::Tensor dx, dw, db;
    if (ctx->needs_input_grad(0)) {
      dx = at::empty({dy.size(0), w_in_out ? w.size(0) : w.size(1)}, dy.options());
      mm_rows(dx, dy, w_in_out ? w.t() : w);
    }
    if (ctx->needs_input_grad(1)) {
      const at::Tensor x2 = ctx->saved_data["x"].toTensor();
      dw = at::empty(w.sizes(), w.options());
      if (w_in_out) mm_rows(dw, x2.t(), dy);  // [K, N] = xᵀ·dy
      else mm_rows(dw, dy.t(), x2);           // [N, K] = dyᵀ·x
    }
    if (ctx->needs_input_grad(2) && ctx->saved_data["has_bias"].toBool()) db = dy.sum(0);
    return {dx, dw, db, at::Tensor()};
  }
};

}  // namespace

at::Tensor linear_rows(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias, bool w_in_out) {
  const int64_t K = x.size(-1);
  auto sizes = x.sizes().vec();
  sizes.back() = w_in_out ? w.size(1) : w.size(0);
  const at::Tensor b = bias.defined() ? bias : at::empty({0}, w.options());
  return LinearRowsFn::apply(x.reshape({-1, K}), w, b, w_in_out)[0].view(sizes);
}

bool elementwise_bf16_trainable(std::initializer_list<const at::Tensor*> ts) {
  if (!enabled()) return false;
  for (const at::Tensor* t : ts)
    if (!bf16_cpu(*t)) return false;
  return !no_grad_needed(ts);
}

at::Tensor gelu_tanh_bf16(const at::Tensor& x) { return map_bf16(x, {}, loops().gelu_tanh, nullptr); }

at::Tensor gelu_tanh_backward_bf16(const at::Tensor& dy, const at::Tensor& x) {
  return map_bf16(x, dy, nullptr, loops().gelu_tanh_backward);
}

// ---------------------------------------------------------------- dropout

namespace {

// splitmix64's finaliser: a bijective 64-bit mix; of consecutive counters it gives independent
// looking words (the generator of SplitMix64 and the seeding of xoshiro).
inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// The dtype's value of at::dropout's mask entry 1/(1 - p): a one divided by 1 - p in fp32 and
// stored in the tensor's dtype.
template <typename T>
float kept_scale(double p) {
  return static_cast<float>(static_cast<T>(1.0f / static_cast<float>(1.0 - p)));
}

// Keep when a 32-bit uniform is below (1 - p)·2³².
inline uint64_t keep_threshold(double p) { return static_cast<uint64_t>(std::ldexp(1.0 - p, 32)); }

// The 64-bit word of draws for elements 2w and 2w + 1 (low and high half): two elements per
// word, so tasks start at even indices and a word is never split.
inline uint64_t mask_word(uint64_t seed, int64_t w) {
  return mix64(seed + static_cast<uint64_t>(w) * 0x9e3779b97f4a7c15ULL);
}

template <typename T>
void dropout_loop(const T* x, T* y, uint8_t* m, int64_t n, double p, uint64_t seed) {
  const float scale = kept_scale<T>(p);
  const uint64_t threshold = keep_threshold(p);
  at::parallel_for(0, (n + 1) / 2, 8192, [&](int64_t w0, int64_t w1) {
    for (int64_t w = w0; w < w1; ++w) {
      const uint64_t bits = mask_word(seed, w);
      for (int64_t k = 0; k < 2; ++k) {
        const int64_t j = 2 * w + k;
        if (j >= n) break;
        const bool keep = ((bits >> (32 * k)) & 0xffffffffULL) < threshold;
        m[j] = keep ? 1 : 0;
        y[j] = keep ? static_cast<T>(static_cast<float>(x[j]) * scale) : static_cast<T>(0.0f);
      }
    }
  });
}

// The keep decisions of dropout_loop alone (same seed, same draws).
void keep_mask_loop(uint8_t* m, int64_t n, double p, uint64_t seed) {
  const uint64_t threshold = keep_threshold(p);
  at::parallel_for(0, (n + 1) / 2, 8192, [&](int64_t w0, int64_t w1) {
    for (int64_t w = w0; w < w1; ++w) {
      const uint64_t bits = mask_word(seed, w);
      m[2 * w] = (bits & 0xffffffffULL) < threshold ? 1 : 0;
      if (2 * w + 1 < n) m[2 * w + 1] = (bits >> 32) < threshold ? 1 : 0;
    }
  });
}

// One 64-bit draw of LibTorch's default CPU generator: the seed of a mask.
uint64_t mask_seed() {
  auto* gen = at::check_generator<at::CPUGeneratorImpl>(at::detail::getDefaultCPUGenerator());
  std::lock_guard<std::mutex> lock(gen->mutex_);
  return gen->random64();
}

template <typename T>
void dropout_backward_loop(const T* dy, const uint8_t* m, T* dx, int64_t n, double p) {
  const float scale = kept_scale<T>(p);
  at::parallel_for(0, n, 16384, [&](int64_t a, int64_t b) {
    for (int64_t j = a; j < b; ++j)
      dx[j] = m[j] ? static_cast<T>(static_cast<float>(dy[j]) * scale) : static_cast<T>(0.0f);
  });
}

}  // namespace

bool dropout_applicable(const at::Tensor& x, double p) {
  return enabled() && x.defined() && x.device().is_cpu() &&
         (x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16) && p > 0 && p < 1;
}

std::pair<at::Tensor, at::Tensor> dropout_cpu(const at::Tensor& x_in, double p) {
  const at::Tensor x = x_in.contiguous();
  const uint64_t seed = mask_seed();
  at::Tensor y = at::empty_like(x, at::MemoryFormat::Contiguous);
  at::Tensor mask = at::empty(x.sizes(), x.options().dtype(at::kByte));
  if (x.scalar_type() == at::kFloat)
    dropout_loop(x.data_ptr<float>(), y.data_ptr<float>(), mask.data_ptr<uint8_t>(), x.numel(), p, seed);
  else
    dropout_loop(x.data_ptr<at::BFloat16>(), y.data_ptr<at::BFloat16>(), mask.data_ptr<uint8_t>(), x.numel(), p,
                 seed);
  return {y, mask};
}

at::Tensor dropout_keep_mask(int64_t n, double p) {
  at::Tensor m = at::zeros({n + 16}, at::TensorOptions().dtype(at::kByte));
  keep_mask_loop(m.data_ptr<uint8_t>(), n, p, mask_seed());
  return m.narrow(0, 0, n);
}

at::Tensor dropout_backward_cpu(const at::Tensor& dy_in, const at::Tensor& mask, double p) {
  const at::Tensor dy = dy_in.contiguous();
  at::Tensor dx = at::empty_like(dy, at::MemoryFormat::Contiguous);
  if (dy.scalar_type() == at::kFloat)
    dropout_backward_loop(dy.data_ptr<float>(), mask.data_ptr<uint8_t>(), dx.data_ptr<float>(), dy.numel(), p);
  else
    dropout_backward_loop(dy.data_ptr<at::BFloat16>(), mask.data_ptr<uint8_t>(), dx.data_ptr<at::BFloat16>(),
                          dy.numel(), p);
  return dx;
}

}  // namespace peft::models::kernels
