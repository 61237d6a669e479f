// GGUF tokenizer metadata (tokenizer.ggml.*) -> an HF tokenizer.json run by the tokenizer.json
// engine, so that ids equal llama.cpp's (src/llama-vocab.cpp, llama-tokenize's defaults:
// parse_special = true, add_bos as the vocabulary says).
//
//   gpt2  (LLAMA_VOCAB_TYPE_BPE): byte-level BPE with tokenizer.ggml.merges; the pre-tokenizer
//         regexes of tokenizer.ggml.pre become a Sequence of Split(Isolated) + ByteLevel.
//   llama (LLAMA_VOCAB_TYPE_SPM): llm_tokenizer_spm merges adjacent symbols into the vocabulary
//         token of highest score; that is BPE with one merge per split of every token, ranked by
//         the merged token's score, plus byte fallback <0xXX>.
// CONTROL, USER_DEFINED and UNKNOWN tokens are matched in the text before the model runs
// (llama_vocab::impl::tokenizer_st_partition with parse_special): HF added tokens.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <tuple>
#include <unordered_map>

#include "io/tokenizer/tokenizer_impl.h"
#include "io/tokenizer/unicode_impl.h"
#include "peft/core/check.h"
#include "peft/core/file_util.h"
#include "peft/io/gguf.h"

namespace peft::io {
namespace detail {
namespace {

using nlohmann::json;

// llama.cpp token types (llama.h enum llama_token_type; gguf-py TokenType).
enum TokenType : int32_t {
  kUndefined = 0, kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6
};

// Pre-tokenizer regexes, as llama.cpp's llm_tokenizer_bpe constructor lists them. The GPT-2
// pattern carries HF's trailing "|\s+", which llama.cpp's custom GPT-2 splitter implements.
const char* const kGpt2 =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
// Llama 3 / Qwen 2 patterns as llama.cpp adapted them ((?i:'s) spelled out as '[sS], so that no
// Unicode case folding such as U+017F LONG S matching 's' creeps in).
const char* const kLlama3 =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char* const kQwen2 =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
    "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

struct PreType {
  std::vector<const char*> regexes;
  bool ignore_merges = false;
  bool add_bos = false;  // llama.cpp's default when tokenizer.ggml.add_bos_token is absent
};

// tokenizer.ggml.pre -> llama.cpp pre type (llama_vocab::impl::load), restricted to the types
// whose only effects are the regexes, ignore_merges and add_bos.
const std::map<std::string, PreType>& pre_types() {
  static const std::map<std::string, PreType> m = [] {
    std::map<std::string, PreType> t;
    const PreType def{{"[\\p{P}\\$\\+<=>\\^~\\|]+", kGpt2, "\\p{N}+", "[0-9][0-9][0-9]"}};
    const PreType gpt2{{kGpt2}};
    const PreType llama3{{kLlama3}, true, true};
    const PreType smollm{{"\\p{N}", kGpt2}};
    const PreType qwen2{{kQwen2}};
    t["default"] = def;
    for (auto n : {"gpt-2", "phi-2", "mpt", "olmo"}) t[n] = gpt2;
    for (auto n : {"llama3", "llama-v3", "llama-bpe", "falcon3"}) t[n] = llama3;
    for (auto n : {"dbrx", "smaug-bpe"}) t[n] = PreType{{kLlama3}};
    for (auto n : {"qwen2", "deepseek-r1-qwen", "stablelm2"}) t[n] = qwen2;
    for (auto n : {"smollm", "starcoder", "refact", "command-r", "codeshell"}) t[n] = smollm;
    return t;
  }();
  return m;
}

std::string known_pre_types() {
  std::string s;
  for (auto& [name, _] : pre_types()) s += (s.empty() ? "" : ", ") + name;
  return s;
}

/// The tokenizer keys of a GGUF file, validated.
struct GgufVocab {
  std::string file, model, pre;
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int32_t> types;
  std::vector<std::pair<std::string, std::string>> merges;
  std::optional<TokenId> bos, eos, unk, pad, sep;
  bool add_bos = false, add_eos = false, add_space_prefix = false;
  std::string chat_template;
};

template <typename... Args>
[[noreturn]] void fail(const std::string& file, const Args&... args) {
  throw FormatError(peft::detail::str_cat("[gguf] ", file, ": ", args...));
}

const GgufValue* find_array(const GgufFile& f, const std::string& key,
                            std::initializer_list<GgufType> elem_types, const char* expected) {
  const GgufValue* v = f.find(key);
  if (!v) return nullptr;
  bool ok = v->type == GgufType::ARRAY &&
            std::find(elem_types.begin(), elem_types.end(), v->elem_type) != elem_types.end();
  if (!ok) {
    fail(f.path(), "key '", key, "' is ", v->brief(), "; expected an array of ", expected);
  }
  return v;
}

// llama.cpp marks tokens CONTROL by their text when the converter did not (EOT/EOG/FIM
// detection in llama_vocab::impl::load), which makes them match as special tokens.
const std::set<std::string>& control_by_text() {
  // clang-format off
  static const std::set<std::string> s = {
      "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
      "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
      "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
      "<\uff5cend\u2581of\u2581sentence\uff5c>", "[e~[",
      "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<PRE>", "\u2581<PRE>", "<|code_prefix|>",
      "<|prefix|>", "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<SUF>", "\u2581<SUF>",
      "<|code_suffix|>", "<|suffix|>", "<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<MID>",
      "\u2581<MID>", "<|code_middle|>", "<|middle|>", "<|fim_pad|>", "<fim-pad>", "<fim_pad>",
      "<PAD>", "[PAD]", "<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>",
      "<|file_sep|>"};
  // clang-format on
  return s;
}

GgufVocab read_vocab(const GgufFile& f) {
  GgufVocab v;
  v.file = f.path();
  const std::string& file = v.file;
  if (!f.has("tokenizer.ggml.model")) {
    fail(file, "no tokenizer: key 'tokenizer.ggml.model' is missing");
  }
  v.model = f.get_string("tokenizer.ggml.model");
  if (v.model != "gpt2" && v.model != "llama") {
    fail(file, "tokenizer.ggml.model '", v.model,
         "' is not supported (supported: gpt2 = byte-level BPE, llama = SentencePiece)");
  }
  const GgufValue* toks = find_array(f, "tokenizer.ggml.tokens", {GgufType::STRING}, "STRING");
  if (!toks) fail(file, "key 'tokenizer.ggml.tokens' is missing");
  if (toks->items.empty()) fail(file, "tokenizer.ggml.tokens is empty");
  const std::size_t n = toks->items.size();
  if (n > static_cast<std::size_t>(std::numeric_limits<TokenId>::max())) {
    fail(file, "tokenizer.ggml.tokens has ", n, " entries; at most 2^31-1 are supported");
  }
  std::unordered_map<std::string, std::size_t> seen;
  v.tokens.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    std::string t = toks->items[i].s;
    if (t.empty()) t = "[EMPTY_" + std::to_string(i) + "]";  // as llama.cpp renames them
    if (find_invalid_utf8(t) != std::string::npos) {
      fail(file, "tokenizer.ggml.tokens[", i, "] is not valid UTF-8");
    }
    auto [it, fresh] = seen.emplace(t, i);
    if (!fresh) {
      fail(file, "tokenizer.ggml.tokens[", i, "] '", t, "' repeats token ", it->second,
           " (llama.cpp requires unique tokens)");
    }
    v.tokens.push_back(std::move(t));
  }
  if (const GgufValue* s =
          find_array(f, "tokenizer.ggml.scores", {GgufType::FLOAT32, GgufType::INT32}, "FLOAT32")) {
    if (s->items.size() != n) {
      fail(file, "tokenizer.ggml.scores has ", s->items.size(),
           " entries but tokenizer.ggml.tokens has ", n);
    }
    for (auto& x : s->items) {
      v.scores.push_back(static_cast<float>(x.type == GgufType::INT32 ? x.i : x.f));
    }
  }
  if (const GgufValue* t = find_array(f, "tokenizer.ggml.token_type", {GgufType::INT32}, "INT32")) {
    if (t->items.size() != n) {
      fail(file, "tokenizer.ggml.token_type has ", t->items.size(),
           " entries but tokenizer.ggml.tokens has ", n);
    }
    for (std::size_t i = 0; i < n; ++i) {
      int64_t x = t->items[i].i;
      if (x < kUndefined || x > kByte) {
        fail(file, "tokenizer.ggml.token_type[", i, "] = ", x,
             " is not a token type (0..6: undefined, normal, unknown, control, user-defined, "
             "unused, byte)");
      }
      v.types.push_back(static_cast<int32_t>(x));
    }
  } else {
    v.types.assign(n, kNormal);
  }
  for (std::size_t i = 0; i < n; ++i) {
    if (control_by_text().count(v.tokens[i]) && v.types[i] != kUserDefined) v.types[i] = kControl;
  }

  // Defaults as llama.cpp's (including its odd id 11 for gpt2 vocabularies without the keys).
  if (v.model == "llama") {
    v.bos = 1;
    v.eos = 2;
    v.unk = 0;
    v.add_bos = true;
    v.add_space_prefix = true;
    if (v.scores.empty()) {
      fail(file, "tokenizer.ggml.scores is required for tokenizer.ggml.model 'llama'");
    }
  } else {
    v.bos = 11;
    v.eos = 11;
    v.pre = f.get_string("tokenizer.ggml.pre", "default");
    auto it = pre_types().find(v.pre);
    if (it == pre_types().end()) {
      fail(file, "tokenizer.ggml.pre '", v.pre, "' is not supported (known: ", known_pre_types(),
           ")");
    }
    v.add_bos = it->second.add_bos;
    const GgufValue* m = find_array(f, "tokenizer.ggml.merges", {GgufType::STRING}, "STRING");
    if (!m) {
      fail(file,
           "key 'tokenizer.ggml.merges' is missing (required for tokenizer.ggml.model 'gpt2')");
    }
    v.merges.reserve(m->items.size());
    for (std::size_t i = 0; i < m->items.size(); ++i) {
      const std::string& w = m->items[i].s;
      std::size_t sp = w.size() > 1 ? w.find(' ', 1) : std::string::npos;  // as llama.cpp splits
      if (sp == std::string::npos) {
        fail(file, "tokenizer.ggml.merges[", i, "] '", w, "' is not of the form 'a b'");
      }
      v.merges.emplace_back(w.substr(0, sp), w.substr(sp + 1));
    }
  }
  // Defaults outside the vocabulary are dropped, as llama.cpp does.
  for (auto* d : {&v.bos, &v.eos, &v.unk}) {
    if (*d && static_cast<std::size_t>(**d) >= n) d->reset();
  }
  auto special = [&](const char* key, std::optional<TokenId>& dst) {
    if (!f.has(key)) return;
    uint64_t id = f.get_uint(key);
    if (id >= n) {
      fail(file, "key '", key, "' = ", id, " is outside the vocabulary (", n, " tokens)");
    }
    dst = static_cast<TokenId>(id);
  };
  special("tokenizer.ggml.bos_token_id", v.bos);
  special("tokenizer.ggml.eos_token_id", v.eos);
  special("tokenizer.ggml.unknown_token_id", v.unk);
  special("tokenizer.ggml.padding_token_id", v.pad);
  special("tokenizer.ggml.seperator_token_id", v.sep);  // sic: gguf-py's key name
  v.add_bos = f.get_bool("tokenizer.ggml.add_bos_token", v.add_bos);
  v.add_eos = f.get_bool("tokenizer.ggml.add_eos_token", v.add_eos);
  v.add_space_prefix = f.get_bool("tokenizer.ggml.add_space_prefix", v.add_space_prefix);
  if (v.model == "gpt2" && v.add_space_prefix) {
    // llama.cpp ignores the key for BPE vocabularies (it forces add_space_prefix = false).
    v.add_space_prefix = false;
  }
  if (v.add_bos && !v.bos) {
    fail(file, "tokenizer.ggml.add_bos_token is true but there is no BOS token");
  }
  if (v.add_eos && !v.eos) {
    fail(file, "tokenizer.ggml.add_eos_token is true but there is no EOS token");
  }
  v.chat_template = f.get_string("tokenizer.chat_template", "");
  return v;
}

json added_token(TokenId id, const std::string& content, bool special) {
  return {{"id", id},        {"content", content},  {"single_word", false}, {"lstrip", false},
          {"rstrip", false}, {"normalized", false}, {"special", special}};
}

json added_tokens(const GgufVocab& v) {
  json a = json::array();
  for (std::size_t i = 0; i < v.tokens.size(); ++i) {
    int32_t t = v.types[i];
    if (t == kControl || t == kUnknown || t == kUserDefined) {
      a.push_back(added_token(static_cast<TokenId>(i), v.tokens[i], t != kUserDefined));
    }
  }
  return a;
}

/// [bos] $A [eos] (and the same for $B), as llama.cpp adds them around one sequence.
json post_processor(const GgufVocab& v) {
  json single = json::array(), pair = json::array(), specials = json::object();
  auto add_special = [&](std::optional<TokenId> id, json& seq, int type_id) {
    const std::string& t = v.tokens[*id];
    seq.push_back({{"SpecialToken", {{"id", t}, {"type_id", type_id}}}});
    specials[t] = {{"id", t}, {"ids", {*id}}, {"tokens", {t}}};
  };
  for (int type_id = 0; type_id < 2; ++type_id) {
    json& seq = type_id == 0 ? single : pair;
    for (int part = 0; part < (type_id == 0 ? 1 : 2); ++part) {
      if (v.add_bos) add_special(v.bos, seq, part);
      seq.push_back({{"Sequence", {{"id", part == 0 ? "A" : "B"}, {"type_id", part}}}});
      if (v.add_eos) add_special(v.eos, seq, part);
    }
  }
  return {{"type", "TemplateProcessing"},
          {"single", single},
          {"pair", pair},
          {"special_tokens", specials}};
}

json vocab_object(const GgufVocab& v) {
  json jv = json::object();
  for (std::size_t i = 0; i < v.tokens.size(); ++i) jv[v.tokens[i]] = static_cast<TokenId>(i);
  return jv;
}

json bpe_json(const GgufVocab& v) {
  const PreType& pt = pre_types().at(v.pre);
  json pres = json::array();
  for (const char* re : pt.regexes) {
    pres.push_back({{"type", "Split"},
                    {"pattern", {{"Regex", re}}},
                    {"behavior", "Isolated"},
                    {"invert", false}});
  }
  pres.push_back({{"type", "ByteLevel"},
                  {"add_prefix_space", false},
                  {"trim_offsets", false},
                  {"use_regex", false}});
  std::unordered_map<std::string, std::size_t> index;
  for (std::size_t i = 0; i < v.tokens.size(); ++i) index.emplace(v.tokens[i], i);
  json merges = json::array();
  for (std::size_t i = 0; i < v.merges.size(); ++i) {
    const auto& [a, b] = v.merges[i];
    const std::string* parts[] = {&a, &b, nullptr};
    for (const std::string* s : parts) {
      std::string t = s ? *s : a + b;
      if (!index.count(t)) {
        fail(v.file, "tokenizer.ggml.merges[", i, "] '", a, " ", b, "' ", s ? "names" : "produces",
             " '", t, "', which is not in tokenizer.ggml.tokens");
      }
    }
    merges.push_back({a, b});
  }
  return {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added_tokens(v)},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "Sequence"}, {"pretokenizers", pres}}},
      {"post_processor", post_processor(v)},
      {"decoder",
       {{"type", "ByteLevel"},
        {"add_prefix_space", true},
        {"trim_offsets", true},
        {"use_regex", true}}},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", nullptr},
        {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr},
        {"fuse_unk", false},
        {"byte_fallback", false},
        {"ignore_merges", pt.ignore_merges},
        {"vocab", vocab_object(v)},
        {"merges", merges}}},
  };
}

json spm_json(const GgufVocab& v) {
  const std::string kSpace = "\u2581";
  for (std::size_t i = 0; i < v.scores.size(); ++i) {
    if (!std::isfinite(v.scores[i])) fail(v.file, "tokenizer.ggml.scores[", i, "] is not finite");
  }
  // llm_tokenizer_spm merges any two adjacent symbols whose concatenation is a token, best
  // score first: the merges HF's SentencePieceExtractor derives from the scores.
  std::vector<std::pair<std::string, TokenId>> vocab;
  for (std::size_t i = 0; i < v.tokens.size(); ++i) vocab.emplace_back(v.tokens[i], static_cast<TokenId>(i));
  json jm = json::array();
  for (const auto& [l, r] : sentencepiece_merges(vocab, v.scores)) jm.push_back({v.tokens[l], v.tokens[r]});

  json norms = json::array();
  if (v.add_space_prefix) norms.push_back({{"type", "Prepend"}, {"prepend", kSpace}});
  norms.push_back({{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", kSpace}});
  json decoders = {{{"type", "Replace"}, {"pattern", {{"String", kSpace}}}, {"content", " "}},
                   {{"type", "ByteFallback"}},
                   {{"type", "Fuse"}}};
  if (v.add_space_prefix) {
    decoders.push_back({{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}});
  }
  return {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added_tokens(v)},
      {"normalizer", {{"type", "Sequence"}, {"normalizers", norms}}},
      {"pre_tokenizer", nullptr},
      {"post_processor", post_processor(v)},
      {"decoder", {{"type", "Sequence"}, {"decoders", decoders}}},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", v.unk ? json(v.tokens[*v.unk]) : json(nullptr)},
        {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr},
        {"fuse_unk", true},
        {"byte_fallback", true},
        {"ignore_merges", false},
        {"vocab", vocab_object(v)},
        {"merges", jm}}},
  };
}

json tokenizer_json(const GgufVocab& v) { return v.model == "llama" ? spm_json(v) : bpe_json(v); }

json tokenizer_config(const GgufVocab& v) {
  auto tok = [&](const std::optional<TokenId>& id) {
    return id ? json(v.tokens[*id]) : json(nullptr);
  };
  json added = json::object();
  for (auto a : added_tokens(v)) {  // transformers' layout: keyed by id, without "id"
    std::string id = std::to_string(a["id"].get<TokenId>());
    a.erase("id");
    added[id] = a;
  }
  json c = {{"tokenizer_class", "PreTrainedTokenizerFast"},
            {"add_bos_token", v.add_bos},
            {"add_eos_token", v.add_eos},
            {"bos_token", tok(v.bos)},
            {"eos_token", tok(v.eos)},
            {"unk_token", tok(v.unk)},
            {"pad_token", tok(v.pad)},
            {"clean_up_tokenization_spaces", false},
            {"added_tokens_decoder", added}};
  if (v.sep) c["sep_token"] = tok(v.sep);
  if (!v.chat_template.empty()) c["chat_template"] = v.chat_template;
  return c;
}

}  // namespace
}  // namespace detail

std::string gguf_tokenizer_json(const GgufFile& f) {
  return detail::tokenizer_json(detail::read_vocab(f)).dump(2);
}

std::string gguf_tokenizer_config_json(const GgufFile& f) {
  return detail::tokenizer_config(detail::read_vocab(f)).dump(2);
}

void write_gguf_tokenizer(const GgufFile& f, const std::string& out_dir) {
  detail::GgufVocab v = detail::read_vocab(f);
  std::filesystem::create_directories(out_dir);
  std::filesystem::path d(out_dir);
  write_file_atomic((d / "tokenizer.json").string(), detail::tokenizer_json(v).dump(2) + "\n");
  write_file_atomic((d / "tokenizer_config.json").string(),
                    detail::tokenizer_config(v).dump(2) + "\n");
}

Tokenizer Tokenizer::from_gguf(const std::string& path) {
  GgufFile f = GgufFile::open(path);
  detail::GgufVocab v = detail::read_vocab(f);
  Tokenizer t(detail::load_hf_tokenizer(detail::tokenizer_json(v).dump(), path));
  t.bos_id_ = v.bos;
  t.eos_id_ = v.eos;
  t.pad_id_ = v.pad;
  return t;
}

}  // namespace peft::io
