// llama2.c tokenizer.bin: reader and conversion to an HF (Llama-style) tokenizer.json.
#include <algorithm>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <tuple>
#include <unordered_map>

#include "io/tokenizer/tokenizer_impl.h"
#include "io/tokenizer/unicode_impl.h"
#include "peft/core/check.h"
#include "peft/core/file_util.h"
#include "peft/io/llama2c.h"

namespace peft::io {
namespace detail {
namespace {

using nlohmann::json;

struct Llama2cVocab {
  std::vector<std::string> pieces;
  std::vector<float> scores;
};

Llama2cVocab read_llama2c(const std::string& path) {
  std::string data = read_file(path);
  auto fail = [&](const auto&... args) {
    throw FormatError(
        peft::detail::str_cat("[io::tokenizer] ", path, ": llama2.c tokenizer.bin ", args...));
  };
  if (data.size() < 4) fail("is truncated: ", data.size(), " bytes, no max_token_length header");
  std::int32_t max_len = 0;
  std::memcpy(&max_len, data.data(), 4);
  if (max_len <= 0 || max_len > kMaxLlama2cTokenBytes)
    fail("has an invalid max_token_length ", max_len, " (expected 1 to ", kMaxLlama2cTokenBytes, " bytes)");
  Llama2cVocab v;
  std::size_t pos = 4;
  while (pos < data.size()) {
    std::size_t entry = v.pieces.size();
    if (data.size() - pos < 8) fail("is truncated inside entry ", entry, " (at byte ", pos, ")");
    float score = 0;
    std::int32_t len = 0;
    std::memcpy(&score, data.data() + pos, 4);
    std::memcpy(&len, data.data() + pos + 4, 4);
    pos += 8;
    if (len < 0 || len > max_len) {
      fail("entry ", entry, " has length ", len, " outside [0, max_token_length=", max_len, "]");
    }
    if (data.size() - pos < static_cast<std::size_t>(len)) {
      fail("is truncated inside the bytes of entry ", entry);
    }
    std::string piece = data.substr(pos, static_cast<std::size_t>(len));
    if (find_invalid_utf8(piece) != std::string::npos) {
      fail("entry ", entry, " is not valid UTF-8");
    }
    pos += static_cast<std::size_t>(len);
    v.pieces.push_back(std::move(piece));
    v.scores.push_back(score);
  }
  if (v.pieces.size() < 3) fail("has ", v.pieces.size(), " entries; expected at least 3");
  return v;
}

std::string replace_all(std::string s, const std::string& a, const std::string& b) {
  for (std::size_t p = s.find(a); p != std::string::npos; p = s.find(a, p + b.size())) {
    s.replace(p, a.size(), b);
  }
  return s;
}

}  // namespace

std::vector<std::pair<TokenId, TokenId>> sentencepiece_merges(
    const std::vector<std::pair<std::string, TokenId>>& vocab, const std::vector<float>& scores) {
  std::unordered_map<std::string, TokenId> index(vocab.begin(), vocab.end());
  std::vector<std::tuple<float, TokenId, TokenId>> merges;
  for (const auto& [piece, id] : vocab) {
    for (std::size_t k = 1; k < piece.size(); ++k) {
      if ((static_cast<unsigned char>(piece[k]) & 0xC0) == 0x80) continue;  // split whole characters
      auto l = index.find(piece.substr(0, k)), r = index.find(piece.substr(k));
      if (l != index.end() && r != index.end()) merges.emplace_back(scores[id], l->second, r->second);
    }
  }
  std::sort(merges.begin(), merges.end(), [](const auto& a, const auto& b) {
    if (std::get<0>(a) != std::get<0>(b)) return std::get<0>(a) > std::get<0>(b);
    return std::make_pair(std::get<1>(a), std::get<2>(a)) < std::make_pair(std::get<1>(b), std::get<2>(b));
  });
  std::vector<std::pair<TokenId, TokenId>> out;
  out.reserve(merges.size());
  for (const auto& m : merges) out.emplace_back(std::get<1>(m), std::get<2>(m));
  return out;
}

std::string llama2c_tokenizer_json(const std::string& bin_path) {
  Llama2cVocab v = read_llama2c(bin_path);
  const std::string kSpace = "\u2581";
  std::vector<std::string> pieces;
  for (auto& p : v.pieces) pieces.push_back(replace_all(p, " ", kSpace));
  pieces[0] = "<unk>";
  pieces[1] = "<s>";
  pieces[2] = "</s>";
  std::map<std::string, TokenId> vocab;
  for (std::size_t i = 0; i < pieces.size(); ++i) {
    vocab.emplace(pieces[i], static_cast<TokenId>(i));  // first occurrence wins
  }
  json jm = json::array();
  for (const auto& [l, r] : sentencepiece_merges({vocab.begin(), vocab.end()}, v.scores))
    jm.push_back({pieces[l], pieces[r]});
  json jv = json::object();
  for (auto& [p, id] : vocab) jv[p] = id;

  json added = json::array();
  for (int i = 0; i < 3; ++i) {
    added.push_back({{"id", i},
                     {"content", pieces[i]},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  }
  auto seq = [](const char* id, int type_id) {
    return json{{"Sequence", {{"id", id}, {"type_id", type_id}}}};
  };
  auto bos = [](int type_id) {
    return json{{"SpecialToken", {{"id", "<s>"}, {"type_id", type_id}}}};
  };
  json j = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer",
       {{"type", "Sequence"},
        {"normalizers",
         {{{"type", "Prepend"}, {"prepend", kSpace}},
          {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", kSpace}}}}}},
      {"pre_tokenizer", nullptr},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single", {bos(0), seq("A", 0)}},
        {"pair", {bos(0), seq("A", 0), bos(1), seq("B", 1)}},
        {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}}}}},
      {"decoder",
       {{"type", "Sequence"},
        {"decoders",
         {{{"type", "Replace"}, {"pattern", {{"String", kSpace}}}, {"content", " "}},
          {{"type", "ByteFallback"}},
          {{"type", "Fuse"}},
          {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}}},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", "<unk>"},
        {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr},
        {"fuse_unk", true},
        {"byte_fallback", true},
        {"ignore_merges", false},
        {"vocab", jv},
        {"merges", jm}}},
  };
  return j.dump(2);
}

}  // namespace detail

void write_llama2c_tokenizer_json(const std::string& bin_path, const std::string& out_json_path) {
  write_file_atomic(out_json_path, detail::llama2c_tokenizer_json(bin_path) + "\n");
}

std::size_t llama2c_tokenizer_entries(const std::string& bin_path) {
  return detail::read_llama2c(bin_path).pieces.size();
}

}  // namespace peft::io
