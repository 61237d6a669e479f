// Highway decoders for the ggml block types (all but F32, which is a copy), compiled for every SIMD
// target and dispatched at run time. Each is the scalar decoder of ggml_quants.cpp with lanes: the
// same float operations in the same order (an explicit Mul then Add/Sub, never MulAdd, and the file
// is built with -ffp-contract=off), so results are bit-identical to it and to gguf-py. Vectors are
// capped at 16 floats so a vector never crosses a group that shares one scale.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ggml_quants_hwy.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <cstdint>
#include <cstring>

#include "ggml_quants_simd.h"

HWY_BEFORE_NAMESPACE();
namespace peft::quant {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::CappedTag<float, 16>;

HWY_INLINE uint16_t Rd16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }

// One f16 scale, exactly (finite, inf and NaN as numpy; see f16_to_f32 in ggml_quants.cpp).
HWY_INLINE float F16(const uint8_t* p) {
  const uint16_t h = Rd16(p);
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16, exp = (h >> 10) & 0x1F,
                 mant = h & 0x3FF;
  uint32_t bits;
  if (exp == 0) {
    const float v = static_cast<float>(mant) * 5.9604644775390625e-8f;
    std::memcpy(&bits, &v, 4);
  } else if (exp == 31) {
    bits = 0x7F800000u | (mant << 13);
  } else {
    bits = ((exp + 112) << 23) | (mant << 13);
  }
  bits |= sign;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// N bytes widened to int32 lanes.
template <class DI>
HWY_INLINE hn::Vec<DI> Bytes(DI di, const uint8_t* p) {
  const hn::Rebind<uint8_t, DI> d8;
  return hn::PromoteTo(di, hn::LoadU(d8, p));
}

// Mirrors F16 (numpy's astype(float32)) in integer lanes: exact, inf and NaN payloads kept, so
// not the emulated PromoteTo of the SSE targets (wrong for inf/NaN) nor F16C (quiets sNaN).
void DeqF16(const uint8_t* s, float* y, int64_t n) {
  const DF df;
  const hn::Rebind<uint32_t, DF> du;
  const hn::Rebind<int32_t, DF> di;
  const hn::Rebind<uint16_t, DF> d16;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const auto k0 = hn::Zero(du), k31 = hn::Set(du, 31), k7fff = hn::Set(du, 0x7FFF);
  const auto bias = hn::Set(du, 112u << 23), inf = hn::Set(du, 0x7F800000u);
  const auto tiny = hn::Set(df, 5.9604644775390625e-8f);
  int64_t i = 0;
  for (; i + N <= n; i += N) {
    uint16_t buf[16];
    std::memcpy(buf, s + 2 * i, 2 * N);
    const auto h = hn::PromoteTo(du, hn::LoadU(d16, buf));
    const auto em = hn::And(h, k7fff);
    const auto exp = hn::ShiftRight<10>(em);
    const auto shifted = hn::ShiftLeft<13>(em);
    const auto sub = hn::BitCast(du, hn::Mul(hn::ConvertTo(df, hn::BitCast(di, em)), tiny));
    const auto r = hn::IfThenElse(
        hn::Eq(exp, k0), sub,
        hn::IfThenElse(hn::Eq(exp, k31), hn::Or(shifted, inf), hn::Add(shifted, bias)));
    const auto sign = hn::ShiftLeft<16>(hn::AndNot(k7fff, h));
    hn::StoreU(hn::BitCast(df, hn::Or(r, sign)), df, y + i);
  }
  for (; i < n; ++i) y[i] = F16(s + 2 * i);
}

// Mirrors BF16.dequantize_blocks: bits << 16.
void DeqBF16(const uint8_t* s, float* y, int64_t n) {
  const DF df;
  const hn::Rebind<uint32_t, DF> du;
  const hn::Rebind<uint16_t, DF> d16;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  int64_t i = 0;
  for (; i + N <= n; i += N) {
    uint16_t buf[16];
    std::memcpy(buf, s + 2 * i, 2 * N);
    hn::StoreU(hn::BitCast(df, hn::ShiftLeft<16>(hn::PromoteTo(du, hn::LoadU(d16, buf)))), df,
               y + i);
  }
  for (; i < n; ++i) {
    const uint32_t bits = static_cast<uint32_t>(Rd16(s + 2 * i)) << 16;
    std::memcpy(y + i, &bits, 4);
  }
}

// Mirrors Q4_0.dequantize_blocks: d * (q - 8).
void DeqQ4_0(const uint8_t* s, float* y, int64_t nb) {
  const DF df;
  const hn::Rebind<int32_t, DF> di;
  const size_t N = hn::Lanes(df);
  const auto k15 = hn::Set(di, 15), k8 = hn::Set(di, 8);
  for (int64_t b = 0; b < nb; ++b, s += 18, y += 32) {
    const auto d = hn::Set(df, F16(s));
    for (size_t j = 0; j < 16; j += N) {
      const auto v = Bytes(di, s + 2 + j);
      hn::StoreU(hn::Mul(d, hn::ConvertTo(df, hn::Sub(hn::And(v, k15), k8))), df, y + j);
      hn::StoreU(hn::Mul(d, hn::ConvertTo(df, hn::Sub(hn::ShiftRight<4>(v), k8))), df, y + 16 + j);
    }
  }
}

// Mirrors Q4_1.dequantize_blocks: (d * q) + m.
void DeqQ4_1(const uint8_t* s, float* y, int64_t nb) {
  const DF df;
  const hn::Rebind<int32_t, DF> di;
  const size_t N = hn::Lanes(df);
  const auto k15 = hn::Set(di, 15);
  for (int64_t b = 0; b < nb; ++b, s += 20, y += 32) {
    const auto d = hn::Set(df, F16(s)), m = hn::Set(df, F16(s + 2));
    for (size_t j = 0; j < 16; j += N) {
      const auto v = Bytes(di, s + 4 + j);
      hn::StoreU(hn::Add(hn::Mul(d, hn::ConvertTo(df, hn::And(v, k15))), m), df, y + j);
      hn::StoreU(hn::Add(hn::Mul(d, hn::ConvertTo(df, hn::ShiftRight<4>(v))), m), df, y + 16 + j);
    }
  }
}

// Fifth bits of Q5_0 / Q5_1 elements j..j+N: bit j + lane of the little-endian qh, as 0 or 16.
template <class DI>
HWY_INLINE hn::Vec<DI> HighBits5(DI di, const uint8_t* qh_bytes, size_t j) {
  alignas(64) static constexpr int32_t kBit[32] = {
      1 << 0,  1 << 1,  1 << 2,  1 << 3,  1 << 4,  1 << 5,  1 << 6,  1 << 7,
      1 << 8,  1 << 9,  1 << 10, 1 << 11, 1 << 12, 1 << 13, 1 << 14, 1 << 15,
      1 << 16, 1 << 17, 1 << 18, 1 << 19, 1 << 20, 1 << 21, 1 << 22, 1 << 23,
      1 << 24, 1 << 25, 1 << 26, 1 << 27, 1 << 28, 1 << 29, 1 << 30, INT32_MIN};
  int32_t qh;
  std::memcpy(&qh, qh_bytes, 4);
  return hn::IfThenElseZero(hn::TestBit(hn::Set(di, qh), hn::LoadU(di, kBit + j)), hn::Set(di, 16));
}

// Mirrors Q5_0.dequantize_blocks: d * ((ql | qh << 4) - 16).
void DeqQ5_0(const uint8_t* s, float* y, int64_t nb) {
  const DF df;
  const hn::Rebind<int32_t, DF> di;
  const size_t N = hn::Lanes(df);
  const auto k15 = hn::Set(di, 15), k16 = hn::Set(di, 16);
  for (int64_t b = 0; b < nb; ++b, s += 22, y += 32) {
    const auto d = hn::Set(df, F16(s));
    for (size_t j = 0; j < 16; j += N) {
      const auto v = Bytes(di, s + 6 + j);
      const auto lo = hn::Or(hn::And(v, k15), HighBits5(di, s + 2, j));
      const auto hi = hn::Or(hn::ShiftRight<4>(v), HighBits5(di, s + 2, 16 + j));
      hn::StoreU(hn::Mul(d, hn::ConvertTo(df, hn::Sub(lo, k16))), df, y + j);
      hn::StoreU(hn::Mul(d, hn::ConvertTo(df, hn::Sub(hi, k16))), df, y + 16 + j);
    }
  }
}

// Mirrors Q5_1.dequantize_blocks: (d * q) + m.
void DeqQ5_1(const uint8_t* s, float* y, int64_t nb) {
  const DF df;
  const hn::Rebind<int32_t, DF> di;
  const size_t N = hn::Lanes(df);
  const auto k15 = hn::Set(di, 15);
  for (int64_t b = 0; b < nb; ++b, s += 24, y += 32) {
    const auto d = hn::Set(df, F16(s)), m = hn::Set(df, F16(s + 2));
    for (size_t j = 0; j < 16; j += N) {
      const auto v = Bytes(di, s + 8 + j);
      const auto lo = hn::Or(hn::And(v, k15), HighBits5(di, s + 4, j));
      const auto hi = hn::Or(hn::ShiftRight<4>(v), HighBits5(di, s + 4, 16 + j));
      hn::StoreU(hn::Add(hn::Mul(d, hn::ConvertTo(df, lo)), m), df, y + j);
      hn::StoreU(hn::Add(hn::Mul(d, hn::ConvertTo(df, hi)), m), df, y + 16 + j);
    }
  }
}

// Mirrors Q8_0.dequantize_blocks: x * d.
void DeqQ8_0(const uint8_t* s, float* y, int64_t nb) {
  const DF df;
  const hn::Rebind<int32_t, DF> di;
  const hn::Rebind<int8_t, DF> d8;
  const size_t N = hn::Lanes(df);
  for (int64_t b = 0; b < nb; ++b, s += 34, y += 32) {
    const auto d = hn::Set(df, F16(s));
    int8_t q[32];
    std::memcpy(q, s + 2, 32);
    for (size_t j = 0; j < 32; j += N)
      hn::StoreU(hn::Mul(hn::ConvertTo(df, hn::PromoteTo(di, hn::LoadU(d8, q + j))), d), df, y + j);
  }
}

// Mirrors Q4_K.get_scale_min: the 6-bit scale and min of sub-block j from the 12 packed bytes.
HWY_INLINE void ScaleMin(const uint8_t* sc, int j, int& s, int& m) {
  if (j < 4) {
    s = sc[j] & 0x3F;
    m = sc[j + 4] & 0x3F;
  } else {
    s = (sc[j + 4] & 0x0F) | ((sc[j - 4] >> 2) & 0x30);
    m = (sc[j + 4] >> 4) | ((sc[j] >> 2) & 0x30);
  }
}

// Mirrors Q4_K.dequantize_blocks (scales as Q4_K.get_scale_min): (d * sc) * q - (dmin * m).
void DeqQ4_K(const uint8_t* s, float* y, int64_t nb) {
  const DF df;
  const hn::Rebind<int32_t, DF> di;
  const size_t N = hn::Lanes(df);
  const auto k15 = hn::Set(di, 15);
  for (int64_t b = 0; b < nb; ++b, s += 144, y += 256) {
    const float d = F16(s), dmin = F16(s + 2);
    const uint8_t *sc = s + 4, *qs = s + 16;
    for (int c = 0; c < 4; ++c) {  // 32 bytes: sub-block 2c (low nibbles) and 2c + 1 (high)
      int s0, m0, s1, m1;
      ScaleMin(sc, 2 * c, s0, m0);
      ScaleMin(sc, 2 * c + 1, s1, m1);
      const auto d0 = hn::Set(df, d * static_cast<float>(s0));
      const auto dm0 = hn::Set(df, dmin * static_cast<float>(m0));
      const auto d1 = hn::Set(df, d * static_cast<float>(s1));
      const auto dm1 = hn::Set(df, dmin * static_cast<float>(m1));
      for (size_t l = 0; l < 32; l += N) {
        const auto v = Bytes(di, qs + 32 * c + l);
        hn::StoreU(hn::Sub(hn::Mul(d0, hn::ConvertTo(df, hn::And(v, k15))), dm0), df,
                   y + 64 * c + l);
        hn::StoreU(hn::Sub(hn::Mul(d1, hn::ConvertTo(df, hn::ShiftRight<4>(v))), dm1), df,
                   y + 64 * c + 32 + l);
      }
    }
  }
}

// Mirrors Q5_K.dequantize_blocks: as Q4_K with bit j of qh[l] as the fifth bit of sub-block j.
void DeqQ5_K(const uint8_t* s, float* y, int64_t nb) {
  const DF df;
  const hn::Rebind<int32_t, DF> di;
  const size_t N = hn::Lanes(df);
  const auto k15 = hn::Set(di, 15), k1 = hn::Set(di, 1);
  for (int64_t b = 0; b < nb; ++b, s += 176, y += 256) {
    const float d = F16(s), dmin = F16(s + 2);
    const uint8_t *sc = s + 4, *qh = s + 16, *qs = s + 48;
    for (int j = 0; j < 8; ++j) {
      int sj, mj;
      ScaleMin(sc, j, sj, mj);
      const auto dj = hn::Set(df, d * static_cast<float>(sj));
      const auto dmj = hn::Set(df, dmin * static_cast<float>(mj));
      for (size_t l = 0; l < 32; l += N) {
        const auto lo =
            hn::And(hn::ShiftRightSame(Bytes(di, qs + 32 * (j / 2) + l), 4 * (j % 2)), k15);
        const auto hi = hn::And(hn::ShiftRightSame(Bytes(di, qh + l), j), k1);
        const auto q = hn::Or(lo, hn::ShiftLeft<4>(hi));
        hn::StoreU(hn::Sub(hn::Mul(dj, hn::ConvertTo(df, q)), dmj), df, y + 32 * j + l);
      }
    }
  }
}

// Mirrors Q2_K.dequantize_blocks: (d * sc) * q - (dmin * m) per 16 elements; group g takes
// 16 bytes of qs at (g / 8) * 32 + (g % 2) * 16, shifted by 2 * ((g / 2) % 4).
void DeqQ2_K(const uint8_t* s, float* y, int64_t nb) {
  const DF df;
  const hn::Rebind<int32_t, DF> di;
  const size_t N = hn::Lanes(df);
  const auto k3 = hn::Set(di, 3);
  for (int64_t b = 0; b < nb; ++b, s += 84, y += 256) {
    const float d = F16(s + 80), dmin = F16(s + 82);
    for (int g = 0; g < 16; ++g) {
      const auto dl = hn::Set(df, d * static_cast<float>(s[g] & 0x0F));
      const auto ml = hn::Set(df, dmin * static_cast<float>(s[g] >> 4));
      const uint8_t* qs = s + 16 + (g / 8) * 32 + (g % 2) * 16;
      for (size_t l = 0; l < 16; l += N) {
        const auto q = hn::And(hn::ShiftRightSame(Bytes(di, qs + l), 2 * ((g / 2) % 4)), k3);
        hn::StoreU(hn::Sub(hn::Mul(dl, hn::ConvertTo(df, q)), ml), df, y + 16 * g + l);
      }
    }
  }
}

// Mirrors Q3_K.dequantize_blocks: (d * (scale - 32)) * (ql - 4 * !hbit); 32-element group g
// takes qs[(g / 4) * 32 ..] >> 2 * (g % 4) and bit g of hmask[l].
void DeqQ3_K(const uint8_t* s, float* y, int64_t nb) {
  const DF df;
  const hn::Rebind<int32_t, DF> di;
  const size_t N = hn::Lanes(df);
  const auto k3 = hn::Set(di, 3), k1 = hn::Set(di, 1);
  for (int64_t b = 0; b < nb; ++b, s += 110, y += 256) {
    const uint8_t *hmask = s, *qs = s + 32, *sc = s + 96;
    const float d = F16(s + 108);
    float dl[16];
    for (int i = 0; i < 16; ++i) {
      const int lo = (i < 8 ? sc[i] : sc[i - 8] >> 4) & 0x0F;
      const int hi = (sc[8 + i % 4] >> (2 * (i / 4))) & 0x03;
      dl[i] = d * static_cast<float>(static_cast<int8_t>(lo | (hi << 4)) - 32);
    }
    for (int g = 0; g < 8; ++g)
      for (size_t l = 0; l < 32; l += N) {
        const auto ql =
            hn::And(hn::ShiftRightSame(Bytes(di, qs + (g / 4) * 32 + l), 2 * (g % 4)), k3);
        const auto off =
            hn::ShiftLeft<2>(hn::Xor(hn::And(hn::ShiftRightSame(Bytes(di, hmask + l), g), k1), k1));
        const auto q = hn::Sub(ql, off);
        hn::StoreU(hn::Mul(hn::Set(df, dl[2 * g + l / 16]), hn::ConvertTo(df, q)), df,
                   y + 32 * g + l);
      }
  }
}

// Mirrors Q6_K.dequantize_blocks: (d * scale) * ((ql | qh << 4) - 32); in half h, 32-element
// group k takes ql[h*64 + (k%2)*32 ..] >> 4(k/2) and qh[h*32 ..] >> 2k.
void DeqQ6_K(const uint8_t* s, float* y, int64_t nb) {
  const DF df;
  const hn::Rebind<int32_t, DF> di;
  const size_t N = hn::Lanes(df);
  const auto k15 = hn::Set(di, 15), k3 = hn::Set(di, 3), k32 = hn::Set(di, 32);
  for (int64_t b = 0; b < nb; ++b, s += 210, y += 256) {
    const uint8_t *ql = s, *qh = s + 128, *sc = s + 192;
    const float d = F16(s + 208);
    for (int h = 0; h < 2; ++h)
      for (int k = 0; k < 4; ++k)
        for (size_t l = 0; l < 32; l += N) {
          const int idx = h * 128 + k * 32 + static_cast<int>(l);
          const auto lo = hn::And(
              hn::ShiftRightSame(Bytes(di, ql + h * 64 + (k % 2) * 32 + l), 4 * (k / 2)), k15);
          const auto hi = hn::And(hn::ShiftRightSame(Bytes(di, qh + h * 32 + l), 2 * k), k3);
          const auto q = hn::Sub(hn::Or(lo, hn::ShiftLeft<4>(hi)), k32);
          const auto ds = hn::Set(df, d * static_cast<float>(static_cast<int8_t>(sc[idx / 16])));
          hn::StoreU(hn::Mul(ds, hn::ConvertTo(df, q)), df, y + idx);
        }
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace peft::quant
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace peft::quant {
HWY_EXPORT(DeqF16);
HWY_EXPORT(DeqBF16);
HWY_EXPORT(DeqQ4_0);
HWY_EXPORT(DeqQ4_1);
HWY_EXPORT(DeqQ8_0);
HWY_EXPORT(DeqQ4_K);
HWY_EXPORT(DeqQ6_K);
HWY_EXPORT(DeqQ5_0);
HWY_EXPORT(DeqQ5_1);
HWY_EXPORT(DeqQ5_K);
HWY_EXPORT(DeqQ2_K);
HWY_EXPORT(DeqQ3_K);

bool ggml_dequantize_simd(io::GgmlType type, const uint8_t* src, float* dst, int64_t blocks) {
  using io::GgmlType;
  switch (type) {
    case GgmlType::F16:
      HWY_DYNAMIC_DISPATCH(DeqF16)(src, dst, blocks);
      return true;
    case GgmlType::BF16:
      HWY_DYNAMIC_DISPATCH(DeqBF16)(src, dst, blocks);
      return true;
    case GgmlType::Q4_0:
      HWY_DYNAMIC_DISPATCH(DeqQ4_0)(src, dst, blocks);
      return true;
    case GgmlType::Q4_1:
      HWY_DYNAMIC_DISPATCH(DeqQ4_1)(src, dst, blocks);
      return true;
    case GgmlType::Q8_0:
      HWY_DYNAMIC_DISPATCH(DeqQ8_0)(src, dst, blocks);
      return true;
    case GgmlType::Q4_K:
      HWY_DYNAMIC_DISPATCH(DeqQ4_K)(src, dst, blocks);
      return true;
    case GgmlType::Q6_K:
      HWY_DYNAMIC_DISPATCH(DeqQ6_K)(src, dst, blocks);
      return true;
    case GgmlType::Q5_0:
      HWY_DYNAMIC_DISPATCH(DeqQ5_0)(src, dst, blocks);
      return true;
    case GgmlType::Q5_1:
      HWY_DYNAMIC_DISPATCH(DeqQ5_1)(src, dst, blocks);
      return true;
    case GgmlType::Q5_K:
      HWY_DYNAMIC_DISPATCH(DeqQ5_K)(src, dst, blocks);
      return true;
    case GgmlType::Q2_K:
      HWY_DYNAMIC_DISPATCH(DeqQ2_K)(src, dst, blocks);
      return true;
    case GgmlType::Q3_K:
      HWY_DYNAMIC_DISPATCH(DeqQ3_K)(src, dst, blocks);
      return true;
    default:
      return false;
  }
}
}  // namespace peft::quant
#endif
