// Tokenizers against golden fixtures from HF `tokenizers` (tools/reference/gen_tokenizers.py).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "peft/core/error.h"
#include "peft/core/file_util.h"
#include "peft/io/model_path.h"
#include "peft/io/tokenizer.h"
#include "test_utils.h"

namespace {

using nlohmann::json;
using peft::io::BatchOptions;
using peft::io::Encoding;
using peft::io::TokenId;
using peft::io::Tokenizer;
namespace fs = std::filesystem;

std::string tok_fixture(const std::string& rel) { return peft::test::fixture("tokenizers/" + rel); }

std::vector<json> read_jsonl(const std::string& path) {
  std::ifstream f(path);
  EXPECT_TRUE(f.good()) << path;
  std::vector<json> out;
  std::string line;
  while (std::getline(f, line)) {
    if (!line.empty()) out.push_back(json::parse(line));
  }
  return out;
}

const std::vector<std::string>& corpus() {
  static const std::vector<std::string> lines = [] {
    std::vector<std::string> v;
    for (auto& j : read_jsonl(tok_fixture("corpus.jsonl"))) v.push_back(j.get<std::string>());
    return v;
  }();
  return lines;
}

const json& manifest() {
  static const json m = json::parse(peft::read_file(tok_fixture("manifest.json")));
  return m;
}

std::vector<TokenId> ids_of(const json& j) { return j.get<std::vector<TokenId>>(); }

/// Compares ids on every corpus line, offsets where stored, and decode().
void check_corpus(const Tokenizer& tok, const std::string& name) {
  const auto& lines = corpus();
  auto expected = read_jsonl(tok_fixture(name + "/expected.jsonl"));
  ASSERT_EQ(expected.size(), lines.size());
  std::size_t decode_lines = manifest()["fixtures"][name].value("decode_lines", lines.size());
  std::size_t id_fail = 0, off_fail = 0, dec_fail = 0, off_lines = 0;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    Encoding e = tok.encode(lines[i]);
    if (e.ids != ids_of(expected[i]["ids"])) {
      if (++id_fail <= 5) {
        ADD_FAILURE() << name << " line " << i << " '" << lines[i] << "' ids differ: got "
                      << json(e.ids).dump() << " want " << expected[i]["ids"].dump();
      }
    }
    ASSERT_EQ(e.type_ids.size(), e.ids.size());
    ASSERT_EQ(e.attention_mask.size(), e.ids.size());
    ASSERT_EQ(e.tokens.size(), e.ids.size());
    if (expected[i].contains("offsets")) {
      ++off_lines;
      std::vector<std::pair<std::size_t, std::size_t>> want;
      for (auto& o : expected[i]["offsets"]) want.emplace_back(o[0], o[1]);
      if (want != e.offsets && ++off_fail <= 5) {
        ADD_FAILURE() << name << " line " << i << " offsets differ: got " << json(e.offsets).dump()
                      << " want " << expected[i]["offsets"].dump();
      }
    }
    if (i < decode_lines) {
      std::string want = expected[i].value("decoded", lines[i]);
      std::string got = tok.decode(ids_of(expected[i]["ids"]), true);
      if (got != want && ++dec_fail <= 5) {
        ADD_FAILURE() << name << " line " << i << " decode: got '" << got << "' want '" << want
                      << "'";
      }
    }
  }
  std::printf(
      "[tokenizer] %s: %zu lines compared, %zu with different ids, %zu/%zu offset lines "
      "differ, %zu decodes differ\n",
      name.c_str(), lines.size(), id_fail, off_fail, off_lines, dec_fail);
  EXPECT_EQ(id_fail, 0u) << name << ": lines with different ids out of " << lines.size();
  EXPECT_EQ(off_fail, 0u) << name << ": lines with different offsets out of " << off_lines;
  EXPECT_EQ(dec_fail, 0u) << name << ": lines with a different decode";
}

void check_pairs(const Tokenizer& tok, const std::string& name) {
  const auto& lines = corpus();
  for (auto& p : read_jsonl(tok_fixture(name + "/pairs.jsonl"))) {
    Encoding e = tok.encode_pair(lines[p["a"].get<int>()], lines[p["b"].get<int>()]);
    EXPECT_EQ(e.ids, ids_of(p["ids"])) << name << " pair " << p["a"];
    EXPECT_EQ(e.type_ids, ids_of(p["type_ids"])) << name << " pair " << p["a"];
    EXPECT_EQ(e.special_tokens_mask, p["special_tokens_mask"].get<std::vector<std::uint8_t>>())
        << name << " pair " << p["a"];
  }
}

void check_batches(const Tokenizer& tok, const std::string& name, TokenId pad_id) {
  const auto& lines = corpus();
  for (auto& b : read_jsonl(tok_fixture(name + "/batches.jsonl"))) {
    const json& c = b["config"];
    BatchOptions o;
    std::string pad = c["padding"];
    o.padding = pad == "none"      ? peft::io::PaddingStrategy::None
                : pad == "longest" ? peft::io::PaddingStrategy::Longest
                                   : peft::io::PaddingStrategy::MaxLength;
    if (c.contains("max_length")) o.max_length = c["max_length"].get<std::size_t>();
    if (c.contains("pad_to_multiple_of"))
      o.pad_to_multiple_of = c["pad_to_multiple_of"].get<std::size_t>();
    o.truncation = c.value("truncation", false);
    o.padding_side =
        c.value("padding_side", "right") == "left" ? peft::io::Side::Left : peft::io::Side::Right;
    o.truncation_side = c.value("truncation_side", "right") == "left" ? peft::io::Side::Left
                                                                      : peft::io::Side::Right;
    o.pad_id = pad_id;
    std::vector<std::string> texts;
    for (auto& i : b["lines"]) texts.push_back(lines[i.get<int>()]);
    auto encs = tok.encode_batch(texts, o);
    ASSERT_EQ(encs.size(), texts.size());
    for (std::size_t k = 0; k < encs.size(); ++k) {
      EXPECT_EQ(encs[k].ids, ids_of(b["ids"][k])) << name << " " << c.dump() << " row " << k;
      EXPECT_EQ(encs[k].attention_mask, b["attention_mask"][k].get<std::vector<std::uint8_t>>())
          << name << " " << c.dump() << " row " << k;
      EXPECT_EQ(encs[k].type_ids, ids_of(b["type_ids"][k])) << name << " row " << k;
      EXPECT_EQ(encs[k].special_tokens_mask,
                b["special_tokens_mask"][k].get<std::vector<std::uint8_t>>())
          << name << " " << c.dump() << " row " << k;
    }
  }
}

TEST(Tokenizer, CorpusIsLargeEnough) { EXPECT_GE(corpus().size(), 2000u); }

TEST(Tokenizer, Gpt2ByteLevelBpeMatchesHf) {
  auto tok = Tokenizer::from_file(tok_fixture("gpt2/tokenizer.json"));
  EXPECT_EQ(tok.vocab_size(), 50257u);
  EXPECT_EQ(tok.token_to_id("<|endoftext|>"), 50256);
  check_corpus(tok, "gpt2");
  check_pairs(tok, "gpt2");
  check_batches(tok, "gpt2", 50256);
}

TEST(Tokenizer, BertWordPieceMatchesHf) {
  auto tok = Tokenizer::from_file(tok_fixture("bert/tokenizer.json"));
  EXPECT_EQ(tok.vocab_size(), 30522u);
  EXPECT_EQ(tok.encode("Hello world!").ids, (std::vector<TokenId>{101, 7592, 2088, 999, 102}));
  check_corpus(tok, "bert");
  check_pairs(tok, "bert");
  check_batches(tok, "bert", 0);
}

// RoBERTa-style byte-level BPE with RobertaProcessing (<s> A </s></s> B </s>), trained by
// gen_tokenizers.py (gen_roberta): single and pair encodings with offsets, and token
// classification's word-by-word encoding against `tokenizers`' pre-tokenized one.
TEST(Tokenizer, RobertaProcessingSinglePairAndWordsMatchHf) {
  auto tok = Tokenizer::from_file(tok_fixture("roberta/tokenizer.json"));
  EXPECT_EQ(tok.vocab_size(), 1000u);
  const auto& lines = corpus();
  auto pairs_of = [](const json& o) {
    std::vector<std::pair<std::size_t, std::size_t>> v;
    for (auto& x : o) v.emplace_back(x[0], x[1]);
    return v;
  };
  int singles = 0, pairs = 0, words = 0;
  for (auto& r : read_jsonl(tok_fixture("roberta/expected.jsonl"))) {
    const std::string kind = r["kind"];
    if (kind == "words") {
      // build_token_dataset: each word encoded alone with a prefix space, no specials, between the
      // <s> ... </s> the single-sequence template adds.
      std::vector<TokenId> ids = {0};
      std::vector<int> word_ids = {-1};
      int w = 0;
      for (auto& word : r["words"]) {
        for (TokenId id : tok.encode(" " + word.get<std::string>(), false).ids) {
          ids.push_back(id);
          word_ids.push_back(w);
        }
        ++w;
      }
      ids.push_back(2);
      word_ids.push_back(-1);
      EXPECT_EQ(ids, ids_of(r["ids"])) << r["words"].dump();
      EXPECT_EQ(word_ids, r["word_ids"].get<std::vector<int>>()) << r["words"].dump();
      ++words;
      continue;
    }
    const std::string& a = lines[r["a"].get<int>()];
    Encoding e = kind == "pair" ? tok.encode_pair(a, lines[r["b"].get<int>()]) : tok.encode(a);
    EXPECT_EQ(e.ids, ids_of(r["ids"])) << kind << " " << a;
    EXPECT_EQ(e.type_ids, ids_of(r["type_ids"])) << kind << " " << a;
    EXPECT_EQ(e.special_tokens_mask, r["special_tokens_mask"].get<std::vector<std::uint8_t>>()) << kind << " " << a;
    EXPECT_EQ(e.offsets, pairs_of(r["offsets"])) << kind << " " << a;
    (kind == "pair" ? pairs : singles)++;
  }
  EXPECT_EQ(singles, 209);
  EXPECT_EQ(pairs, 50);
  EXPECT_EQ(words, 50);
  const Encoding p = tok.encode_pair("a b", "c");
  EXPECT_EQ(p.ids.front(), 0);
  EXPECT_EQ(std::count(p.ids.begin(), p.ids.end(), 2), 3);  // </s></s> between, </s> at the end
}

TEST(Tokenizer, UnigramMetaspaceMatchesHf) {
  auto tok = Tokenizer::from_file(tok_fixture("unigram/tokenizer.json"));
  check_corpus(tok, "unigram");
  check_pairs(tok, "unigram");
  check_batches(tok, "unigram", 0);
}

TEST(Tokenizer, Llama2cFixtureJsonMatchesHf) {
  auto tok = Tokenizer::from_file(tok_fixture("llama2c/tokenizer.json"));
  check_corpus(tok, "llama2c");
  check_pairs(tok, "llama2c");
  check_batches(tok, "llama2c", 0);
}

TEST(Tokenizer, Llama2cConverterReproducesLlama2cEncode) {
  std::string bin = peft::test::source_path("models/stories260K/tok512.bin");
  auto tok = Tokenizer::from_llama2c(bin);
  EXPECT_EQ(tok.encode("Once upon a time").ids, (std::vector<TokenId>{1, 403, 407, 261, 378}));
  EXPECT_EQ(tok.vocab_size(), 512u);
  EXPECT_EQ(tok.bos_token_id(), 1);
  EXPECT_EQ(tok.eos_token_id(), 2);
  check_corpus(tok, "llama2c");

  // The written tokenizer.json has the same vocab and merges as the Python conversion.
  std::string dir = peft::test::tmp_dir("llama2c_json");
  peft::io::write_llama2c_tokenizer_json(bin, dir + "/tokenizer.json");
  json mine = json::parse(peft::read_file(dir + "/tokenizer.json"));
  json ref = json::parse(peft::read_file(tok_fixture("llama2c/tokenizer.json")));
  EXPECT_EQ(mine["model"]["vocab"], ref["model"]["vocab"]);
  EXPECT_EQ(mine["model"]["merges"], ref["model"]["merges"]);
  EXPECT_EQ(mine["normalizer"], ref["normalizer"]);
  auto reloaded = Tokenizer::from_file(dir + "/tokenizer.json");
  EXPECT_EQ(reloaded.encode("Once upon a time").ids, (std::vector<TokenId>{1, 403, 407, 261, 378}));
}

TEST(Tokenizer, SentencePieceModelMatchesPython) {
  auto tok = Tokenizer::from_sentencepiece(tok_fixture("sentencepiece/tokenizer.model"));
  const auto& lines = corpus();
  auto expected = read_jsonl(tok_fixture("sentencepiece/expected.jsonl"));
  ASSERT_EQ(expected.size(), lines.size());
  std::size_t id_fail = 0, dec_fail = 0;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    auto e = tok.encode(lines[i], /*add_special_tokens=*/false);
    if (e.ids != ids_of(expected[i]["ids"]) && ++id_fail <= 5) {
      ADD_FAILURE() << "line " << i << " got " << json(e.ids).dump();
    }
    if (tok.decode(e.ids) != expected[i].value("decoded", lines[i]) && ++dec_fail <= 5) {
      ADD_FAILURE() << "decode line " << i << ": " << tok.decode(e.ids);
    }
  }
  EXPECT_EQ(id_fail, 0u);
  EXPECT_EQ(dec_fail, 0u);
  EXPECT_EQ(tok.encode("Once").ids.front(), 1);  // BOS by default
}

TEST(Tokenizer, FromPretrainedPicksFileAndReadsConfig) {
  std::string dir = peft::test::tmp_dir("tok_pretrained");
  fs::copy_file(peft::test::source_path("models/stories260K/tok512.bin"), dir + "/tokenizer.bin");
  auto t1 = Tokenizer::from_pretrained(dir);
  EXPECT_EQ(t1.encode("Once upon a time").ids, (std::vector<TokenId>{1, 403, 407, 261, 378}));
  peft::write_file_atomic(dir + "/tokenizer_config.json",
                          R"({"add_bos_token": true, "add_eos_token": true,
                              "pad_token": {"content": "<unk>"}, "eos_token": "</s>"})");
  auto t2 = Tokenizer::from_pretrained(dir);
  EXPECT_EQ(t2.encode("Once upon a time").ids, (std::vector<TokenId>{1, 403, 407, 261, 378, 2}));
  EXPECT_EQ(t2.pad_token_id(), 0);
  fs::copy_file(tok_fixture("bert/tokenizer.json"), dir + "/tokenizer.json");
  fs::remove(dir + "/tokenizer_config.json");
  auto t3 = Tokenizer::from_pretrained(dir);  // tokenizer.json wins over tokenizer.bin
  EXPECT_EQ(t3.vocab_size(), 30522u);
}

TEST(Tokenizer, DecodeSkipsSpecialTokensAndOffsetsAreBytes) {
  auto tok = Tokenizer::from_file(tok_fixture("bert/tokenizer.json"));
  auto e = tok.encode("Café au lait");
  EXPECT_EQ(tok.decode(e.ids, true), "cafe au lait");
  EXPECT_EQ(tok.decode(e.ids, false), "[CLS] cafe au lait [SEP]");
  ASSERT_GE(e.offsets.size(), 5u);
  EXPECT_EQ(e.offsets[1], (std::pair<std::size_t, std::size_t>{0, 5}));  // "Café" is 5 bytes
  EXPECT_EQ(e.offsets[2], (std::pair<std::size_t, std::size_t>{6, 8}));
  EXPECT_EQ(e.special_tokens_mask.front(), 1);
  EXPECT_EQ(e.special_tokens_mask.back(), 1);
  EXPECT_EQ(e.special_tokens_mask[1], 0);
  EXPECT_THROW(tok.encode(std::string("\xff\xfe")), std::invalid_argument);
  BatchOptions o;
  o.padding = peft::io::PaddingStrategy::Longest;
  auto gpt2 = Tokenizer::from_file(tok_fixture("gpt2/tokenizer.json"));
  EXPECT_THROW(gpt2.encode_batch({"a", "b c"}, o), peft::ConfigError);  // no pad token
}

// ------------------------------------------------------------------ malformed files
std::string write_tmp(const std::string& name, const std::string& body) {
  std::string dir = peft::test::tmp_dir("tok_bad");
  std::string p = dir + "/" + name;
  peft::write_file_atomic(p, body);
  return p;
}

std::string minimal_bpe(const std::string& patch_key, const json& value) {
  json j = {{"version", "1.0"},
            {"added_tokens", json::array()},
            {"normalizer", nullptr},
            {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}}},
            {"post_processor", nullptr},
            {"decoder", nullptr},
            {"model",
             {{"type", "BPE"},
              {"vocab", {{"a", 0}, {"b", 1}, {"ab", 2}}},
              {"merges", json::array({"a b"})}}}};
  if (!patch_key.empty()) {
    json* dst = &j;
    std::string k = patch_key;
    for (auto p = k.find('.'); p != std::string::npos; p = k.find('.')) {
      dst = &(*dst)[k.substr(0, p)];
      k = k.substr(p + 1);
    }
    (*dst)[k] = value;
  }
  return j.dump();
}

template <typename Exc>
void expect_load_error(const std::string& body, std::initializer_list<std::string> fragments) {
  std::string p = write_tmp("tokenizer.json", body);
  std::vector<std::string> f(fragments);
  f.push_back("tokenizer.json");
  try {
    Tokenizer::from_file(p);
    ADD_FAILURE() << "no exception for " << body.substr(0, 200);
  } catch (const Exc& e) {
    for (auto& s : f) EXPECT_NE(std::string(e.what()).find(s), std::string::npos) << e.what();
  }
}

TEST(TokenizerErrors, MinimalFileLoads) {
  auto t = Tokenizer::from_file(write_tmp("tokenizer.json", minimal_bpe("", nullptr)));
  EXPECT_EQ(t.encode("ab").ids, (std::vector<TokenId>{2}));
}

TEST(TokenizerErrors, InvalidJson) {
  expect_load_error<peft::FormatError>("{\"model\": [", {"not valid JSON", "line 1"});
}

TEST(TokenizerErrors, MissingModel) {
  expect_load_error<peft::FormatError>(R"({"normalizer": null})", {"model"});
}

TEST(TokenizerErrors, UnknownModelType) {
  expect_load_error<peft::NotSupported>(minimal_bpe("model.type", "WordLevelX"),
                                        {"model type 'WordLevelX'"});
}

TEST(TokenizerErrors, UnknownPreTokenizer) {
  expect_load_error<peft::NotSupported>(minimal_bpe("pre_tokenizer.type", "X"),
                                        {"pre_tokenizer type 'X' is not supported"});
}

TEST(TokenizerErrors, UnknownNormalizer) {
  expect_load_error<peft::NotSupported>(minimal_bpe("normalizer", {{"type", "Precompiled"}}),
                                        {"normalizer type 'Precompiled'"});
}

TEST(TokenizerErrors, UnknownDecoder) {
  expect_load_error<peft::NotSupported>(minimal_bpe("decoder", {{"type", "CTC"}}),
                                        {"decoder type 'CTC'"});
}

TEST(TokenizerErrors, UnknownPostProcessor) {
  expect_load_error<peft::NotSupported>(minimal_bpe("post_processor", {{"type", "Nope"}}),
                                        {"post_processor type 'Nope'"});
}

TEST(TokenizerErrors, MergeWithUnknownToken) {
  expect_load_error<peft::FormatError>(minimal_bpe("model.merges", json::array({"a c"})),
                                       {"model BPE", "'c'", "not in the vocab"});
}

TEST(TokenizerErrors, MalformedMerge) {
  expect_load_error<peft::FormatError>(minimal_bpe("model.merges", json::array({"abc"})),
                                       {"model BPE", "merge 0"});
}

TEST(TokenizerErrors, VocabIdNotInteger) {
  expect_load_error<peft::FormatError>(minimal_bpe("model.vocab", {{"a", "zero"}}),
                                       {"model BPE", "'a'"});
}

TEST(TokenizerErrors, BadSplitBehaviorAndRegex) {
  expect_load_error<peft::FormatError>(
      minimal_bpe("pre_tokenizer",
                  {{"type", "Split"}, {"pattern", {{"String", " "}}}, {"behavior", "Sideways"}}),
      {"pre_tokenizer", "Sideways"});
  expect_load_error<peft::FormatError>(
      minimal_bpe(
          "pre_tokenizer",
          {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Removed"}}),
      {"pre_tokenizer", "does not compile"});
}

TEST(TokenizerErrors, TemplateUsesUnknownSpecialToken) {
  json tp = {{"type", "TemplateProcessing"},
             {"single", {{{"SpecialToken", {{"id", "[CLS]"}, {"type_id", 0}}}}}},
             {"pair", json::array()},
             {"special_tokens", json::object()}};
  expect_load_error<peft::FormatError>(minimal_bpe("post_processor", tp),
                                       {"post_processor TemplateProcessing", "[CLS]"});
}

// Ids index tables: a huge id would size them to gigabytes, and a float or out-of-range number
// must not be narrowed into an int (found by fuzz_tokenizer_json).
TEST(TokenizerErrors, IdsOutsideTheTokenRangeAreRefusedByName) {
  expect_load_error<peft::FormatError>(minimal_bpe("model.vocab", {{"a", 0}, {"b", 100000000}}),
                                       {"model BPE", "'b'", "100000000", "2^23"});
  expect_load_error<peft::FormatError>(minimal_bpe("model.vocab", {{"a", -1}}),
                                       {"model BPE", "'a'", "-1"});
  expect_load_error<peft::FormatError>(minimal_bpe("model.vocab", {{"a", 1.5}}),
                                       {"model BPE", "'a'", "integer"});
  json tp = {{"type", "TemplateProcessing"},
             {"single", {{{"Sequence", {{"id", "A"}, {"type_id", 1.44444e95}}}}}},
             {"pair", json::array()},
             {"special_tokens", json::object()}};
  expect_load_error<peft::FormatError>(minimal_bpe("post_processor", tp),
                                       {"post_processor TemplateProcessing", "type_id"});
  tp["single"] = {{{"SpecialToken", {{"id", "[CLS]"}, {"type_id", 0}}}}};
  tp["special_tokens"] = {{"[CLS]", {{"id", "[CLS]"}, {"ids", {4294967296LL}}, {"tokens", {"[CLS]"}}}}};
  expect_load_error<peft::FormatError>(minimal_bpe("post_processor", tp),
                                       {"post_processor TemplateProcessing", "[CLS]", "4294967296"});
  json bert = {{"type", "BertProcessing"}, {"sep", {"b", 1}}, {"cls", {"a", -7}}};
  expect_load_error<peft::FormatError>(minimal_bpe("post_processor", bert),
                                       {"post_processor BertProcessing", "'cls'", "-7"});
  expect_load_error<peft::FormatError>(
      minimal_bpe("added_tokens", json::array({{{"id", 18446744073709551615ULL}, {"content", "x"}}})),
      {"added_tokens", "18446744073709551615"});
  expect_load_error<peft::FormatError>(minimal_bpe("padding", {{"pad_id", -2}}),
                                       {"padding", "pad_id", "-2"});
}

TEST(TokenizerErrors, UnigramBadUnkIdAndWordPieceMissingUnk) {
  json uni = {
      {"type", "Unigram"}, {"vocab", json::array({json::array({"a", -1.0})})}, {"unk_id", 5}};
  expect_load_error<peft::FormatError>(minimal_bpe("model", uni), {"model Unigram", "unk_id"});
  json wp = {{"type", "WordPiece"}, {"vocab", {{"a", 0}}}, {"unk_token", "[UNK]"}};
  expect_load_error<peft::FormatError>(minimal_bpe("model", wp), {"model WordPiece", "[UNK]"});
}

// A Unigram model without unk_id meeting a character no piece holds fails as HF tokenizers does
// (MissingUnkId), as a FormatError naming the file and the character (found by
// tests/fuzz/fuzz_tokenizer_json; the message used to name neither).
TEST(TokenizerErrors, UnigramWithoutUnkIdNamesTheFileAndTheCharacter) {
  json uni = {{"type", "Unigram"}, {"vocab", json::array({json::array({"a", -1.0}), json::array({"b", -2.0})})}};
  const auto t = Tokenizer::from_file(write_tmp("tokenizer.json", minimal_bpe("model", uni)));
  EXPECT_EQ(t.encode("ab", false).ids.size(), 2u);
  peft::test::expect_throw_with<peft::FormatError>(
      [&] { t.encode("abc"); }, {"[io::tokenizer]", "tokenizer.json", "model Unigram", "cannot encode 'c'", "no unk_id"});
}

// A SentencePiece model the library cannot encode valid UTF-8 with is a FormatError naming the
// file (found by tests/fuzz/fuzz_sentencepiece: libsentencepiece 0.1.97 fails on text holding a
// CHAR model's control piece; the std::invalid_argument it became said the text was at fault).
TEST(TokenizerErrors, SentencePieceModelThatCannotEncode) {
  const auto t = Tokenizer::from_sentencepiece(tok_fixture("sentencepiece/control_piece.model"));
  for (const std::string text : {"Hello world", "\xf0\x9f\x99\x82 and \xc3\xa9t\xc3\xa9", "  \t\xf0\x9f\x99\x82 \n"}) {
    try {
      (void)t.encode(text);  // newer libsentencepiece versions encode it
    } catch (const peft::FormatError& e) {
      EXPECT_NE(std::string(e.what()).find("control_piece.model: this SentencePiece model cannot encode"),
                std::string::npos)
          << e.what();
    }
  }
  EXPECT_THROW(t.encode("\xff"), std::invalid_argument);  // the text's fault stays invalid_argument
}

TEST(TokenizerErrors, TruncatedLlama2cBin) {
  std::string full = peft::read_file(peft::test::source_path("models/stories260K/tok512.bin"));
  for (std::size_t n : {std::size_t{2}, std::size_t{10}, full.size() - 3}) {
    std::string p = write_tmp("tokenizer.bin", full.substr(0, n));
    peft::test::expect_throw_with<peft::FormatError>(
        [&] { Tokenizer::from_llama2c(p); }, {"[io::tokenizer]", "tokenizer.bin", "truncated"});
  }
}

// A tokenizer.bin declaring tokens longer than any real one is refused before its tokens are read:
// building the merges costs the square of a token's length, and one 200 KB token took minutes.
TEST(TokenizerErrors, Llama2cTokensLongerThanAnyRealOneAreRefused) {
  auto bin = [](int32_t max_len, std::size_t long_token) {
    std::string b(4, '\0');
    std::memcpy(b.data(), &max_len, 4);
    for (const std::string& t : {std::string("<unk>"), std::string("<s>"), std::string("</s>"), std::string(long_token, 'a')}) {
      const float score = 0;
      const auto len = static_cast<int32_t>(t.size());
      b.append(reinterpret_cast<const char*>(&score), 4).append(reinterpret_cast<const char*>(&len), 4).append(t);
    }
    return b;
  };
  const auto t0 = std::chrono::steady_clock::now();
  peft::test::expect_throw_with<peft::FormatError>(
      [&] { Tokenizer::from_llama2c(write_tmp("tokenizer.bin", bin(1 << 20, 200000))); },
      {"tokenizer.bin", "max_token_length 1048576", "1 to 1024 bytes"});
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
  EXPECT_EQ(peft::io::detect_model_path(write_tmp("tokenizer.bin", bin(1 << 20, 200000))).kind,
            peft::io::ModelPathKind::Unknown);
  const auto ok = Tokenizer::from_llama2c(write_tmp("tokenizer.bin", bin(1024, 1024)));
  EXPECT_EQ(ok.vocab_size(), 4u);
}

TEST(TokenizerErrors, BadSentencePieceAndEmptyDir) {
  std::string p = write_tmp("tokenizer.model", "not a protobuf");
  peft::test::expect_throw_with<peft::FormatError>([&] { Tokenizer::from_sentencepiece(p); },
                                                   {"[io::tokenizer]", "tokenizer.model"});
  std::string dir = peft::test::tmp_dir("tok_empty");
  peft::test::expect_throw_with<peft::FormatError>([&] { Tokenizer::from_pretrained(dir); },
                                                   {"from_pretrained", "tokenizer.json"});
}

}  // namespace

namespace {

// Component coverage: small tokenizers built in Python from the base fixtures (misc/*.json hold a
// full tokenizer.json, or {"base": name, "patch": {top-level keys}} over a base fixture).
void check_misc(const std::string& name) {
  json spec = json::parse(peft::read_file(tok_fixture("misc/" + name + ".json")));
  std::string path = tok_fixture("misc/" + name + ".json");
  if (spec.contains("base")) {
    json full = json::parse(
        peft::read_file(tok_fixture(spec["base"].get<std::string>() + "/tokenizer.json")));
    for (auto& [k, v] : spec["patch"].items()) full[k] = v;
    path = peft::test::tmp_dir("tok_misc_" + name) + "/tokenizer.json";
    peft::write_file_atomic(path, full.dump());
  }
  auto tok = Tokenizer::from_file(path);
  const auto& lines = corpus();
  std::size_t n = 0, id_fail = 0, off_fail = 0, dec_fail = 0;
  for (auto& r : read_jsonl(tok_fixture("misc/" + name + ".expected.jsonl"))) {
    const std::string& line = lines[r["i"].get<std::size_t>()];
    auto e = tok.encode(line);
    ++n;
    if (e.ids != ids_of(r["ids"]) && ++id_fail <= 5) {
      ADD_FAILURE() << name << " '" << line << "': got " << json(e.ids).dump() << " want "
                    << r["ids"].dump();
    }
    std::vector<std::pair<std::size_t, std::size_t>> want;
    for (auto& o : r["offsets"]) want.emplace_back(o[0], o[1]);
    if (e.ids == ids_of(r["ids"]) && want != e.offsets && ++off_fail <= 5) {
      ADD_FAILURE() << name << " '" << line << "': offsets " << json(e.offsets).dump() << " want "
                    << r["offsets"].dump();
    }
    std::string dec = tok.decode(ids_of(r["ids"]), true);
    if (dec != r.value("decoded", line) && ++dec_fail <= 5) {
      ADD_FAILURE() << name << " '" << line << "': decode '" << dec << "'";
    }
  }
  std::printf(
      "[tokenizer] %s: %zu lines compared, %zu with different ids, %zu offsets, %zu "
      "decodes\n",
      name.c_str(), n, id_fail, off_fail, dec_fail);
  EXPECT_GT(n, 200u);
}

TEST(Tokenizer, MiscWordPieceComponents) { check_misc("wordpiece_misc"); }
TEST(Tokenizer, MiscByteLevelComponents) { check_misc("bytelevel_misc"); }
TEST(Tokenizer, MiscUnigramComponents) { check_misc("unigram_misc"); }
TEST(Tokenizer, MiscBpeSuffixComponents) { check_misc("bpe_suffix_misc"); }

}  // namespace
