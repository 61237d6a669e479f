// llama.cpp's CPU arithmetic in portable scalar code (see ggml_cpu.h). Every kernel follows one
// ggml routine of the x86-64 AVX2/FMA/F16C build: an 8-lane float accumulator is an array of 8
// floats, _mm256_fmadd_ps is std::fma per lane, integer parts are exact, and the horizontal sums
// keep ggml's order. This file is compiled with -ffp-contract=off: a*b+c is only fused where ggml's
// binary fuses it (std::fma).
#include "peft/quant/ggml_cpu.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#include "peft/core/error.h"

// The matmul loop is compiled twice and picked at run time: for x86-64 CPUs with AVX2 and FMA
// (std::fma becomes one instruction, the integer dot products vectorise) and for any CPU. The
// results are the same: integer sums are exact and no float operation is reordered or fused
// beyond what is written (-ffp-contract=off).
#if defined(__GNUC__) && defined(__x86_64__)
#define GGML_CPU_X86_FAST 1
#define GGML_CPU_INLINE inline __attribute__((always_inline))
#else
#define GGML_CPU_X86_FAST 0
#define GGML_CPU_INLINE inline
#endif

namespace peft::quant::ggml_cpu {
namespace {

using io::GgmlType;

constexpr int QK = 32;     // QK4_0 = QK4_1 = QK5_0 = QK5_1 = QK8_0 = QK8_1
constexpr int QK_K = 256;  // K-quant super-block

// Block sizes in bytes.
constexpr int kQ4_0 = 18, kQ4_1 = 20, kQ5_0 = 22, kQ5_1 = 24, kQ8_0 = 34, kQ8_1 = 36;
constexpr int kQ4_K = 144, kQ5_K = 176, kQ6_K = 210, kQ8_K = 292;

GGML_CPU_INLINE uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
GGML_CPU_INLINE float bits_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
GGML_CPU_INLINE uint16_t rd16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
GGML_CPU_INLINE void wr16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}
GGML_CPU_INLINE float rdf32(const uint8_t* p) {
  float f;
  std::memcpy(&f, p, 4);
  return f;
}
GGML_CPU_INLINE float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1F, mant = h & 0x3FF;
  if (exp == 0) return bits_f32(f32_bits(static_cast<float>(mant) * 5.9604644775390625e-8f) | sign);
  if (exp == 31) return bits_f32(sign | 0x7F800000u | (mant << 13));
  return bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
}
// F16C's vcvtps2ph (round to nearest even; NaN quieted).
GGML_CPU_INLINE uint16_t float_to_half(float f) {
  const uint32_t x = f32_bits(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000);
  const uint32_t a = x & 0x7FFFFFFFu;
  if (a >= 0x7F800000u) {  // inf, or NaN quieted (vcvtps2ph)
    if (a == 0x7F800000u) return sign | 0x7C00;
    return static_cast<uint16_t>(sign | 0x7E00 | ((a & 0x7FFFFF) >> 13));
  }
  if (a >= 0x477FF000u) return sign | 0x7C00;
  if (a < 0x38800000u) {
    const float v = bits_f32(a) + 0.5f;
    return sign | static_cast<uint16_t>(f32_bits(v) - 0x3F000000u);
  }
  const uint32_t odd = (a >> 13) & 1;
  return sign | static_cast<uint16_t>((a + 0xC8000FFFu + odd) >> 13);
}
GGML_CPU_INLINE float h2f(const uint8_t* p) { return half_to_float(rd16(p)); }

// hsum_float_8 (and llamafile's hsum(__m256), ggml_vec_soft_max_f32's lane sum): the upper half
// added to the lower, then lanes 0+2 and 1+3, then those two.
GGML_CPU_INLINE float hsum8(const float* a) {
  const float r0 = a[4] + a[0], r1 = a[5] + a[1], r2 = a[6] + a[2], r3 = a[7] + a[3];
  return (r0 + r2) + (r1 + r3);
}

// GGML_F32x8_REDUCE over four 8-lane accumulators: (s0+s2) + (s1+s3), upper half onto the lower,
// then two horizontal adds ((t0+t1) + (t2+t3)).
GGML_CPU_INLINE float reduce4x8(float s[4][8]) {
  float a[8];
  for (int l = 0; l < 8; ++l) a[l] = (s[0][l] + s[2][l]) + (s[1][l] + s[3][l]);
  const float t0 = a[0] + a[4], t1 = a[1] + a[5], t2 = a[2] + a[6], t3 = a[3] + a[7];
  return (t0 + t1) + (t2 + t3);
}

// Lane l of maddubs + madd(ones): the integer sum of elements 4l .. 4l+3.
template <typename A, typename B>
GGML_CPU_INLINE void lane_dots(const A* a, const B* b, int32_t out[8]) {
  int32_t p[32];
  for (int e = 0; e < 32; ++e) p[e] = static_cast<int32_t>(a[e]) * static_cast<int32_t>(b[e]);
  for (int l = 0; l < 8; ++l) out[l] = (p[4 * l] + p[4 * l + 1]) + (p[4 * l + 2] + p[4 * l + 3]);
}

template <typename A, typename B>
GGML_CPU_INLINE int32_t idot(const A* a, const B* b, int n) {
  int32_t s = 0;
  for (int e = 0; e < n; ++e) s += static_cast<int32_t>(a[e]) * static_cast<int32_t>(b[e]);
  return s;
}

// --------------------------------------------------------------------------- activation rows

// quantize_row_q8_0 / q8_1 (AVX2 path): d = amax / 127 stored as F16, x · (127 / amax) rounded to
// nearest even (_mm256_round_ps), packed with saturation; Q8_1 also s = F16(d · Σq).
void quantize_q8(const float* x, uint8_t* y, int64_t n, bool with_sum) {
  const int bytes = with_sum ? kQ8_1 : kQ8_0;
  for (int64_t b = 0; b < n / QK; ++b, x += QK, y += bytes) {
    float amax = 0.0f;
    for (int j = 0; j < QK; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.f;
    const float id = amax != 0.0f ? 127.f / amax : 0.0f;
    wr16(y, float_to_half(d));
    int8_t* q = reinterpret_cast<int8_t*>(y + (with_sum ? 4 : 2));
    int32_t sum = 0;
    for (int j = 0; j < QK; ++j) {
      const float v = std::nearbyint(x[j] * id);
      // cvtps_epi32 then packs: out of range saturates (and NaN gives INT_MIN -> -128).
      int32_t i = (v >= -2147483648.0f && v < 2147483648.0f) ? static_cast<int32_t>(v)
                                                               : std::numeric_limits<int32_t>::min();
      sum += i;
      q[j] = static_cast<int8_t>(std::clamp<int32_t>(i, -128, 127));
    }
    if (with_sum) wr16(y + 2, float_to_half(d * static_cast<float>(sum)));
  }
}

// quantize_row_q8_K_ref: the value of largest magnitude (first on ties) maps to -127, x · iscale
// rounded to nearest even, d = 1 / iscale, per-16 sums.
void quantize_q8_k(const float* x, uint8_t* y, int64_t n) {
  for (int64_t b = 0; b < n / QK_K; ++b, x += QK_K, y += kQ8_K) {
    float max = 0, amax = 0;
    for (int j = 0; j < QK_K; ++j) {
      const float ax = std::fabs(x[j]);
      if (ax > amax) {
        amax = ax;
        max = x[j];
      }
    }
    int8_t* q = reinterpret_cast<int8_t*>(y + 4);
    int16_t bs[16] = {};
    if (amax == 0.0f) {
      std::memset(y, 0, kQ8_K);
      continue;
    }
    const float iscale = -127.f / max;
    for (int j = 0; j < QK_K; ++j) {
      // nearest_int: (x + 1.5·2^23) keeps the integer in the mantissa, rounding to nearest even.
      const float v = iscale * x[j] + 12582912.f;
      const int32_t i = static_cast<int32_t>(f32_bits(v) & 0x007fffff) - 0x00400000;
      q[j] = static_cast<int8_t>(std::min(127, i));
    }
    for (int j = 0; j < 16; ++j) {
      int s = 0;
      for (int i = 0; i < 16; ++i) s += q[j * 16 + i];
      bs[j] = static_cast<int16_t>(s);
    }
    const float d = 1 / iscale;
    std::memcpy(y, &d, 4);
    std::memcpy(y + 4 + QK_K, bs, sizeof bs);
  }
}

// ----------------------------------------------------------------------------- vec_dot kernels

// Nibble j (0..31) of a 16-byte Q4 payload: low nibbles are elements 0..15, high nibbles 16..31.
GGML_CPU_INLINE void nibbles(const uint8_t* qs, uint8_t out[32]) {
  for (int j = 0; j < 16; ++j) {
    out[j] = qs[j] & 0x0F;
    out[j + 16] = qs[j] >> 4;
  }
}

// Fifth bits of Q5_0 / Q5_1: bit j of the little-endian qh is element j's.
GGML_CPU_INLINE uint32_t qh32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// ggml_vec_dot_q4_0_q8_0 / q5_0 / q8_0 (AVX2): acc = fma(dx·dy, lanes, acc) block after block.
// `signed_vals` fills the 32 signed weight values of block b.
template <typename Vals>
GGML_CPU_INLINE float dot_q8_sym(const uint8_t* x, int xb, const uint8_t* y, int64_t nb, Vals&& vals) {
  float acc[8] = {};
  int8_t w[32];
  int32_t lane[8];
  for (int64_t b = 0; b < nb; ++b, x += xb, y += kQ8_0) {
    const float d = h2f(x) * h2f(y);
    vals(x, w);
    lane_dots(w, reinterpret_cast<const int8_t*>(y + 2), lane);
    for (int l = 0; l < 8; ++l) acc[l] = std::fma(d, static_cast<float>(lane[l]), acc[l]);
  }
  return hsum8(acc);
}

GGML_CPU_INLINE void vals_q4_0(const uint8_t* x, int8_t w[32]) {
  uint8_t n[32];
  nibbles(x + 2, n);
  for (int j = 0; j < 32; ++j) w[j] = static_cast<int8_t>(n[j] - 8);
}
GGML_CPU_INLINE void vals_q5_0(const uint8_t* x, int8_t w[32]) {
  uint8_t n[32];
  nibbles(x + 6, n);
  const uint32_t qh = qh32(x + 2);
  for (int j = 0; j < 32; ++j) w[j] = static_cast<int8_t>((n[j] | (((qh >> j) & 1) << 4)) - 16);
}
GGML_CPU_INLINE void vals_q8_0(const uint8_t* x, int8_t w[32]) { std::memcpy(w, x + 2, 32); }

// ggml_vec_dot_q4_1_q8_1 / q5_1_q8_1 (AVX2): acc = fma(dx·dy, lanes, acc); summs = fma(m, s, summs)
// (GCC fuses it); the result hsum(acc) + summs.
GGML_CPU_INLINE float dot_q8_asym(const uint8_t* x, int xb, const uint8_t* y, int64_t nb, bool five) {
  float acc[8] = {};
  float summs = 0;
  uint8_t w[32];
  int32_t lane[8];
  for (int64_t b = 0; b < nb; ++b, x += xb, y += kQ8_1) {
    const float dx = h2f(x), mx = h2f(x + 2), dy = h2f(y), sy = h2f(y + 2);
    summs = std::fma(mx, sy, summs);
    if (five) {
      nibbles(x + 8, w);
      const uint32_t qh = qh32(x + 4);
      for (int j = 0; j < 32; ++j) w[j] = static_cast<uint8_t>(w[j] | (((qh >> j) & 1) << 4));
    } else {
      nibbles(x + 4, w);
    }
    lane_dots(w, reinterpret_cast<const int8_t*>(y + 4), lane);
    const float d = dx * dy;
    for (int l = 0; l < 8; ++l) acc[l] = std::fma(d, static_cast<float>(lane[l]), acc[l]);
  }
  return hsum8(acc) + summs;
}

// Q4_K / Q5_K: eight 6-bit scales and mins in 12 bytes (get_scale_min_k4).
GGML_CPU_INLINE void scales_mins_k(const uint8_t* s, int sc[8], int m[8]) {
  for (int j = 0; j < 8; ++j) {
    if (j < 4) {
      sc[j] = s[j] & 63;
      m[j] = s[j + 4] & 63;
    } else {
      sc[j] = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
      m[j] = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
  }
}

// Q4_K / Q5_K weights of one super-block as 0..15 / 0..31: element 64j + e (e < 32) is the low
// nibble of qs[32j + e], 64j + 32 + e the high one; Q5_K adds bit 2j / 2j+1 of qh[e] as bit 4.
GGML_CPU_INLINE void vals_k45(const uint8_t* x, bool five, uint8_t w[256]) {
  const uint8_t* qs = x + (five ? 48 : 16);
  const uint8_t* qh = x + 16;
  for (int j = 0; j < 4; ++j)
    for (int e = 0; e < 32; ++e) {
      uint8_t lo = qs[32 * j + e] & 0xF, hi = qs[32 * j + e] >> 4;
      if (five) {
        lo = static_cast<uint8_t>(lo | (((qh[e] >> (2 * j)) & 1) << 4));
        hi = static_cast<uint8_t>(hi | (((qh[e] >> (2 * j + 1)) & 1) << 4));
      }
      w[64 * j + e] = lo;
      w[64 * j + 32 + e] = hi;
    }
}

// Q8_K row block: d, qs, bsums.
struct Q8K {
  float d;
  const int8_t* qs;
  int16_t bsums[16];
  explicit Q8K(const uint8_t* p) : d(rdf32(p)), qs(reinterpret_cast<const int8_t*>(p + 4)) {
    std::memcpy(bsums, p + 4 + QK_K, sizeof bsums);
  }
  // Sum of the 32 values of sub-block j.
  int32_t sum32(int j) const { return bsums[2 * j] + bsums[2 * j + 1]; }
};

// ggml_vec_dot_q4_K_q8_K (AVX2): lane l sums, over the four 64-element groups, scale · (dot of
// elements 4l..4l+3 of each 32-element half); acc = fma(d, lanes, acc) with d = y.d · x.d; the mins
// in four lanes acc_m = fma(-y.d · x.dmin, m[2k]·S[2k] + m[2k+1]·S[2k+1], acc_m).
// ggml_vec_dot_q5_K_q8_K: the same lanes; the mins summed as one integer, summs = fma(Σ, dmin, summs).
GGML_CPU_INLINE float dot_k45(const uint8_t* x, const uint8_t* y, int64_t nb, bool five) {
  const int xb = five ? kQ5_K : kQ4_K;
  float acc[8] = {}, acc_m[4] = {};
  float summs = 0;
  uint8_t w[256];
  for (int64_t b = 0; b < nb; ++b, x += xb, y += kQ8_K) {
    const Q8K a(y);
    const float d = a.d * h2f(x);
    const float dmin = -a.d * h2f(x + 2);
    int sc[8], m[8];
    scales_mins_k(x + 4, sc, m);
    vals_k45(x, five, w);
    if (five) {
      int32_t mins = 0;
      for (int k = 0; k < 4; ++k) mins += m[2 * k] * a.sum32(2 * k) + m[2 * k + 1] * a.sum32(2 * k + 1);
      summs = std::fma(static_cast<float>(mins), dmin, summs);
    } else {
      for (int k = 0; k < 4; ++k) {
        const int32_t prod = m[2 * k] * a.sum32(2 * k) + m[2 * k + 1] * a.sum32(2 * k + 1);
        acc_m[k] = std::fma(dmin, static_cast<float>(prod), acc_m[k]);
      }
    }
    int32_t sumi[8] = {};
    int32_t lane[8];
    for (int j = 0; j < 4; ++j)
      for (int h = 0; h < 2; ++h) {
        lane_dots(w + 64 * j + 32 * h, a.qs + 64 * j + 32 * h, lane);
        for (int l = 0; l < 8; ++l) sumi[l] += sc[2 * j + h] * lane[l];
      }
    for (int l = 0; l < 8; ++l) acc[l] = std::fma(d, static_cast<float>(sumi[l]), acc[l]);
  }
  if (five) return hsum8(acc) + summs;
  return hsum8(acc) + ((acc_m[0] + acc_m[2]) + (acc_m[1] + acc_m[3]));
}

// Q6_K weights of one super-block as 0..63 (q6 + 32): half j (128 elements), quarter k.
GGML_CPU_INLINE void vals_q6_k(const uint8_t* x, uint8_t w[256]) {
  const uint8_t *ql = x, *qh = x + 128;
  for (int j = 0; j < 2; ++j)
    for (int e = 0; e < 32; ++e) {
      const uint8_t l0 = ql[64 * j + e], l1 = ql[64 * j + 32 + e], h = qh[32 * j + e];
      w[128 * j + e] = static_cast<uint8_t>((l0 & 15) | ((h & 3) << 4));
      w[128 * j + 32 + e] = static_cast<uint8_t>((l1 & 15) | (((h >> 2) & 3) << 4));
      w[128 * j + 64 + e] = static_cast<uint8_t>((l0 >> 4) | (((h >> 4) & 3) << 4));
      w[128 * j + 96 + e] = static_cast<uint8_t>((l1 >> 4) | (((h >> 6) & 3) << 4));
    }
}

// ggml_vec_dot_q6_K_q8_K (AVX2): lane l sums scale · (dot of elements 4l..4l+3 of each 32-element
// quarter) over the eight quarters, minus 32·(bsums[2l]·sc[2l] + bsums[2l+1]·sc[2l+1]);
// acc = fma(y.d · x.d, lanes, acc).
GGML_CPU_INLINE float dot_q6_k(const uint8_t* x, const uint8_t* y, int64_t nb) {
  float acc[8] = {};
  uint8_t w[256];
  for (int64_t b = 0; b < nb; ++b, x += kQ6_K, y += kQ8_K) {
    const Q8K a(y);
    const float d = a.d * h2f(x + 208);
    const int8_t* sc = reinterpret_cast<const int8_t*>(x + 192);
    vals_q6_k(x, w);
    int32_t sumi[8] = {};
    int32_t lane[8];
    for (int q = 0; q < 8; ++q) {  // quarter q = 4j + k covers elements 32q .. 32q+31
      lane_dots(w + 32 * q, a.qs + 32 * q, lane);
      for (int l = 0; l < 8; ++l) sumi[l] += sc[2 * q + (l >= 4)] * lane[l];
    }
    for (int l = 0; l < 8; ++l) {
      const int32_t sub = (a.bsums[2 * l] * sc[2 * l] + a.bsums[2 * l + 1] * sc[2 * l + 1]) * 32;
      acc[l] = std::fma(d, static_cast<float>(sumi[l] - sub), acc[l]);
    }
  }
  return hsum8(acc);
}

// ------------------------------------------------------------------- repacked and tiled kernels

// ggml_gemv/gemm_q4_0_8x8_q8_0 (AVX2, weights repacked 8 rows at a time): per output, the block's
// whole integer dot, acc = fma(dot, dw · da, acc).
GGML_CPU_INLINE float dot_q4_0_repack(const uint8_t* x, const uint8_t* y, int64_t nb) {
  float acc = 0;
  int8_t w[32];
  for (int64_t b = 0; b < nb; ++b, x += kQ4_0, y += kQ8_0) {
    vals_q4_0(x, w);
    const int32_t s = idot(w, reinterpret_cast<const int8_t*>(y + 2), 32);
    acc = std::fma(static_cast<float>(s), h2f(x) * h2f(y), acc);
  }
  return acc;
}

// ggml_gemv_q4_K_8x8_q8_K (AVX2): per output and super-block the integer Σ scale·dot and
// Σ min·sum; acc = fma(Σ, dw · da, acc), acc_min = fma(Σmin, dminw · da, acc_min); acc - acc_min.
// ggml_gemm_q4_K_8x8_q8_K (groups of four activation rows) does the same per 64 elements
// (`per_pair`: one fma per pair of 32-element sub-blocks).
GGML_CPU_INLINE float dot_q4_k_repack(const uint8_t* x, const uint8_t* y, int64_t nb, bool per_pair) {
  float acc = 0, acc_min = 0;
  uint8_t w[256];
  for (int64_t b = 0; b < nb; ++b, x += kQ4_K, y += kQ8_K) {
    const Q8K a(y);
    int sc[8], m[8];
    scales_mins_k(x + 4, sc, m);
    vals_k45(x, false, w);
    const float ds = h2f(x) * a.d, dm = h2f(x + 2) * a.d;
    int32_t s = 0, smin = 0;
    for (int j = 0; j < 8; ++j) {
      s += sc[j] * idot(w + 32 * j, a.qs + 32 * j, 32);
      smin += m[j] * a.sum32(j);
      if (per_pair && j % 2 == 1) {
        acc = std::fma(static_cast<float>(s), ds, acc);
        acc_min = std::fma(static_cast<float>(smin), dm, acc_min);
        s = smin = 0;
      }
    }
    if (!per_pair) {
      acc = std::fma(static_cast<float>(s), ds, acc);
      acc_min = std::fma(static_cast<float>(smin), dm, acc_min);
    }
  }
  return acc - acc_min;
}

// ggml's tiled K-quant matmul (AVX2 microtile, 8+ activation rows): per super-block the exact
// integer s1 = Σ scale·dot (and s2 = Σ min·sum), res = dw · s1 (then fma(-dminw, s2, res)),
// out = fma(res, da, out).
GGML_CPU_INLINE float dot_k_tiled(GgmlType t, const uint8_t* x, const uint8_t* y, int64_t nb) {
  float out = 0;
  uint8_t w[256];
  for (int64_t b = 0; b < nb; ++b, y += kQ8_K) {
    const Q8K a(y);
    float res;
    if (t == GgmlType::Q6_K) {
      const uint8_t* xb = x + b * kQ6_K;
      const int8_t* sc = reinterpret_cast<const int8_t*>(xb + 192);
      vals_q6_k(xb, w);
      int32_t s1 = 0;
      for (int s = 0; s < 16; ++s) {
        int32_t raw = 0;
        for (int e = 0; e < 16; ++e) raw += (static_cast<int32_t>(w[16 * s + e]) - 32) * a.qs[16 * s + e];
        s1 += sc[s] * raw;
      }
      res = h2f(xb + 208) * static_cast<float>(s1);
    } else {
      const bool five = t == GgmlType::Q5_K;
      const uint8_t* xb = x + b * (five ? kQ5_K : kQ4_K);
      int sc[8], m[8];
      scales_mins_k(xb + 4, sc, m);
      vals_k45(xb, five, w);
      int32_t s1 = 0, s2 = 0;
      for (int s = 0; s < 8; ++s) {
        s1 += sc[s] * idot(w + 32 * s, a.qs + 32 * s, 32);
        s2 += m[s] * a.sum32(s);
      }
      res = h2f(xb) * static_cast<float>(s1);
      res = std::fma(-h2f(xb + 2), static_cast<float>(s2), res);
    }
    out = std::fma(res, a.d, out);
  }
  return out;
}

// ------------------------------------------------------------------------ F32 / F16 weights

// llamafile's tinyBLAS (AVX2, KN = 8): one 8-lane accumulator over k in steps of 8, then hsum.
template <typename Load>
GGML_CPU_INLINE float tinyblas_dot(int64_t k, Load&& load) {
  float acc[8] = {};
  for (int64_t l = 0; l < k; l += 8)
    for (int i = 0; i < 8; ++i) {
      float a, b;
      load(l + i, a, b);
      acc[i] = std::fma(a, b, acc[i]);
    }
  return hsum8(acc);
}

enum class Kernel { VecDot, RepackQ4_0, RepackQ4_K, Tiled, TinyBlas };

// The kernel ggml-cpu (x86 AVX2 build, llamafile and repack on) runs for a weight of `type` with
// `out` rows times `rows` activation rows.
Kernel pick_kernel(GgmlType type, int64_t out, int64_t in, int64_t rows) {
  switch (type) {
    case GgmlType::Q4_0:
      return out % 8 == 0 ? Kernel::RepackQ4_0 : Kernel::VecDot;  // tinyBLAS_Q0 rounds as vec_dot
    case GgmlType::Q4_K:
      if (out % 8 == 0) return Kernel::RepackQ4_K;
      return rows >= 8 ? Kernel::Tiled : Kernel::VecDot;
    case GgmlType::Q5_K:
    case GgmlType::Q6_K:
      return rows >= 8 ? Kernel::Tiled : Kernel::VecDot;
    case GgmlType::F32:
    case GgmlType::F16:
      // tinyBLAS needs two or more activation rows, k % 8 == 0 and out % 4 == 0.
      return rows >= 2 && in % 8 == 0 && out % 4 == 0 ? Kernel::TinyBlas : Kernel::VecDot;
    default:
      return Kernel::VecDot;
  }
}

[[noreturn]] void unsupported(const char* fn, GgmlType t) {
  throw NotSupported(std::string("[ggml_cpu::") + fn + "] " + io::ggml_traits(t).name +
                     " is not reproduced (supported: F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K)");
}

}  // namespace

// ------------------------------------------------------------------------------------ public

uint16_t fp32_to_fp16(float f) { return float_to_half(f); }

float fp16_to_fp32(uint16_t h) { return half_to_float(h); }

io::GgmlType vec_dot_type(io::GgmlType w) {
  switch (w) {
    case GgmlType::F32: return GgmlType::F32;
    case GgmlType::F16: return GgmlType::F16;
    case GgmlType::Q4_0:
    case GgmlType::Q5_0:
    case GgmlType::Q8_0: return GgmlType::Q8_0;
    case GgmlType::Q4_1:
    case GgmlType::Q5_1: return GgmlType::Q8_1;
    case GgmlType::Q4_K:
    case GgmlType::Q5_K:
    case GgmlType::Q6_K: return GgmlType::Q8_K;
    default: unsupported("vec_dot_type", w);
  }
}

bool can_mul_mat(io::GgmlType w) {
  switch (w) {
    case GgmlType::F32:
    case GgmlType::F16:
    case GgmlType::Q4_0:
    case GgmlType::Q4_1:
    case GgmlType::Q5_0:
    case GgmlType::Q5_1:
    case GgmlType::Q8_0:
    case GgmlType::Q4_K:
    case GgmlType::Q5_K:
    case GgmlType::Q6_K: return true;
    default: return false;
  }
}

void quantize_row(io::GgmlType t, const float* x, void* dst, int64_t n) {
  auto* y = static_cast<uint8_t*>(dst);
  const int64_t bs = io::ggml_traits(t).block_size;
  if (n % bs != 0)
    throw std::invalid_argument(std::string("[ggml_cpu::quantize_row] ") + io::ggml_traits(t).name + ": n = " +
                                std::to_string(n) + " is not a multiple of " + std::to_string(bs));
  switch (t) {
    case GgmlType::Q8_0: quantize_q8(x, y, n, false); return;
    case GgmlType::Q8_1: quantize_q8(x, y, n, true); return;
    case GgmlType::Q8_K: quantize_q8_k(x, y, n); return;
    case GgmlType::F16:
      for (int64_t i = 0; i < n; ++i) wr16(y + 2 * i, float_to_half(x[i]));
      return;
    case GgmlType::F32: std::memcpy(y, x, static_cast<std::size_t>(n) * 4); return;
    default: unsupported("quantize_row", t);
  }
}

namespace {

GGML_CPU_INLINE float vec_dot_blocks(GgmlType t, int64_t n, const uint8_t* x, const uint8_t* y) {
  switch (t) {
    case GgmlType::Q4_0: return dot_q8_sym(x, kQ4_0, y, n / QK, vals_q4_0);
    case GgmlType::Q5_0: return dot_q8_sym(x, kQ5_0, y, n / QK, vals_q5_0);
    case GgmlType::Q8_0: return dot_q8_sym(x, kQ8_0, y, n / QK, vals_q8_0);
    case GgmlType::Q4_1: return dot_q8_asym(x, kQ4_1, y, n / QK, false);
    case GgmlType::Q5_1: return dot_q8_asym(x, kQ5_1, y, n / QK, true);
    case GgmlType::Q4_K: return dot_k45(x, y, n / QK_K, false);
    case GgmlType::Q5_K: return dot_k45(x, y, n / QK_K, true);
    case GgmlType::Q6_K: return dot_q6_k(x, y, n / QK_K);
    case GgmlType::F32:
      return vec_dot_f32(n, reinterpret_cast<const float*>(x), reinterpret_cast<const float*>(y));
    case GgmlType::F16:
      return vec_dot_f16(n, reinterpret_cast<const uint16_t*>(x), reinterpret_cast<const uint16_t*>(y));
    default: unsupported("vec_dot", t);
  }
}

}  // namespace

float vec_dot(io::GgmlType t, int64_t n, const void* w_row, const void* act_row) {
  return vec_dot_blocks(t, n, static_cast<const uint8_t*>(w_row), static_cast<const uint8_t*>(act_row));
}

std::vector<uint8_t> prepare_activations(io::GgmlType w, const float* x, int64_t rows, int64_t in) {
  const GgmlType a = vec_dot_type(w);
  const uint64_t rb = io::ggml_row_bytes(a, in);
  std::vector<uint8_t> out(rb * static_cast<uint64_t>(rows));
  for (int64_t r = 0; r < rows; ++r) quantize_row(a, x + r * in, out.data() + rb * static_cast<uint64_t>(r), in);
  return out;
}

namespace {

// mul_mat_range's loop, inlined into both builds below.
GGML_CPU_INLINE void mul_mat_rows(GgmlType t, const uint8_t* w, int64_t out, int64_t in, const uint8_t* act,
                                  int64_t rows, int64_t o0, int64_t o1, float* y) {
  const uint64_t wb = io::ggml_row_bytes(t, in);
  const uint64_t ab = io::ggml_row_bytes(vec_dot_type(t), in);
  const Kernel k = pick_kernel(t, out, in, rows);
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* a = act + ab * static_cast<uint64_t>(r);
    for (int64_t o = o0; o < o1; ++o) {
      const uint8_t* x = w + wb * static_cast<uint64_t>(o);
      float v;
      switch (k) {
        case Kernel::RepackQ4_0: v = dot_q4_0_repack(x, a, in / QK); break;
        case Kernel::RepackQ4_K:  // gemm for whole groups of four rows (when there are more than three)
          v = dot_q4_k_repack(x, a, in / QK_K, rows > 3 && r < rows - rows % 4);
          break;
        case Kernel::Tiled: v = dot_k_tiled(t, x, a, in / QK_K); break;
        case Kernel::TinyBlas:
          if (t == GgmlType::F32) {
            const auto* xf = reinterpret_cast<const float*>(x);
            const auto* af = reinterpret_cast<const float*>(a);
            v = tinyblas_dot(in, [&](int64_t i, float& p, float& q) { p = xf[i]; q = af[i]; });
          } else {
            const auto* xh = reinterpret_cast<const uint16_t*>(x);
            const auto* ah = reinterpret_cast<const uint16_t*>(a);
            v = tinyblas_dot(in, [&](int64_t i, float& p, float& q) {
              p = half_to_float(xh[i]);
              q = half_to_float(ah[i]);
            });
          }
          break;
        default: v = vec_dot_blocks(t, in, x, a);
      }
      y[r * out + o] = v;
    }
  }
}

void mul_mat_rows_generic(GgmlType t, const uint8_t* w, int64_t out, int64_t in, const uint8_t* act, int64_t rows,
                          int64_t o0, int64_t o1, float* y) {
  mul_mat_rows(t, w, out, in, act, rows, o0, o1, y);
}

#if GGML_CPU_X86_FAST
__attribute__((target("avx2,fma,f16c"))) void mul_mat_rows_avx2(GgmlType t, const uint8_t* w, int64_t out, int64_t in,
                                                               const uint8_t* act, int64_t rows, int64_t o0,
                                                               int64_t o1, float* y) {
  mul_mat_rows(t, w, out, in, act, rows, o0, o1, y);
}
#endif

}  // namespace

void mul_mat_range(io::GgmlType t, const uint8_t* w, int64_t out, int64_t in, const uint8_t* act, int64_t rows,
                   int64_t o0, int64_t o1, float* y) {
  if (!can_mul_mat(t)) unsupported("mul_mat", t);
#if GGML_CPU_X86_FAST
  static const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (avx2) return mul_mat_rows_avx2(t, w, out, in, act, rows, o0, o1, y);
#endif
  mul_mat_rows_generic(t, w, out, in, act, rows, o0, o1, y);
}

void mul_mat(io::GgmlType t, const uint8_t* w, int64_t out, int64_t in, const float* x, int64_t rows, float* y) {
  const auto act = prepare_activations(t, x, rows, in);
  mul_mat_range(t, w, out, in, act.data(), rows, 0, out, y);
}

// ---------------------------------------------------------------------------------- float ops

void rms_norm_mul(const float* x, const float* w, float* y, int64_t n, float eps) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i] * x[i]);
  const float mean = static_cast<float>(sum / static_cast<double>(n));
  const float scale = 1.0f / std::sqrt(mean + eps);
  for (int64_t i = 0; i < n; ++i) y[i] = (x[i] * scale) * w[i];
}

void rope_cache(int64_t pos, int64_t n_dims, float freq_base, float freq_scale, const float* freq_factors,
                float* cos_sin) {
  const float theta_scale = std::pow(freq_base, -2.0f / static_cast<float>(n_dims));
  float theta = static_cast<float>(pos);
  for (int64_t i0 = 0; i0 < n_dims; i0 += 2) {
    const float ff = freq_factors ? freq_factors[i0 / 2] : 1.0f;
    const float t = freq_scale * (theta / ff);
    cos_sin[i0] = std::cos(t) * 1.0f;
    cos_sin[i0 + 1] = std::sin(t) * 1.0f;
    theta *= theta_scale;
  }
}

void rope_apply(float* x, const float* cs, int64_t n_dims) {
  // rotate_pairs as GCC compiled it: each output's cos product fused, the sin product rounded.
  for (int64_t i0 = 0; i0 < n_dims; i0 += 2) {
    const float c = cs[i0], s = cs[i0 + 1];
    const float x0 = x[i0], x1 = x[i0 + 1];
    x[i0] = std::fma(c, x0, -(s * x1));
    x[i0 + 1] = std::fma(s, x0, c * x1);
  }
}

float v_expf(float x) {
  const float r = 0x1.8p23f;
  const float z = std::fma(x, 0x1.715476p+0f, r);
  const float n = z - r;
  const float b = std::fma(-n, 0x1.7f7d1cp-20f, std::fma(-n, 0x1.62e4p-1f, x));
  const uint32_t e = f32_bits(z) << 23;
  const float k = bits_f32(e + f32_bits(1.0f));
  const bool c = std::fabs(n) > 126.0f;
  const float u = b * b;
  const float j = std::fma(std::fma(std::fma(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u,
                                    std::fma(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)),
                           u, 0x1.ffffecp-1f * b);
  if (!c) return std::fma(j, k, k);
  const uint32_t g = n <= 0.0f ? 0x82000000u : 0u;
  const float s1 = bits_f32(g + 0x7f000000u);
  const float s2 = bits_f32(e - g);
  if (std::fabs(n) > 192.0f) return s1 * s1;
  return std::fma(s2, j, s2) * s1;
}

float v_silu(float x) { return x / (1.0f + v_expf(0.0f - x)); }

void swiglu(const float* g, const float* u, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 7 < n; i += 8)
    for (int l = 0; l < 8; ++l) y[i + l] = v_silu(g[i + l]) * u[i + l];
  for (; i < n; ++i) y[i] = (g[i] / (1.0f + std::exp(-g[i]))) * u[i];  // ggml_silu_f32 tail
}

namespace {

// ggml_vec_dot_f32's scalar tail as GCC 12 compiled it: groups of eight and then of four
// products added one by one, the last (up to three) fused.
float dot_tail(float sum, const float* x, const float* y, int64_t n) {
  int64_t i = 0;
  if (n >= 8)
    for (; i + 8 <= n; i += 8)
      for (int e = 0; e < 8; ++e) sum = sum + x[i + e] * y[i + e];
  if (n - i >= 4) {
    for (int e = 0; e < 4; ++e) sum = sum + x[i + e] * y[i + e];
    i += 4;
  }
  for (; i < n; ++i) sum = std::fma(x[i], y[i], sum);
  return sum;
}

}  // namespace

float vec_dot_f32(int64_t n, const float* x, const float* y) {
  const int64_t np = n & ~int64_t{31};
  float s[4][8] = {};
  for (int64_t i = 0; i < np; i += 32)
    for (int j = 0; j < 4; ++j)
      for (int l = 0; l < 8; ++l) s[j][l] = std::fma(x[i + 8 * j + l], y[i + 8 * j + l], s[j][l]);
  const float sum = reduce4x8(s);
  return dot_tail(sum, x + np, y + np, n - np);
}

float vec_dot_f16(int64_t n, const uint16_t* x, const uint16_t* y) {
  const int64_t np = n & ~int64_t{31};
  float s[4][8] = {};
  for (int64_t i = 0; i < np; i += 32)
    for (int j = 0; j < 4; ++j)
      for (int l = 0; l < 8; ++l)
        s[j][l] = std::fma(half_to_float(x[i + 8 * j + l]), half_to_float(y[i + 8 * j + l]), s[j][l]);
  double sum = reduce4x8(s);
  for (int64_t i = np; i < n; ++i) sum += static_cast<double>(half_to_float(x[i]) * half_to_float(y[i]));
  return static_cast<float>(sum);
}

int64_t kv_cells_spanned(int64_t n) { return std::max<int64_t>(256, (n + 255) / 256 * 256); }

namespace {

// ggml_soft_max_ext on one row of `n` (a multiple of 8) scores: x·scale + mask, max, ggml_v_expf
// eight lanes at a time with each group's hsum added in double, then · (float)(1/sum).
void soft_max_row(float* p, int64_t n, float scale, int64_t visible) {
  for (int64_t i = 0; i < n; ++i) p[i] = i < visible ? p[i] * scale : -std::numeric_limits<float>::infinity();
  float max = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) max = std::max(max, p[i]);
  double sum = 0;
  for (int64_t i = 0; i < n; i += 8) {
    float v[8];
    for (int l = 0; l < 8; ++l) p[i + l] = v[l] = v_expf(p[i + l] - max);
    sum += static_cast<double>(hsum8(v));
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) p[i] *= inv;
}

// ggml_vec_mad_f16 (y = F16(fma(x, v, y)) over 32-element steps, then the scalar tail) and
// ggml_vec_scale_f16 (y = F16(y · v)).
void mad_f16(int64_t n, uint16_t* y, const uint16_t* x, float v) {
  for (int64_t i = 0; i < n; ++i) y[i] = float_to_half(std::fma(half_to_float(x[i]), v, half_to_float(y[i])));
}
void scale_f16(int64_t n, uint16_t* y, float v) {
  for (int64_t i = 0; i < n; ++i) y[i] = float_to_half(half_to_float(y[i]) * v);
}

}  // namespace

void attention(const AttentionConfig& c, const float* q, const float* k, const float* v, int64_t T, int64_t past,
               float* out) {
  const int64_t H = c.n_head, KVH = c.n_head_kv, D = c.head_dim, S = past + T;
  const int64_t rep = H / KVH;
  const int64_t n_kv = kv_cells_spanned(S);
  if (c.flash_attn) {
    if (T >= 64)
      throw NotSupported("[ggml_cpu::attention] flash attention over " + std::to_string(T) +
                         " new tokens at once (llama.cpp's tiled kernel, 64+) is not reproduced");
    if (n_kv >= 512 && T == 1)
      throw NotSupported("[ggml_cpu::attention] flash attention over " + std::to_string(S) +
                         " cached positions (llama.cpp splits 512+ cells over its threads) is not reproduced");
    // ggml_compute_forward_flash_attn_ext_f16_one_chunk with F16 K and V (an F32 cache is cast).
    std::vector<uint16_t> kh(static_cast<std::size_t>(S * KVH * D)), vh(kh.size()), qh(D), acc(D);
    for (std::size_t i = 0; i < kh.size(); ++i) {
      kh[i] = float_to_half(k[i]);
      vh[i] = float_to_half(v[i]);
    }
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < H; ++h) {
        const int64_t hk = h / rep;
        for (int64_t d = 0; d < D; ++d) qh[d] = float_to_half(q[(t * H + h) * D + d]);
        std::fill(acc.begin(), acc.end(), 0);
        float Ssum = 0.0f, M = -std::numeric_limits<float>::infinity();
        for (int64_t j = 0; j <= past + t; ++j) {
          float s = vec_dot_f16(D, kh.data() + (j * KVH + hk) * D, qh.data());
          s = s * c.scale;
          s += 0.0f;  // the mask (0 where visible)
          float ms = 1.0f, vs = 1.0f;
          if (s > M) {
            const float Mold = M;
            M = s;
            ms = std::exp(Mold - M);
            scale_f16(D, acc.data(), ms);
          } else {
            vs = std::exp(s - M);
          }
          mad_f16(D, acc.data(), vh.data() + (j * KVH + hk) * D, vs);
          Ssum = std::fma(Ssum, ms, vs);
        }
        const float inv = Ssum == 0.0f ? 0.0f : 1.0f / Ssum;
        float* o = out + (t * H + h) * D;
        for (int64_t d = 0; d < D; ++d) o[d] = half_to_float(acc[d]) * inv;
      }
    return;
  }
  // mul_mat(k, q) -> soft_max_ext -> mul_mat(v, kq), over n_kv cells (unused ones are zero).
  std::vector<float> p(static_cast<std::size_t>(n_kv));
  std::vector<uint16_t> qh(D), ph(static_cast<std::size_t>(n_kv)), kh, vh;
  if (c.kv_f16) {
    kh.resize(static_cast<std::size_t>(S * KVH * D));
    vh.resize(kh.size());
    for (std::size_t i = 0; i < kh.size(); ++i) {
      kh[i] = float_to_half(k[i]);
      vh[i] = float_to_half(v[i]);
    }
  }
  std::vector<float> vcol(static_cast<std::size_t>(n_kv));
  std::vector<uint16_t> vcolh(static_cast<std::size_t>(n_kv));
  for (int64_t h = 0; h < H; ++h) {
    const int64_t hk = h / rep;
    for (int64_t t = 0; t < T; ++t) {
      const float* qr = q + (t * H + h) * D;
      // KQ: q is a permuted (non-contiguous) view, so no llamafile for F32 K; F16 K converts q to F16
      // first, and llamafile's tinyBLAS takes two or more query rows.
      if (c.kv_f16)
        for (int64_t d = 0; d < D; ++d) qh[d] = float_to_half(qr[d]);
      for (int64_t j = 0; j < n_kv; ++j) {
        if (j >= S) {
          p[j] = 0.0f;
          continue;
        }
        if (!c.kv_f16) {
          p[j] = vec_dot_f32(D, k + (j * KVH + hk) * D, qr);
        } else if (T >= 2 && D % 8 == 0) {
          const uint16_t* kr = kh.data() + (j * KVH + hk) * D;
          p[j] = tinyblas_dot(D, [&](int64_t i, float& a, float& b) {
            a = half_to_float(kr[i]);
            b = half_to_float(qh[i]);
          });
        } else {
          p[j] = vec_dot_f16(D, kh.data() + (j * KVH + hk) * D, qh.data());
        }
      }
      soft_max_row(p.data(), n_kv, c.scale, past + t + 1);
      // KQV: the cache's V is stored transposed (one row of n_kv cells per dimension); kq is
      // contiguous, so llamafile runs for two or more query rows (F16 V: kq converted to F16).
      if (c.kv_f16)
        for (int64_t j = 0; j < n_kv; ++j) ph[j] = float_to_half(p[j]);
      float* o = out + (t * H + h) * D;
      for (int64_t d = 0; d < D; ++d) {
        for (int64_t j = 0; j < n_kv; ++j) {
          const float val = j < S ? v[(j * KVH + hk) * D + d] : 0.0f;
          vcol[j] = val;
          if (c.kv_f16) vcolh[j] = j < S ? vh[(j * KVH + hk) * D + d] : 0;
        }
        const bool tiny = T >= 2 && D % 4 == 0;
        if (!c.kv_f16) {
          o[d] = tiny ? tinyblas_dot(n_kv, [&](int64_t i, float& a, float& b) { a = vcol[i]; b = p[i]; })
                      : vec_dot_f32(n_kv, vcol.data(), p.data());
        } else {
          o[d] = tiny ? tinyblas_dot(n_kv, [&](int64_t i, float& a, float& b) {
            a = half_to_float(vcolh[i]);
            b = half_to_float(ph[i]);
          })
                      : vec_dot_f16(n_kv, vcolh.data(), ph.data());
        }
      }
    }
  }
}

}  // namespace peft::quant::ggml_cpu
