// Fused 4-bit GEMV: per block of the row, the packed nibbles are widened to 32-bit indices,
// looked up in the 16-entry code book (gather), multiplied with the even/odd input elements
// (first element = high nibble, as bitsandbytes packs) and summed; the block sum is scaled once.
// Compiled for every Highway target and dispatched at run time.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "gemv4_hwy.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include "gemv4.h"

HWY_BEFORE_NAMESPACE();
namespace peft::quant {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// code[idx] for 16 code values. With 16 or 8 float lanes (AVX-512, AVX2) a lane permutation of
// the code book held in registers (t0 = codes 0.., t1 = codes 8..) instead of a gather: gathers
// are microcoded and several times slower on some CPUs (AMD Zen 4 among them). Other widths gather.
template <class DF, class DI>
HWY_INLINE hn::Vec<DF> Code16(DF df, DI di, const float* code, hn::Vec<DF> t0, hn::Vec<DF> t1, hn::Vec<DI> idx) {
  const size_t n = hn::Lanes(df);
  if (n == 16) return hn::TableLookupLanes(t0, hn::IndicesFromVec(df, idx));
  if (n == 8) {
    const auto ix = hn::IndicesFromVec(df, hn::And(idx, hn::Set(di, 7)));
    return hn::IfThenElse(hn::RebindMask(df, hn::Gt(idx, hn::Set(di, 7))), hn::TableLookupLanes(t1, ix),
                          hn::TableLookupLanes(t0, ix));
  }
  return hn::GatherIndex(df, code, idx);
}

// The code book in registers for Code16 (t1 is used with 8 lanes only).
template <class DF>
HWY_INLINE hn::Vec<DF> CodeTable(DF df, const float* code, size_t part) {
  const size_t n = hn::Lanes(df);
  if (n == 16 || n == 8) return hn::LoadU(df, code + (n == 8 ? 8 * part : 0));
  return hn::Zero(df);
}

void Gemv4(const uint8_t* packed, const float* scales, const float* code, int64_t bs, int64_t in, int64_t r0,
           int64_t r1, const float* x, float* y) {
  const hn::ScalableTag<float> df;
  const hn::Rebind<int32_t, decltype(df)> di;
  const hn::Rebind<uint8_t, decltype(df)> d8;
  const int64_t n = static_cast<int64_t>(hn::Lanes(df));
  const auto mask = hn::Set(di, 15);
  const auto t0 = CodeTable(df, code, 0), t1 = CodeTable(df, code, 1);
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = packed + r * in / 2;
    const float* sc = scales + r * in / bs;
    auto acc = hn::Zero(df);
    for (int64_t b = 0; b < in / bs; ++b) {
      auto part0 = hn::Zero(df), part1 = hn::Zero(df);
      for (int64_t j = 0; j < bs / 2; j += n) {  // n bytes = 2n weights
        const auto v = hn::PromoteTo(di, hn::LoadU(d8, row + b * bs / 2 + j));
        const auto hi = hn::ShiftRight<4>(v);
        const auto lo = hn::And(v, mask);
        hn::Vec<decltype(df)> xe, xo;
        hn::LoadInterleaved2(df, x + b * bs + 2 * j, xe, xo);
        part0 = hn::MulAdd(Code16(df, di, code, t0, t1, hi), xe, part0);
        part1 = hn::MulAdd(Code16(df, di, code, t0, t1, lo), xo, part1);
      }
      acc = hn::MulAdd(hn::Add(part0, part1), hn::Set(df, sc[b]), acc);
    }
    y[r] = hn::GetLane(hn::SumOfLanes(df, acc));
  }
}

// Dequantises whole rows: w = code[q] * scale in fp32 (bitsandbytes' value), written in order.
void Dequant4Rows(const uint8_t* packed, const float* scales, const float* code, int64_t bs, int64_t in, int64_t r0,
                  int64_t r1, float* dst) {
  const hn::ScalableTag<float> df;
  const hn::Rebind<int32_t, decltype(df)> di;
  const hn::Rebind<uint8_t, decltype(df)> d8;
  const int64_t n = static_cast<int64_t>(hn::Lanes(df));
  const auto mask = hn::Set(di, 15);
  const auto t0 = CodeTable(df, code, 0), t1 = CodeTable(df, code, 1);
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = packed + r * in / 2;
    const float* sc = scales + r * in / bs;
    float* out = dst + (r - r0) * in;
    for (int64_t b = 0; b < in / bs; ++b) {
      const auto s = hn::Set(df, sc[b]);
      for (int64_t j = 0; j < bs / 2; j += n) {
        const auto v = hn::PromoteTo(di, hn::LoadU(d8, row + b * bs / 2 + j));
        const auto wh = hn::Mul(Code16(df, di, code, t0, t1, hn::ShiftRight<4>(v)), s);
        const auto wl = hn::Mul(Code16(df, di, code, t0, t1, hn::And(v, mask)), s);
        hn::StoreInterleaved2(wh, wl, df, out + b * bs + 2 * j);
      }
    }
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace peft::quant
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace peft::quant {
HWY_EXPORT(Gemv4);
HWY_EXPORT(Dequant4Rows);
void dequant_4bit_rows(const uint8_t* packed, const float* scales, const float* code, int64_t blocksize, int64_t in,
                       int64_t r0, int64_t r1, float* dst) {
  HWY_DYNAMIC_DISPATCH(Dequant4Rows)(packed, scales, code, blocksize, in, r0, r1, dst);
}
void gemv_4bit(const uint8_t* packed, const float* scales, const float* code, int64_t blocksize, int64_t in,
               int64_t r0, int64_t r1, const float* x, float* y) {
  HWY_DYNAMIC_DISPATCH(Gemv4)(packed, scales, code, blocksize, in, r0, r1, x, y);
}
}  // namespace peft::quant
#endif
