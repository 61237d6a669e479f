// Export to llama.cpp: adapters on the tiny GGUF Llama (random, non-zero B) saved in PEFT's format,
// exported to a LoRA GGUF, read back and re-applied with llama.cpp's rule (W + alpha/r · B·A per
// pair, Q/K rows un-permuted) must give our merged weights; every refusal names the adapter and
// field; merged models written as GGUF load back with our merged logits. The files the tests write
// under build/tests/export/ are what tools/llamacpp/compare_logits.py checks in llama.cpp itself.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>

#include "golden.h"
#include "peft/core/json_file.h"
#include "peft/export/gguf.h"
#include "peft/export/gguf_merge.h"
#include "peft/io/gguf.h"
#include "peft/io/tensor_bridge.h"
#include "peft/models/gguf_model.h"
#include "peft/models/model.h"
#include "peft/peft_model.h"
#include "peft/quant/ggml_quants.h"
#include "peft/tuners/adalora/config.h"
#include "peft/tuners/lora/config.h"
#include "peft/tuners/prompt_tuning/config.h"

namespace {

namespace fs = std::filesystem;
using peft::test::close;
using peft::test::fixture;

const std::string kTiny = "gguf/models/tiny_llama/tiny_llama_f32.gguf";
const std::string kTied = "gguf/models/tiny_llama_tied/tiny_llama_tied_f32.gguf";
const std::string kStories = "gguf/models/stories260K_f32.gguf";

std::string out_dir(const std::string& name) {
  const fs::path d = fs::path(PEFT_TEST_OUTPUT_DIR) / "export" / name;
  fs::create_directories(d.parent_path());
  return d.string();
}

at::Tensor ids() {
  return torch::tensor({1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315}, at::kLong).view({1, -1});
}

at::Tensor logits_of(peft::models::PretrainedModel& m, const at::Tensor& input_ids) {
  torch::NoGradGuard ng;
  peft::models::ModelInputs in;
  in.input_ids = input_ids;
  return m.forward(in).logits;
}

peft::LoraConfig lora(std::vector<std::string> targets, int64_t r = 4, double alpha = 8) {
  peft::LoraConfig c;
  c.task_type = peft::TaskType::CausalLM;
  c.r = r;
  c.lora_alpha = alpha;
  c.target_modules = peft::TargetSpec(std::move(targets));
  c.init_lora_weights = "false";  // random A and B: a non-zero update
  return c;
}

const std::vector<std::string> kAllLinear = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                             "down_proj"};

// Saves a fresh adapter of `cfg` on `base_rel`; returns the PeftModel (adapter attached).
std::shared_ptr<peft::PeftModel> make_adapter(const std::string& base_rel, const peft::PeftConfig& cfg,
                                              const std::string& dir, int seed = 0) {
  torch::manual_seed(seed);
  auto base = peft::models::load_model(fixture(base_rel));
  auto pm = peft::get_peft_model(base, cfg);
  {
    // AdaLoRA starts with E = 0: give it values, with some triplets masked (E = 0).
    torch::NoGradGuard ng;
    for (auto& p : pm->base_model().named_parameters(true))
      if (p.key().find("lora_E") != std::string::npos) {
        p.value().copy_(torch::randn(p.value().sizes()) * 0.5);
        p.value()[0].zero_();
      }
  }
  fs::remove_all(dir);
  pm->save_pretrained(dir);
  return pm;
}

// Our merged weights for the adapter saved in `dir` (loaded back through from_pretrained).
std::shared_ptr<peft::models::PretrainedModel> merged_model(const std::string& base_rel, const std::string& dir) {
  auto base = peft::models::load_model(fixture(base_rel));
  return peft::PeftModel::from_pretrained(base, dir)->merge_and_unload(/*safe_merge=*/true);
}

std::map<std::string, at::Tensor> params(peft::models::PretrainedModel& m) {
  std::map<std::string, at::Tensor> out;
  for (const auto& p : m.named_parameters(true)) out[p.key()] = p.value().detach();
  return out;
}

at::Tensor gguf_tensor(const peft::io::GgufTensorInfo& t) {
  at::Tensor out = at::empty(t.shape(), at::kFloat);
  peft::quant::ggml_dequantize_rows(t.ggml_type(), t.data, out.data_ptr<float>(), t.rows(), t.row_length());
  return out;
}

// Applies the exported LoRA GGUF to the base as llama.cpp does (llama_adapter_lora_weight::get_scale,
// build_lora_mm / build_inp_embd) and checks every touched weight against our merged model.
void expect_reapplied(const std::string& base_rel, const std::string& gguf, peft::models::PretrainedModel& merged,
                      int64_t expected_pairs, double atol = 2e-6) {
  const auto base_file = peft::io::GgufFile::open(fixture(base_rel));
  const auto lf = peft::io::GgufFile::open(gguf);
  EXPECT_EQ(lf.get_string("general.type"), "adapter");
  EXPECT_EQ(lf.get_string("adapter.type"), "lora");
  EXPECT_EQ(lf.get_string("general.architecture"), base_file.get_string("general.architecture"));
  EXPECT_EQ(lf.at("adapter.lora.alpha").type, peft::io::GgufType::FLOAT32);
  const float alpha = static_cast<float>(lf.get_float("adapter.lora.alpha"));
  EXPECT_EQ(static_cast<int64_t>(lf.tensors().size()), 2 * expected_pairs);
  std::map<std::string, peft::models::GgufTensorTarget> by_gguf;
  for (const auto& t : peft::models::gguf_tensor_map(base_file)) by_gguf[t.gguf_name] = t;
  auto ours = params(merged);
  int64_t checked = 0;
  for (const auto& t : lf.tensors()) {
    if (t.name.size() < 7 || t.name.substr(t.name.size() - 7) != ".lora_a") continue;
    const std::string name = t.name.substr(0, t.name.size() - 7);
    ASSERT_TRUE(base_file.has_tensor(name)) << t.name;
    const auto& bt = base_file.tensor(name);
    const auto& tb = lf.tensor(name + ".lora_b");
    const at::Tensor a = gguf_tensor(t), b = gguf_tensor(tb);
    const int64_t rank = tb.ne[0];
    const float scale = alpha != 0.0f ? alpha / static_cast<float>(rank) : 1.0f;
    at::Tensor delta;  // GGUF row order
    if (name == "token_embd.weight") {
      // lora_a [vocab, r] (get_rows), lora_b [dim, r]: row v of the table gains B·a_v.
      ASSERT_EQ(a.size(0), bt.ne[1]) << name;
      delta = at::matmul(a, b.t()) * scale;
    } else {
      ASSERT_EQ(a.size(1), bt.ne[0]) << name;
      ASSERT_EQ(b.size(0), bt.ne[1]) << name;
      delta = at::matmul(b, a) * scale;
    }
    at::Tensor w = gguf_tensor(bt) + delta;
    const auto& tg = by_gguf.at(name);
    if (tg.permute_heads > 0) {
      const auto src = peft::models::gguf_unpermute_rows(w.size(0), tg.permute_heads);
      w = w.index_select(0, torch::tensor(src, at::kLong));
    }
    EXPECT_TRUE(close(w, ours.at(tg.hf_name), atol)) << name;
    ++checked;
  }
  EXPECT_EQ(checked, expected_pairs);
}

std::string write_logits(const std::string& path, const at::Tensor& input_ids, const at::Tensor& logits) {
  peft::io::save_safetensors(path, {{"input_ids", input_ids[0].contiguous()}, {"logits", logits[0].contiguous()}});
  return path;
}

// ------------------------------------------------------------------------------------ adapters

TEST(GgufExport, PlainLoraAllLinearReappliesToOurMergedWeights) {
  const std::string dir = out_dir("plain_adapter"), gguf = out_dir("plain_adapter.gguf");
  make_adapter(kTiny, lora(kAllLinear), dir);
  const auto r = peft::exporter::export_lora_gguf(dir, fixture(kTiny), gguf);
  EXPECT_EQ(r.alpha, 8.0f);
  ASSERT_EQ(r.tensors.size(), 14u);
  for (const auto& t : r.tensors) EXPECT_EQ(t.fold, 1.0) << t.module << ": plain LoRA is written as saved";
  const auto f = peft::io::GgufFile::open(gguf);
  const auto& qa = f.tensor("blk.0.attn_q.weight.lora_a");
  const auto& qb = f.tensor("blk.0.attn_q.weight.lora_b");
  EXPECT_EQ(qa.ne, (std::vector<int64_t>{64, 4}));
  EXPECT_EQ(qb.ne, (std::vector<int64_t>{4, 64}));
  EXPECT_EQ(f.tensor("blk.1.attn_k.weight.lora_b").ne, (std::vector<int64_t>{4, 32}));
  EXPECT_EQ(f.tensor("blk.1.ffn_down.weight.lora_a").ne, (std::vector<int64_t>{128, 4}));
  EXPECT_EQ(qa.type, static_cast<uint32_t>(peft::io::GgmlType::F32));
  // lora_a is PEFT's lora_A byte for byte; lora_b of v_proj too (no permutation there).
  const auto st = peft::io::load_safetensors(dir + "/adapter_model.safetensors");
  EXPECT_TRUE(at::equal(gguf_tensor(qa), st.at("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight")));
  EXPECT_TRUE(at::equal(gguf_tensor(f.tensor("blk.0.attn_v.weight.lora_b")),
                        st.at("base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight")));
  auto merged = merged_model(kTiny, dir);
  expect_reapplied(kTiny, gguf, *merged, 14);
  // F16 lora tensors: the same within f16 rounding.
  const std::string g16 = out_dir("plain_adapter_f16.gguf");
  peft::exporter::GgufLoraExportOptions o;
  o.type = peft::io::GgmlType::F16;
  peft::exporter::export_lora_gguf(dir, fixture(kTiny), g16, o);
  EXPECT_EQ(peft::io::GgufFile::open(g16).tensor("blk.0.attn_q.weight.lora_a").type,
            static_cast<uint32_t>(peft::io::GgmlType::F16));
  expect_reapplied(kTiny, g16, *merged, 14, 2e-3);
  // The HF folder of the same model is an equivalent base.
  const std::string ghf = out_dir("plain_adapter_hfbase.gguf");
  peft::exporter::export_lora_gguf(dir, fixture("gguf/models/tiny_llama/hf"), ghf);
  expect_reapplied(kTiny, ghf, *merged, 14);
}

TEST(GgufExport, RsLoraRankAndAlphaPatternsAreFoldedIntoLoraB) {
  auto cfg = lora(kAllLinear, 4, 6);
  cfg.use_rslora = true;
  cfg.rank_pattern = {{"q_proj", 2}, {"layers.1.mlp.down_proj", 3}};
  cfg.alpha_pattern = {{"v_proj", 5}};
  const std::string dir = out_dir("rslora_adapter"), gguf = out_dir("rslora_adapter.gguf");
  make_adapter(kTiny, cfg, dir, 1);
  const auto r = peft::exporter::export_lora_gguf(dir, fixture(kTiny), gguf);
  EXPECT_EQ(r.alpha, 6.0f);
  for (const auto& t : r.tensors) EXPECT_NE(t.fold, 1.0) << t.module;
  const auto f = peft::io::GgufFile::open(gguf);
  EXPECT_EQ(f.tensor("blk.0.attn_q.weight.lora_b").ne[0], 2);
  EXPECT_EQ(f.tensor("blk.1.ffn_down.weight.lora_b").ne[0], 3);
  EXPECT_EQ(f.tensor("blk.0.ffn_down.weight.lora_b").ne[0], 4);
  auto merged = merged_model(kTiny, dir);
  expect_reapplied(kTiny, gguf, *merged, 14);
}

TEST(GgufExport, AdaLoraMaskedAndPrunedTripletsBecomeAPlainLora) {
  peft::AdaLoraConfig cfg;
  cfg.task_type = peft::TaskType::CausalLM;
  cfg.init_r = 4;
  cfg.target_r = 2;
  cfg.total_step = 100;
  cfg.lora_alpha = 12;
  cfg.target_modules = peft::TargetSpec(std::vector<std::string>{"q_proj", "k_proj", "v_proj", "down_proj"});
  const std::string dir = out_dir("adalora_adapter"), gguf = out_dir("adalora_adapter.gguf");
  make_adapter(kTiny, cfg, dir, 2);  // triplet 0 of every module masked (E = 0)
  auto r = peft::exporter::export_lora_gguf(dir, fixture(kTiny), gguf);
  ASSERT_EQ(r.tensors.size(), 8u);
  for (const auto& t : r.tensors) EXPECT_EQ(t.rank, 3) << t.module << ": the masked triplet is dropped";
  auto merged = merged_model(kTiny, dir);
  expect_reapplied(kTiny, gguf, *merged, 8);

  // A pruned save as PEFT writes it after rank allocation: rank_pattern, only kept triplets, and one
  // module at rank 0 (no update: left out).
  const std::string pruned = out_dir("adalora_pruned"), gp = out_dir("adalora_pruned.gguf");
  fs::remove_all(pruned);
  fs::create_directories(pruned);
  auto st = peft::io::load_safetensors(dir + "/adapter_model.safetensors");
  nlohmann::json j = peft::read_json_file(dir + "/adapter_config.json");
  nlohmann::json rp = nlohmann::json::object();
  std::map<std::string, at::Tensor> out;
  int i = 0;
  for (const auto& [key, v] : st) {
    if (key.size() < 7 || key.substr(key.size() - 7) != ".lora_E") continue;
    const std::string mod = key.substr(std::string("base_model.model.").size(), key.size() - 7 - 17);
    // keep {1, 3}, or nothing for the first module
    std::vector<bool> keep = i++ == 0 ? std::vector<bool>{false, false, false, false}
                                      : std::vector<bool>{false, true, false, true};
    rp[mod + ".lora_E"] = keep;
    std::vector<int64_t> idx;
    for (int64_t k = 0; k < 4; ++k)
      if (keep[k]) idx.push_back(k);
    const at::Tensor ix = torch::tensor(idx, at::kLong);
    const std::string stem = key.substr(0, key.size() - 7);
    out[stem + ".lora_A"] = st.at(stem + ".lora_A").index_select(0, ix).contiguous();
    out[stem + ".lora_E"] = st.at(stem + ".lora_E").index_select(0, ix).contiguous();
    out[stem + ".lora_B"] = st.at(stem + ".lora_B").index_select(1, ix).contiguous();
  }
  j["rank_pattern"] = rp;
  peft::write_json_file(pruned + "/adapter_config.json", j);
  peft::io::save_safetensors(pruned + "/adapter_model.safetensors", out);
  r = peft::exporter::export_lora_gguf(pruned, fixture(kTiny), gp);
  ASSERT_EQ(r.tensors.size(), 7u);
  ASSERT_EQ(r.skipped.size(), 1u);
  for (const auto& t : r.tensors) EXPECT_EQ(t.rank, 2) << t.module;
  auto merged_p = merged_model(kTiny, pruned);
  expect_reapplied(kTiny, gp, *merged_p, 7);
  write_logits(out_dir("adalora_pruned_logits.safetensors"), ids(), logits_of(*merged_p, ids()));
}

TEST(GgufExport, EmbeddingAndLmHeadTargetsOnAnUntiedBase) {
  auto cfg = lora({"embed_tokens", "lm_head", "q_proj"}, 4, 16);
  const std::string dir = out_dir("embed_adapter"), gguf = out_dir("embed_adapter.gguf");
  make_adapter(kTiny, cfg, dir, 3);
  const auto r = peft::exporter::export_lora_gguf(dir, fixture(kTiny), gguf);
  ASSERT_EQ(r.tensors.size(), 4u);
  const auto f = peft::io::GgufFile::open(gguf);
  // llama.cpp's layout for token_embd (llama_adapter_lora_init_impl): lora_a ne {r, vocab}, lora_b ne {r, dim}.
  EXPECT_EQ(f.tensor("token_embd.weight.lora_a").ne, (std::vector<int64_t>{4, 512}));
  EXPECT_EQ(f.tensor("token_embd.weight.lora_b").ne, (std::vector<int64_t>{4, 64}));
  EXPECT_EQ(f.tensor("output.weight.lora_a").ne, (std::vector<int64_t>{64, 4}));
  auto merged = merged_model(kTiny, dir);
  expect_reapplied(kTiny, gguf, *merged, 4);
  write_logits(out_dir("embed_merged_logits.safetensors"), ids(), logits_of(*merged, ids()));
}

// ------------------------------------------------------------------------------------ refusals

// Exports `dir` and expects NotSupported/FormatError/ConfigError whose message holds every `parts`.
void expect_refused(const std::string& dir, const std::string& base_rel, const std::vector<std::string>& parts) {
  try {
    peft::exporter::export_lora_gguf(dir, fixture(base_rel), out_dir("refused.gguf"));
    ADD_FAILURE() << dir << ": exported, expected a refusal";
  } catch (const std::exception& e) {
    const std::string m = e.what();
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
    for (const auto& p : parts) EXPECT_NE(m.find(p), std::string::npos) << "'" << p << "' not in: " << m;
  }
}

void edit_config(const std::string& dir, const std::function<void(nlohmann::json&)>& f) {
  nlohmann::json j = peft::read_json_file(dir + "/adapter_config.json");
  f(j);
  peft::write_json_file(dir + "/adapter_config.json", j);
}

TEST(GgufExport, RefusesWhatLlamaCppCannotRepresent) {
  {
    auto c = lora({"q_proj", "v_proj"});
    c.use_dora = true;
    const std::string d = out_dir("refuse_dora");
    make_adapter(kTiny, c, d);
    expect_refused(d, kTiny, {"refuse_dora", "use_dora", "DoRA"});
  }
  {
    peft::PromptTuningConfig c;
    c.task_type = peft::TaskType::CausalLM;
    c.num_virtual_tokens = 4;
    const std::string d = out_dir("refuse_prompt");
    make_adapter(kTiny, c, d);
    expect_refused(d, kTiny, {"refuse_prompt", "PROMPT_TUNING", "prompt-learning"});
  }
  {
    auto c = lora({"q_proj"});
    c.modules_to_save = std::vector<std::string>{"lm_head"};
    const std::string d = out_dir("refuse_modules_to_save");
    make_adapter(kTiny, c, d);
    expect_refused(d, kTiny, {"refuse_modules_to_save", "modules_to_save", "lm_head"});
  }
  {
    auto c = lora({"q_proj"});
    c.lora_bias = true;
    const std::string d = out_dir("refuse_lora_bias");
    make_adapter(kTiny, c, d);
    expect_refused(d, kTiny, {"refuse_lora_bias", "lora_bias"});
  }
  const std::string plain = out_dir("refuse_base");
  make_adapter(kTiny, lora({"q_proj", "v_proj"}), plain);
  {
    // bias / fan_in_fan_out as a config would state them (the tiny Llama has no biases to train).
    const std::string d = out_dir("refuse_bias");
    fs::remove_all(d);
    fs::copy(plain, d);
    edit_config(d, [](nlohmann::json& j) { j["bias"] = "all"; });
    expect_refused(d, kTiny, {"refuse_bias", "bias = 'all'"});
    edit_config(d, [](nlohmann::json& j) {
      j["bias"] = "none";
      j["fan_in_fan_out"] = true;
    });
    expect_refused(d, kTiny, {"refuse_bias", "fan_in_fan_out"});
  }
  {
    // A target the base has no tensor for (layer 5 of a 2-layer model), and an adapter for another base.
    const std::string d = out_dir("refuse_no_tensor");
    fs::remove_all(d);
    fs::copy(plain, d);
    auto st = peft::io::load_safetensors(d + "/adapter_model.safetensors");
    st["base_model.model.model.layers.5.self_attn.q_proj.lora_A.weight"] = torch::ones({4, 64});
    st["base_model.model.model.layers.5.self_attn.q_proj.lora_B.weight"] = torch::ones({64, 4});
    peft::io::save_safetensors(d + "/adapter_model.safetensors", st);
    expect_refused(d, kTiny, {"refuse_no_tensor", "model.layers.5.self_attn.q_proj", "blk.5.attn_q.weight"});
    const std::string mlp = out_dir("refuse_other_base");
    make_adapter(kTiny, lora({"gate_proj"}), mlp);  // [128, 64] here, [172, 64] in stories260K
    expect_refused(mlp, kStories, {"refuse_other_base", "model.layers.0.mlp.gate_proj", "another base"});
  }
  {
    // Tied output: lm_head has no output.weight; a token_embd LoRA would also hit the tied output matmul.
    const std::string d1 = out_dir("refuse_tied_lm_head"), d2 = out_dir("refuse_tied_embed");
    // (Our tied Llama has no lm_head slot to adapt; the keys are what PEFT saves for an untied one.)
    make_adapter(kTied, lora({"q_proj"}), d1);
    auto st = peft::io::load_safetensors(d1 + "/adapter_model.safetensors");
    st["base_model.model.lm_head.lora_A.weight"] = torch::ones({4, 64});
    st["base_model.model.lm_head.lora_B.weight"] = torch::ones({512, 4});
    peft::io::save_safetensors(d1 + "/adapter_model.safetensors", st);
    expect_refused(d1, kTied, {"refuse_tied_lm_head", "lm_head", "ties"});
    make_adapter(kTied, lora({"embed_tokens"}), d2);
    expect_refused(d2, kTied, {"refuse_tied_embed", "embed_tokens", "ties"});
  }
  {
    // --type other than f32 / f16.
    peft::exporter::GgufLoraExportOptions o;
    o.type = peft::io::GgmlType::Q8_0;
    EXPECT_THROW(peft::exporter::export_lora_gguf(plain, fixture(kTiny), out_dir("refused.gguf"), o),
                 peft::ConfigError);
  }
}

// ------------------------------------------------------------------------------------ merged GGUF

TEST(GgufExport, MergedGgufLoadsBackWithOurLogits) {
  const std::string dir = out_dir("merge_adapter");
  make_adapter(kTiny, lora(kAllLinear, 4, 8), dir, 4);
  auto merged = merged_model(kTiny, dir);
  const at::Tensor ours = logits_of(*merged, ids());
  write_logits(out_dir("merge_tiny_logits.safetensors"), ids(), ours);
  const auto base = peft::io::GgufFile::open(fixture(kTiny));

  const std::string f32 = out_dir("merged_tiny_f32.gguf");
  auto r = peft::exporter::write_merged_gguf(*merged, base, f32, peft::io::GgmlType::F32);
  EXPECT_EQ(r.tensors, 21);
  const auto g = peft::io::GgufFile::open(f32);
  EXPECT_EQ(g.get_uint("general.file_type"), 0u);
  EXPECT_EQ(g.get_string("tokenizer.ggml.model"), base.get_string("tokenizer.ggml.model"));
  EXPECT_EQ(g.get_strings("tokenizer.ggml.tokens"), base.get_strings("tokenizer.ggml.tokens"));
  EXPECT_EQ(g.keys(), base.keys());
  for (std::size_t i = 0; i < base.tensors().size(); ++i) {
    EXPECT_EQ(g.tensors()[i].name, base.tensors()[i].name);
    EXPECT_EQ(g.tensors()[i].ne, base.tensors()[i].ne);
  }
  auto back = peft::models::load_model(f32);
  EXPECT_TRUE(close(logits_of(*back, ids()), ours, 1e-5));

  // Q8_0: matrices bit-identical to ggml_quantize of our merged weights (Q/K in llama.cpp's order),
  // norms F32; logits within quantisation error.
  const std::string q8 = out_dir("merged_tiny_q8_0.gguf");
  r = peft::exporter::write_merged_gguf(*merged, base, q8, peft::io::GgmlType::Q8_0);
  EXPECT_EQ(r.quantized, 16);  // 7 per layer x 2, token_embd, output
  const auto q = peft::io::GgufFile::open(q8);
  EXPECT_EQ(q.get_uint("general.file_type"), 7u);
  auto ps = params(*merged);
  std::map<std::string, peft::models::GgufTensorTarget> by_gguf;
  for (const auto& t : peft::models::gguf_tensor_map(base)) by_gguf[t.gguf_name] = t;
  for (const auto& t : q.tensors()) {
    const auto& tg = by_gguf.at(t.name);
    at::Tensor w = ps.at(tg.hf_name).to(at::kFloat).contiguous();
    if (t.ne.size() == 1) {
      EXPECT_EQ(t.ggml_type(), peft::io::GgmlType::F32) << t.name;
      continue;
    }
    ASSERT_EQ(t.ggml_type(), peft::io::GgmlType::Q8_0) << t.name;
    if (tg.permute_heads > 0) {
      const auto src = peft::models::gguf_unpermute_rows(w.size(0), tg.permute_heads);
      at::Tensor p = at::empty_like(w);
      for (int64_t i = 0; i < w.size(0); ++i) p[src[i]].copy_(w[i]);
      w = p;
    }
    std::vector<uint8_t> expect(t.nbytes);
    peft::quant::ggml_quantize(peft::io::GgmlType::Q8_0, w.data_ptr<float>(), expect.data(), w.numel());
    EXPECT_EQ(std::memcmp(expect.data(), t.data, t.nbytes), 0) << t.name;
  }
  auto backq = peft::models::load_model(q8);
  const at::Tensor lq = logits_of(*backq, ids());
  const double rel = ((lq - ours).norm() / ours.norm()).item<double>();
  EXPECT_LT(rel, 0.05);
  EXPECT_GT(rel, 1e-7);
  // Random weights: near-ties may swap, most positions keep their argmax.
  EXPECT_GE(lq.argmax(-1).eq(ours.argmax(-1)).sum().item<int64_t>(), 9);
  std::cout << "[merged q8_0] relative logits error " << rel << "\n";
}

TEST(GgufExport, Stories260KAdapterAndMergedModelForLlamaCpp) {
  // The files tools/llamacpp/compare_logits.py runs llama.cpp on (docs/gguf.md, "Exporting to llama.cpp").
  const std::string dir = out_dir("stories_adapter"), gguf = out_dir("stories_adapter.gguf");
  auto cfg = lora(kAllLinear, 8, 16);
  cfg.use_rslora = true;  // scaling folded into lora_b
  auto pm = make_adapter(kStories, cfg, dir, 5);
  {
    // Large enough to move the logits well beyond float noise.
    torch::NoGradGuard ng;
    for (auto& p : pm->base_model().named_parameters(true))
      if (p.key().find("lora_B") != std::string::npos) p.value().mul_(0.1);
  }
  pm->save_pretrained(dir);
  peft::exporter::export_lora_gguf(dir, fixture(kStories), gguf);
  auto merged = merged_model(kStories, dir);
  const at::Tensor input_ids = ids();
  const at::Tensor ours = logits_of(*merged, input_ids);
  write_logits(out_dir("stories_merged_logits.safetensors"), input_ids, ours);
  auto base = peft::models::load_model(fixture(kStories));
  EXPECT_GT((ours - logits_of(*base, input_ids)).abs().max().item<double>(), 1e-2) << "the adapter changes little";
  expect_reapplied(kStories, gguf, *merged, 35, 1e-5);
  const auto bf = peft::io::GgufFile::open(fixture(kStories));
  peft::exporter::write_merged_gguf(*merged, bf, out_dir("stories_merged_f32.gguf"), peft::io::GgmlType::F32);
  peft::exporter::write_merged_gguf(*merged, bf, out_dir("stories_merged_q8_0.gguf"), peft::io::GgmlType::Q8_0);
  auto back = peft::models::load_model(out_dir("stories_merged_f32.gguf"));
  EXPECT_TRUE(close(logits_of(*back, input_ids), ours, 1e-5));
  // Our logits on the Q8_0 file (its blocks decoded to fp32): what llama.cpp's run of it is compared with.
  auto back_q8 = peft::models::load_model(out_dir("stories_merged_q8_0.gguf"));
  write_logits(out_dir("stories_merged_q8_0_logits.safetensors"), input_ids, logits_of(*back_q8, input_ids));
}

}  // namespace
