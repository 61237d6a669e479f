// HF folders (single and sharded) and the llama2.c conversion (torch-free).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "peft/core/error.h"
#include "peft/core/file_util.h"
#include "peft/io/hf_checkpoint.h"
#include "peft/io/llama2c.h"
#include "peft/io/tokenizer.h"
#include "test_utils.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using peft::FormatError;
using peft::io::HfCheckpoint;

std::string stories(const std::string& f) { return peft::test::source_path("models/stories260K/" + f); }

TEST(Llama2c, LegacyAndV1GiveIdenticalWeights) {
  const auto a = peft::io::read_llama2c(stories("stories260K.bin"));
  const auto b = peft::io::read_llama2c(stories("stories260K_v1.bin"));
  EXPECT_EQ(a.config.version, 0);
  EXPECT_EQ(b.config.version, 1);
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  int64_t params = 0;
  for (const auto& [name, t] : a.tensors) {
    ASSERT_TRUE(b.tensors.count(name)) << name;
    EXPECT_EQ(t.shape, b.tensors.at(name).shape) << name;
    EXPECT_EQ(t.data, b.tensors.at(name).data) << name;
    params += static_cast<int64_t>(t.data.size());
  }
  EXPECT_EQ(params, 260032);
  EXPECT_EQ(a.config.n_layers, 5);
  EXPECT_EQ(a.config.n_heads, 8);
  EXPECT_EQ(a.config.n_kv_heads, 4);
  EXPECT_EQ(a.config.vocab_size, 512);
  EXPECT_TRUE(a.config.shared_classifier);
  EXPECT_EQ(a.tensors.count("lm_head.weight"), 0u);
}

TEST(Llama2c, RopeRowsArePermutedToHfLayout) {
  const auto m = peft::io::read_llama2c(stories("stories260K.bin"));
  // Raw legacy layout: header (28 bytes), tok_emb [512,64], rms_att [5,64], then wq[0] [64,64].
  const std::string raw = peft::read_file(stories("stories260K.bin"));
  const float* wq0 = reinterpret_cast<const float*>(raw.data() + 28 + 4 * (512 * 64 + 5 * 64));
  const auto& q = m.tensors.at("model.layers.0.self_attn.q_proj.weight").data;
  // head_dim 8: HF row h*8 + j*4 + i is llama2.c row h*8 + 2i + j.
  for (int h = 0; h < 8; ++h)
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 2; ++j)
        for (int c = 0; c < 64; c += 21)
          ASSERT_EQ(q[(h * 8 + j * 4 + i) * 64 + c], wq0[(h * 8 + 2 * i + j) * 64 + c]);
}

TEST(Llama2c, ConvertWritesHfFolder) {
  const auto dir = peft::test::tmp_dir("convert");
  peft::io::convert_llama2c(stories("stories260K.bin"), stories("tok512.bin"), dir);
  const auto ck = HfCheckpoint::open(dir);
  EXPECT_EQ(ck.config()["model_type"], "llama");
  EXPECT_EQ(ck.config()["num_key_value_heads"], 4);
  EXPECT_EQ(ck.config()["tie_word_embeddings"], true);
  ASSERT_NE(ck.generation_config(), nullptr);
  EXPECT_EQ((*ck.generation_config())["eos_token_id"], 2);
  int64_t params = 0;
  for (const auto& n : ck.tensor_names()) params += ck.tensor(n).numel();
  EXPECT_EQ(params, 260032);
  EXPECT_EQ(ck.tensor_names().size(), 2u + 5u * 9u);
  EXPECT_TRUE(fs::exists(dir + "/tokenizer.bin"));
  // The converted tokenizer.json encodes as llama2.c does (GOLDEN.md).
  const auto tok = peft::io::Tokenizer::from_file(dir + "/tokenizer.json");
  const auto ids = tok.encode("Once upon a time").ids;
  EXPECT_EQ(std::vector<int64_t>(ids.begin(), ids.end()), (std::vector<int64_t>{1, 403, 407, 261, 378}));
}

TEST(Llama2c, BadFilesAreRejected) {
  const auto dir = peft::test::tmp_dir("l2c_bad");
  const std::string raw = peft::read_file(stories("stories260K.bin"));
  std::ofstream(dir + "/trunc.bin", std::ios::binary) << raw.substr(0, raw.size() - 4);
  peft::test::expect_throw_with<FormatError>([&] { peft::io::read_llama2c(dir + "/trunc.bin"); },
                                             {"trunc.bin", "implies"});
  std::ofstream(dir + "/tiny.bin", std::ios::binary) << "abc";
  peft::test::expect_throw_with<FormatError>([&] { peft::io::read_llama2c(dir + "/tiny.bin"); },
                                             {"tiny.bin", "too short"});
  std::string bad = raw;
  bad[12] = 7;  // n_heads = 7 does not divide dim 64
  std::ofstream(dir + "/heads.bin", std::ios::binary) << bad;
  peft::test::expect_throw_with<FormatError>([&] { peft::io::read_llama2c(dir + "/heads.bin"); },
                                             {"heads.bin", "n_heads"});
}

// A two-shard checkpoint with an index, built from the converted model.
TEST(HfCheckpoint, ShardedIndex) {
  const auto src = peft::test::tmp_dir("shard_src");
  peft::io::convert_llama2c(stories("stories260K.bin"), "", src);
  const auto full = HfCheckpoint::open(src);
  const auto dir = peft::test::tmp_dir("sharded");
  fs::copy(src + "/config.json", dir + "/config.json");
  std::map<std::string, peft::io::TensorBytes> s1, s2;
  json wm;
  int i = 0;
  for (const auto& n : full.tensor_names()) {
    const auto& t = full.tensor(n);
    auto& dst = (i++ % 2) ? s2 : s1;
    dst[n] = {t.dtype, t.shape, t.data, t.nbytes()};
    wm[n] = (&dst == &s1) ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  }
  peft::io::write_safetensors(dir + "/model-00001-of-00002.safetensors", s1);
  peft::io::write_safetensors(dir + "/model-00002-of-00002.safetensors", s2);
  peft::write_json_file(dir + "/model.safetensors.index.json", {{"metadata", json::object()}, {"weight_map", wm}});
  const auto ck = HfCheckpoint::open(dir);
  EXPECT_EQ(ck.shards().size(), 2u);
  EXPECT_EQ(ck.tensor_names(), full.tensor_names());
  for (const auto& n : full.tensor_names())
    EXPECT_EQ(0, std::memcmp(ck.tensor(n).data, full.tensor(n).data, full.tensor(n).nbytes()));

  // An index entry pointing at the wrong shard is named in the error.
  json bad = wm;
  const std::string first = full.tensor_names().front();
  bad[first] = bad[first] == "model-00001-of-00002.safetensors" ? "model-00002-of-00002.safetensors"
                                                                 : "model-00001-of-00002.safetensors";
  peft::write_json_file(dir + "/model.safetensors.index.json", {{"weight_map", bad}});
  peft::test::expect_throw_with<FormatError>([&] { HfCheckpoint::open(dir); }, {first, "no such tensor"});
  bad[first] = "../escape.safetensors";
  peft::write_json_file(dir + "/model.safetensors.index.json", {{"weight_map", bad}});
  peft::test::expect_throw_with<FormatError>([&] { HfCheckpoint::open(dir); }, {"not a file name inside"});
}

TEST(HfCheckpoint, MissingPiecesAreNamed) {
  const auto dir = peft::test::tmp_dir("hf_missing");
  peft::test::expect_throw_with<FormatError>([&] { HfCheckpoint::open(dir); }, {"no config.json"});
  peft::write_file_atomic(dir + "/config.json", "{\"model_type\": ");
  peft::test::expect_throw_with<FormatError>([&] { HfCheckpoint::open(dir); }, {"config.json", "not valid JSON"});
  peft::write_file_atomic(dir + "/config.json", "{\"model_type\": \"llama\"}");
  peft::write_file_atomic(dir + "/pytorch_model.bin", "x");
  peft::test::expect_throw_with<FormatError>([&] { HfCheckpoint::open(dir); }, {"pytorch_model.bin"});
}

}  // namespace
