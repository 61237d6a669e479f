// Built with -O3 -fno-math-errno (cmake/sources.cmake) so the loops vectorise, sqrt included.
#include "adamw_kernel.h"

#include <cmath>

namespace peft::train::detail {

void adamw_update(float* __restrict p, const float* __restrict g, float* __restrict m, float* __restrict v,
                  int64_t begin, int64_t end, const AdamWStep& s) {
  const float decay = s.decay, b1 = s.beta1, c1 = s.one_minus_beta1, b2 = s.beta2, c2 = s.one_minus_beta2;
  const float sbc2 = s.sqrt_bias_correction2, eps = s.eps, step = s.neg_step_size;
  for (int64_t j = begin; j < end; ++j) {
    const float gj = g[j];
    const float mj = b1 * m[j] + c1 * gj;
    const float vj = b2 * v[j] + c2 * gj * gj;
    const float den = std::sqrt(vj) / sbc2 + eps;
    p[j] = p[j] * decay + step * (mj / den);
    m[j] = mj;
    v[j] = vj;
  }
}

double sum_of_squares(const float* __restrict g, int64_t begin, int64_t end) {
  double acc[4] = {0, 0, 0, 0};
  int64_t j = begin;
  for (; j + 4 <= end; j += 4)
    for (int k = 0; k < 4; ++k) acc[k] += static_cast<double>(g[j + k]) * g[j + k];
  for (; j < end; ++j) acc[0] += static_cast<double>(g[j]) * g[j];
  return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

void scale_in_place(float* __restrict g, int64_t begin, int64_t end, float scale) {
  for (int64_t j = begin; j < end; ++j) g[j] *= scale;
}

}  // namespace peft::train::detail
