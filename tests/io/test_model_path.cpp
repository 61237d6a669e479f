// Model path detection on the repository's real files and on hostile ones, and the one-line
// error a command gives for a kind it does not accept (torch-free).
#include <gtest/gtest.h>

#include <climits>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "peft/core/error.h"
#include "peft/core/file_util.h"
#include "peft/io/gguf.h"
#include "peft/io/hf_checkpoint.h"
#include "peft/io/llama2c.h"
#include "peft/io/model_path.h"
#include "peft/io/safetensors.h"
#include "peft/io/tokenizer.h"
#include "test_utils.h"

namespace {

namespace fs = std::filesystem;
using peft::io::detect_model_path;
using peft::io::ModelPathKind;

std::string stories(const std::string& f) { return peft::test::source_path("models/stories260K/" + f); }

const std::vector<ModelPathKind> kLoadable = {ModelPathKind::HfFolder, ModelPathKind::GgufModel};

std::string write(const std::string& dir, const std::string& name, const std::string& bytes) {
  const std::string p = dir + "/" + name;
  std::ofstream(p, std::ios::binary | std::ios::trunc).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return p;
}

std::string ints(std::initializer_list<int32_t> v) {
  std::string b;
  for (int32_t x : v) b.append(reinterpret_cast<const char*>(&x), 4);
  return b;
}

TEST(ModelPath, Llama2cCheckpointsByHeaderAndSize) {
  for (const char* f : {"stories260K.bin", "stories260K_v1.bin"}) {
    const auto p = detect_model_path(stories(f));
    ASSERT_EQ(p.kind, ModelPathKind::Llama2cCheckpoint) << f << ": " << p.reason;
    // The header-only reader agrees with the full reader, and the parameter count with its tensors.
    const auto full = peft::io::read_llama2c(stories(f));
    EXPECT_EQ(p.llama2c.version, full.config.version);
    EXPECT_EQ(p.llama2c.dim, full.config.dim);
    EXPECT_EQ(p.llama2c.hidden_dim, full.config.hidden_dim);
    EXPECT_EQ(p.llama2c.n_layers, full.config.n_layers);
    EXPECT_EQ(p.llama2c.n_heads, full.config.n_heads);
    EXPECT_EQ(p.llama2c.n_kv_heads, full.config.n_kv_heads);
    EXPECT_EQ(p.llama2c.vocab_size, full.config.vocab_size);
    EXPECT_EQ(p.llama2c.seq_len, full.config.seq_len);
    EXPECT_EQ(p.llama2c.shared_classifier, full.config.shared_classifier);
    uint64_t params = 0;
    for (const auto& [name, t] : full.tensors) params += t.data.size();
    EXPECT_EQ(peft::io::llama2c_parameter_count(p.llama2c), params);
    EXPECT_EQ(peft::io::llama2c_file_size(p.llama2c), fs::file_size(stories(f)));
    EXPECT_EQ(p.tokenizer_beside, stories("tok512.bin"));
  }
  EXPECT_EQ(detect_model_path(stories("stories260K.bin")).llama2c.version, 0);
  EXPECT_EQ(detect_model_path(stories("stories260K_v1.bin")).llama2c.version, 1);
}

TEST(ModelPath, Llama2cCheckpointErrorNamesItAndTheConvertLine) {
  const std::string p = stories("stories260K.bin");
  EXPECT_EQ(peft::io::model_path_error(detect_model_path(p), kLoadable, "load_model"),
            "[load_model] " + p +
                " is a llama2.c checkpoint (v0, dim 64, 5 layers, vocab 512), not a Hugging Face model folder "
                "(config.json + safetensors) or a GGUF model file; convert it first: peft convert " +
                p + " OUT --tokenizer " + stories("tok512.bin"));
  peft::test::expect_throw_with<peft::ConfigError>(
      [&] { peft::io::require_model_path(p, kLoadable, "load_model"); }, {"[load_model]", "peft convert"});
  // The HF checkpoint reader gives the same hint instead of a safetensors header error.
  peft::test::expect_throw_with<peft::ConfigError>([&] { peft::io::HfCheckpoint::open(p); },
                                                   {"[hf_checkpoint]", "llama2.c checkpoint", "peft convert"});
}

TEST(ModelPath, Llama2cTokenizer) {
  const auto p = detect_model_path(stories("tok512.bin"));
  ASSERT_EQ(p.kind, ModelPathKind::Llama2cTokenizer) << p.reason;
  EXPECT_EQ(static_cast<std::size_t>(p.tokenizer_vocab), peft::io::Tokenizer::from_llama2c(stories("tok512.bin")).vocab_size());
  int32_t max_len = 0;
  std::memcpy(&max_len, peft::read_file(stories("tok512.bin")).data(), 4);
  EXPECT_EQ(p.tokenizer_max_token_length, max_len);
  EXPECT_NE(peft::io::model_path_error(p, kLoadable, "load_model").find("a tokenizer, not a model"), std::string::npos);
}

TEST(ModelPath, FolderOfLlama2cFilesListsThemAndPointsAtOne) {
  const auto p = detect_model_path(stories(""));
  ASSERT_EQ(p.kind, ModelPathKind::Folder) << p.reason;
  ASSERT_EQ(p.contents.size(), 3u);  // two checkpoints and the tokenizer (GOLDEN.md, LICENSE, SOURCE.txt are not)
  ASSERT_EQ(p.candidates().size(), 2u);
  for (const auto* c : p.candidates()) {
    EXPECT_EQ(c->kind, ModelPathKind::Llama2cCheckpoint);
    EXPECT_EQ(c->tokenizer_beside, stories("tok512.bin"));
  }
  const std::string msg = peft::io::model_path_error(p, kLoadable, "load_model");
  for (const std::string& want : std::vector<std::string>{"2 models", "stories260K.bin: a llama2.c checkpoint (v0", "stories260K_v1.bin: a llama2.c checkpoint (v1",
                                 "tok512.bin: a llama2.c tokenizer.bin (512 tokens",
                                 "convert one first, e.g. peft convert " + stories("stories260K.bin") + " OUT --tokenizer " + stories("tok512.bin")})
    EXPECT_NE(msg.find(want), std::string::npos) << msg << "\nlacks: " << want;
  EXPECT_EQ(msg.find('\n'), std::string::npos);
}

TEST(ModelPath, FolderWithExactlyOneCheckpoint) {
  const auto dir = peft::test::tmp_dir("mp_one");
  fs::copy_file(stories("stories260K.bin"), dir + "/model.bin");
  fs::copy_file(stories("tok512.bin"), dir + "/tok.bin");
  write(dir, "notes.txt", "hello");
  const auto p = detect_model_path(dir);
  ASSERT_EQ(p.kind, ModelPathKind::Folder);
  ASSERT_EQ(p.candidates().size(), 1u);
  EXPECT_EQ(p.candidates()[0]->path, dir + "/model.bin");
  const std::string msg = peft::io::model_path_error(p, kLoadable, "generate");
  EXPECT_NE(msg.find("one model, model.bin: a llama2.c checkpoint"), std::string::npos) << msg;
  EXPECT_NE(msg.find("convert it first: peft convert " + dir + "/model.bin OUT --tokenizer " + dir + "/tok.bin"),
            std::string::npos) << msg;
  // A folder holding one file of an accepted kind points at that file.
  const auto dir2 = peft::test::tmp_dir("mp_one_gguf");
  fs::copy_file(peft::test::fixture("gguf/models/tiny_llama/tiny_llama_q8_0.gguf"), dir2 + "/m.gguf");
  const std::string msg2 = peft::io::model_path_error(detect_model_path(dir2), kLoadable, "generate");
  EXPECT_NE(msg2.find("give the file itself: " + dir2 + "/m.gguf"), std::string::npos) << msg2;
}

TEST(ModelPath, FolderWithTwoCandidatesOfDifferentKinds) {
  const auto dir = peft::test::tmp_dir("mp_two");
  fs::copy_file(stories("stories260K_v1.bin"), dir + "/a.bin");
  fs::copy_file(peft::test::fixture("gguf/models/tiny_llama/tiny_llama_q8_0.gguf"), dir + "/b.weights");
  const auto p = detect_model_path(dir);
  ASSERT_EQ(p.kind, ModelPathKind::Folder);
  ASSERT_EQ(p.candidates().size(), 2u);
  EXPECT_EQ(p.contents[0].kind, ModelPathKind::Llama2cCheckpoint);
  EXPECT_EQ(p.contents[1].kind, ModelPathKind::GgufModel);  // by content, whatever the extension
  EXPECT_TRUE(p.contents[0].tokenizer_beside.empty());
  const std::string msg = peft::io::model_path_error(p, kLoadable, "load_model");
  EXPECT_NE(msg.find("2 models, a.bin: a llama2.c checkpoint (v1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("give one of them, e.g. " + dir + "/b.weights"), std::string::npos) << msg;
}

TEST(ModelPath, HfFolderSafetensorsAndAdapter) {
  const std::string hf = peft::test::fixture("gguf/models/tiny_llama/hf");
  const auto h = detect_model_path(hf);
  EXPECT_EQ(h.kind, ModelPathKind::HfFolder) << h.reason;
  EXPECT_EQ(h.architecture, "llama");
  EXPECT_FALSE(h.sharded);

  const auto s = detect_model_path(hf + "/model.safetensors");
  ASSERT_EQ(s.kind, ModelPathKind::SafetensorsFile) << s.reason;
  EXPECT_EQ(s.tensors, peft::io::SafetensorsFile::open(hf + "/model.safetensors").size());
  EXPECT_NE(peft::io::model_path_error(s, kLoadable, "load_model").find("has no config.json"), std::string::npos);

  // Sharded: config.json + model.safetensors.index.json.
  const auto dir = peft::test::tmp_dir("mp_sharded");
  fs::copy_file(hf + "/config.json", dir + "/config.json");
  fs::copy_file(hf + "/model.safetensors", dir + "/model-00001-of-00001.safetensors");
  write(dir, "model.safetensors.index.json", "{\"weight_map\": {}}");
  const auto sh = detect_model_path(dir);
  EXPECT_EQ(sh.kind, ModelPathKind::HfFolder);
  EXPECT_TRUE(sh.sharded);

  const auto a = detect_model_path(peft::test::fixture("lora/llama_default"));
  ASSERT_EQ(a.kind, ModelPathKind::AdapterFolder);
  EXPECT_EQ(a.adapter_type, "LORA");
  peft::test::expect_throw_with<peft::ConfigError>(
      [&] { peft::io::require_model_path(a.path, kLoadable, "load_model"); }, {"PEFT adapter folder", "not a model"});
}

TEST(ModelPath, GgufModelAndLoraAdapter) {
  const auto m = detect_model_path(peft::test::fixture("gguf/models/tiny_llama/tiny_llama_q8_0.gguf"));
  ASSERT_EQ(m.kind, ModelPathKind::GgufModel) << m.reason;
  EXPECT_EQ(m.architecture, "llama");
  EXPECT_NO_THROW(peft::io::require_model_path(m.path, kLoadable, "load_model"));

  const auto dir = peft::test::tmp_dir("mp_gguf_lora");
  const std::vector<float> a(8 * 2, 0.5f);
  using peft::io::GgufValue;
  peft::io::write_gguf(dir + "/lora.gguf",
                       {{"general.architecture", GgufValue::from_string("llama")},
                        {"general.type", GgufValue::from_string("adapter")},
                        {"adapter.type", GgufValue::from_string("lora")},
                        {"adapter.lora.alpha", GgufValue::from_f32(16.0f)}},
                       {{"blk.0.attn_q.weight.lora_a", peft::io::GgmlType::F32, {8, 2}, a.data(), a.size() * 4}});
  const auto l = detect_model_path(dir + "/lora.gguf");
  ASSERT_EQ(l.kind, ModelPathKind::GgufAdapter) << l.reason;
  EXPECT_EQ(l.architecture, "llama");
  EXPECT_EQ(l.adapter_type, "lora");
  peft::test::expect_throw_with<peft::ConfigError>(
      [&] { peft::io::require_model_path(l.path, kLoadable, "load_model"); }, {"llama.cpp lora adapter", "not a model"});
}

TEST(ModelPath, HostileFilesAreUnknownWithAReason) {
  const auto dir = peft::test::tmp_dir("mp_hostile");
  const std::string ckpt = peft::read_file(stories("stories260K.bin"));
  const std::string v1 = peft::read_file(stories("stories260K_v1.bin"));
  const std::string tok = peft::read_file(stories("tok512.bin"));
  struct Case {
    std::string name, bytes, reason;
  };
  const std::vector<Case> cases = {
      {"empty.bin", "", "empty file"},
      {"short_header.bin", ckpt.substr(0, 20), "starts with bytes 40 00 00 00"},
      {"truncated.bin", ckpt.substr(0, 1000), "looks like a llama2.c checkpoint but does not match: file is 1000 bytes"},
      {"longer.bin", ckpt + "xxxx", "implies " + std::to_string(ckpt.size())},
      {"v1_truncated.bin", v1.substr(0, 100), "v1 header is truncated"},
      {"v2.bin", v1.substr(0, 4) + ints({2}) + v1.substr(8), "version 2"},
      {"int_min_vocab.bin", ints({64, 172, 5, 8, 4, INT_MIN, 512}) + std::string(100, '\0'), "starts with bytes"},
      {"huge_header.bin", ints({1 << 16, 1 << 18, 1024, 1024, 1024, 1 << 22, 1 << 22}), "looks like a llama2.c checkpoint"},
      {"text.safetensors", "not a safetensors file", "starts with bytes 6e 6f 74 20"},
      {"bad_json.safetensors", std::string("\x0a\0\0\0\0\0\0\0{\"a\": [1,2", 18), "looks like a safetensors file but does not parse"},
      {"bad.gguf", std::string("GGUF\x03\0\0\0garbage", 15), "starts with the GGUF magic but does not parse"},
      {"tok_truncated.bin", tok.substr(0, tok.size() - 1), "looks like a llama2.c tokenizer.bin"},
  };
  for (const auto& c : cases) {
    const auto p = detect_model_path(write(dir, c.name, c.bytes));
    EXPECT_EQ(p.kind, ModelPathKind::Unknown) << c.name;
    EXPECT_NE(p.reason.find(c.reason), std::string::npos) << c.name << ": " << p.reason;
    const std::string msg = peft::io::model_path_error(p, kLoadable, "load_model");
    EXPECT_NE(msg.find(c.name), std::string::npos) << msg;
    EXPECT_NE(msg.find("expected a Hugging Face model folder"), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    peft::test::expect_throw_with<peft::FormatError>(
        [&] { peft::io::require_model_path(p.path, kLoadable, "load_model"); }, {c.name});
  }
}

TEST(ModelPath, FoldersWithNothingRecognisable) {
  const auto empty = peft::test::tmp_dir("mp_nothing");
  write(empty, "notes.txt", "just text");
  const auto p = detect_model_path(empty);
  EXPECT_EQ(p.kind, ModelPathKind::Unknown);
  EXPECT_NE(p.reason.find("no config.json"), std::string::npos) << p.reason;

  const auto pt = peft::test::tmp_dir("mp_pytorch");
  write(pt, "config.json", "{\"model_type\": \"llama\"}");
  write(pt, "pytorch_model.bin", "x");
  const auto q = detect_model_path(pt);
  EXPECT_EQ(q.kind, ModelPathKind::Unknown);
  EXPECT_NE(q.reason.find("pytorch_model.bin is not read"), std::string::npos) << q.reason;

  const auto m = detect_model_path(empty + "/missing");
  EXPECT_EQ(m.kind, ModelPathKind::Missing);
  peft::test::expect_throw_with<peft::FormatError>(
      [&] { peft::io::require_model_path(m.path, kLoadable, "load_model"); }, {"missing does not exist"});
}

// Random bytes behind each format's opening never throw out of detection.
TEST(ModelPath, RandomPrefixesNeverThrow) {
  const auto dir = peft::test::tmp_dir("mp_random");
  std::mt19937 rng(11);
  const std::vector<std::string> openings = {"", "GGUF", std::string("GGUF\x03\0\0\0", 8), "24ka", std::string("\x10\0\0\0\0\0\0\0{", 9),
                                             ints({64, 172, 5, 8, 4, 512, 512}), ints({7})};
  for (int i = 0; i < 140; ++i) {
    std::string b = openings[i % openings.size()];
    const int n = static_cast<int>(rng() % 600);
    for (int k = 0; k < n; ++k) b += static_cast<char>(rng() % 8 == 0 ? rng() : rng() % 3);
    const std::string p = write(dir, "r.bin", b);
    ModelPathKind kind{};
    EXPECT_NO_THROW(kind = detect_model_path(p).kind) << i;
    (void)kind;
  }
}

}  // namespace
