// The fused training attention (kernels::attention_train_f32, src/models/cpu_attention_train.cpp)
// against attend()'s plain-ATen chain (run under kernels::ScopedPlainAten): outputs and the
// gradients of q, k and v, then one LoRA training step of a tiny model with the kernel on and off.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <deque>
#include <initializer_list>
#include <memory>
#include <set>
#include <tuple>

#include "../../src/models/cpu_kernels.h"
#include "golden.h"
#include "peft/models/blocks.h"
#include "peft/models/model.h"
#include "peft/peft_model.h"

namespace {

namespace kernels = peft::models::kernels;
using peft::models::attend;
using peft::models::attention_bias;
using peft::test::close;

// Whether the autograd graph behind t has a node whose name contains `name`.
bool graph_has(const at::Tensor& t, const std::string& name) {
  std::deque<torch::autograd::Node*> todo{t.grad_fn().get()};
  std::set<torch::autograd::Node*> seen;
  while (!todo.empty()) {
    torch::autograd::Node* n = todo.front();
    todo.pop_front();
    if (n == nullptr || !seen.insert(n).second) continue;
    if (n->name().find(name) != std::string::npos) return true;
    for (const auto& e : n->next_edges()) todo.push_back(e.function.get());
  }
  return false;
}

struct Case {
  const char* name;
  int64_t B, H, KVH, T, P, D;  // P: prefix-tuning keys in front of the T keys of the tokens
  bool causal, padded;         // padded: batch 0 left-padded by 3 tokens
  bool per_head_bias;          // [B, H, T, S] bias (a random relative bias on top of the mask)
  bool views;                  // q, k, v as transposes of [B, positions, heads, D]
  bool grad_q = true, grad_k = true, grad_v = true;
};

struct Run {
  at::Tensor out, dq, dk, dv;
};

// attend() on leaf copies of q, k, v (those asked for require grad), then backward of out·go.
Run run(const Case& c, const at::Tensor& q0, const at::Tensor& k0, const at::Tensor& v0, const at::Tensor& bias,
        const at::Tensor& go, bool fused) {
  auto leaf = [](const at::Tensor& t, bool grad) { return t.detach().clone().requires_grad_(grad); };
  // clone() keeps the strides of a transposed view.
  const at::Tensor q = leaf(q0, c.grad_q), k = leaf(k0, c.grad_k), v = leaf(v0, c.grad_v);
  EXPECT_EQ(q.is_contiguous(), q0.is_contiguous());
  const double scale = 1.0 / std::sqrt(static_cast<double>(c.D));
  at::Tensor out;
  if (fused) {
    EXPECT_TRUE(kernels::attention_train_f32_applicable(q, k, v, bias));
    out = kernels::attention_train_f32(q, k, v, bias, scale);
    EXPECT_TRUE(graph_has(out, "AttentionTrainFn"));
  } else {
    kernels::ScopedPlainAten plain;
    EXPECT_FALSE(kernels::attention_train_f32_applicable(q, k, v, bias));
    out = attend(q, k, v, bias, scale, 0.0, true);
    EXPECT_FALSE(graph_has(out, "AttentionTrainFn"));
  }
  out.backward(go);
  return {out.detach(), q.grad(), k.grad(), v.grad()};
}

void check(const Case& c) {
  SCOPED_TRACE(c.name);
  torch::manual_seed(c.B * 1000 + c.T * 10 + c.D + c.P);
  const int64_t S = c.P + c.T;
  const at::Tensor q = c.views ? torch::randn({c.B, c.T, c.H, c.D}).transpose(1, 2) : torch::randn({c.B, c.H, c.T, c.D});
  auto kv = [&] {
    return c.views ? torch::randn({c.B, S, c.KVH, c.D}).transpose(1, 2) : torch::randn({c.B, c.KVH, S, c.D});
  };
  const at::Tensor k = kv(), v = kv();
  at::Tensor mask;
  if (c.padded) {
    mask = torch::ones({c.B, c.T}, torch::kLong);
    mask[0].narrow(0, 0, 3).zero_();
  }
  at::Tensor bias = attention_bias(mask, c.B, c.T, 0, c.P, c.causal, at::kFloat, at::kCPU);
  if (c.per_head_bias) {
    const at::Tensor rel = torch::randn({c.B, c.H, c.T, S}) * 2;
    bias = bias.defined() ? bias + rel : rel;
  }
  const at::Tensor go = torch::randn({c.B, c.H, c.T, c.D});
  const Run f = run(c, q, k, v, bias, go, true), p = run(c, q, k, v, bias, go, false);
  EXPECT_TRUE(close(f.out, p.out, 1e-5)) << "output";
  EXPECT_TRUE(f.out.transpose(1, 2).is_contiguous());
  using Grad = std::tuple<at::Tensor, at::Tensor, bool, const char*>;
  for (const auto& [got, want, asked, what] : std::initializer_list<Grad>{
           {f.dq, p.dq, c.grad_q, "dq"}, {f.dk, p.dk, c.grad_k, "dk"}, {f.dv, p.dv, c.grad_v, "dv"}}) {
    ASSERT_EQ(got.defined(), asked) << what;
    ASSERT_EQ(want.defined(), asked) << what;
    if (asked) EXPECT_TRUE(close(got, want, 1e-5)) << what;
  }
  if (c.padded && c.causal && c.P == 0) {
    // Batch 0's first three queries attend nowhere: zero output, zero gradient.
    EXPECT_EQ(f.out[0].narrow(1, 0, 3).abs().max().item<float>(), 0.0f);
    EXPECT_GT(f.out[0].narrow(1, 3, c.T - 3).abs().max().item<float>(), 0.0f);
    if (c.grad_q) EXPECT_EQ(f.dq[0].narrow(1, 0, 3).abs().max().item<float>(), 0.0f);
  }
}

TEST(FusedTrainingAttention, OutputAndGradientsMatchAtenChain) {
  const std::vector<Case> cases = {
      // name                           B  H  KVH T   P  D   causal padded per_head views
      {"stories260K-like, GQA, padded", 2, 8, 4, 21, 0, 8, true, true, false, true},
      {"GQA 4/2, D 64, dead rows", 3, 4, 2, 19, 0, 64, true, true, false, false},
      {"prefix + causal, views", 2, 4, 2, 13, 5, 8, true, false, false, true},
      {"prefix + causal + padding, D 64", 2, 4, 4, 17, 7, 64, true, true, false, true},
      {"per-head bias, bidirectional", 2, 4, 2, 11, 0, 8, false, false, true, false},
      {"per-head bias + causal + padding", 2, 4, 4, 9, 0, 64, true, true, true, true},
      {"no bias at all, long rows", 1, 2, 1, 37, 0, 8, false, false, false, true},
      {"generic head size 12", 2, 2, 2, 18, 3, 12, true, true, false, true},
      {"one query row", 2, 4, 2, 1, 4, 16, true, false, false, false},
      {"generic head size 40, GQA 6/2, prefix", 2, 6, 2, 23, 2, 40, true, true, false, true},
      {"head size 128, a last block of 2 rows", 1, 2, 1, 34, 0, 128, true, true, true, false},
  };
  // Every compiled copy of the loops this CPU runs (AVX-512, AVX2, portable).
  for (const std::string& isa : kernels::attention_train_isas()) {
    SCOPED_TRACE(isa);
    kernels::use_attention_train_isa(isa);
    for (const auto& c : cases) check(c);
  }
  kernels::use_attention_train_isa("");
}

TEST(FusedTrainingAttention, OnlyTheGradientsAskedFor) {
  // LoRA on q and v only, as PEFT's llama default: k stays frozen; then only k and v (a
  // trainable prefix) with q frozen.
  Case c{"q and v", 2, 4, 2, 10, 0, 8, true, true, false, true};
  c.grad_k = false;
  check(c);
  Case kv{"k and v", 2, 4, 2, 10, 6, 64, true, false, false, true};
  kv.grad_q = false;
  check(kv);
}

TEST(FusedTrainingAttention, NotUsedWhereItDoesNotApply) {
  const at::Tensor q = torch::randn({1, 2, 4, 8}, torch::requires_grad()), k = torch::randn({1, 2, 4, 8}),
                   v = torch::randn({1, 2, 4, 8});
  const at::Tensor bias = attention_bias({}, 1, 4, 0, 0, true, at::kFloat, at::kCPU);
  EXPECT_TRUE(kernels::attention_train_f32_applicable(q, k, v, bias));
  // A bias that wants a gradient, inputs that want none, another dtype, no autograd.
  EXPECT_FALSE(kernels::attention_train_f32_applicable(q, k, v, bias.clone().requires_grad_(true)));
  EXPECT_FALSE(kernels::attention_train_f32_applicable(q.detach(), k, v, bias));
  EXPECT_FALSE(kernels::attention_train_f32_applicable(q.to(at::kDouble), k, v, bias));
  {
    torch::NoGradGuard ng;
    EXPECT_FALSE(kernels::attention_train_f32_applicable(q, k, v, bias));
  }
  // Soft-capping keeps attend() on the ATen chain; dropout on the probabilities does not.
  EXPECT_FALSE(graph_has(attend(q, k, v, bias, 0.35, 0.0, true, 50.0), "AttentionTrainFn"));
  EXPECT_TRUE(graph_has(attend(q, k, v, bias, 0.35, 0.1, true), "AttentionTrainFn"));
  // Small heads (8 here) take it on every LibTorch (on 2.x larger ones take SDPA).
  EXPECT_TRUE(graph_has(attend(q, k, v, bias, 0.35, 0.1, false), "AttentionTrainFn"));
}

// A case's bias: the causal / padding mask (batch 0 left-padded by 3 when `padded`), or with
// per_head_bias a random [B, H, T, S] bias instead.
at::Tensor mask_or_random_bias(const Case& c) {
  if (c.per_head_bias) return torch::randn({c.B, c.H, c.T, c.P + c.T}) * 2;
  at::Tensor mask;
  if (c.padded) {
    mask = torch::ones({c.B, c.T}, torch::kLong);
    mask[0].narrow(0, 0, 3).zero_();
  }
  return attention_bias(mask, c.B, c.T, 0, c.P, c.causal, at::kFloat, at::kCPU);
}

// Dropout on the probabilities inside the fused kernel: against the ATen chain
// softmax(q·kᵀ·scale + bias) · mask/(1 - p) · V with the same keep mask (the kernel draws it as
// kernels::dropout_keep_mask does from the same generator state), output and gradients, on every
// compiled copy; the mask keeps about 1 - p of the probabilities.
TEST(FusedTrainingAttention, DropoutMatchesAtenChainWithTheSameMask) {
  const std::vector<Case> cases = {
      // name                         B  H  KVH T   P  D   causal padded per_head views
      {"GQA, padded, dead rows", 2, 8, 4, 21, 0, 8, true, true, false, true},
      {"prefix + causal, D 64", 2, 4, 2, 17, 5, 64, true, false, false, false},
      {"per-head bias, D 40, a last block of 1 row", 1, 2, 2, 13, 0, 40, false, false, true, true},
  };
  for (const std::string& isa : kernels::attention_train_isas()) {
    SCOPED_TRACE(isa);
    kernels::use_attention_train_isa(isa);
    for (const double p : {0.1, 0.5}) {
      for (const Case& c : cases) {
        SCOPED_TRACE(std::string(c.name) + ", p " + std::to_string(p));
        torch::manual_seed(c.T * 31 + c.D);
        const int64_t S = c.P + c.T;
        const at::Tensor q0 = torch::randn({c.B, c.H, c.T, c.D}), k0 = torch::randn({c.B, c.KVH, S, c.D}),
                         v0 = torch::randn({c.B, c.KVH, S, c.D}), go = torch::randn({c.B, c.H, c.T, c.D});
        const at::Tensor bias = mask_or_random_bias(c);
        const double scale = 1.0 / std::sqrt(static_cast<double>(c.D));
        auto leaf = [](const at::Tensor& t) { return t.detach().clone().requires_grad_(true); };

        const at::Tensor q = leaf(q0), k = leaf(k0), v = leaf(v0);
        const uint64_t seed = 1234 + static_cast<uint64_t>(p * 10);
        torch::manual_seed(seed);
        const at::Tensor out = attend(q, k, v, bias, scale, p, true);
        EXPECT_TRUE(graph_has(out, "AttentionTrainFn"));
        out.backward(go);
        {
          // Without autograd (a checkpointed layer's first forward) the same kernel and mask.
          torch::NoGradGuard ng;
          torch::manual_seed(seed);
          EXPECT_TRUE(at::equal(attend(q, k, v, bias, scale, p, true), out.detach()));
        }

        torch::manual_seed(seed);
        const at::Tensor keep = kernels::dropout_keep_mask(c.B * c.H * c.T * S, p).view({c.B, c.H, c.T, S});
        const double kept = keep.to(at::kDouble).mean().item<double>();
        EXPECT_NEAR(kept, 1.0 - p, 0.03);
        const at::Tensor qr = leaf(q0), kr = leaf(k0), vr = leaf(v0);
        const int64_t rep = c.H / c.KVH;
        const at::Tensor ke = kr.repeat_interleave(rep, 1), ve = vr.repeat_interleave(rep, 1);
        at::Tensor probs = at::softmax(at::matmul(qr, ke.transpose(2, 3)) * scale + bias, -1);
        probs = probs.masked_fill(bias.amax(-1, true) < kernels::kDeadRowBias, 0);
        const at::Tensor want = at::matmul(probs * keep.to(at::kFloat) * static_cast<float>(1.0f / (1.0f - p)), ve);
        want.backward(go);

        EXPECT_TRUE(close(out, want, 1e-5)) << "output";
        EXPECT_TRUE(close(q.grad(), qr.grad(), 1e-5)) << "dq";
        EXPECT_TRUE(close(k.grad(), kr.grad(), 1e-5)) << "dk";
        EXPECT_TRUE(close(v.grad(), vr.grad(), 1e-5)) << "dv";
        // A different draw gives a different output: the mask is not fixed.
        const at::Tensor again = attend(q0, k0, v0.clone().requires_grad_(true), bias, scale, p, true);
        EXPECT_FALSE(close(again.detach(), want.detach(), 1e-3));
      }
    }
  }
  kernels::use_attention_train_isa("");
}

// bf16 training (autocast): where the fp32 kernel is ours, attend() runs it on fp32 copies of
// the bf16 q, k and v and rounds its output once. The reference: the fp32 ATen chain on the same
// (bf16-exact) values, output and gradients rounded to bf16; on LibTorch 2.x SDPA on the bf16
// tensors themselves is no closer to it.
TEST(FusedTrainingAttention, Bf16TrainingComputesInFp32) {
  for (const Case& c : {Case{"GQA, padded, prefix", 2, 8, 4, 21, 3, 8, true, true, false, true},
                        Case{"per-head bias, D 16", 2, 4, 2, 9, 0, 16, true, false, true, false}}) {
    SCOPED_TRACE(c.name);
    torch::manual_seed(7 + c.D);
    const int64_t S = c.P + c.T;
    auto bf = [](at::IntArrayRef shape) { return torch::randn(shape).to(at::kBFloat16); };
    const at::Tensor q = bf({c.B, c.H, c.T, c.D}), k = bf({c.B, c.KVH, S, c.D}), v = bf({c.B, c.KVH, S, c.D});
    const at::Tensor go = bf({c.B, c.H, c.T, c.D});
    const at::Tensor bias = mask_or_random_bias(c);
    const double scale = 1.0 / std::sqrt(static_cast<double>(c.D));
    auto leaf = [](const at::Tensor& t, at::ScalarType dt) { return t.detach().to(dt).requires_grad_(true); };

    const at::Tensor qb = leaf(q, at::kBFloat16), kb = leaf(k, at::kBFloat16), vb = leaf(v, at::kBFloat16);
    const at::Tensor out = attend(qb, kb, vb, bias, scale, 0.0, true);
    EXPECT_EQ(out.scalar_type(), at::kBFloat16);
    EXPECT_TRUE(graph_has(out, "AttentionTrainFn"));
    out.backward(go);
    EXPECT_EQ(qb.grad().scalar_type(), at::kBFloat16);

    const at::Tensor qf = leaf(q, at::kFloat), kf = leaf(k, at::kFloat), vf = leaf(v, at::kFloat);
    at::Tensor want;
    {
      kernels::ScopedPlainAten plain;
      want = attend(qf, kf, vf, bias, scale, 0.0, true);
    }
    want.backward(go.to(at::kFloat));
    // One bf16 rounding of values within 1e-5 of each other: at most one step of 2^-8 apart.
    auto near = [](const at::Tensor& got, const at::Tensor& ref) {
      const at::Tensor g = got.to(at::kFloat), r = ref.to(at::kBFloat16).to(at::kFloat);
      return ((g - r).abs() <= r.abs() * (1.0 / 128) + 1e-6).all().item<bool>();
    };
    EXPECT_TRUE(near(out, want)) << "output";
    EXPECT_TRUE(near(qb.grad(), qf.grad())) << "dq";
    EXPECT_TRUE(near(kb.grad(), kf.grad())) << "dk";
    EXPECT_TRUE(near(vb.grad(), vf.grad())) << "dv";
    // Most values round to the same bf16 number: the bf16 chain's rounded scores would not.
    const double same = (out.to(at::kFloat) == want.to(at::kBFloat16).to(at::kFloat)).to(at::kFloat).mean().item<double>();
    EXPECT_GT(same, 0.95);
#if TORCH_VERSION_MAJOR >= 2
    // PyTorch's fused attention on the bf16 tensors also rounds the probabilities to bf16 before
    // the product with V: ours is at least as close to the fp32 result.
    const at::Tensor sdpa = at::scaled_dot_product_attention(q, k, v, bias.to(at::kBFloat16), 0.0, false, scale,
                                                             /*enable_gqa=*/c.KVH != c.H);
    const at::Tensor exact = want.detach();
    EXPECT_LE((out.to(at::kFloat) - exact).abs().max().item<float>(),
              (sdpa.to(at::kFloat) - exact).abs().max().item<float>() + 1e-6f)
        << "further from fp32 than SDPA";
#endif
  }
}

// One LoRA step (forward, backward, SGD) of the tiny Llama and GPT-2 fixtures with the fused
// attention (their heads are small, so on every LibTorch) and with the plain chain: the same
// loss, gradients and updated adapter weights.
TEST(FusedTrainingAttention, LoraTrainingStepMatchesAtenChain) {
  for (const char* name : {"llama_default", "gpt2_default"}) {
    SCOPED_TRACE(name);
    const auto g = peft::test::load_case(std::string("lora/") + name);
    const std::string base = peft::test::fixture(g.meta["base"].get<std::string>());
    std::vector<double> losses;
    std::vector<std::vector<at::Tensor>> grads(2), weights(2);
    for (int fused = 0; fused < 2; ++fused) {
      auto pm = peft::PeftModel::from_pretrained(peft::models::load_model(base), g.dir, "default", true);
      pm->base_model().eval();  // no dropout: the step must be deterministic
      std::unique_ptr<kernels::ScopedPlainAten> plain;
      if (!fused) plain = std::make_unique<kernels::ScopedPlainAten>();
      torch::optim::SGD opt(pm->trainable_parameters(), torch::optim::SGDOptions(0.1));
      at::Tensor loss = pm->forward(peft::test::inputs_of(g)).loss;
      EXPECT_EQ(graph_has(loss, "AttentionTrainFn"), fused == 1);
      loss.backward();
      losses.push_back(loss.item<double>());
      for (const auto& p : pm->trainable_parameters()) grads[fused].push_back(p.grad().clone());
      opt.step();
      for (const auto& p : pm->trainable_parameters()) weights[fused].push_back(p.detach().clone());
    }
    EXPECT_NEAR(losses[1], losses[0], 1e-5);
    ASSERT_EQ(grads[0].size(), grads[1].size());
    ASSERT_FALSE(grads[0].empty());
    for (std::size_t i = 0; i < grads[0].size(); ++i) {
      EXPECT_TRUE(close(grads[1][i], grads[0][i], 1e-5)) << "grad #" << i;
      EXPECT_TRUE(close(weights[1][i], weights[0][i], 1e-5)) << "weight #" << i;
    }
  }
}

}  // namespace
