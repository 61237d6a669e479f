#pragma once
// Matrix products split by rows across LibTorch's intra-op threads: the one-pool thread policy of
// init_runtime on OpenBLAS builds (include/peft/core/runtime.h). Internal to the library; the
// implementation is in runtime.cpp, beside the policy.
#include <ATen/core/Tensor.h>

#include <cstdint>

namespace peft {

/// Whether an [M, K]·[K, N] product is large enough to split (products under 2^21 multiply-adds,
/// or under 32 rows, stay whole: a fork costs microseconds and OpenBLAS's packing grows as the
/// parts shrink).
bool gemm_rows_worth_splitting(int64_t M, int64_t N, int64_t K);

/// out = beta·out + alpha·(a·b) for CPU matrices a [M, K], b [K, N] (any strides) and out [M, N]
/// (rows of unit stride, say a column block of a larger matrix), outside autograd. When
/// gemm_rows_split(), LibTorch has several threads and the product is worth splitting, the rows
/// of out are split across the threads, one single-threaded GEMM each; otherwise one
/// at::mm_out / addmm_.
void mm_rows(at::Tensor& out, const at::Tensor& a, const at::Tensor& b, float beta = 0.0f, float alpha = 1.0f);

}  // namespace peft
