// The 4-bit linear base against bitsandbytes' Linear4bit (tests/fixtures/qlora/linear) and
// dequantise-then-matmul; QLoRA on a bitsandbytes-quantised Llama against PEFT's logits
// (tests/fixtures/qlora/model); quantise-on-load, merging into a 4-bit base, k-bit preparation.
#include <gtest/gtest.h>
#include <hwy/targets.h>

#include <iostream>
#include <torch/torch.h>

#include <cmath>
#include <cstring>

#include "golden.h"
#include "peft/models/adaptable_linear.h"
#include "peft/models/model.h"
#include "peft/models/quantized_model.h"
#include "peft/peft_model.h"
#include "peft/quant/linear4bit.h"

namespace pq = peft::quant;
using peft::test::close;

namespace {

std::vector<uint8_t> bytes_of(const at::Tensor& t) {
  at::Tensor c = t.contiguous();
  const auto* p = static_cast<const uint8_t*>(c.data_ptr());
  return std::vector<uint8_t>(p, p + c.numel() * c.element_size());
}

std::shared_ptr<pq::Linear4bitWeight> quantise(const at::Tensor& w, bool dq, const std::string& compute = "float32") {
  at::Tensor c = w.contiguous();
  auto q = pq::quantize_4bit(c.data_ptr<float>(), {w.size(0), w.size(1)}, {pq::QuantType::NF4, 64, dq});
  return std::make_shared<pq::Linear4bitWeight>(std::move(q), compute);
}

// bitsandbytes' Linear4bit state dict (nf4, double quant) as our quantised weight.
pq::Quantized4 from_bnb(const peft::test::GoldenCase& c, const std::string& n) {
  pq::Quantized4 q;
  const auto js = bytes_of(c[n + ".bnb.weight.quant_state.bitsandbytes__nf4"]);
  pq::read_quant_state_json(std::string(js.begin(), js.end()), q.state, n);
  q.packed = bytes_of(c[n + ".bnb.weight"]);
  q.state.absmax_codes = bytes_of(c[n + ".bnb.weight.absmax"]);
  const at::Tensor na = c[n + ".bnb.weight.nested_absmax"].contiguous();
  q.state.nested_absmax.assign(na.data_ptr<float>(), na.data_ptr<float>() + na.numel());
  return q;
}

}  // namespace

TEST(Linear4bit, MatchesBitsandbytesLinear4bitAndDequantisedMatmul) {
  const auto c = peft::test::load_case("qlora/linear");
  for (const std::string n : {"lin_a", "lin_b"}) {
    SCOPED_TRACE(n);
    const at::Tensor W = c[n + ".weight"];
    // Our quantisation packs the same bytes (constants: see test_quantize.cpp); the layer runs
    // on bitsandbytes' exact state.
    EXPECT_EQ(quantise(W, /*dq=*/true)->quantized().packed, bytes_of(c[n + ".bnb.weight"]));
    auto w4 = std::make_shared<pq::Linear4bitWeight>(from_bnb(c, n));
    const at::Tensor deq = w4->dequantize();

    peft::models::AdaptableLinear slot(W.size(1), W.size(0), c.has(n + ".bias"));
    {
      torch::NoGradGuard ng;
      if (c.has(n + ".bias")) slot->bias.copy_(c[n + ".bias"]);
    }
    slot->set_quantized(w4);
    EXPECT_FALSE(slot->weight.defined());
    for (const auto& p : slot->named_parameters()) EXPECT_NE(p.key(), "weight");

    at::Tensor x = c[n + ".x"].clone().requires_grad_(true);
    at::Tensor y = slot->forward(x);
    EXPECT_TRUE(close(y, c[n + ".y"], 1e-5));  // bitsandbytes' output
    at::Tensor ref_x = c[n + ".x"].clone().requires_grad_(true);
    at::Tensor ref = at::linear(ref_x, deq, c.has(n + ".bias") ? c[n + ".bias"] : at::Tensor());
    EXPECT_TRUE(close(y, ref, 1e-5));
    y.backward(c[n + ".grad_y"]);
    ref.backward(c[n + ".grad_y"]);
    EXPECT_TRUE(close(x.grad(), ref_x.grad(), 1e-5));
    EXPECT_TRUE(close(x.grad(), c[n + ".grad_x"], 1e-5));  // bitsandbytes' input gradient
  }
}

TEST(Linear4bit, TiledKernelOddShapesBf16AndFallback) {
  torch::manual_seed(3);
  // 700 x 100: several row tiles, blocks straddling rows, odd element count handled.
  const at::Tensor W = torch::randn({701, 99}) * 0.1;
  auto w4 = quantise(W, false);
  const at::Tensor deq = w4->dequantize();
  std::vector<float> flat(static_cast<std::size_t>(W.numel()));
  pq::dequantize_4bit(w4->quantized(), flat.data());
  EXPECT_TRUE(at::equal(deq, torch::from_blob(flat.data(), {701, 99}).clone()));
  const at::Tensor x = torch::randn({2, 7, 99});
  EXPECT_TRUE(close(w4->forward(x), at::linear(x, deq), 1e-5));
  // One row (decoding).
  EXPECT_TRUE(close(w4->forward(x[0][0]), at::linear(x[0][0], deq), 1e-5));
  // The fused Highway GEMV (in a multiple of the block size): 1-4 rows, NF4 and FP4, on every SIMD
  // target this CPU runs (AVX-512 and AVX2 look the codes up by lane permutation, others gather).
  for (const int64_t target : hwy::SupportedAndGeneratedTargets())
  for (auto t : {pq::QuantType::NF4, pq::QuantType::FP4}) {
    SCOPED_TRACE(hwy::TargetName(target));
    hwy::SetSupportedTargetsForTest(target);
    const at::Tensor W2 = torch::randn({300, 256}) * 0.1;
    pq::Linear4bitWeight g(pq::quantize_4bit(W2.contiguous().data_ptr<float>(), {300, 256}, {t, 64, true}));
    const at::Tensor d2 = g.dequantize();  // the SIMD dequantisation (in % 64 == 0)
    std::vector<float> ref(300 * 256);
    pq::dequantize_4bit(g.quantized(), ref.data());
    EXPECT_TRUE(at::equal(d2, torch::from_blob(ref.data(), {300, 256}).clone()));
    pq::Linear4bitWeight gb(pq::quantize_4bit(W2.contiguous().data_ptr<float>(), {300, 256}, {t, 64, true}),
                            "bfloat16");
    for (int64_t rows : {1, 3}) {
      const at::Tensor xr = torch::randn({rows, 256});
      EXPECT_TRUE(close(g.forward(xr), at::linear(xr, d2), 1e-5)) << rows;
      EXPECT_TRUE(close(gb.forward(xr), at::linear(xr.to(at::kBFloat16).to(at::kFloat), d2), 5e-2)) << rows;
    }
  }
  hwy::SetSupportedTargetsForTest(0);  // back to the best target
  std::cout << "4-bit GEMV checked on:";
  for (const int64_t target : hwy::SupportedAndGeneratedTargets()) std::cout << " " << hwy::TargetName(target);
  std::cout << "\n";
  auto b4 = quantise(W, false, "bfloat16");
  const at::Tensor yb = b4->forward(x);
  EXPECT_EQ(yb.scalar_type(), at::kFloat);
  EXPECT_TRUE(close(yb, at::linear(x, deq), 5e-2));
  EXPECT_THROW(quantise(W, false, "float16"), peft::ConfigError);
  // The device-agnostic ATen dequantisation agrees with the CPU kernel.
  EXPECT_TRUE(at::equal(w4->dequantize_aten(at::kCPU), deq));
}

TEST(Linear4bit, MergeIntoQuantisedBaseReportsRoundingError) {
  torch::manual_seed(4);
  peft::models::AdaptableLinear slot(128, 64, false);
  slot->set_quantized(quantise(slot->weight.detach().clone(), true));
  const at::Tensor before = slot->weight_out_in();
  slot->set_quantized(nullptr);  // back to fp32
  ASSERT_TRUE(slot->weight.defined());
  EXPECT_TRUE(at::equal(slot->weight, before));
  bool found = false;
  for (const auto& p : slot->named_parameters()) found = found || p.key() == "weight";
  EXPECT_TRUE(found);
}

TEST(QLoRA, BitsandbytesQuantisedLlamaWithPeftAdapterMatchesPeftLogits) {
  const auto c = peft::test::load_case("qlora/model");
  auto base = peft::models::load_model(c.dir + "/base_bnb4");
  int n4 = 0;
  for (const auto& m : base->modules())
    if (auto* l = dynamic_cast<peft::models::AdaptableLinearImpl*>(m.get())) n4 += l->quantized() != nullptr;
  EXPECT_EQ(n4, 7);  // every projection; lm_head stays full precision
  peft::models::ModelInputs in;
  in.input_ids = c["input_ids"];
  in.attention_mask = c["attention_mask"];
  torch::NoGradGuard ng;
  EXPECT_TRUE(close(base->forward(in).logits, c["logits_base"], 1e-4));
  auto pm = peft::PeftModel::from_pretrained(base, c.dir + "/adapter");
  EXPECT_TRUE(close(pm->forward(in).logits, c["logits_lora"], 1e-4));
  // PEFT counts a packed Params4bit as two values per byte: the parameter total of the 4-bit
  // model equals the fp32 one's.
  auto pm_fp = peft::PeftModel::from_pretrained(peft::models::load_model(c.dir + "/base_fp32"), c.dir + "/adapter");
  EXPECT_EQ(pm->get_nb_trainable_parameters(), pm_fp->get_nb_trainable_parameters());

  // Quantise-on-load of the fp32 checkpoint with the same BitsAndBytesConfig: same bytes.
  peft::models::LoadOptions o;
  o.load_in_4bit = true;
  o.bnb_4bit_quant_type = "nf4";
  o.bnb_4bit_use_double_quant = true;
  auto mine = peft::models::load_model(c.dir + "/base_fp32", o);
  EXPECT_TRUE(close(mine->forward(in).logits, c["logits_base"], 1e-4));
  // The same packed bytes and double-quantisation state as bitsandbytes (through transformers).
  int same = 0;
  std::map<std::string, const pq::Linear4bitWeight*> theirs;
  for (const auto& item : base->named_modules())
    if (auto* l = dynamic_cast<peft::models::AdaptableLinearImpl*>(item.value().get()); l && l->quantized())
      theirs[item.key()] = dynamic_cast<const pq::Linear4bitWeight*>(l->quantized().get());
  for (const auto& item : mine->named_modules()) {
    auto* l = dynamic_cast<peft::models::AdaptableLinearImpl*>(item.value().get());
    if (!l || !l->quantized()) continue;
    auto* w = dynamic_cast<pq::Linear4bitWeight*>(l->quantized().get());
    ASSERT_NE(w, nullptr);
    ASSERT_TRUE(theirs.count(item.key())) << item.key();
    const auto& t = theirs[item.key()]->quantized();
    EXPECT_EQ(w->quantized().packed, t.packed) << item.key();
    EXPECT_EQ(w->quantized().state.offset, t.state.offset) << item.key();
    EXPECT_EQ(w->quantized().state.nested_absmax, t.state.nested_absmax) << item.key();
    EXPECT_EQ(w->quantized().state.absmax_codes, t.state.absmax_codes) << item.key();
    EXPECT_EQ(w->quantized().state.block_scales(), t.state.block_scales()) << item.key();
    ++same;
  }
  EXPECT_EQ(same, 7);
  // save_pretrained of a 4-bit model writes bitsandbytes' format; it loads back as 4-bit, and
  // transformers reads it (checked by hand: identical logits).
  const auto ck = peft::io::load_safetensors(c.dir + "/base_bnb4/model.safetensors");
  const std::string out = peft::test::tmp_dir("qlora_saved");
  auto fresh = peft::models::load_model(c.dir + "/base_bnb4");
  peft::models::save_pretrained(*fresh, out);
  const auto saved = peft::io::load_safetensors(out + "/model.safetensors");
  for (const auto& [k, v] : ck) {
    ASSERT_TRUE(saved.count(k)) << k;
    EXPECT_TRUE(at::equal(saved.at(k), v)) << k;
  }
  auto again = peft::models::load_model(out);
  EXPECT_TRUE(at::equal(again->forward(in).logits, fresh->forward(in).logits));
  // 4-bit weights are ~1/7 of fp32 (embeddings and head stay fp32 in this tiny model).
  auto fp = peft::models::load_model(c.dir + "/base_fp32");
  EXPECT_LT(peft::models::weight_bytes(*mine), peft::models::weight_bytes(*fp));
}

TEST(QLoRA, MergePathsAndKbitPreparation) {
  const auto c = peft::test::load_case("qlora/model");
  peft::models::ModelInputs in;
  in.input_ids = c["input_ids"];
  in.attention_mask = c["attention_mask"];
  torch::NoGradGuard ng;
  {
    // Merge into the dequantised weights (full precision): same logits as the unmerged adapter.
    auto pm = peft::PeftModel::from_pretrained(peft::models::load_model(c.dir + "/base_bnb4"), c.dir + "/adapter");
    auto base = pm->unload();
    peft::models::dequantize_model(*base);
    auto pm2 = peft::PeftModel::from_pretrained(base, c.dir + "/adapter");
    auto merged = pm2->merge_and_unload();
    EXPECT_TRUE(close(merged->forward(in).logits, c["logits_lora"], 1e-4));
  }
  {
    // Merge into the 4-bit base: re-quantised, rounding error reported, logits close.
    auto pm = peft::PeftModel::from_pretrained(peft::models::load_model(c.dir + "/base_bnb4"), c.dir + "/adapter");
    auto merged = pm->merge_and_unload();
    double worst = 0;
    int n4 = 0;
    for (const auto& m : merged->modules())
      if (auto* l = dynamic_cast<peft::models::AdaptableLinearImpl*>(m.get()); l && l->quantized()) {
        worst = std::max(worst, l->last_requant_error());
        ++n4;
      }
    EXPECT_EQ(n4, 7);
    EXPECT_GT(worst, 0.0);
    EXPECT_LT(worst, 0.1);
    EXPECT_TRUE(close(merged->forward(in).logits, c["logits_lora"], 0.5));
  }
  {
    peft::models::LoadOptions o;
    o.dtype = "bfloat16";
    o.load_in_4bit = true;
    auto m = peft::models::load_model(c.dir + "/base_fp32", o);
    peft::models::prepare_model_for_kbit_training(*m);
    for (const auto& p : m->named_parameters()) {
      EXPECT_EQ(p.value().scalar_type(), at::kFloat) << p.key();
      EXPECT_FALSE(p.value().requires_grad()) << p.key();
    }
    m->train();
    EXPECT_TRUE(m->gradient_checkpointing());
  }
}
