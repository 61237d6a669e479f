// The 4-bit linear base. Mirrors bitsandbytes/nn/modules.py (Linear4bit.forward: cast to compute
// dtype, x·dequant(W)ᵀ + b, cast back) and autograd/_functions.py (MatMul4Bit.backward:
// grad_x = grad · dequant(W), no weight gradient).
#include "peft/quant/linear4bit.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <torch/version.h>
#include <ATen/Parallel.h>
#include <torch/autograd.h>

#include <cmath>
#include <cstring>
#include <type_traits>

#include "frozen_linear.h"
#include "gemv4.h"
#include "peft/core/check.h"

namespace peft::quant {

at::ScalarType parse_compute_dtype(const std::string& d) {
  if (d == "float32" || d == "fp32") return at::kFloat;
  if (d == "bfloat16" || d == "bf16") return at::kBFloat16;
  throw ConfigError("[Linear4bit] compute dtype '" + d + "' is not one of float32, bfloat16");
}

namespace {

// Each byte's two codes (high nibble first), so a row is dequantised a byte at a time.
struct PairLut {
  float v[256][2];
  explicit PairLut(QuantType t) {
    const auto& c = code_4bit(t);
    for (int b = 0; b < 256; ++b) {
      v[b][0] = c[b >> 4];
      v[b][1] = c[b & 15];
    }
  }
};

const PairLut& pair_lut(QuantType t) {
  static const PairLut nf4(QuantType::NF4), fp4(QuantType::FP4);
  return t == QuantType::NF4 ? nf4 : fp4;
}

// Dequantises rows [r0, r1) of an [out, in] weight into dst ([r1 - r0, in], row-major):
// w = code * scale in fp32 (bitsandbytes' value), stored as T.
template <typename T>
void dequant_rows(const uint8_t* packed, const float* scales, QuantType t, int64_t bs, int64_t in, int64_t r0,
                  int64_t r1, T* dst) {
  if constexpr (std::is_same_v<T, float>) {
    if (gemv_4bit_supported(in, bs)) {  // the SIMD kernel (same values)
      at::parallel_for(r0, r1, std::max<int64_t>(1, 16384 / std::max<int64_t>(in, 1)), [&](int64_t a, int64_t b) {
        dequant_4bit_rows(packed, scales, code_4bit(t).data(), bs, in, a, b, dst + (a - r0) * in);
      });
      return;
    }
  }
  const auto& lut = pair_lut(t).v;
  const auto& code = code_4bit(t);
  at::parallel_for(r0, r1, std::max<int64_t>(1, 16384 / std::max<int64_t>(in, 1)), [&](int64_t a, int64_t b) {
    for (int64_t r = a; r < b; ++r) {
      T* out = dst + (r - r0) * in;
      const int64_t base = r * in;
      int64_t k = 0;
      while (k < in) {
        const int64_t i = base + k;
        const int64_t blk = i / bs;
        const int64_t seg_end = std::min(in, (blk + 1) * bs - base);
        const float s = scales[blk];
        if ((i & 1) == 0) {
          int64_t kk = k;
          for (; kk + 1 < seg_end; kk += 2) {
            const uint8_t byte = packed[(base + kk) >> 1];
            out[kk] = static_cast<T>(lut[byte][0] * s);
            out[kk + 1] = static_cast<T>(lut[byte][1] * s);
          }
          k = kk;
        }
        for (; k < seg_end; ++k) {  // odd start or a single trailing element
          const int64_t j = base + k;
          const uint8_t byte = packed[j >> 1];
          out[k] = static_cast<T>(code[(j & 1) ? (byte & 15) : (byte >> 4)] * s);
        }
      }
    }
  });
}

// Rows [r0, r1) dequantised into `tile` in its dtype (fp32 or bf16 compute).
void dequant_tile(const at::Tensor& packed, const at::Tensor& scales, QuantType t, int64_t bs, int64_t in, int64_t r0,
                  int64_t r1, at::Tensor& tile) {
  if (tile.scalar_type() == at::kFloat)
    dequant_rows<float>(packed.data_ptr<uint8_t>(), scales.data_ptr<float>(), t, bs, in, r0, r1, tile.data_ptr<float>());
  else
    dequant_rows<c10::BFloat16>(packed.data_ptr<uint8_t>(), scales.data_ptr<float>(), t, bs, in, r0, r1,
                                tile.data_ptr<c10::BFloat16>());
}

}  // namespace

Linear4bitWeight::Linear4bitWeight(Quantized4 q, const std::string& compute_dtype)
    : q_(std::move(q)), compute_(parse_compute_dtype(compute_dtype)) {
  PEFT_CHECK(q_.state.shape.size() == 2, std::invalid_argument, "[Linear4bit] expected a 2-D weight, got ",
             q_.state.shape.size(), " dimensions");
  out_ = q_.state.shape[0];
  in_ = q_.state.shape[1];
  refresh();
}

void Linear4bitWeight::refresh() {
  PEFT_CHECK(static_cast<int64_t>(q_.packed.size()) == (q_.numel() + 1) / 2, FormatError, "[Linear4bit] ",
             q_.packed.size(), " packed bytes for a ", out_, "x", in_, " weight, expected ", (q_.numel() + 1) / 2);
  const std::vector<float> sc = q_.state.block_scales();
  PEFT_CHECK(static_cast<int64_t>(sc.size()) == q_.state.num_blocks(), FormatError, "[Linear4bit] ", sc.size(),
             " block constants for ", q_.state.num_blocks(), " blocks");
  packed_ = at::from_blob(q_.packed.data(), {static_cast<int64_t>(q_.packed.size())}, at::kByte);
  scales_ = at::empty({static_cast<int64_t>(sc.size())}, at::kFloat);
  std::memcpy(scales_.data_ptr<float>(), sc.data(), sc.size() * sizeof(float));
}

at::Tensor Linear4bitWeight::dequantize() const {
  at::Tensor w = at::empty({out_, in_}, at::kFloat);
  dequant_rows<float>(packed_.data_ptr<uint8_t>(), scales_.data_ptr<float>(), q_.state.quant_type,
                      q_.state.blocksize, in_, 0, out_, w.data_ptr<float>());
  return w;
}

int64_t Linear4bitWeight::nbytes() const {
  return static_cast<int64_t>(q_.packed.size()) + q_.state.state_bytes();
}

double Linear4bitWeight::requantize(const at::Tensor& w_in) {
  PEFT_CHECK(w_in.dim() == 2 && w_in.size(0) == out_ && w_in.size(1) == in_, std::invalid_argument,
             "[Linear4bit] requantize: expected [", out_, ", ", in_, "], got ", w_in.sizes());
  at::Tensor w = w_in.detach().to(at::kFloat).contiguous().cpu();
  Quant4Options o{q_.state.quant_type, q_.state.blocksize, q_.state.nested};
  const std::string dtype = q_.state.dtype;
  q_ = quantize_4bit(w.data_ptr<float>(), {out_, in_}, o);
  q_.state.dtype = dtype;
  refresh();
  return (dequantize() - w).abs().max().item<double>();
}

at::Tensor Linear4bitWeight::matmul(const at::Tensor& x2) const {
  const int64_t N = x2.size(0);
  if (N <= 4 && gemv_4bit_supported(in_, q_.state.blocksize)) {
    // Few rows (decoding): the fused SIMD GEMV reads the packed weight directly (accumulating in
    // fp32 whatever the compute dtype; a bf16 result is rounded once at the end).
    const at::Tensor xf = x2.scalar_type() == at::kFloat ? x2 : x2.to(at::kFloat).contiguous();
    at::Tensor y = at::empty({N, out_}, xf.options());
    const auto& code = code_4bit(q_.state.quant_type);
    for (int64_t i = 0; i < N; ++i) {
      const float* xi = xf.data_ptr<float>() + i * in_;
      float* yi = y.data_ptr<float>() + i * out_;
      at::parallel_for(0, out_, 64, [&](int64_t a, int64_t b) {
        gemv_4bit(packed_.data_ptr<uint8_t>(), scales_.data_ptr<float>(), code.data(), q_.state.blocksize, in_, a, b,
                  xi, yi);
      });
    }
    return x2.scalar_type() == at::kFloat ? y : y.to(x2.scalar_type());
  }
  return detail::tiled_matmul(out_, in_, x2, [&](int64_t r0, int64_t r1, at::Tensor& tile) {
    dequant_tile(packed_, scales_, q_.state.quant_type, q_.state.blocksize, in_, r0, r1, tile);
  });
}

at::Tensor Linear4bitWeight::matmul_t(const at::Tensor& g2) const {
  return detail::tiled_matmul_t(out_, in_, g2, [&](int64_t r0, int64_t r1, at::Tensor& tile) {
    dequant_tile(packed_, scales_, q_.state.quant_type, q_.state.blocksize, in_, r0, r1, tile);
  });
}

at::Tensor Linear4bitWeight::dequantize_aten(const c10::Device& device) const {
  const at::Tensor p = packed_.to(device);
  const at::Tensor hi = at::bitwise_right_shift(p, 4).to(at::kLong), lo = p.bitwise_and(15).to(at::kLong);
  const at::Tensor idx = at::stack({hi, lo}, 1).flatten().narrow(0, 0, out_ * in_);
  const auto& c = code_4bit(q_.state.quant_type);
  const at::Tensor code =
      at::tensor(std::vector<float>(c.begin(), c.end()), at::TensorOptions().dtype(at::kFloat)).to(device);
  const int64_t padded = scales_.numel() * q_.state.blocksize;
  const at::Tensor sc = scales_.to(device).repeat_interleave(q_.state.blocksize).narrow(0, 0, std::min(padded, out_ * in_));
  return (code.index_select(0, idx) * sc).view({out_, in_});
}

at::Tensor Linear4bitWeight::forward(const at::Tensor& x) {
  if (!x.device().is_cpu()) {
    // Device-agnostic path: dequantise with ATen ops on x's device, then a plain linear.
    const at::Tensor w = dequantize_aten(x.device()).to(compute_);
    return at::linear(x.to(compute_), w).to(x.scalar_type());
  }
  // Under bf16 autocast the product runs in bf16, as autocast runs bitsandbytes' F.linear on the
  // dequantised weight (its compute dtype notwithstanding).
  const auto ac = cpu_autocast_dtype();
  const at::ScalarType ct = ac && *ac == at::kBFloat16 ? at::kBFloat16 : compute_;
  return detail::FrozenLinearFn<Linear4bitWeight>::apply(x, reinterpret_cast<int64_t>(this), static_cast<int64_t>(ct));
}

std::optional<at::ScalarType> cpu_autocast_dtype() {
#if TORCH_VERSION_MAJOR >= 2
  if (!at::autocast::is_autocast_enabled(at::kCPU)) return std::nullopt;
  return at::autocast::get_autocast_dtype(at::kCPU);
#else
  if (!at::autocast::is_cpu_enabled()) return std::nullopt;
  return at::autocast::get_autocast_cpu_dtype();
#endif
}

}  // namespace peft::quant
