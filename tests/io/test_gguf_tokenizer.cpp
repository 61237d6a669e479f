// Tokenizers from GGUF metadata against llama.cpp's llama-tokenize
// (tools/reference/gen_gguf_tokenizers.py, tests/fixtures/gguf/tokenizers/): ids on 2,228 lines
// for SmolLM2's vocabulary (pre smollm, and as qwen2 / llama-bpe), stories260K's tok512 and a
// SentencePiece BPE vocabulary; decode round trips; special tokens; tokenizer_config.json;
// errors for malformed tokenizer metadata.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "peft/core/error.h"
#include "peft/core/file_util.h"
#include "peft/io/gguf.h"
#include "peft/io/tokenizer.h"
#include "test_utils.h"

namespace {

using nlohmann::json;
using peft::io::GgufFile;
using peft::io::GgufType;
using peft::io::GgufValue;
using peft::io::TokenId;
using peft::io::Tokenizer;
using Meta = std::vector<std::pair<std::string, GgufValue>>;
namespace fs = std::filesystem;

std::string gfix(const std::string& rel) { return peft::test::fixture("gguf/tokenizers/" + rel); }

/// The 2,008 lines of the tokenizer fixtures, then code_lines.jsonl (whitespace / digit edge
/// lines and chunks of real code, where the pre-tokenizers differ).
const std::vector<std::string>& corpus() {
  static const std::vector<std::string> lines = [] {
    std::vector<std::string> v;
    for (auto path : {peft::test::fixture("tokenizers/corpus.jsonl"), gfix("code_lines.jsonl")}) {
      std::ifstream f(path);
      EXPECT_TRUE(f.good()) << path;
      std::string line;
      while (std::getline(f, line)) {
        if (!line.empty()) v.push_back(json::parse(line).get<std::string>());
      }
    }
    return v;
  }();
  return lines;
}

Meta metadata_of(const GgufFile& f) {
  Meta m;
  for (const auto& k : f.keys()) m.emplace_back(k, f.at(k));
  return m;
}

/// The smollm2 variants of gen_gguf_tokenizers.py: `qwen2` changes tokenizer.ggml.pre,
/// `llama_bpe` sets pre = llama-bpe and drops add_bos_token (llama.cpp then adds BOS).
std::string smollm2_variant(const std::string& name) {
  static std::map<std::string, std::string> made;
  if (made.count(name)) return made[name];
  GgufFile f = GgufFile::open(gfix("smollm2_vocab.gguf"));
  Meta out;
  for (auto& [k, v] : metadata_of(f)) {
    if (k == "tokenizer.ggml.pre") {
      out.emplace_back(k, GgufValue::from_string(name == "qwen2" ? "qwen2" : "llama-bpe"));
    } else if (!(name == "llama_bpe" && k == "tokenizer.ggml.add_bos_token")) {
      out.emplace_back(k, v);
    }
  }
  std::string path = peft::test::tmp_dir("gguf_tok_" + name) + "/smollm2_" + name + ".gguf";
  peft::io::write_gguf(path, out, {});
  return made[name] = path;
}

std::string gguf_path(const std::string& fixture) {
  if (fixture == "smollm2_qwen2") return smollm2_variant("qwen2");
  if (fixture == "smollm2_llama_bpe") return smollm2_variant("llama_bpe");
  return gfix(fixture + "_vocab.gguf");
}

/// Lines containing the text of a special (added) token of the vocabulary.
bool has_special_text(const std::string& line) {
  for (const char* s : {"<|", "<s>", "</s>", "<unk>", "<repo", "<file", "<gh_", "<issue",
                        "<jupyter", "<empty_output>"}) {
    if (line.find(s) != std::string::npos) return true;
  }
  return false;
}

class GgufTokenizerGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(GgufTokenizerGolden, IdsEqualLlamaCppOnEveryLine) {
  const std::string name = GetParam();
  json exp = json::parse(peft::read_file(gfix(name + ".expected.json")));
  const auto& ids = exp["ids"];
  const auto& lines = corpus();
  ASSERT_EQ(ids.size(), lines.size());
  Tokenizer tok = Tokenizer::from_gguf(gguf_path(name));
  std::size_t ok = 0, shown = 0;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    auto want = ids[i].get<std::vector<TokenId>>();
    auto got = tok.encode(lines[i]).ids;
    if (got == want) {
      ++ok;
    } else if (shown++ < 5) {
      ADD_FAILURE() << name << " line " << i << " '" << lines[i] << "'\n  got  " << json(got).dump()
                    << "\n  want " << json(want).dump();
    }
  }
  std::cout << "[ gguf tokenizer ] " << name << ": ids equal llama.cpp on " << ok << "/"
            << lines.size() << " lines\n";
  EXPECT_EQ(ok, lines.size());
}

TEST_P(GgufTokenizerGolden, DecodeRoundTrips) {
  const std::string name = GetParam();
  Tokenizer tok = Tokenizer::from_gguf(gguf_path(name));
  const bool spm = name == "tok512" || name == "spm400";
  std::size_t ok = 0, n = 0;
  for (const auto& line : corpus()) {
    // SentencePiece puts a space before the text after each special token, so lines with
    // special-token text do not round-trip there (in llama.cpp neither).
    if (spm && has_special_text(line)) continue;
    ++n;
    std::string back = tok.decode(tok.encode(line, false).ids);
    if (back == line) {
      ++ok;
    } else if (n - ok <= 3) {
      ADD_FAILURE() << name << ": decode gives '" << back << "' for '" << line << "'";
    }
  }
  std::cout << "[ gguf tokenizer ] " << name << ": decode(encode(line)) == line on " << ok << "/"
            << n << " lines\n";
  EXPECT_EQ(ok, n);
  EXPECT_GT(n, 1900u);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GgufTokenizerGolden,
                         ::testing::Values("smollm2", "smollm2_qwen2", "smollm2_llama_bpe",
                                           "tok512", "spm400"));

TEST(GgufTokenizer, SpecialTokensAndAddBos) {
  Tokenizer s = Tokenizer::from_gguf(gfix("smollm2_vocab.gguf"));
  EXPECT_EQ(s.bos_token_id(), 1);
  EXPECT_EQ(s.eos_token_id(), 2);
  EXPECT_EQ(s.pad_token_id(), 2);
  EXPECT_EQ(s.vocab_size(), 49152u);
  EXPECT_EQ(s.id_to_token(2), "<|im_end|>");
  // add_bos_token = false in the file: no BOS; control tokens in the text are matched.
  auto e = s.encode("<|im_start|>user\nHi<|im_end|>").ids;
  ASSERT_GE(e.size(), 3u);
  EXPECT_EQ(e.front(), 1);
  EXPECT_EQ(e.back(), 2);
  EXPECT_EQ(s.encode("Hi").ids, s.encode("Hi", false).ids);
  EXPECT_EQ(s.decode(e, true), "user\nHi");
  // llama-bpe without the key: llama.cpp's default adds BOS.
  Tokenizer l = Tokenizer::from_gguf(smollm2_variant("llama_bpe"));
  EXPECT_EQ(l.encode("Hi").ids.front(), 1);
  EXPECT_EQ(l.encode("Hi").ids.size(), l.encode("Hi", false).ids.size() + 1);
  // SentencePiece: BOS first, <unk>/<s>/</s> matched in the text.
  Tokenizer t = Tokenizer::from_gguf(gfix("tok512_vocab.gguf"));
  EXPECT_EQ(t.bos_token_id(), 1);
  EXPECT_EQ(t.eos_token_id(), 2);
  EXPECT_FALSE(t.pad_token_id().has_value());
  auto ids = t.encode("Hello</s>").ids;
  EXPECT_EQ(ids.front(), 1);
  EXPECT_EQ(ids.back(), 2);
  EXPECT_EQ(t.encode("Hello", false).ids.front() == 1, false);
  EXPECT_EQ(t.decode(t.encode("Once upon a time").ids, true), "Once upon a time");
}

TEST(GgufTokenizer, WritesTokenizerFolderWithChatTemplate) {
  GgufFile f = GgufFile::open(gfix("smollm2_vocab.gguf"));
  std::string dir = peft::test::tmp_dir("gguf_tok_write");
  peft::io::write_gguf_tokenizer(f, dir);
  json cfg = json::parse(peft::read_file(dir + "/tokenizer_config.json"));
  EXPECT_EQ(cfg["chat_template"], f.get_string("tokenizer.chat_template"));
  EXPECT_EQ(cfg["bos_token"], "<|im_start|>");
  EXPECT_EQ(cfg["eos_token"], "<|im_end|>");
  EXPECT_EQ(cfg["pad_token"], "<|im_end|>");
  EXPECT_EQ(cfg["unk_token"], "<|endoftext|>");
  EXPECT_EQ(cfg["add_bos_token"], false);
  EXPECT_EQ(cfg["added_tokens_decoder"].size(), 17u);
  // The folder loads like any HF tokenizer folder and gives the same ids.
  Tokenizer a = Tokenizer::from_pretrained(dir);
  Tokenizer b = Tokenizer::from_gguf(f.path());
  EXPECT_EQ(a.pad_token_id(), 2);
  for (std::size_t i = 0; i < corpus().size(); i += 97) {
    EXPECT_EQ(a.encode(corpus()[i]).ids, b.encode(corpus()[i]).ids) << corpus()[i];
  }
  GgufFile s = GgufFile::open(gfix("spm400_vocab.gguf"));
  json scfg = json::parse(peft::io::gguf_tokenizer_config_json(s));
  EXPECT_EQ(scfg["chat_template"], s.get_string("tokenizer.chat_template"));
  EXPECT_EQ(scfg["add_bos_token"], true);
  EXPECT_EQ(scfg["bos_token"], "<s>");
  EXPECT_TRUE(scfg["pad_token"].is_null());
  std::string sdir = peft::test::tmp_dir("gguf_tok_write_spm");
  peft::io::write_gguf_tokenizer(s, sdir);
  Tokenizer sa = Tokenizer::from_pretrained(sdir);
  Tokenizer sb = Tokenizer::from_gguf(s.path());
  for (std::size_t i = 0; i < corpus().size(); i += 97) {
    EXPECT_EQ(sa.encode(corpus()[i]).ids, sb.encode(corpus()[i]).ids) << corpus()[i];
  }
}

// A tiny gpt2 vocabulary: bytes a, b, c and merges (a, b), (ab, c).
Meta tiny_gpt2() {
  return {
      {"general.architecture", GgufValue::from_string("llama")},
      {"tokenizer.ggml.model", GgufValue::from_string("gpt2")},
      {"tokenizer.ggml.pre", GgufValue::from_string("gpt-2")},
      {"tokenizer.ggml.tokens", GgufValue::from_strings({"<|end|>", "a", "b", "c", "ab", "abc"})},
      {"tokenizer.ggml.token_type", GgufValue::from_i32s({3, 1, 1, 1, 1, 1})},
      {"tokenizer.ggml.merges", GgufValue::from_strings({"a b", "ab c"})},
      {"tokenizer.ggml.bos_token_id", GgufValue::from_u32(0)},
      {"tokenizer.ggml.eos_token_id", GgufValue::from_u32(0)}};
}

std::string json_of(const Meta& m) {
  return peft::io::gguf_tokenizer_json(
      GgufFile::from_bytes(peft::io::serialize_gguf(m, {}), "tiny.gguf"));
}

Meta with(Meta m, const std::string& key, std::optional<GgufValue> v) {
  for (auto it = m.begin(); it != m.end(); ++it) {
    if (it->first == key) {
      if (v) {
        it->second = *v;
      } else {
        m.erase(it);
      }
      return m;
    }
  }
  if (v) m.emplace_back(key, *v);
  return m;
}

TEST(GgufTokenizer, TinyVocabularyConverts) {
  json j = json::parse(json_of(tiny_gpt2()));
  EXPECT_EQ(j["model"]["merges"].size(), 2u);
  EXPECT_EQ(j["added_tokens"].size(), 1u);
  std::string dir = peft::test::tmp_dir("gguf_tok_tiny");
  peft::write_file_atomic(dir + "/tokenizer.json", j.dump());
  Tokenizer t = Tokenizer::from_file(dir + "/tokenizer.json");
  EXPECT_EQ(t.encode("abcab<|end|>c").ids, (std::vector<TokenId>{5, 4, 0, 3}));
}

TEST(GgufTokenizer, ClearErrors) {
  using peft::test::expect_throw_with;
  const Meta base = tiny_gpt2();
  expect_throw_with<peft::FormatError>(
      [&] { json_of(with(base, "tokenizer.ggml.model", GgufValue::from_string("bert"))); },
      {"tiny.gguf", "tokenizer.ggml.model 'bert'", "gpt2", "llama"});
  expect_throw_with<peft::FormatError>(
      [&] { json_of(with(base, "tokenizer.ggml.pre", GgufValue::from_string("klingon"))); },
      {"tiny.gguf", "tokenizer.ggml.pre 'klingon'", "smollm", "llama-bpe", "qwen2", "default"});
  expect_throw_with<peft::FormatError>(
      [&] { json_of(with(base, "tokenizer.ggml.merges", std::nullopt)); },
      {"tiny.gguf", "tokenizer.ggml.merges", "missing"});
  expect_throw_with<peft::FormatError>(
      [&] {
        json_of(with(base, "tokenizer.ggml.merges", GgufValue::from_strings({"a b", "ab d"})));
      },
      {"tokenizer.ggml.merges[1]", "'d'", "not in tokenizer.ggml.tokens"});
  expect_throw_with<peft::FormatError>(
      [&] {
        json_of(with(base, "tokenizer.ggml.token_type", GgufValue::from_i32s({3, 1})));
      },
      {"tokenizer.ggml.token_type has 2 entries", "has 6"});
  expect_throw_with<peft::FormatError>(
      [&] { json_of(with(base, "tokenizer.ggml.eos_token_id", GgufValue::from_u32(6))); },
      {"tokenizer.ggml.eos_token_id", "= 6", "outside the vocabulary (6 tokens)"});
  expect_throw_with<peft::FormatError>(
      [&] { json_of(with(base, "tokenizer.ggml.tokens", std::nullopt)); },
      {"tokenizer.ggml.tokens", "missing"});
  expect_throw_with<peft::FormatError>(
      [&] {
        json_of(with(base, "tokenizer.ggml.tokens",
                     GgufValue::from_strings({"<|end|>", "a", "b", "c", "ab", "a"})));
      },
      {"tokenizer.ggml.tokens[5]", "repeats token 1"});
  expect_throw_with<peft::FormatError>(
      [&] { json_of(with(base, "tokenizer.ggml.model", std::nullopt)); },
      {"tokenizer.ggml.model", "missing"});
  // SentencePiece: scores must match the tokens.
  Meta spm = with(with(base, "tokenizer.ggml.model", GgufValue::from_string("llama")),
                  "tokenizer.ggml.merges", std::nullopt);
  EXPECT_NO_THROW(
      json_of(with(spm, "tokenizer.ggml.scores", GgufValue::from_f32s({0, -1, -2, -3, -4, -5}))));
  expect_throw_with<peft::FormatError>(
      [&] {
        json_of(with(spm, "tokenizer.ggml.scores", GgufValue::from_f32s({0, -1, -2})));
      },
      {"tokenizer.ggml.scores has 3 entries", "tokenizer.ggml.tokens has 6"});
  expect_throw_with<peft::FormatError>([&] { json_of(spm); },
                                       {"tokenizer.ggml.scores is required"});
  expect_throw_with<peft::FormatError>(
      [&] {
        json_of(with(base, "tokenizer.ggml.token_type", GgufValue::from_i32s({3, 1, 1, 1, 1, 9})));
      },
      {"tokenizer.ggml.token_type[5] = 9"});
}

}  // namespace
