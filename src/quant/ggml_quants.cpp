// ggml block types to and from fp32: scalar reference decoders and encoders, the dispatch to the
// Highway kernels (ggml_quants_hwy.cpp) and the row-parallel driver.
//
// Every decoder mirrors gguf-py/gguf/quants.py <Type>.dequantize_blocks and every encoder
// <Type>.quantize_blocks, bit for bit: numpy computes in float32 with one rounding per operation
// (this file is compiled with -ffp-contract=off so no a*b+c becomes an FMA), converts f16 with
// round-to-nearest-even keeping NaN payloads, and casts float to (u)int8 through an int32 as x86
// does (NaN / inf / out of range give 0x80000000, whose low byte is kept).
#include "peft/quant/ggml_quants.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "ggml_quants_simd.h"
#include "peft/core/error.h"

namespace peft::quant {
namespace {

using io::GgmlType;

constexpr int64_t QK = 32;  // QK4_0 = QK4_1 = QK5_0 = QK5_1 = QK8_0
constexpr int64_t QK_K = 256;

// ------------------------------------------------------------------------------ scalar helpers

uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float bits_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint16_t rd16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
void wr16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}

// Exact; NaN payloads kept (numpy's npy_halfbits_to_floatbits).
float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1F, mant = h & 0x3FF;
  if (exp == 0) {  // zero or subnormal: mant * 2^-24 is exact in float
    const float v = static_cast<float>(mant) * 5.9604644775390625e-8f;
    return bits_f32(f32_bits(v) | sign);
  }
  if (exp == 31) return bits_f32(sign | 0x7F800000u | (mant << 13));
  return bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

// Round to nearest even, overflow to inf, NaN keeps its top payload bits and stays NaN (numpy's
// npy_floatbits_to_halfbits).
uint16_t f32_to_f16(float f) {
  const uint32_t x = f32_bits(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000);
  const uint32_t a = x & 0x7FFFFFFFu;
  if (a >= 0x7F800000u) {
    if (a == 0x7F800000u) return sign | 0x7C00;
    uint16_t r = static_cast<uint16_t>(0x7C00 + ((a & 0x7FFFFF) >> 13));
    if (r == 0x7C00) ++r;
    return sign | r;
  }
  if (a >= 0x477FF000u) return sign | 0x7C00;  // >= 65520 rounds to inf
  if (a < 0x38800000u) {                       // below 2^-14: half subnormal (or zero)
    // Adding 0.5 leaves the value's bits at 2^-24 steps, rounded to nearest even by the FPU.
    const float v = bits_f32(a) + 0.5f;
    return sign | static_cast<uint16_t>(f32_bits(v) - 0x3F000000u);
  }
  const uint32_t odd = (a >> 13) & 1;
  return sign | static_cast<uint16_t>((a + 0xC8000FFFu + odd) >> 13);  // rebias -112 << 23
}

// numpy's float32 -> (u)int8 cast on x86: through int32 (cvttss2si), low byte kept.
uint8_t cast_u8(float v) {
  const int32_t i = (v >= -2147483648.0f && v < 2147483648.0f)
                        ? static_cast<int32_t>(v)
                        : std::numeric_limits<int32_t>::min();
  return static_cast<uint8_t>(static_cast<uint32_t>(i));
}

// gguf-py's np_roundf: round half away from zero, NaN/inf propagate.
float np_roundf(float n) {
  const float a = std::fabs(n);
  const float fl = std::floor(a);
  const float b = fl + std::floor(2.0f * (a - fl));
  const float sign = n > 0.0f ? 1.0f : (n < 0.0f ? -1.0f : (n == 0.0f ? 0.0f : n));
  return sign * b;
}

// numpy's max / min reductions: a NaN wins and stays.
float nan_max(float a, float b) { return std::isnan(a) || a >= b ? a : b; }
float nan_min(float a, float b) { return std::isnan(a) || a <= b ? a : b; }

// ------------------------------------------------------------------------------ decoders
// One function per type decodes `nb` blocks; the index arithmetic follows the numpy reshapes.

void deq_f32(const uint8_t* s, float* y, int64_t n) { std::memcpy(y, s, n * 4); }

void deq_f16(const uint8_t* s, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = f16_to_f32(rd16(s + 2 * i));
}

// Mirrors BF16.dequantize_blocks: (int16 -> int32) << 16, bits as float32.
void deq_bf16(const uint8_t* s, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = bits_f32(static_cast<uint32_t>(rd16(s + 2 * i)) << 16);
}

// Mirrors Q4_0.dequantize_blocks: d * (q - 8); low nibbles first, then high nibbles.
void deq_q4_0(const uint8_t* s, float* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, s += 18, y += QK) {
    const float d = f16_to_f32(rd16(s));
    for (int j = 0; j < 16; ++j) {
      y[j] = d * static_cast<float>((s[2 + j] & 0x0F) - 8);
      y[j + 16] = d * static_cast<float>((s[2 + j] >> 4) - 8);
    }
  }
}

// Mirrors Q4_1.dequantize_blocks: (d * q) + m.
void deq_q4_1(const uint8_t* s, float* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, s += 20, y += QK) {
    const float d = f16_to_f32(rd16(s)), m = f16_to_f32(rd16(s + 2));
    for (int j = 0; j < 16; ++j) {
      y[j] = d * static_cast<float>(s[4 + j] & 0x0F) + m;
      y[j + 16] = d * static_cast<float>(s[4 + j] >> 4) + m;
    }
  }
}

// Mirrors Q5_0.dequantize_blocks: d * ((ql | qh_bit << 4) - 16), qh a little-endian uint32.
void deq_q5_0(const uint8_t* s, float* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, s += 22, y += QK) {
    const float d = f16_to_f32(rd16(s));
    uint32_t qh;
    std::memcpy(&qh, s + 2, 4);
    const uint8_t* qs = s + 6;
    for (int j = 0; j < QK; ++j) {
      const int ql = j < 16 ? (qs[j] & 0x0F) : (qs[j - 16] >> 4);
      y[j] = d * static_cast<float>((ql | static_cast<int>(((qh >> j) & 1) << 4)) - 16);
    }
  }
}

// Mirrors Q5_1.dequantize_blocks: (d * q) + m.
void deq_q5_1(const uint8_t* s, float* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, s += 24, y += QK) {
    const float d = f16_to_f32(rd16(s)), m = f16_to_f32(rd16(s + 2));
    uint32_t qh;
    std::memcpy(&qh, s + 4, 4);
    const uint8_t* qs = s + 8;
    for (int j = 0; j < QK; ++j) {
      const int ql = j < 16 ? (qs[j] & 0x0F) : (qs[j - 16] >> 4);
      y[j] = d * static_cast<float>(ql | static_cast<int>(((qh >> j) & 1) << 4)) + m;
    }
  }
}

// Mirrors Q8_0.dequantize_blocks: x * d.
void deq_q8_0(const uint8_t* s, float* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, s += 34, y += QK) {
    const float d = f16_to_f32(rd16(s));
    for (int j = 0; j < QK; ++j) y[j] = static_cast<float>(static_cast<int8_t>(s[2 + j])) * d;
  }
}

// Mirrors Q2_K.dequantize_blocks: scales[16] qs[64] d dmin; element i = h*128 + k*32 + l holds
// (qs[h*32 + l] >> 2k) & 3; (d * sc) * q - (dmin * m) per 16 elements.
void deq_q2_k(const uint8_t* s, float* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, s += 84, y += QK_K) {
    const float d = f16_to_f32(rd16(s + 80)), dmin = f16_to_f32(rd16(s + 82));
    for (int g = 0; g < 16; ++g) {  // 16 elements per scale: half h, shift k, bytes l0..l0+15
      const int h = g / 8, k = (g / 2) % 4, l0 = 16 * (g % 2);
      const float dl = d * static_cast<float>(s[g] & 0x0F),
                  ml = dmin * static_cast<float>(s[g] >> 4);
      for (int l = 0; l < 16; ++l) {
        const int q = (s[16 + h * 32 + l0 + l] >> (2 * k)) & 3;
        y[16 * g + l] = dl * static_cast<float>(q) - ml;
      }
    }
  }
}

// Mirrors Q3_K.dequantize_blocks: hmask[32] qs[64] scales[12] d; 6-bit signed scales per 16.
void deq_q3_k(const uint8_t* s, float* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, s += 110, y += QK_K) {
    const uint8_t *hmask = s, *qs = s + 32, *sc = s + 96;
    const float d = f16_to_f32(rd16(s + 108));
    float dl[16];
    for (int i = 0; i < 16; ++i) {
      const int lo = (i < 8 ? sc[i] : sc[i - 8] >> 4) & 0x0F;
      const int hi = (sc[8 + i % 4] >> (2 * (i / 4))) & 0x03;
      dl[i] = d * static_cast<float>(static_cast<int8_t>(lo | (hi << 4)) - 32);
    }
    for (int g = 0; g < 8; ++g) {  // 32 elements: half h = g / 4, shift k = g % 4, hmask bit g
      const int h = g / 4, k = g % 4;
      for (int l = 0; l < 32; ++l) {
        const int ql = (qs[h * 32 + l] >> (2 * k)) & 3;
        const int qh = ((hmask[l] >> g) & 1) ^ 1;  // offset 4 when the mask bit is clear
        y[32 * g + l] = dl[2 * g + l / 16] * static_cast<float>(ql - (qh << 2));
      }
    }
  }
}

// Mirrors Q4_K.get_scale_min: eight 6-bit scales and mins packed in 12 bytes.
void k_scale_min(const uint8_t* s, int j, int& sc, int& m) {
  if (j < 4) {
    sc = s[j] & 0x3F;
    m = s[j + 4] & 0x3F;
  } else {
    sc = (s[j + 4] & 0x0F) | ((s[j - 4] >> 2) & 0x30);
    m = (s[j + 4] >> 4) | ((s[j] >> 2) & 0x30);
  }
}

// Mirrors Q4_K.dequantize_blocks: d dmin scales[12] qs[128]; sub-block j = 2c + hi of chunk c.
void deq_q4_k(const uint8_t* s, float* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, s += 144, y += QK_K) {
    const float d = f16_to_f32(rd16(s)), dmin = f16_to_f32(rd16(s + 2));
    const uint8_t* qs = s + 16;
    for (int j = 0; j < 8; ++j) {
      int sc, m;
      k_scale_min(s + 4, j, sc, m);
      const float dj = d * static_cast<float>(sc), mj = dmin * static_cast<float>(m);
      for (int l = 0; l < 32; ++l) {
        const int q = (qs[(j / 2) * 32 + l] >> (4 * (j % 2))) & 0x0F;
        y[j * 32 + l] = dj * static_cast<float>(q) - mj;
      }
    }
  }
}

// Mirrors Q5_K.dequantize_blocks: as Q4_K plus bit j of qh[l] as the fifth bit.
void deq_q5_k(const uint8_t* s, float* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, s += 176, y += QK_K) {
    const float d = f16_to_f32(rd16(s)), dmin = f16_to_f32(rd16(s + 2));
    const uint8_t *qh = s + 16, *qs = s + 48;
    for (int j = 0; j < 8; ++j) {
      int sc, m;
      k_scale_min(s + 4, j, sc, m);
      const float dj = d * static_cast<float>(sc), mj = dmin * static_cast<float>(m);
      for (int l = 0; l < 32; ++l) {
        const int q = ((qs[(j / 2) * 32 + l] >> (4 * (j % 2))) & 0x0F) | (((qh[l] >> j) & 1) << 4);
        y[j * 32 + l] = dj * static_cast<float>(q) - mj;
      }
    }
  }
}

// Mirrors Q6_K.dequantize_blocks: ql[128] qh[64] scales[16] (int8) d; in half h, element i holds
// (ql[h*64 + i%64] >> 4(i/64)) & 15 | ((qh[h*32 + i%32] >> 2(i/32)) & 3) << 4, minus 32.
void deq_q6_k(const uint8_t* s, float* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, s += 210, y += QK_K) {
    const uint8_t *ql = s, *qh = s + 128;
    const int8_t* sc = reinterpret_cast<const int8_t*>(s + 192);
    const float d = f16_to_f32(rd16(s + 208));
    for (int h = 0; h < 2; ++h)
      for (int k = 0; k < 4;
           ++k)  // 32 elements: ql bytes (k % 2) * 32.., nibble k / 2, qh shift 2k
        for (int l = 0; l < 32; ++l) {
          const int lo = (ql[h * 64 + (k % 2) * 32 + l] >> (4 * (k / 2))) & 0x0F;
          const int hi = (qh[h * 32 + l] >> (2 * k)) & 0x03;
          const int idx = h * 128 + k * 32 + l;
          const float dl = d * static_cast<float>(sc[idx / 16]);
          y[idx] = dl * static_cast<float>((lo | (hi << 4)) - 32);
        }
  }
}

// ------------------------------------------------------------------------------ encoders

// Mirrors Q8_0.quantize_blocks: d = amax / 127, q = np_roundf(x * (1 / d)).
void q_q8_0(const float* x, uint8_t* s, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, x += QK, s += 34) {
    float amax = 0.0f;
    for (int j = 0; j < QK; ++j) amax = nan_max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = d == 0.0f ? 0.0f : 1.0f / d;
    wr16(s, f32_to_f16(d));
    for (int j = 0; j < QK; ++j) s[2 + j] = cast_u8(np_roundf(x[j] * id));
  }
}

// Mirrors Q4_0.quantize_blocks / Q5_0: d = (value of largest magnitude, first on ties) / -half,
// q = trunc(x * id + half + 0.5) clipped to [0, 2 * half - 1].
template <int Half>
void q_sym(const float* x, uint8_t* q, float& d) {
  int imax = 0;  // numpy's argmax: the first maximum, or the first NaN
  for (int j = 1; j < QK && !std::isnan(x[imax]); ++j)
    if (std::isnan(x[j]) || std::fabs(x[j]) > std::fabs(x[imax])) imax = j;
  d = x[imax] / static_cast<float>(-Half);
  const float id = d == 0.0f ? 0.0f : 1.0f / d;
  const float off = static_cast<float>(Half) + 0.5f;
  for (int j = 0; j < QK; ++j)
    q[j] =
        std::min<uint8_t>(cast_u8(std::trunc(x[j] * id + off)), static_cast<uint8_t>(2 * Half - 1));
}

// Mirrors Q4_1.quantize_blocks / Q5_1: d = (max - min) / levels, q = trunc((x - min) * id + 0.5).
template <int Levels>
void q_asym(const float* x, uint8_t* q, float& d, float& mn) {
  float mx = x[0];
  mn = x[0];
  for (int j = 1; j < QK; ++j) {
    mx = nan_max(mx, x[j]);
    mn = nan_min(mn, x[j]);
  }
  d = (mx - mn) / static_cast<float>(Levels);
  const float id = d == 0.0f ? 0.0f : 1.0f / d;
  for (int j = 0; j < QK; ++j)
    q[j] = std::min<uint8_t>(cast_u8(std::trunc((x[j] - mn) * id + 0.5f)),
                             static_cast<uint8_t>(Levels));
}

void q_q4_0(const float* x, uint8_t* s, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, x += QK, s += 18) {
    uint8_t q[QK];
    float d;
    q_sym<8>(x, q, d);
    wr16(s, f32_to_f16(d));
    for (int j = 0; j < 16; ++j) s[2 + j] = static_cast<uint8_t>(q[j] | (q[j + 16] << 4));
  }
}

void q_q4_1(const float* x, uint8_t* s, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, x += QK, s += 20) {
    uint8_t q[QK];
    float d, m;
    q_asym<15>(x, q, d, m);
    wr16(s, f32_to_f16(d));
    wr16(s + 2, f32_to_f16(m));
    for (int j = 0; j < 16; ++j) s[4 + j] = static_cast<uint8_t>(q[j] | (q[j + 16] << 4));
  }
}

// Five-bit packing of Q5_0 / Q5_1: low nibbles in qs (as Q4), bit 4 of q[j] as bit j of qh.
void pack5(const uint8_t* q, uint8_t* qh, uint8_t* qs) {
  uint32_t h = 0;
  for (int j = 0; j < QK; ++j) h |= static_cast<uint32_t>((q[j] >> 4) & 1) << j;
  std::memcpy(qh, &h, 4);
  for (int j = 0; j < 16; ++j) qs[j] = static_cast<uint8_t>((q[j] & 0x0F) | (q[j + 16] << 4));
}

void q_q5_0(const float* x, uint8_t* s, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, x += QK, s += 22) {
    uint8_t q[QK];
    float d;
    q_sym<16>(x, q, d);
    wr16(s, f32_to_f16(d));
    pack5(q, s + 2, s + 6);
  }
}

void q_q5_1(const float* x, uint8_t* s, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, x += QK, s += 24) {
    uint8_t q[QK];
    float d, m;
    q_asym<31>(x, q, d, m);
    wr16(s, f32_to_f16(d));
    wr16(s + 2, f32_to_f16(m));
    pack5(q, s + 4, s + 8);
  }
}

void q_f32(const float* x, uint8_t* s, int64_t n) { std::memcpy(s, x, n * 4); }

void q_f16(const float* x, uint8_t* s, int64_t n) {
  for (int64_t i = 0; i < n; ++i) wr16(s + 2 * i, f32_to_f16(x[i]));
}

// Mirrors BF16.quantize_blocks (ggml_compute_fp32_to_bf16): NaN forced quiet, round to nearest
// even on the upper 16 bits.
void q_bf16(const float* x, uint8_t* s, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint32_t u = f32_bits(x[i]);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) u = (u & 0xFFFF0000u) | (64u << 16);
    const uint64_t r = (static_cast<uint64_t>(u) + (0x7FFFu + ((u >> 16) & 1))) >> 16;
    wr16(s + 2 * i, static_cast<uint16_t>(r));
  }
}

// ------------------------------------------------------------------------------ type table

using DeqFn = void (*)(const uint8_t*, float*, int64_t);
using QFn = void (*)(const float*, uint8_t*, int64_t);

// Block sizes and names come from io::ggml_traits (the GGUF reader's table).
struct Kernel {
  GgmlType type;
  DeqFn deq;  // takes the block count
  QFn quant;  // nullptr: no encoder
};

const Kernel kKernels[] = {
    {GgmlType::F32, deq_f32, q_f32},     {GgmlType::F16, deq_f16, q_f16},
    {GgmlType::BF16, deq_bf16, q_bf16},  {GgmlType::Q4_0, deq_q4_0, q_q4_0},
    {GgmlType::Q4_1, deq_q4_1, q_q4_1},  {GgmlType::Q5_0, deq_q5_0, q_q5_0},
    {GgmlType::Q5_1, deq_q5_1, q_q5_1},  {GgmlType::Q8_0, deq_q8_0, q_q8_0},
    {GgmlType::Q2_K, deq_q2_k, nullptr}, {GgmlType::Q3_K, deq_q3_k, nullptr},
    {GgmlType::Q4_K, deq_q4_k, nullptr}, {GgmlType::Q5_K, deq_q5_k, nullptr},
    {GgmlType::Q6_K, deq_q6_k, nullptr},
};

const Kernel* find_kernel(GgmlType t) {
  for (const auto& k : kKernels)
    if (k.type == t) return &k;
  return nullptr;
}

std::string type_list(bool quant) {
  std::string s;
  for (const auto& k : kKernels)
    if (!quant || k.quant) s += (s.empty() ? "" : ", ") + std::string(io::ggml_traits(k.type).name);
  return s;
}

// The kernel for `t`, after checking that `n` elements are whole blocks.
const Kernel& checked(const char* fn, GgmlType t, int64_t n, bool quant) {
  const Kernel* k = find_kernel(t);
  if (!k || (quant && !k->quant))
    throw NotSupported(std::string("[") + fn + "] " + io::ggml_type_name(static_cast<uint32_t>(t)) +
                       " (n = " + std::to_string(n) +
                       "): type not supported; supported: " + type_list(quant));
  const auto& tr = io::ggml_traits(t);
  if (n < 0 || n % tr.block_size != 0)
    throw std::invalid_argument(
        std::string("[") + fn + "] " + tr.name + ": n = " + std::to_string(n) +
        " is not a multiple of the block size " + std::to_string(tr.block_size));
  return *k;
}

// Whole blocks: SIMD kernel when there is one, else the scalar decoder.
void dequantize_blocks(const Kernel& k, const uint8_t* src, float* dst, int64_t n) {
  const int64_t nb = n / io::ggml_traits(k.type).block_size;
  if (!ggml_dequantize_simd(k.type, src, dst, nb)) k.deq(src, dst, nb);
}

}  // namespace

bool ggml_can_dequantize(io::GgmlType type) { return find_kernel(type) != nullptr; }

bool ggml_can_quantize(io::GgmlType type) {
  const Kernel* k = find_kernel(type);
  return k && k->quant;
}

void ggml_dequantize(io::GgmlType type, const void* src, float* dst, int64_t n) {
  const Kernel& k = checked("ggml_dequantize", type, n, false);
  dequantize_blocks(k, static_cast<const uint8_t*>(src), dst, n);
}

void ggml_dequantize_reference(io::GgmlType type, const void* src, float* dst, int64_t n) {
  const Kernel& k = checked("ggml_dequantize_reference", type, n, false);
  k.deq(static_cast<const uint8_t*>(src), dst, n / io::ggml_traits(type).block_size);
}

void ggml_dequantize_rows(io::GgmlType type, const void* src, float* dst, int64_t rows,
                          int64_t row_len, int threads) {
  const Kernel& k = checked("ggml_dequantize_rows", type, row_len, false);
  const auto& tr = io::ggml_traits(type);
  if (rows < 0)
    throw std::invalid_argument(std::string("[ggml_dequantize_rows] ") + tr.name +
                                ": rows = " + std::to_string(rows));
  const int64_t row_bytes = row_len / tr.block_size * tr.type_size;
  const auto* s = static_cast<const uint8_t*>(src);
  // Starting a thread costs about as much as decoding 1 M values (~40 us at 80 GB/s): below ~2 M
  // values per thread the default keeps to fewer threads.
  constexpr int64_t kMinPerThread = 1 << 21;
  int64_t nt = threads > 0 ? threads : std::max(1u, std::thread::hardware_concurrency());
  if (threads <= 0) nt = std::min(nt, rows * row_len / kMinPerThread);  // explicit counts are kept
  nt = std::max<int64_t>(1, std::min(nt, rows));
  if (nt == 1) {
    dequantize_blocks(k, s, dst, rows * row_len);
    return;
  }
  std::vector<std::thread> pool;
  pool.reserve(nt - 1);
  auto part = [&](int64_t t) {
    const int64_t r0 = rows * t / nt, r1 = rows * (t + 1) / nt;
    dequantize_blocks(k, s + r0 * row_bytes, dst + r0 * row_len, (r1 - r0) * row_len);
  };
  for (int64_t t = 1; t < nt; ++t) pool.emplace_back(part, t);
  part(0);
  for (auto& th : pool) th.join();
}

void ggml_quantize(io::GgmlType type, const float* src, void* dst, int64_t n) {
  const Kernel& k = checked("ggml_quantize", type, n, true);
  k.quant(src, static_cast<uint8_t*>(dst), n / io::ggml_traits(type).block_size);
}

}  // namespace peft::quant
