// The fused kernels (src/models/cpu_kernels.h) against the plain-ATen expressions they replace.
// Inference: the public block functions are called twice, once under no-grad (fused) and once on
// inputs that require grad (ATen before the training kernels; now under ScopedPlainAten).
// Training: outputs and gradients of the fused autograd Functions against ATen's autograd
// (ScopedPlainAten), op by op and over whole LoRA / full fine-tuning steps.
#include <gtest/gtest.h>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <torch/torch.h>

#include "../../src/core/gemm_rows.h"
#include "../../src/models/cpu_kernels.h"
#include "golden.h"
#include "peft/core/json_file.h"
#include "peft/core/runtime.h"
#include "peft/models/blocks.h"
#include "peft/models/model.h"
#include "peft/peft_model.h"

namespace {

using peft::models::attend;
using peft::models::attention_bias;
using peft::test::close;
namespace fs = std::filesystem;

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
    at::Tensor ref;
    {
      peft::models::kernels::ScopedPlainAten plain;
      ref = peft::models::rms_norm(x.detach().requires_grad_(true), w, 1e-5).detach();
    }
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

// Random values with the tails and the points near zero where tanh GELU's formula is delicate.
at::Tensor gelu_probe_input() {
  torch::manual_seed(5);
  at::Tensor x = torch::randn({5, 307}) * 3;
  x[0][0] = 30.0f;
  x[0][1] = -30.0f;
  x[0][2] = 1e-4f;
  x[0][3] = 0.0f;
  return x;
}

TEST(FusedKernels, GeluTanhMatchesAten) {
  const at::Tensor x = gelu_probe_input();
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
    at::Tensor ref;
    {
      peft::models::kernels::ScopedPlainAten plain;
      ref = peft::models::apply_rotary(x.detach().requires_grad_(true), tables).detach();
    }
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

// ---- training: the fused autograd Functions against ATen's autograd ----

constexpr double kTol = 1e-5;

// Runs f on fresh leaf copies of `inputs` (requires_grad as flagged; f takes views of them to
// test strided inputs), backpropagates a fixed random upstream gradient, and returns the output
// and the leaves' gradients (undefined when not flagged); `fused` false runs under ScopedPlainAten.
struct Run {
  at::Tensor out;
  std::vector<at::Tensor> grads;
  std::string node;  // name of the output's grad_fn (and of the node after it)
};
Run run_op(const std::function<at::Tensor(const std::vector<at::Tensor>&)>& f, const std::vector<at::Tensor>& inputs,
           const std::vector<bool>& trainable, bool fused) {
  std::vector<at::Tensor> leaves;
  for (std::size_t i = 0; i < inputs.size(); ++i)
    leaves.push_back(inputs[i].detach().clone().requires_grad_(trainable[i]));
  std::unique_ptr<peft::models::kernels::ScopedPlainAten> plain;
  if (!fused) plain = std::make_unique<peft::models::kernels::ScopedPlainAten>();
  Run r;
  at::Tensor y = f(leaves);
  // The output's grad_fn and, through a layout op (rotary's permute), the one it leads to.
  if (const auto fn = y.grad_fn()) {
    r.node = fn->name();
    if (fn->num_outputs() > 0 && fn->next_edge(0).function) r.node += " <- " + fn->next_edge(0).function->name();
  }
  torch::manual_seed(99);
  const at::Tensor dy = torch::randn(y.sizes());
  y.backward(dy);
  r.out = y.detach();
  for (auto& l : leaves) r.grads.push_back(l.grad());
  return r;
}

// Both paths; expects the fused one to run `node` and to agree within kTol.
void expect_same(const std::function<at::Tensor(const std::vector<at::Tensor>&)>& f,
                 const std::vector<at::Tensor>& inputs, const std::vector<bool>& trainable, const std::string& node,
                 const std::string& what) {
  SCOPED_TRACE(what);
  const Run fused = run_op(f, inputs, trainable, true), ref = run_op(f, inputs, trainable, false);
  EXPECT_NE(fused.node.find(node), std::string::npos) << fused.node;
  EXPECT_EQ(ref.node.find(node), std::string::npos) << ref.node;
  EXPECT_TRUE(close(fused.out, ref.out, kTol, kTol));
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    ASSERT_EQ(fused.grads[i].defined(), ref.grads[i].defined()) << "input " << i;
    if (ref.grads[i].defined()) EXPECT_TRUE(close(fused.grads[i], ref.grads[i], kTol, kTol)) << "gradient " << i;
  }
}

TEST(FusedTraining, RmsNormForwardAndGradients) {
  for (const int64_t n : {64, 20, 37, 288}) {
    torch::manual_seed(n);
    const at::Tensor x = torch::randn({3, 5, n}) * 3, w = torch::randn({n});
    // Rows that are not contiguous with each other (a narrowed last dimension).
    const at::Tensor xs = torch::randn({2, 7, n + 5});
    // More rows than one block of the weight-gradient sum, with a partial last block.
    const at::Tensor big = torch::randn({3, 67, n});
    for (const bool train_w : {false, true}) {
      const std::string tag = "n=" + std::to_string(n) + (train_w ? " trainable weight" : " frozen weight");
      auto llama = [](const std::vector<at::Tensor>& t) { return peft::models::rms_norm(t[0], t[1], 1e-5); };
      auto gemma = [](const std::vector<at::Tensor>& t) { return peft::models::gemma_rms_norm(t[0], t[1], 1e-6); };
      auto strided = [n](const std::vector<at::Tensor>& t) {
        return peft::models::rms_norm(t[0].narrow(-1, 2, n), t[1], 1e-5);
      };
      expect_same(llama, {x, w}, {true, train_w}, "RmsNormFn", "llama " + tag);
      expect_same(strided, {xs, w}, {true, train_w}, "RmsNormFn", "llama strided " + tag);
      expect_same(llama, {big, w}, {true, train_w}, "RmsNormFn", "llama 201 rows " + tag);
      expect_same(gemma, {x, w * 0.1}, {true, train_w}, "RmsNormFn", "gemma " + tag);
    }
    // Full fine-tuning of the first norm: the input (embeddings) frozen, the weight trained.
    expect_same([](const std::vector<at::Tensor>& t) { return peft::models::rms_norm(t[0], t[1], 1e-6); }, {big, w},
                {false, true}, "RmsNormFn", "frozen input n=" + std::to_string(n));
  }
}

TEST(FusedTraining, SiluTimesUpForwardAndGradients) {
  torch::manual_seed(3);
  at::Tensor g = torch::randn({2, 3, 343}) * 4;
  g[0][0][0] = 100.0f;
  g[0][0][1] = -100.0f;
  g[0][0][2] = 0.0f;
  const at::Tensor u = torch::randn({2, 3, 343});
  auto f = [](const std::vector<at::Tensor>& t) { return peft::models::silu_mul(t[0], t[1]); };
  expect_same(f, {g, u}, {true, true}, "SiluMulFn", "both trainable");
  expect_same(f, {g, u}, {false, true}, "SiluMulFn", "gate frozen");
  // Halves of one projection (Phi-3's gate_up layout): strided inputs.
  auto halves = [](const std::vector<at::Tensor>& t) {
    return peft::models::silu_mul(t[0].narrow(-1, 0, 77), t[0].narrow(-1, 77, 77));
  };
  expect_same(halves, {torch::randn({2, 5, 2 * 77}) * 3}, {true}, "SiluMulFn", "strided halves");
}

TEST(FusedTraining, GeluTanhForwardAndGradients) {
  const at::Tensor x = gelu_probe_input();
  for (const char* name : {"gelu_new", "gelu_pytorch_tanh"}) {
    auto f = [name](const std::vector<at::Tensor>& t) { return peft::models::activation(name, t[0]); };
    auto strided = [name](const std::vector<at::Tensor>& t) { return peft::models::activation(name, t[0].transpose(0, 1)); };
    expect_same(f, {x}, {true}, "GeluTanhFn", name);
    expect_same(strided, {torch::randn({4, 9, 41})}, {true}, "GeluTanhFn", std::string(name) + " strided");
  }
}

TEST(FusedTraining, GeluTanhOnBf16IsTheRoundedExactValue) {
  // Autocast training: bf16 in, fp32 inside, rounded once. Against the tanh GELU and its
  // derivative in double precision on the same bf16 values, rounded to bf16: equal but for the
  // rare value whose fp32 result straddles a rounding boundary (one bf16 step). (LibTorch 1.13's
  // own bf16 GELU rounds intermediate results and is off by several steps on many values.)
  const at::Tensor x = gelu_probe_input().to(at::kBFloat16);
  torch::manual_seed(12);
  const at::Tensor dy = torch::randn(x.sizes()).to(at::kBFloat16);
  const at::Tensor xd = x.to(at::kDouble), dyd = dy.to(at::kDouble);
  const double beta = std::sqrt(2.0 / M_PI), kappa = 0.044715;
  const at::Tensor t = at::tanh(beta * (xd + kappa * xd * xd * xd));
  const at::Tensor want_y = (0.5 * xd * (1 + t)).to(at::kBFloat16).to(at::kDouble);
  const at::Tensor want_dx =
      (dyd * (0.5 * (1 + t) + 0.5 * xd * (1 - t * t) * beta * (1 + 3 * kappa * xd * xd))).to(at::kBFloat16).to(at::kDouble);
  for (const char* name : {"gelu_new", "gelu_pytorch_tanh"}) {
    const at::Tensor leaf = x.detach().clone().requires_grad_(true);
    const at::Tensor y = peft::models::activation(name, leaf);
    ASSERT_TRUE(y.grad_fn()) << name;
    EXPECT_NE(y.grad_fn()->name().find("GeluTanhBf16Fn"), std::string::npos) << y.grad_fn()->name();
    y.backward(dy);
    ASSERT_EQ(y.scalar_type(), at::kBFloat16);
    ASSERT_EQ(leaf.grad().scalar_type(), at::kBFloat16);
    for (const bool grad : {false, true}) {
      const at::Tensor got = (grad ? leaf.grad() : y.detach()).to(at::kDouble), want = grad ? want_dx : want_y;
      const std::string what = std::string(name) + (grad ? " gradient" : " output");
      // Within a bf16 step of the value, or of the largest value (the derivative's zero crossing
      // cancels terms in fp32).
      const double step = 1.0 / 128, floor = step * want.abs().max().item<double>() / 64;
      EXPECT_TRUE(at::allclose(got, want, step, floor)) << what << ": max |diff| " << (got - want).abs().max().item<double>();
      EXPECT_GE(got.eq(want).to(at::kDouble).mean().item<double>(), 0.9) << what;
    }
  }
}

TEST(FusedTraining, CrossEntropyLossesAndGradients) {
  torch::manual_seed(6);
  for (const int64_t V : {301, 16, 7}) {
    at::Tensor logits = torch::randn({3, 9, V}) * 4;
    logits[0][1][0] = 60.0f;  // a confident row and a very unlikely target
    logits[1][2][3 % V] = -60.0f;
    at::Tensor labels = torch::randint(0, V, {3, 9}, at::kLong);
    labels[0][2] = -100;  // ignored positions
    labels[2][5] = -100;
    labels[1][3] = 3 % V;
    const std::string tag = "V=" + std::to_string(V);
    auto causal = [labels](const std::vector<at::Tensor>& t) { return peft::models::causal_lm_loss(t[0], labels); };
    auto tokens = [labels](const std::vector<at::Tensor>& t) { return peft::models::token_loss(t[0], labels); };
    // Rows that are not contiguous with each other (a narrowed vocabulary dimension).
    auto strided = [labels, V](const std::vector<at::Tensor>& t) {
      return peft::models::causal_lm_loss(t[0].narrow(-1, 1, V), labels);
    };
    expect_same(causal, {logits}, {true}, "CrossEntropyFn", "causal " + tag);
    expect_same(tokens, {logits}, {true}, "CrossEntropyFn", "tokens " + tag);
    expect_same(strided, {torch::randn({3, 9, V + 3})}, {true}, "CrossEntropyFn", "strided " + tag);
    // bf16 logits (autocast): the loss in fp32 from the same values, the gradient rounded once.
    expect_same(causal, {logits.to(at::kBFloat16)}, {true}, "CrossEntropyFn", "bf16 " + tag);
  }
  // Every position ignored: NaN, as ATen's mean over no targets.
  const at::Tensor none = at::full({2, 4}, -100, at::kLong);
  at::Tensor l = torch::randn({2, 4, 5}).requires_grad_(true);
  EXPECT_TRUE(std::isnan(peft::models::token_loss(l, none).item<double>()));
  // A NaN logit in a counted row gives a NaN loss (a diverged run must show).
  at::Tensor bad = torch::randn({1, 3, 40});
  bad[0][1][17] = std::nanf("");
  EXPECT_TRUE(std::isnan(peft::models::token_loss(bad, torch::tensor({{1L, 2L, 3L}})).item<double>()));
  EXPECT_FALSE(std::isnan(peft::models::token_loss(bad, torch::tensor({{1L, -100L, 3L}})).item<double>()));
  // A target outside the vocabulary is named.
  EXPECT_THROW(peft::models::token_loss(torch::randn({1, 2, 5}), torch::tensor({{1L, 5L}})), std::invalid_argument);
}

// The loss from hidden states (no [B, T, V] logits) against at::linear + causal_lm_loss on plain
// ATen: the loss and the gradients of h, W and b, for each combination of what is trained.
TEST(FusedTraining, LinearCrossEntropyFromHiddenStates) {
  torch::manual_seed(8);
  for (const int64_t V : {301, 16}) {
    const at::Tensor h = torch::randn({3, 9, 24}), w = torch::randn({V, 24}) * 0.5, b = torch::randn({V});
    at::Tensor labels = torch::randint(0, V, {3, 9}, at::kLong);
    labels[0][2] = -100;  // ignored positions inside a sequence: the counted rows are gathered
    labels[2][5] = -100;
    const at::Tensor dense = torch::randint(0, V, {3, 9}, at::kLong);  // every row counted but the last
    for (const bool bias : {false, true})
      for (const auto& lab : {labels, dense})
        for (const std::vector<bool>& train : std::vector<std::vector<bool>>{{true, false, false}, {true, true, true},
                                                                             {false, true, true}}) {
          const std::string tag = "V=" + std::to_string(V) + (bias ? " bias" : "") +
                                  (lab.equal(labels) ? " gaps" : " dense") + " train h/w/b=" +
                                  std::to_string(train[0]) + std::to_string(train[1]) + std::to_string(train[2]);
          SCOPED_TRACE(tag);
          auto fused = [&](const std::vector<at::Tensor>& t) {
            const at::Tensor l = peft::models::causal_lm_loss_from_hidden(t[0], t[1], bias ? t[2] : at::Tensor(), lab);
            EXPECT_TRUE(l.defined());
            return l;
          };
          auto ref = [&](const std::vector<at::Tensor>& t) {
            return peft::models::causal_lm_loss(at::linear(t[0], t[1], bias ? c10::optional<at::Tensor>(t[2]) : c10::nullopt), lab);
          };
          const auto a = run_op(fused, {h, w, b}, train, true);
          const auto r = run_op(ref, {h, w, b}, train, false);
          EXPECT_NE(a.node.find("LinearCrossEntropyFn"), std::string::npos) << a.node;
          EXPECT_TRUE(close(a.out, r.out, kTol, kTol)) << a.out.item<double>() << " vs " << r.out.item<double>();
          for (std::size_t i = 0; i < 3; ++i) {
            if (i == 2 && !bias) continue;
            ASSERT_EQ(a.grads[i].defined(), r.grads[i].defined()) << "input " << i;
            if (r.grads[i].defined()) EXPECT_TRUE(close(a.grads[i], r.grads[i], kTol, kTol)) << "gradient " << i;
          }
        }
  }
  namespace k = peft::models::kernels;
  // Chunks of 1, 4 and 5 rows (the last one partial) give the one-chunk result.
  const at::Tensor h = torch::randn({14, 10}), w = torch::randn({33, 10}), b = torch::randn({33});
  at::Tensor t = torch::randint(0, 33, {14}, at::kLong);
  t[3] = -100;
  const auto one = k::linear_cross_entropy(h, w, b, t, true, true, true, 14);
  EXPECT_EQ(one.count, 13);
  for (const int64_t chunk : {1, 4, 5}) {
    const auto c = k::linear_cross_entropy(h, w, b, t, true, true, true, chunk);
    // The same rows; the logits may round differently (MKL's GEMM blocks by the row count).
    EXPECT_NEAR(c.sum, one.sum, 1e-6 * one.sum) << chunk;
    EXPECT_TRUE(close(c.dh, one.dh, kTol, kTol)) << chunk;
    EXPECT_TRUE(close(c.dw, one.dw, kTol, kTol)) << chunk;
    EXPECT_TRUE(close(c.db, one.db, kTol, kTol)) << chunk;
  }
  EXPECT_EQ(one.dh[3].abs().sum().item<double>(), 0.0);  // an ignored row gets no gradient
  // Every position ignored: NaN, as causal_lm_loss; a target outside the vocabulary is named.
  EXPECT_TRUE(std::isnan(peft::models::causal_lm_loss_from_hidden(torch::randn({2, 4, 10}), w, {},
                                                                  at::full({2, 4}, -100, at::kLong)).item<double>()));
  EXPECT_THROW(peft::models::causal_lm_loss_from_hidden(torch::randn({1, 3, 10}), w, {}, torch::tensor({{1L, 2L, 33L}})),
               std::invalid_argument);
  // Not applicable (the caller computes logits): bf16, a strided weight, fused kernels off.
  EXPECT_FALSE(peft::models::causal_lm_loss_from_hidden(torch::randn({1, 3, 10}).to(at::kBFloat16),
                                                        w.to(at::kBFloat16), {}, torch::tensor({{1L, 2L, 3L}})).defined());
  EXPECT_FALSE(peft::models::causal_lm_loss_from_hidden(torch::randn({1, 3, 10}), torch::randn({10, 33}).t(), {},
                                                        torch::tensor({{1L, 2L, 3L}})).defined());
  k::ScopedPlainAten plain;
  EXPECT_FALSE(peft::models::causal_lm_loss_from_hidden(torch::randn({1, 3, 10}), w, {}, torch::tensor({{1L, 2L, 3L}})).defined());
}

TEST(FusedTraining, RotaryForwardAndGradients) {
  torch::manual_seed(4);
  for (const int64_t D : {8, 12, 16, 34}) {
    const at::Tensor inv_freq =
        1.0 / at::pow(10000.0, at::arange(0, D, 2, at::kLong).to(at::kFloat) / static_cast<double>(D));
    const at::Tensor pos = torch::tensor({{0L, 1L, 2L, 3L, 4L}, {7L, 8L, 9L, 10L, 11L}});
    const auto per_row = peft::models::rotary_tables(inv_freq, pos, at::kFloat, 0.9);
    const auto shared = peft::models::rotary_tables(inv_freq, pos.narrow(0, 0, 1), at::kFloat);
    for (const auto* tables : {&per_row, &shared}) {
      auto f = [tables](const std::vector<at::Tensor>& t) {
        return peft::models::apply_rotary(t[0].transpose(1, 2), *tables);
      };
      const std::string tag = "D=" + std::to_string(D) + (tables == &shared ? " shared tables" : "");
      // x as the models make it: [B, T, H, D] storage viewed as [B, H, T, D].
      expect_same(f, {torch::randn({2, 5, 3, D})}, {true}, "RotaryFn", tag);
      // A contiguous [B, H, T, D] input.
      auto heads_first = [tables](const std::vector<at::Tensor>& t) { return peft::models::apply_rotary(t[0], *tables); };
      expect_same(heads_first, {torch::randn({2, 3, 5, D})}, {true}, "RotaryFn", tag + " heads-first storage");
    }
  }
  // The gradient reaches the projection in its own [B, T, H, D] layout, without a copy.
  const at::Tensor inv_freq = 1.0 / at::pow(10000.0, at::arange(0, 8, 2, at::kLong).to(at::kFloat) / 8.0);
  const auto tables = peft::models::rotary_tables(inv_freq, torch::arange(5).view({1, 5}), at::kFloat);
  const at::Tensor base = torch::randn({2, 5, 3, 8}, torch::requires_grad());
  const at::Tensor q = peft::models::apply_rotary(base.transpose(1, 2), tables);
  EXPECT_TRUE(q.transpose(1, 2).is_contiguous());
  at::matmul(q, q.transpose(2, 3)).sum().backward();
  EXPECT_TRUE(base.grad().is_contiguous());
}

TEST(FusedTraining, PlainAtenWhenNothingNeedsAGradient) {
  const at::Tensor x = torch::randn({2, 16}), w = torch::ones({16});
  EXPECT_FALSE(peft::models::kernels::elementwise_f32_trainable({&x, &w}));
  const at::Tensor wt = w.clone().requires_grad_(true);
  EXPECT_TRUE(peft::models::kernels::elementwise_f32_trainable({&x, &wt}));
  {
    torch::NoGradGuard ng;
    EXPECT_FALSE(peft::models::kernels::elementwise_f32_trainable({&x, &wt}));
  }
  const at::Tensor xd = torch::randn({2, 16}, torch::kDouble).requires_grad_(true);
  EXPECT_FALSE(peft::models::kernels::elementwise_f32_trainable({&xd, &wt}));
  peft::models::kernels::ScopedPlainAten plain;
  EXPECT_FALSE(peft::models::kernels::elementwise_f32_trainable({&x, &wt}));
}

// One training step (loss, backward) with fused kernels and under ScopedPlainAten: the loss and
// every trainable gradient agree within kTol.
struct Step {
  double loss;
  std::vector<std::pair<std::string, at::Tensor>> grads;
};
template <class Model>
Step train_step(Model& m, const peft::models::ModelInputs& in, const std::vector<std::pair<std::string, at::Tensor>>& params,
                bool fused) {
  std::unique_ptr<peft::models::kernels::ScopedPlainAten> plain;
  if (!fused) plain = std::make_unique<peft::models::kernels::ScopedPlainAten>();
  for (auto& [n, p] : params)
    if (p.grad().defined()) p.mutable_grad().zero_();
  torch::manual_seed(0);
  at::Tensor loss = m.forward(in).loss;
  loss.backward();
  Step s{loss.item<double>(), {}};
  for (auto& [n, p] : params) s.grads.emplace_back(n, p.grad().clone());
  return s;
}

void expect_same_step(const Step& fused, const Step& ref, const std::string& what) {
  EXPECT_NEAR(fused.loss, ref.loss, kTol) << what;
  ASSERT_EQ(fused.grads.size(), ref.grads.size());
  ASSERT_FALSE(ref.grads.empty()) << what;
  for (std::size_t i = 0; i < ref.grads.size(); ++i)
    EXPECT_TRUE(close(fused.grads[i].second, ref.grads[i].second, kTol, kTol)) << what << " " << ref.grads[i].first;
}

TEST(FusedTraining, LoraStepMatchesPlainAten) {
  // Llama (all linear layers adapted, SwiGLU), Qwen3 (q/k norms), Gemma 2/3 ((1 + w) norms,
  // tanh GELU), GPT-2 (gelu_new); checkpointing on and off.
  for (const char* name : {"llama_all_linear", "qwen3_default", "gemma2_default", "gemma3_default", "gpt2_default"}) {
    const auto g = peft::test::load_case(std::string("lora/") + name);
    std::string base = peft::test::fixture(g.meta["base"].get<std::string>());
    const auto in = peft::test::inputs_of(g);
    if (std::string(name) == "gpt2_default") {
      // GPT-2's dropout draws other masks in the fused pass than at::dropout: first check that the
      // fused masks repeat under checkpointing, then compare the kernels with dropout off.
      auto pm = peft::PeftModel::from_pretrained(peft::models::load_model(base), g.dir, "default", true);
      pm->base_model().train();
      const auto params = pm->named_trainable_parameters();
      const Step plain_graph = train_step(*pm, in, params, true);
      pm->base_model().set_gradient_checkpointing(true);
      expect_same_step(train_step(*pm, in, params, true), plain_graph, "gpt2 dropout checkpointed");
      const std::string dir = peft::test::tmp_dir("gpt2_no_dropout");
      for (const auto& f : fs::directory_iterator(base))
        fs::copy_file(f.path(), dir + "/" + f.path().filename().string(), fs::copy_options::overwrite_existing);
      auto cfg = peft::read_json_file(dir + "/config.json");
      for (const char* k : {"resid_pdrop", "embd_pdrop", "attn_pdrop"}) cfg[k] = 0.0;
      std::ofstream(dir + "/config.json") << cfg.dump();
      base = dir;
    }
    auto pm = peft::PeftModel::from_pretrained(peft::models::load_model(base), g.dir, "default", true);
    auto& m = pm->base_model();
    m.train();
    const auto params = pm->named_trainable_parameters();
    for (const bool ckpt : {false, true}) {
      m.set_gradient_checkpointing(ckpt);
      const std::string what = std::string(name) + (ckpt ? " checkpointed" : "");
      const Step fused = train_step(*pm, in, params, true), ref = train_step(*pm, in, params, false);
      expect_same_step(fused, ref, what);
      // The trainer's forward: the loss from the hidden states, no logits (Gemma 2/3's soft-capped
      // logits excepted: the fixtures set final_logit_softcapping).
      auto loss_only = in;
      loss_only.loss_only = true;
      expect_same_step(train_step(*pm, loss_only, params, true), ref, what + " loss_only");
      const bool softcapped = std::string(name).rfind("gemma", 0) == 0;
      EXPECT_EQ(pm->forward(loss_only).logits.defined(), softcapped) << what;
    }
  }
}

TEST(FusedTraining, FullFineTuningStepMatchesPlainAten) {
  // Every weight trainable: the norm weights get their gradients from the fused backward.
  for (const char* name : {"models/llama_causal", "models/gemma_causal"}) {
    const auto c = peft::test::load_case(name);
    auto m = peft::models::load_model(c.dir);
    m->train();
    std::vector<std::pair<std::string, at::Tensor>> params;
    for (auto& p : m->named_parameters()) {
      p.value().requires_grad_(true);
      params.emplace_back(p.key(), p.value());
    }
    peft::models::ModelInputs in;
    in.input_ids = c["input_ids"];
    in.attention_mask = c["attention_mask"];
    in.labels = c["labels"];
    const Step fused = train_step(*m, in, params, true), ref = train_step(*m, in, params, false);
    expect_same_step(fused, ref, name);
    // The loss from the hidden states: the output projection's (or tied embedding's) gradient
    // made in the forward.
    in.loss_only = true;
    expect_same_step(train_step(*m, in, params, true), ref, std::string(name) + " loss_only");
    EXPECT_FALSE(m->forward(in).logits.defined()) << name;
  }
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

// The fused dropout: the kept fraction is 1 - p, kept values are x times at::dropout's mask
// value in the tensor's dtype, the backward is the same mask, the mask repeats under the same
// seed whatever the number of threads, and PEFT_FUSED_KERNELS' plain path is at::dropout.
TEST(CpuKernels, ParallelLoopsUseLibTorchsThreads) {
  // The kernels' at::parallel_for only forks where the library is compiled with OpenMP.
  const int before = at::get_num_threads();
  at::set_num_threads(2);
  EXPECT_EQ(peft::models::kernels::parallel_for_threads(64), 2);
  at::set_num_threads(1);
  EXPECT_EQ(peft::models::kernels::parallel_for_threads(64), 1);
  at::set_num_threads(before);
}

// Products split by rows (the one-pool thread policy of OpenBLAS builds) against ATen's whole
// products: equal to float rounding, forward and gradients, both weight layouts.
TEST(CpuKernels, ProductsSplitByRowsMatchAten) {
  namespace k = peft::models::kernels;
  const int threads = at::get_num_threads();
  const bool split = peft::gemm_rows_split();
  at::set_num_threads(2);
  peft::set_gemm_rows_split(true);
  torch::manual_seed(21);
  {
    torch::NoGradGuard ng;
    const at::Tensor a = torch::randn({203, 96}), b = torch::randn({150, 96});
    at::Tensor out = torch::randn({203, 150});
    const at::Tensor want = at::addmm(out, a, b.t(), 0.5, 2.0);
    peft::mm_rows(out, a, b.t(), 0.5f, 2.0f);
    EXPECT_TRUE(close(out, want, 1e-5, 1e-5));
    at::Tensor fresh = at::empty({150, 203});
    peft::mm_rows(fresh, b, a.t());
    EXPECT_TRUE(close(fresh, at::mm(b, a.t()), 1e-5, 1e-5));
  }
  for (const bool w_in_out : {false, true}) {
    SCOPED_TRACE(w_in_out ? "weight [in, out]" : "weight [out, in]");
    const at::Tensor x0 = torch::randn({3, 90, 96}), w0 = torch::randn({128, 96}) * 0.1, b0 = torch::randn({128});
    auto run = [&](bool fused, bool train_w) {
      const at::Tensor x = x0.clone().requires_grad_(true);
      const at::Tensor w = (w_in_out ? w0.t().contiguous() : w0.clone()).requires_grad_(train_w);
      const at::Tensor b = b0.clone().requires_grad_(train_w);
      at::Tensor y;
      if (fused) {
        EXPECT_TRUE(k::linear_rows_applicable(x, w, b));
        y = k::linear_rows(x, w, b, w_in_out);
      } else {
        y = w_in_out ? at::addmm(b, x.reshape({-1, 96}), w).view({3, 90, 128}) : at::linear(x, w, b);
      }
      (y * y).sum().backward();
      return std::vector<at::Tensor>{y.detach(), x.grad(), train_w ? w.grad() : at::Tensor(),
                                     train_w ? b.grad() : at::Tensor()};
    };
    for (const bool train_w : {false, true}) {
      const auto f = run(true, train_w), p = run(false, train_w);
      for (std::size_t i = 0; i < f.size(); ++i) {
        ASSERT_EQ(f[i].defined(), p[i].defined()) << i;
        if (f[i].defined()) EXPECT_TRUE(close(f[i], p[i], 1e-5, 1e-4)) << "output/dx/dw/db " << i;
      }
    }
  }
  // Too small to split, or the policy off: the layer keeps at::linear.
  EXPECT_FALSE(k::linear_rows_applicable(torch::randn({4, 8}), torch::randn({8, 8}), at::Tensor()));
  peft::set_gemm_rows_split(false);
  EXPECT_FALSE(k::linear_rows_applicable(torch::randn({512, 64}), torch::randn({64, 64}), at::Tensor()));
  peft::set_gemm_rows_split(split);
  at::set_num_threads(threads);
}

TEST(CpuKernels, DropoutKeepsOneMinusPAndScalesAsATen) {
  for (const auto dt : {at::kFloat, at::kBFloat16}) {
    SCOPED_TRACE(c10::toString(dt));
    const double p = 0.1;
    const at::Tensor x = torch::randn({64, 1001}).to(dt).requires_grad_(true);
    torch::manual_seed(11);
    const at::Tensor y = peft::models::dropout(x, p, true);
    const at::Tensor kept = y != 0;
    const double frac = kept.to(at::kDouble).mean().item<double>();
    EXPECT_NEAR(frac, 1 - p, 5 * std::sqrt(p * (1 - p) / x.numel()));  // 5 sigma
    // at::dropout's mask value: ones divided by 1 - p in the tensor's dtype.
    const at::Tensor mask_value = (torch::ones({1}, dt) / (1 - p));
    const at::Tensor expect = x.detach() * mask_value;
    EXPECT_TRUE(torch::equal(y.detach().masked_select(kept), expect.masked_select(kept)));
    // Neighbouring elements are not correlated (the words are split in two halves).
    const at::Tensor k = kept.view(-1).to(at::kDouble);
    const double both = (k.slice(0, 0, -1) * k.slice(0, 1)).mean().item<double>();
    EXPECT_NEAR(both, (1 - p) * (1 - p), 0.01);
    // Backward: the same mask and value.
    const at::Tensor dy = torch::randn(x.sizes()).to(dt);
    y.backward(dy);
    EXPECT_TRUE(torch::equal(x.grad(), at::where(kept, dy * mask_value, torch::zeros({}, dt))));
    // The same seed gives the same mask with one thread or two, with or without autograd.
    const int threads = at::get_num_threads();
    at::set_num_threads(1);
    torch::manual_seed(11);
    at::Tensor y1;
    {
      torch::NoGradGuard ng;
      y1 = peft::models::dropout(x, p, true);
    }
    at::set_num_threads(2);
    torch::manual_seed(11);
    const at::Tensor y2 = peft::models::dropout(x, p, true);
    at::set_num_threads(threads);
    EXPECT_TRUE(torch::equal(y1, y.detach()));
    EXPECT_TRUE(torch::equal(y2.detach(), y.detach()));
    // Another draw gives another mask; eval mode and p = 0 give x itself.
    EXPECT_FALSE(torch::equal(peft::models::dropout(x, p, true).detach(), y.detach()));
    EXPECT_TRUE(peft::models::dropout(x, p, false).is_same(x));
    EXPECT_TRUE(peft::models::dropout(x, 0.0, true).is_same(x));
  }
  // p = 1 keeps nothing (at::dropout's path).
  EXPECT_EQ(peft::models::dropout(torch::ones({10}), 1.0, true).abs().sum().item<float>(), 0.0f);
}
