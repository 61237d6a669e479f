// The fused inference kernels (src/models/cpu_kernels.h) against the plain-ATen expressions they
// replace: the public block functions are called twice, once on inputs that require grad (which
// keeps them on the ATen path).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "../../src/models/cpu_kernels.h"
#include "golden.h"
#include "peft/models/blocks.h"
#include "peft/models/model.h"

namespace {

using peft::models::attend;
using peft::models::attention_bias;
using peft::test::close;

struct Case {
  int64_t B, H, KVH, T, past, prefix, D;
  bool causal, padded;
};

// Returns {fused, aten} outputs for one shape.
std::pair<at::Tensor, at::Tensor> both_paths(const Case& c, at::Tensor bias = {}) {
  torch::manual_seed(c.B * 1000 + c.T * 10 + c.D);
  const int64_t S = c.prefix + c.past + c.T;
  // q as the models make it: a [B, T, H, D] projection viewed as [B, H, T, D].
  const at::Tensor q = torch::randn({c.B, c.T, c.H, c.D}).transpose(1, 2);
  const at::Tensor k = torch::randn({c.B, c.KVH, S, c.D}), v = torch::randn({c.B, c.KVH, S, c.D});
  if (!bias.defined()) {
    at::Tensor mask;
    if (c.padded) {
      mask = torch::ones({c.B, c.past + c.T}, torch::kLong);
      mask[0].narrow(0, 0, std::min<int64_t>(3, c.past + c.T)).zero_();  // left padding
    }
    bias = attention_bias(mask, c.B, c.T, c.past, c.prefix, c.causal, at::kFloat, at::kCPU);
  }
  const double scale = 1.0 / std::sqrt(static_cast<double>(c.D));
  at::Tensor fused;
  {
    torch::NoGradGuard ng;
    fused = attend(q, k, v, bias, scale, 0.0, false);
  }
  const at::Tensor qg = q.detach().requires_grad_(true);
  peft::models::kernels::ScopedPlainAten plain;  // no fused training attention either
  const at::Tensor ref = attend(qg, k, v, bias, scale, 0.0, false).detach();
  return {fused, ref};
}

TEST(FusedAttention, MatchesAtenChainOverShapes) {
  const std::vector<Case> cases = {
      {4, 8, 4, 16, 0, 0, 8, true, true},     // stories260K-like: GQA, left padding
      {2, 12, 12, 9, 0, 0, 64, true, false},  // GPT-2 head size
      {2, 4, 2, 1, 7, 0, 16, true, true},     // one decoding step over a cache
      {2, 4, 4, 5, 3, 2, 32, true, true},     // prefix + cache + new
      {3, 2, 1, 6, 0, 0, 12, false, true},    // bidirectional with padding; generic head size
      {1, 2, 2, 7, 0, 0, 128, false, false},  // no bias at all
  };
  for (const auto& c : cases) {
    auto [fused, ref] = both_paths(c);
    SCOPED_TRACE("B=" + std::to_string(c.B) + " T=" + std::to_string(c.T) + " D=" + std::to_string(c.D));
    ASSERT_EQ(fused.sizes(), ref.sizes());
    EXPECT_TRUE(close(fused, ref, 2e-6, 1e-5));
    // The heads-last layout lets the models merge heads without a copy.
    EXPECT_TRUE(fused.transpose(1, 2).is_contiguous());
  }
}

TEST(FusedAttention, RowsThatAttendNowhereAreZero) {
  // Row 0 fully padded in a non-causal layer: both paths give zeros there.
  const Case c{2, 2, 2, 4, 0, 0, 8, false, false};
  const at::Tensor mask = torch::tensor({{0L, 0L, 0L, 0L}, {1L, 1L, 1L, 0L}});
  const at::Tensor bias = attention_bias(mask, 2, 4, 0, 0, false, at::kFloat, at::kCPU);
  auto [fused, ref] = both_paths(c, bias);
  EXPECT_EQ(fused[0].abs().max().item<float>(), 0.0f);
  EXPECT_TRUE(close(fused, ref, 2e-6, 1e-5));
}

TEST(FusedAttention, PerHeadBiasAsT5Builds) {
  // [B, H, T, S] additive bias (relative position bias + mask), moderate values.
  const Case c{2, 4, 4, 6, 0, 0, 8, false, false};
  torch::manual_seed(7);
  at::Tensor bias = torch::randn({2, 4, 6, 6}) * 3;
  bias.index_put_({0, torch::indexing::Slice(), torch::indexing::Slice(), 5}, std::numeric_limits<float>::lowest());
  auto [fused, ref] = both_paths(c, bias);
  EXPECT_TRUE(close(fused, ref, 2e-6, 1e-5));
}

TEST(FusedAttention, GradientsStillFlowThroughTheAtenPath) {
  const at::Tensor q = torch::randn({1, 2, 3, 8}, torch::requires_grad());
  const at::Tensor k = torch::randn({1, 2, 3, 8}), v = torch::randn({1, 2, 3, 8});
  const at::Tensor bias = attention_bias({}, 1, 3, 0, 0, true, at::kFloat, at::kCPU);
  attend(q, k, v, bias, 0.35, 0.0, false).sum().backward();
  ASSERT_TRUE(q.grad().defined());
  EXPECT_GT(q.grad().abs().sum().item<float>(), 0.0f);
}

TEST(FusedKernels, RmsNormMatchesAten) {
  for (const int64_t n : {64, 20, 288}) {  // whole 16-lane chunks, a tail only, both
    torch::manual_seed(n);
    const at::Tensor x = torch::randn({3, 5, n}) * 3, w = torch::randn({n});
    at::Tensor fused;
    {
      torch::NoGradGuard ng;
      fused = peft::models::rms_norm(x, w, 1e-5);
    }
    const at::Tensor ref = peft::models::rms_norm(x.detach().requires_grad_(true), w, 1e-5).detach();
    EXPECT_TRUE(close(fused, ref, 1e-6, 1e-6)) << "n=" << n;
  }
}

TEST(FusedKernels, SiluTimesUpMatchesAten) {
  torch::manual_seed(3);
  at::Tensor g = torch::randn({3, 343}) * 4;
  g[0][0] = 100.0f;   // e^-|g| underflows: silu(g) = g
  g[0][1] = -100.0f;  // silu(g) = -0
  g[0][2] = 0.0f;
  const at::Tensor u = torch::randn({3, 343});
  torch::NoGradGuard ng;
  ASSERT_TRUE(peft::models::kernels::elementwise_f32_applicable({&g, &u}));
  const at::Tensor fused = peft::models::kernels::silu_mul_f32(g, u);
  EXPECT_TRUE(close(fused, at::silu(g) * u, 1e-6, 1e-6));
}

TEST(FusedKernels, GeluTanhMatchesAten) {
  torch::manual_seed(5);
  at::Tensor x = torch::randn({5, 307}) * 3;
  x[0][0] = 30.0f;
  x[0][1] = -30.0f;
  x[0][2] = 1e-4f;
  x[0][3] = 0.0f;
  torch::NoGradGuard ng;
  const at::Tensor fused = peft::models::activation("gelu_new", x);
  EXPECT_TRUE(close(fused, at::gelu(x, "tanh"), 1e-6, 1e-6));
}

TEST(FusedKernels, RotaryMatchesAten) {
  torch::manual_seed(4);
  for (const int64_t D : {8, 16, 12}) {
    const at::Tensor x = torch::randn({2, 5, 3, D}).transpose(1, 2);  // [B, H, T, D] view, as the models make it
    const at::Tensor inv_freq =
        1.0 / at::pow(10000.0, at::arange(0, D, 2, at::kLong).to(at::kFloat) / static_cast<double>(D));
    const at::Tensor pos = torch::tensor({{0L, 1L, 2L, 3L, 4L}, {7L, 8L, 9L, 10L, 11L}});
    const auto tables = peft::models::rotary_tables(inv_freq, pos, at::kFloat);
    at::Tensor fused;
    {
      torch::NoGradGuard ng;
      fused = peft::models::apply_rotary(x, tables);
    }
    const at::Tensor ref = peft::models::apply_rotary(x.detach().requires_grad_(true), tables).detach();
    EXPECT_TRUE(close(fused, ref, 1e-6, 1e-6)) << "D=" << D;
    EXPECT_TRUE(fused.transpose(1, 2).is_contiguous());
  }
}

TEST(FusedKernels, ScopedPlainAtenTurnsThemOff) {
  const at::Tensor x = torch::randn({2, 16}), w = torch::ones({16});
  torch::NoGradGuard ng;
  EXPECT_TRUE(peft::models::kernels::elementwise_f32_applicable({&x, &w}));
  {
    peft::models::kernels::ScopedPlainAten plain;
    EXPECT_FALSE(peft::models::kernels::elementwise_f32_applicable({&x, &w}));
  }
  EXPECT_TRUE(peft::models::kernels::elementwise_f32_applicable({&x, &w}));
}

// The golden fixtures of every architecture (padded batches) through the fused path: the model
// tests run with autograd on (plain ATen path), so this repeats their forward under no-grad.
TEST(FusedKernels, EveryArchitectureMatchesTransformersWithPaddingMasks) {
  const std::vector<std::pair<const char*, const char*>> cases = {
      {"models/llama_causal", "logits"}, {"models/gpt2_causal", "logits"},
      {"models/bert_base", "last_hidden_state"}, {"models/t5_seq2seq", "logits"}};
  for (const auto& [name, key] : cases) {
    const auto c = peft::test::load_case(name);
    ASSERT_EQ(c["attention_mask"].min().item<int64_t>(), 0) << name << ": expected a padded batch";
    auto m = peft::models::load_model(c.dir);
    m->eval();
    peft::models::ModelInputs in;
    in.input_ids = c["input_ids"];
    in.attention_mask = c["attention_mask"];
    if (c.has("token_type_ids")) in.token_type_ids = c["token_type_ids"];
    if (m->is_encoder_decoder()) in.labels = c["labels"];
    torch::NoGradGuard ng;
    const auto out = m->forward(in);
    const at::Tensor got = std::string(key) == "logits" ? out.logits : out.last_hidden_state;
    const auto r = close(got, c[key], c.atol);
    std::cout << "[fused] " << name << " " << key << ": " << r.message() << "\n";
    EXPECT_TRUE(r) << name;
  }
}

}  // namespace
