#pragma once
// Checks shared by the encoder model tests (RoBERTa, DistilBERT) on their transformers fixtures.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdio>
#include <string>

#include "golden.h"
#include "peft/models/model.h"

namespace peft::test {

/// close() that also records the measured max |diff| as a test property (--gtest_output=xml).
inline ::testing::AssertionResult close_recorded(const at::Tensor& a, const at::Tensor& e, double atol) {
  auto r = close(a, e, atol);
  static int n = 0;
  ::testing::Test::RecordProperty("diff" + std::to_string(n++), r.message());
  return r;
}

/// Every parameter's gradient against the fixture's `grad.<name>` (relative to the tensor's
/// largest entry); exactly-zero gradients (attention key biases: softmax is shift invariant)
/// are checked absolutely. Every fixture gradient must belong to a parameter.
inline void expect_encoder_grads(models::PretrainedModel& m, const GoldenCase& c, const std::string& what) {
  int n = 0;
  double worst = 0;
  for (const auto& p : m.named_parameters()) {
    ASSERT_TRUE(c.has("grad." + p.key())) << what << " " << p.key();
    const at::Tensor& e = c["grad." + p.key()];
    ASSERT_TRUE(p.value().grad().defined()) << what << " " << p.key();
    EXPECT_TRUE(grad_close(p.value().grad(), e, c.grad_rtol)) << what << " " << p.key();
    ++n;
    const double diff = (p.value().grad() - e).abs().max().item<double>(), emax = e.abs().max().item<double>();
    if (emax < 1e-6) EXPECT_LT(diff, 1e-6) << what << " " << p.key();
    else worst = std::max(worst, diff / std::max(emax, 1e-3));
  }
  EXPECT_LE(worst, c.grad_rtol) << what;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", worst);
  ::testing::Test::RecordProperty("grad_max_rel_" + what, buf);
  std::printf("[ grads    ] %s: %d tensors, max |g - e| / max |e| = %s\n", what.c_str(), n, buf);
  int expected = 0;
  for (const auto& kv : c.t) expected += kv.first.rfind("grad.", 0) == 0;
  EXPECT_EQ(n, expected) << what;
}

/// The fixture's key/value prefix ("prefix_key.i" / "prefix_value.i") for `layers` layers.
inline std::vector<models::KeyValue> fixture_prefix(const GoldenCase& c, int layers) {
  std::vector<models::KeyValue> kv;
  for (int i = 0; i < layers; ++i)
    kv.push_back({c["prefix_key." + std::to_string(i)], c["prefix_value." + std::to_string(i)]});
  return kv;
}

}  // namespace peft::test
