// T5 against transformers (tests/fixtures/models/t5_*; tools/reference/gen_models_t5.py).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "golden.h"
#include "peft/core/error.h"
#include "peft/core/file_util.h"
#include "peft/io/tensor_bridge.h"
#include "peft/models/generation.h"
#include "peft/models/model.h"
#include "peft/models/t5.h"

namespace {

using peft::models::ModelInputs;
using peft::test::close;

std::shared_ptr<peft::models::PretrainedModel> load(const peft::test::GoldenCase& c) {
  return peft::models::load_model(c.dir);
}

double max_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.detach().to(at::kDouble) - b.detach().to(at::kDouble)).abs().max().item<double>();
}

// Prints the measured error next to the check (the report quotes these numbers).
::testing::AssertionResult near(const char* what, const at::Tensor& a, const at::Tensor& b, double atol) {
  if (a.sizes() == b.sizes()) std::cout << "[t5] max |diff| " << what << " = " << max_diff(a, b) << "\n";
  return close(a, b, atol);
}

std::vector<peft::models::KeyValue> prefix(const peft::test::GoldenCase& c, const std::string& name, int n) {
  std::vector<peft::models::KeyValue> r;
  for (int i = 0; i < n; ++i)
    r.push_back({c[name + "_key." + std::to_string(i)], c[name + "_value." + std::to_string(i)]});
  return r;
}

// A copy of a fixture with a modified config.json (and optionally extra checkpoint tensors).
std::string variant(const std::string& fixture, const std::string& name,
                    const std::function<void(nlohmann::json&)>& edit,
                    const std::map<std::string, at::Tensor>& extra = {}) {
  namespace fs = std::filesystem;
  const std::string src = peft::test::fixture("models/" + fixture);
  const std::string dir = peft::test::tmp_dir(name);
  auto cfg = nlohmann::json::parse(peft::read_file(src + "/config.json"));
  edit(cfg);
  peft::write_file_atomic(dir + "/config.json", cfg.dump(2));
  if (extra.empty()) {
    fs::copy_file(src + "/model.safetensors", dir + "/model.safetensors");
  } else {
    auto t = peft::io::load_safetensors(src + "/model.safetensors");
    for (const auto& [k, v] : extra) t[k] = v;
    peft::io::save_safetensors(dir + "/model.safetensors", t);
  }
  return dir;
}

void check_seq2seq(const char* name, bool full_grads) {
  const auto c = peft::test::load_case(name);
  auto m = load(c);
  ASSERT_TRUE(m->is_encoder_decoder());
  ModelInputs in;
  in.input_ids = c["input_ids"];
  in.attention_mask = c["attention_mask"];
  in.labels = c["labels"];  // decoder_input_ids = labels shifted right, -100 -> pad
  auto out = m->forward(in);
  EXPECT_TRUE(near("logits", out.logits, c["logits"], c.atol)) << name;
  EXPECT_TRUE(near("encoder hidden", out.encoder_last_hidden_state, c["encoder_last_hidden_state"], c.atol)) << name;
  EXPECT_TRUE(near("decoder hidden", out.last_hidden_state, c["last_hidden_state"], c.atol)) << name;
  EXPECT_TRUE(near("loss", out.loss.reshape({1}), c["loss"], c.atol)) << name;
  out.loss.backward();
  int n = 0, compared = 0;
  double worst = 0;
  for (const auto& p : m->named_parameters()) {
    ++n;
    ASSERT_TRUE(p.value().grad().defined()) << name << " " << p.key();
    const std::string k = "grad." + p.key();
    if (!c.has(k)) {
      EXPECT_FALSE(full_grads) << name << ": no expected gradient for " << p.key();
      continue;
    }
    ++compared;
    const double scale = std::max(c[k].abs().max().item<double>(), 1e-3);
    worst = std::max(worst, max_diff(p.value().grad(), c[k]) / scale);
    EXPECT_TRUE(peft::test::grad_close(p.value().grad(), c[k], c.grad_rtol)) << name << " " << p.key();
  }
  std::cout << "[t5] " << name << ": " << compared << "/" << n
            << " gradients compared, max |diff| / max |expected| = " << worst << "\n";
  // Every expected gradient names one of our parameters.
  int expected = 0;
  for (const auto& [k, v] : c.t) expected += k.rfind("grad.", 0) == 0;
  EXPECT_EQ(expected, compared) << name;

  // Explicit decoder_input_ids give the same logits.
  torch::NoGradGuard ng;
  ModelInputs d;
  d.input_ids = c["input_ids"];
  d.attention_mask = c["attention_mask"];
  d.decoder_input_ids = c["decoder_input_ids"];
  EXPECT_TRUE(close(m->forward(d).logits, c["logits"], c.atol)) << name;
}

TEST(T5, TiedReluLogitsHiddenLossAndEveryGradient) {
  check_seq2seq("models/t5_seq2seq", /*full_grads=*/true);
  const auto c = peft::test::load_case("models/t5_seq2seq");
  auto m = load(c);
  // shared + relative bias (x2) + final norms (x2) + encoder 2 x (4 + 2 + 2) + decoder 2 x (8 + 2 + 3).
  EXPECT_EQ(m->named_parameters().size(), 1u + 2 + 2 + 16 + 26);
  for (const auto& p : m->named_parameters()) EXPECT_EQ(p.key().find("lm_head"), std::string::npos);
}

TEST(T5, GatedUntiedLogitsHiddenLossAndGradients) {
  check_seq2seq("models/t5_gated", /*full_grads=*/false);
  const auto c = peft::test::load_case("models/t5_gated");
  auto m = load(c);
  auto params = m->named_parameters();
  EXPECT_NE(params.find("lm_head.weight"), nullptr);
  EXPECT_NE(params.find("decoder.block.1.layer.2.DenseReluDense.wi_1.weight"), nullptr);
  EXPECT_NE(params.find("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"), nullptr);
  EXPECT_EQ(params.find("encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight"), nullptr);
}

TEST(T5, InputsEmbedsAndDecoderInputsEmbeds) {
  for (const char* name : {"models/t5_seq2seq", "models/t5_gated"}) {
    const auto c = peft::test::load_case(name);
    auto m = load(c);
    torch::NoGradGuard ng;
    ModelInputs e;
    e.inputs_embeds = c["inputs_embeds"];
    e.attention_mask = c["attention_mask"];
    e.decoder_inputs_embeds = c["decoder_inputs_embeds"];
    EXPECT_TRUE(near("inputs_embeds logits", m->forward(e).logits, c["logits_embeds"], c.atol)) << name;
  }
}

TEST(T5, EncoderAndDecoderKeyValuePrefixes) {
  const auto c = peft::test::load_case("models/t5_gated");
  auto m = load(c);
  torch::NoGradGuard ng;
  ModelInputs d;  // decoder self-attention prefix only (PEFT prefix tuning for T5)
  d.input_ids = c["input_ids"];
  d.attention_mask = c["attention_mask"];
  d.decoder_input_ids = c["decoder_input_ids"];
  d.decoder_prefix_kv = prefix(c, "decoder_prefix", 2);
  EXPECT_TRUE(near("decoder prefix logits", m->forward(d).logits, c["logits_decoder_prefix"], c.atol));

  ModelInputs b = d;  // plus the encoder self-attention prefix; the mask covers the tokens only
  b.prefix_kv = prefix(c, "prefix", 2);
  auto out = m->forward(b);
  EXPECT_TRUE(near("encoder prefix hidden", out.encoder_last_hidden_state, c["encoder_last_hidden_state_prefix"], c.atol));
  EXPECT_TRUE(near("both prefixes logits", out.logits, c["logits_prefix"], c.atol));

  ModelInputs f = b;  // a mask that covers prefix + tokens gives the same
  f.attention_mask = at::cat({at::ones({2, 3}, c["attention_mask"].options()), c["attention_mask"]}, 1);
  EXPECT_TRUE(close(m->forward(f).logits, c["logits_prefix"], c.atol));

  ModelInputs bad = d;
  bad.decoder_prefix_kv.pop_back();
  peft::test::expect_throw_with<std::invalid_argument>([&] { m->forward(bad); },
                                                       {"[t5]", "decoder_prefix_kv", "1 layers"});
}

TEST(T5, IncrementalDecodingEqualsFullForward) {
  for (const char* name : {"models/t5_seq2seq", "models/t5_gated"}) {
    const auto c = peft::test::load_case(name);
    auto m = load(c);
    torch::NoGradGuard ng;
    for (bool with_prefix : {false, true}) {
      if (with_prefix && !c.has("decoder_prefix_key.0")) continue;
      const at::Tensor dec = c["decoder_input_ids"];
      ModelInputs full;
      full.input_ids = c["input_ids"];
      full.attention_mask = c["attention_mask"];
      full.decoder_input_ids = dec;
      if (with_prefix) full.decoder_prefix_kv = prefix(c, "decoder_prefix", 2);
      const auto ref = m->forward(full);
      peft::models::KVCache cache;
      at::Tensor enc;
      const int64_t T = dec.size(1);
      for (int64_t t0 : {int64_t{0}, int64_t{2}, int64_t{3}, int64_t{4}}) {  // 2-token prefill, then 1 at a time
        const int64_t len = t0 == 0 ? 2 : 1;
        ModelInputs s;
        if (enc.defined()) s.encoder_outputs = enc;
        else s.input_ids = c["input_ids"];
        s.attention_mask = c["attention_mask"];
        s.decoder_input_ids = dec.narrow(1, t0, len);
        s.decoder_prefix_kv = full.decoder_prefix_kv;
        s.cache = &cache;
        const auto out = m->forward(s);
        enc = out.encoder_last_hidden_state;
        EXPECT_TRUE(near("incremental logits", out.logits, ref.logits.narrow(1, t0, len), c.atol)) << name << " t0=" << t0;
      }
      EXPECT_EQ(cache.length(), T);
      EXPECT_EQ(cache.cross_layers.size(), 2u);
    }
  }
}

TEST(T5, GreedyGenerationMatchesTransformers) {
  for (const char* name : {"models/t5_seq2seq", "models/t5_gated"}) {
    const auto c = peft::test::load_case(name);
    auto m = load(c);
    auto g = peft::models::generation_config_from(m->config());
    EXPECT_EQ(g.decoder_start_token_id, 0);
    g.max_new_tokens = 8;
    g.pad_token_id = 0;
    g.eos_token_id = {c.meta.at("generation_eos_token_id").get<int64_t>()};
    at::Tensor out = peft::models::generate_seq2seq(*m, c["input_ids"], c["attention_mask"], g);
    EXPECT_TRUE(torch::equal(out, c["generated"])) << name << "\n" << out << "\nvs\n" << c["generated"];
    g.eos_token_id.clear();
    out = peft::models::generate_seq2seq(*m, c["input_ids"], c["attention_mask"], g);
    EXPECT_TRUE(torch::equal(out, c["generated_noeos"])) << name << "\n" << out << "\nvs\n" << c["generated_noeos"];
  }
  const auto c = peft::test::load_case("models/t5_gated");
  auto m = load(c);
  peft::models::GenerationConfig g;
  g.max_new_tokens = 3;
  EXPECT_THROW(peft::models::generate(*m, c["input_ids"], c["attention_mask"], g), peft::NotSupported);
  // Decoder prefix: the first generated token is the argmax of the prefixed forward at position 0.
  at::Tensor out = peft::models::generate_seq2seq(*m, c["input_ids"], c["attention_mask"], g, {},
                                                  prefix(c, "decoder_prefix", 2));
  ModelInputs d;
  d.input_ids = c["input_ids"];
  d.attention_mask = c["attention_mask"];
  d.decoder_input_ids = out.narrow(1, 0, out.size(1) - 1);
  d.decoder_prefix_kv = prefix(c, "decoder_prefix", 2);
  torch::NoGradGuard ng;
  EXPECT_TRUE(torch::equal(m->forward(d).logits.argmax(-1), out.narrow(1, 1, out.size(1) - 1)));
}

TEST(T5, Bf16LogitsWithinBf16ToleranceOfFp32) {
  for (const char* name : {"models/t5_seq2seq", "models/t5_gated"}) {
    const auto c = peft::test::load_case(name);
    peft::models::LoadOptions o;
    o.dtype = "bfloat16";
    auto m = peft::models::load_model(c.dir, o);
    torch::NoGradGuard ng;
    ModelInputs in;
    in.input_ids = c["input_ids"];
    in.attention_mask = c["attention_mask"];
    in.labels = c["labels"];
    const at::Tensor l = m->forward(in).logits;
    EXPECT_EQ(l.scalar_type(), at::kBFloat16);
    const double scale = c["logits"].abs().max().item<double>();
    std::cout << "[t5] " << name << " bf16 max |diff| logits = " << max_diff(l, c["logits"]) << " (max |logit| "
              << scale << ")\n";
    EXPECT_TRUE(close(l.to(at::kFloat), c["logits"], 0.05 * scale)) << name;
  }
}

TEST(T5, T5ModelAndEncoderModelHeads) {
  const auto c = peft::test::load_case("models/t5_seq2seq");
  torch::NoGradGuard ng;
  peft::models::LoadOptions o;
  o.head = peft::models::TaskHead::Base;  // T5Model from a T5ForConditionalGeneration checkpoint
  auto base = peft::models::load_model(c.dir, o);
  ModelInputs in;
  in.input_ids = c["input_ids"];
  in.attention_mask = c["attention_mask"];
  in.decoder_input_ids = c["decoder_input_ids"];
  auto out = base->forward(in);
  EXPECT_FALSE(out.logits.defined());
  EXPECT_TRUE(close(out.last_hidden_state, c["last_hidden_state"], c.atol));
  EXPECT_TRUE(close(out.encoder_last_hidden_state, c["encoder_last_hidden_state"], c.atol));

  // T5EncoderModel: decoder tensors in the checkpoint are ignored (as transformers does), and so
  // are stored copies of the tied embeddings.
  const at::Tensor shared = peft::io::load_safetensors(c.dir + "/model.safetensors").at("shared.weight");
  const std::string dir = variant(
      "t5_seq2seq", "t5_encoder",
      [](nlohmann::json& j) { j["architectures"] = {"T5EncoderModel"}; },
      {{"encoder.embed_tokens.weight", shared}, {"decoder.embed_tokens.weight", shared}});
  auto enc = peft::models::load_model(dir);
  EXPECT_FALSE(enc->is_encoder_decoder());
  for (const auto& p : enc->named_parameters()) EXPECT_EQ(p.key().rfind("decoder.", 0), std::string::npos) << p.key();
  ModelInputs e;
  e.input_ids = c["input_ids"];
  e.attention_mask = c["attention_mask"];
  EXPECT_TRUE(close(enc->forward(e).last_hidden_state, c["encoder_last_hidden_state"], c.atol));
  std::filesystem::remove_all(dir);
}

TEST(T5, BadCheckpointsAndConfigs) {
  // num_heads * d_kv inconsistent with the checkpoint's q weight.
  const std::string dir = variant("t5_seq2seq", "t5_bad_dkv", [](nlohmann::json& j) { j["d_kv"] = 4; });
  peft::test::expect_throw_with<peft::FormatError>(
      [&] { peft::models::load_model(dir); },
      {"encoder.block.0.layer.0.SelfAttention.q.weight", "[32, 32]", "[16, 32]"});
  std::filesystem::remove_all(dir);

  auto make = [](const nlohmann::json& extra = nlohmann::json::object()) {
    nlohmann::json j = {{"model_type", "t5"}, {"vocab_size", 64}, {"d_model", 32}, {"d_kv", 8}, {"d_ff", 37},
                        {"num_layers", 1}, {"num_heads", 4}, {"relative_attention_num_buckets", 8},
                        {"relative_attention_max_distance", 16}};
    j.update(extra);
    return peft::models::create_model(peft::models::ModelConfig(j), peft::models::TaskHead::Seq2SeqLM);
  };
  EXPECT_NO_THROW(make({{"feed_forward_proj", "gated-silu"}}));
  peft::test::expect_throw_with<peft::NotSupported>([&] { make({{"feed_forward_proj", "gated-swiglu"}}); },
                                                    {"[t5]", "feed_forward_proj 'gated-swiglu'", "'swiglu'"});
  peft::test::expect_throw_with<peft::ConfigError>([&] { make({{"feed_forward_proj", "fancy-relu"}}); },
                                                   {"[t5]", "feed_forward_proj 'fancy-relu'"});
  peft::test::expect_throw_with<peft::ConfigError>([&] { make({{"feed_forward_proj", "gated-gelu-x"}}); },
                                                   {"[t5]", "'gated-gelu-x'"});
  peft::test::expect_throw_with<peft::ConfigError>(
      [&] { make({{"relative_attention_max_distance", 4}}); },
      {"[t5]", "relative_attention_num_buckets (8)", "relative_attention_max_distance (4)"});
  peft::test::expect_throw_with<peft::ConfigError>([&] { make({{"pad_token_id", 64}}); },
                                                   {"[t5]", "pad_token_id (64)", "vocab_size (64)"});
  peft::test::expect_throw_with<peft::ConfigError>([&] { make({{"num_heads", 0}}); }, {"num_heads"});
  peft::test::expect_throw_with<peft::NotSupported>(
      [&] {
        peft::models::create_model(peft::models::ModelConfig(nlohmann::json{{"model_type", "t5"}}),
                                   peft::models::TaskHead::CausalLM);
      },
      {"[t5]", "T5ForConditionalGeneration"});

  // Labels without decoder_start_token_id cannot be shifted.
  auto m = make();
  ModelInputs in;
  in.input_ids = torch::tensor({{3, 4}});
  in.labels = torch::tensor({{5, 6}});
  peft::test::expect_throw_with<peft::ConfigError>([&] { m->forward(in); }, {"[t5]", "decoder_start_token_id"});
  in.labels = at::Tensor();
  peft::test::expect_throw_with<std::invalid_argument>([&] { m->forward(in); }, {"[t5]", "decoder_input_ids"});
}

TEST(T5, ConfigParsing) {
  nlohmann::json j = {{"model_type", "t5"}, {"feed_forward_proj", "gated-gelu"}, {"tie_word_embeddings", false},
                      {"eos_token_id", {1, 2}}, {"decoder_start_token_id", 0}};
  auto c = peft::models::T5Config::from(peft::models::ModelConfig(j));
  EXPECT_TRUE(c.is_gated_act);
  EXPECT_EQ(c.dense_act_fn, "gelu_new");
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.scale_decoder_outputs);
  EXPECT_EQ(c.num_decoder_layers, c.num_layers);
  EXPECT_EQ(c.eos_token_id, (std::vector<int64_t>{1, 2}));
  // transformers 5.x files: tied, with the user's choice in scale_decoder_outputs.
  j = {{"model_type", "t5"}, {"tie_word_embeddings", true}, {"scale_decoder_outputs", false}, {"num_decoder_layers", 3}};
  c = peft::models::T5Config::from(peft::models::ModelConfig(j));
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_FALSE(c.scale_decoder_outputs);
  EXPECT_EQ(c.num_decoder_layers, 3);
  EXPECT_EQ(c.dense_act_fn, "relu");
}

}  // namespace
