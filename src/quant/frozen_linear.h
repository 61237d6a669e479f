#pragma once
// What every compressed frozen base weight shares (private to src/quant): tiles of rows
// dequantised into a reused per-thread buffer and multiplied by BLAS/oneDNN, for the forward
// x·Wᵀ and the input gradient g·W, and the autograd function around them (no weight gradient).
// Used by the 4-bit (bitsandbytes) and the ggml block-type (GGUF) weights.
#include <ATen/ATen.h>
#include <torch/autograd.h>

#include "../core/gemm_rows.h"

#include <algorithm>
#include <cstdint>

namespace peft::quant::detail {

// Rows per tile: at least 256 so each GEMM is wide enough to run at full speed (narrower tiles
// measured 3-4x slower for in = 3072), else ~2 MB of fp32.
inline int64_t tile_rows(int64_t out, int64_t in) {
  return std::min(out, std::max<int64_t>(256, 524288 / std::max<int64_t>(in, 1)));
}

// The dequantised tile: one buffer per thread, reused across calls (fresh multi-MB allocations
// are page-faulted in on every call here).
inline at::Tensor tile_buffer(int64_t rows, int64_t cols, at::ScalarType t) {
  thread_local at::Tensor buf;
  if (!buf.defined() || buf.numel() < rows * cols || buf.scalar_type() != t) buf = at::empty({rows * cols}, t);
  return buf.narrow(0, 0, rows * cols).view({rows, cols});
}

/// x2: [N, in] -> [N, out] = x2 · Wᵀ, with `dequant(r0, r1, tile)` filling rows [r0, r1) of W
/// into `tile` ([r1 - r0, in], x2's dtype).
template <typename Dequant>
at::Tensor tiled_matmul(int64_t out, int64_t in, const at::Tensor& x2, Dequant&& dequant) {
  const int64_t N = x2.size(0);
  at::Tensor y = at::empty({N, out}, x2.options());
  const int64_t R = tile_rows(out, in);
  at::Tensor buf = tile_buffer(R, in, x2.scalar_type());
  for (int64_t r0 = 0; r0 < out; r0 += R) {
    const int64_t r1 = std::min(out, r0 + R);
    at::Tensor tile = buf.narrow(0, 0, r1 - r0);
    dequant(r0, r1, tile);
    // Products split by rows across LibTorch's threads where OpenBLAS is held to one
    // (peft::gemm_rows_split, see init_runtime).
    if (R >= out) {
      peft::mm_rows(y, x2, tile.t());
    } else {
      at::Tensor cols = y.narrow(1, r0, r1 - r0);
      peft::mm_rows(cols, x2, tile.t());
    }
  }
  return y;
}

/// g2: [N, out] -> [N, in] = g2 · W, tile by tile as tiled_matmul.
template <typename Dequant>
at::Tensor tiled_matmul_t(int64_t out, int64_t in, const at::Tensor& g2, Dequant&& dequant) {
  const int64_t N = g2.size(0);
  at::Tensor gx = at::empty({N, in}, g2.options());
  const int64_t R = tile_rows(out, in);
  at::Tensor buf = tile_buffer(R, in, g2.scalar_type());
  for (int64_t r0 = 0; r0 < out; r0 += R) {
    const int64_t r1 = std::min(out, r0 + R);
    at::Tensor tile = buf.narrow(0, 0, r1 - r0);
    dequant(r0, r1, tile);
    const at::Tensor gs = g2.narrow(1, r0, r1 - r0);
    peft::mm_rows(gx, gs, tile, r0 == 0 ? 0.0f : 1.0f);
  }
  return gx;
}

/// y = x·Wᵀ for a frozen weight W of class `W` (which has matmul and matmul_t), computed in the
/// dtype `compute` (an at::ScalarType; the backward uses the same); backward gives the input
/// gradient only. Mirrors bitsandbytes' MatMul4Bit.
template <typename W>
struct FrozenLinearFn : public torch::autograd::Function<FrozenLinearFn<W>> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, int64_t self, int64_t compute) {
    const auto* w = reinterpret_cast<const W*>(self);
    const auto ct = static_cast<at::ScalarType>(compute);
    ctx->saved_data["w"] = self;
    ctx->saved_data["dtype"] = static_cast<int64_t>(x.scalar_type());
    ctx->saved_data["compute"] = compute;
    auto sizes = x.sizes().vec();
    const int64_t in = sizes.back();
    at::Tensor x2 = x.reshape({-1, in}).to(ct).contiguous();
    at::Tensor y = w->matmul(x2);
    sizes.back() = y.size(1);
    return y.view(sizes).to(x.scalar_type());
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list g) {
    const auto* w = reinterpret_cast<const W*>(ctx->saved_data["w"].toInt());
    const auto dt = static_cast<at::ScalarType>(ctx->saved_data["dtype"].toInt());
    const auto ct = static_cast<at::ScalarType>(ctx->saved_data["compute"].toInt());
    auto sizes = g[0].sizes().vec();
    at::Tensor g2 = g[0].reshape({-1, sizes.back()}).to(ct).contiguous();
    at::Tensor gx = w->matmul_t(g2);
    sizes.back() = gx.size(1);
    return {gx.view(sizes).to(dt), at::Tensor(), at::Tensor()};
  }
};

}  // namespace peft::quant::detail
