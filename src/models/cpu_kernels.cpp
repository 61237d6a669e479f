// Fused CPU attention for inference. Plain loops the compiler vectorises, compiled three times
// (AVX-512, AVX2, baseline x86-64) and picked at run time; the project builds with ISO C++ (no
// floating-point contraction), so every variant rounds the same way.
#include "cpu_kernels.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

namespace peft::models::kernels {

namespace {

constexpr float kMasked = -1e30f;   // bias values below this mark keys that cannot be attended
constexpr float kDeadRow = -1e4f;   // rows whose largest bias is below this attend nowhere

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
// exponent bits); about 1 ulp. Inputs below -87.3 give 0, as expf underflows there.
inline float exp_nonpositive(float x) {
  const float lo = -87.3365447505531f;
  const float xc = x < lo ? lo : x;
  const float fx = std::floor(xc * 1.44269504088896341f + 0.5f);
  float r = xc - fx * 0.693359375f;
  r = r - fx * -2.12194440e-4f;
  float y = 1.9875691500e-4f;
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * (r * r) + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(fx) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return x < lo ? 0.0f : y * scale;
}

// One (batch, kv head) task: every query row of the heads sharing that key/value head.
// D > 0 fixes the head size at compile time (fully unrolled accumulators); D == 0 reads a.D.
template <int kD>
inline __attribute__((always_inline)) void attend_task(const AttnArgs& a, int64_t b, int64_t g, float* kt,
                                                       float* sc) {
  const int64_t D = kD > 0 ? kD : a.D, S = a.S, rep = a.H / a.KVH;
  // Keys transposed to [D, S] so the scores of one query are D passes of a = a + q_d * k_d.
  const float* kb = a.k + b * a.k0 + g * a.k1;
  for (int64_t j = 0; j < S; ++j)
    for (int64_t d = 0; d < D; ++d) kt[d * S + j] = kb[j * a.k2 + d];
  const float* vb = a.v + b * a.v0 + g * a.v1;
  float acc[kD > 0 ? kD : 1];
  std::vector<float> acc_dyn(kD > 0 ? 0 : D);
  float* accp = kD > 0 ? acc : acc_dyn.data();
  for (int64_t r = 0; r < rep; ++r) {
    const int64_t h = g * rep + r;
    for (int64_t i = 0; i < a.T; ++i) {
      float* o = a.out + ((b * a.T + i) * a.H + h) * D;
      int64_t lo = 0, hi = S;
      const float* br = nullptr;
      if (a.bias != nullptr) {
        const int64_t row = (b * a.bias_heads + (a.bias_heads == 1 ? 0 : h)) * a.T + i;
        lo = a.lo[row];
        hi = a.hi[row];
        if (lo >= hi) {
          for (int64_t d = 0; d < D; ++d) o[d] = 0.0f;
          continue;
        }
        br = a.bias + b * a.b0 + (a.bias_heads == 1 ? 0 : h * a.b1) + i * a.b2 + lo;
      }
      const int64_t n = hi - lo;
      const float* qr = a.q + b * a.q0 + h * a.q1 + i * a.q2;
      for (int64_t j = 0; j < n; ++j) sc[j] = 0.0f;
      for (int64_t d = 0; d < D; ++d) {
        const float qd = qr[d];
        const float* kr = kt + d * S + lo;
        for (int64_t j = 0; j < n; ++j) sc[j] += qd * kr[j];
      }
      const float scale = a.scale;
      if (br != nullptr) {
        for (int64_t j = 0; j < n; ++j) {
          const float s = sc[j] * scale + br[j];
          sc[j] = br[j] < kMasked ? -std::numeric_limits<float>::infinity() : s;
        }
      } else {
        for (int64_t j = 0; j < n; ++j) sc[j] *= scale;
      }
      float mx[8];
      for (int l = 0; l < 8; ++l) mx[l] = -std::numeric_limits<float>::infinity();
      int64_t j = 0;
      for (; j + 8 <= n; j += 8)
        for (int l = 0; l < 8; ++l) mx[l] = mx[l] < sc[j + l] ? sc[j + l] : mx[l];
      for (; j < n; ++j) mx[0] = mx[0] < sc[j] ? sc[j] : mx[0];
      float m = mx[0];
      for (int l = 1; l < 8; ++l) m = m < mx[l] ? mx[l] : m;
      for (j = 0; j < n; ++j) sc[j] = exp_nonpositive(sc[j] - m);
      float sm[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      for (j = 0; j + 8 <= n; j += 8)
        for (int l = 0; l < 8; ++l) sm[l] += sc[j + l];
      for (; j < n; ++j) sm[0] += sc[j];
      const float inv = 1.0f / (((sm[0] + sm[1]) + (sm[2] + sm[3])) + ((sm[4] + sm[5]) + (sm[6] + sm[7])));
      for (j = 0; j < n; ++j) sc[j] *= inv;
      for (int64_t d = 0; d < D; ++d) accp[d] = 0.0f;
      const float* vr = vb + lo * a.v2;
      for (j = 0; j < n; ++j, vr += a.v2) {
        const float p = sc[j];
        for (int64_t d = 0; d < D; ++d) accp[d] += p * vr[d];
      }
      for (int64_t d = 0; d < D; ++d) o[d] = accp[d];
    }
  }
}

inline __attribute__((always_inline)) void attend_range(const AttnArgs& a, int64_t begin, int64_t end) {
  std::vector<float> kt(static_cast<std::size_t>(a.D * a.S)), sc(static_cast<std::size_t>(a.S));
  for (int64_t t = begin; t < end; ++t) {
    const int64_t b = t / a.KVH, g = t % a.KVH;
    switch (a.D) {
      case 8: attend_task<8>(a, b, g, kt.data(), sc.data()); break;
      case 16: attend_task<16>(a, b, g, kt.data(), sc.data()); break;
      case 32: attend_task<32>(a, b, g, kt.data(), sc.data()); break;
      case 64: attend_task<64>(a, b, g, kt.data(), sc.data()); break;
      case 128: attend_task<128>(a, b, g, kt.data(), sc.data()); break;
      default: attend_task<0>(a, b, g, kt.data(), sc.data()); break;
    }
  }
}

__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma"))) void attend_avx512(const AttnArgs& a,
                                                                                         int64_t begin,
                                                                                         int64_t end) {
  attend_range(a, begin, end);
}
__attribute__((target("avx2,fma"))) void attend_avx2(const AttnArgs& a, int64_t begin, int64_t end) {
  attend_range(a, begin, end);
}
void attend_baseline(const AttnArgs& a, int64_t begin, int64_t end) { attend_range(a, begin, end); }

using AttendFn = void (*)(const AttnArgs&, int64_t, int64_t);
AttendFn pick_attend() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma"))
    return attend_avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return attend_avx2;
  return attend_baseline;
}

bool rows_contiguous(const at::Tensor& t) { return t.dim() == 4 && t.stride(3) == 1; }

}  // namespace

bool enabled() {
  static const bool on = [] {
    const char* e = std::getenv("PEFT_FUSED_KERNELS");
    return e == nullptr || std::string(e) != "0";
  }();
  return on;
}

bool attention_f32_applicable(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                              const at::Tensor& bias) {
  if (!enabled()) return false;
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
  static const AttendFn attend_fn = pick_attend();
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
    // One scan per bias row (shared by the heads when the bias is [B, 1, T, S]): the span of keys
    // that are not masked, or an empty span when the row may attend nowhere.
    const int64_t rows = B * a.bias_heads * T;
    lo.resize(static_cast<std::size_t>(rows));
    hi.resize(static_cast<std::size_t>(rows));
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < a.bias_heads; ++h)
        for (int64_t i = 0; i < T; ++i) {
          const float* br = a.bias + b * a.b0 + h * a.b1 + i * a.b2;
          const int64_t row = (b * a.bias_heads + h) * T + i;
          int64_t first = 0, last = S;
          while (first < S && br[first] < kMasked) ++first;
          while (last > first && br[last - 1] < kMasked) --last;
          float mx = -std::numeric_limits<float>::infinity();
          for (int64_t j = first; j < last; ++j) mx = std::max(mx, br[j]);
          const bool dead = first >= last || mx < kDeadRow;
          lo[row] = dead ? 1 : static_cast<int32_t>(first);
          hi[row] = dead ? 0 : static_cast<int32_t>(last);
        }
    a.lo = lo.data();
    a.hi = hi.data();
  }
  at::parallel_for(0, B * KVH, 1, [&](int64_t begin, int64_t end) { attend_fn(a, begin, end); });
  return out.permute({0, 2, 1, 3});
}

}  // namespace peft::models::kernels
