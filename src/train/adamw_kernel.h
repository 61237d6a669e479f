#pragma once
// The fused AdamW update and the gradient sum of squares on fp32 arrays (torch-free; optim.cpp
// splits the work over LibTorch's threads and keeps the optimizer state in LibTorch's AdamW layout).
#include <cstdint>

namespace peft::train::detail {

/// The scalars of one AdamW step of one parameter, as torch::optim::AdamW computes them.
struct AdamWStep {
  float decay = 1;        ///< 1 - lr * weight_decay (1: no decay)
  float beta1 = 0.9f, one_minus_beta1 = 0.1f;
  float beta2 = 0.999f, one_minus_beta2 = 0.001f;
  float sqrt_bias_correction2 = 1;  ///< sqrt(1 - beta2^step)
  float eps = 1e-8f;
  float neg_step_size = 0;          ///< -lr / (1 - beta1^step)
};

/// Elements [begin, end) in place, one pass:
///   p *= decay; m = beta1·m + (1 - beta1)·g; v = beta2·v + (1 - beta2)·g·g;
///   p += neg_step_size · m / (sqrt(v) / sqrt_bias_correction2 + eps)
void adamw_update(float* p, const float* g, float* m, float* v, int64_t begin, int64_t end, const AdamWStep& s);

/// Σ g² over [begin, end), accumulated in double.
double sum_of_squares(const float* g, int64_t begin, int64_t end);

/// g *= scale over [begin, end).
void scale_in_place(float* g, int64_t begin, int64_t end, float scale);

}  // namespace peft::train::detail
