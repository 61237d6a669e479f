// tokenizer.json post-processors and decoders, plus the JSON field helpers.
#include <map>

#include "io/tokenizer/components_impl.h"

namespace peft::io::detail {

using nlohmann::json;

// ------------------------------------------------------------------ JSON helpers
const json& field(const json& j, const char* key, const char* component, const LoadContext& ctx) {
  if (!j.is_object() || !j.contains(key))
    ctx.format_error(component, ": missing field '", key, "'");
  return j[key];
}

std::string get_string(const json& j, const char* key, const char* component,
                       const LoadContext& ctx, std::optional<std::string> def) {
  if (!j.contains(key) || (j[key].is_null() && def)) {
    if (def) return *def;
    ctx.format_error(component, ": missing field '", key, "'");
  }
  if (!j[key].is_string()) {
    ctx.format_error(component, ": field '", key, "' must be a string, got ", j[key].dump());
  }
  return j[key].get<std::string>();
}

bool get_bool(const json& j, const char* key, const char* component, const LoadContext& ctx,
              std::optional<bool> def) {
  if (!j.contains(key) || (j[key].is_null() && def)) {
    if (def) return *def;
    ctx.format_error(component, ": missing field '", key, "'");
  }
  if (!j[key].is_boolean()) {
    ctx.format_error(component, ": field '", key, "' must be a boolean, got ", j[key].dump());
  }
  return j[key].get<bool>();
}

TokenId to_token_id(const json& v, const char* component, const std::string& what,
                    const LoadContext& ctx) {
  if (!v.is_number_integer()) {
    ctx.format_error(component, ": ", what, " must be an integer, got ", v.dump());
  }
  // Compared as 64-bit before narrowing: is_number_integer covers int64 and uint64.
  const bool in_range = v.is_number_unsigned() ? v.get<std::uint64_t>() < std::uint64_t(kMaxTokenId)
                                               : (v.get<std::int64_t>() >= 0 &&
                                                  v.get<std::int64_t>() < kMaxTokenId);
  if (!in_range) {
    ctx.format_error(component, ": ", what, " ", v.dump(), " is outside [0, ", kMaxTokenId - 1,
                     "] (vocabularies hold at most 2^23 tokens)");
  }
  return static_cast<TokenId>(v.get<std::int64_t>());
}

std::string type_of(const json& j, const char* component, const LoadContext& ctx) {
  if (!j.is_object()) ctx.format_error(component, " must be an object or null, got ", j.dump());
  return get_string(j, "type", component, ctx);
}

SplitBehavior parse_behavior(const json& j, const char* component, const LoadContext& ctx) {
  std::string b = j.is_string() ? j.get<std::string>() : std::string();
  if (b == "Removed") return SplitBehavior::Removed;
  if (b == "Isolated") return SplitBehavior::Isolated;
  if (b == "MergedWithPrevious") return SplitBehavior::MergedWithPrevious;
  if (b == "MergedWithNext") return SplitBehavior::MergedWithNext;
  if (b == "Contiguous") return SplitBehavior::Contiguous;
  ctx.format_error(component, ": split behavior ", j.dump(), " is not one of Removed, Isolated, ",
                   "MergedWithPrevious, MergedWithNext, Contiguous");
}

Pattern parse_pattern(const json& j, const char* component, const LoadContext& ctx) {
  if (j.is_object() && j.contains("String") && j["String"].is_string()) {
    return Pattern::literal(j["String"].get<std::string>());
  }
  if (j.is_object() && j.contains("Regex") && j["Regex"].is_string()) {
    return Pattern::regex(j["Regex"].get<std::string>(), ctx.file + ": " + component);
  }
  ctx.format_error(component, ": pattern must be {\"String\": ...} or {\"Regex\": ...}, got ",
                   j.dump());
}

// ------------------------------------------------------------------ byte-level table
namespace {
struct ByteTable {
  std::string to_char[256];
  std::map<char32_t, int> to_byte;
  ByteTable() {
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      bool keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      char32_t c = keep ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + n++);
      append_utf8(to_char[b], c);
      to_byte[c] = b;
    }
  }
};
const ByteTable& byte_table() {
  static const ByteTable t;
  return t;
}
}  // namespace

const std::string& byte_to_char_utf8(unsigned char b) { return byte_table().to_char[b]; }

int char_to_byte(char32_t c) {
  const auto& m = byte_table().to_byte;
  auto it = m.find(c);
  return it == m.end() ? -1 : it->second;
}

void append_encoding(Encoding& dst, Encoding&& src) {
  auto cat = [](auto& a, auto& b) { a.insert(a.end(), b.begin(), b.end()); };
  cat(dst.ids, src.ids);
  cat(dst.type_ids, src.type_ids);
  cat(dst.attention_mask, src.attention_mask);
  cat(dst.offsets, src.offsets);
  cat(dst.tokens, src.tokens);
  cat(dst.special_tokens_mask, src.special_tokens_mask);
}

namespace {

/// Rust String::from_utf8_lossy: each maximal invalid subpart becomes U+FFFD.
std::string utf8_lossy(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    auto b = static_cast<unsigned char>(s[i]);
    if (b < 0x80) {
      out.push_back(static_cast<char>(b));
      ++i;
      continue;
    }
    std::size_t need = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) {
      need = 1;
    } else if (b >= 0xE0 && b <= 0xEF) {
      need = 2;
      if (b == 0xE0) lo = 0xA0;
      if (b == 0xED) hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
      need = 3;
      if (b == 0xF0) lo = 0x90;
      if (b == 0xF4) hi = 0x8F;
    }
    std::size_t k = 1;
    if (need > 0) {
      for (; k <= need && i + k < s.size(); ++k) {
        auto c = static_cast<unsigned char>(s[i + k]);
        if (k == 1 ? (c < lo || c > hi) : (c < 0x80 || c > 0xBF)) break;
      }
    }
    if (need > 0 && k == need + 1) {
      out.append(s, i, k);
    } else {
      out += "\xEF\xBF\xBD";
    }
    i += k;
  }
  return out;
}

// ------------------------------------------------------------------ post-processors
/// HF byte_level::process_offsets.
void trim_offsets(Encoding& e, bool add_prefix_space, const std::string& text) {
  const std::string& g = byte_to_char_utf8(' ');
  for (std::size_t i = 0; i < e.size(); ++i) {
    const std::string& t = e.tokens[i];
    auto& off = e.offsets[i];
    std::vector<char32_t> cs;
    for (std::size_t k = 0; k < t.size(); k += utf8_len(static_cast<unsigned char>(t[k]))) {
      cs.push_back(decode_utf8(t, k));
    }
    char32_t gc = decode_utf8(g, 0);
    auto sp = [&](char32_t c) { return c == gc || is_whitespace(c); };
    std::size_t lead = 0, trail = 0;
    while (lead < cs.size() && sp(cs[lead])) ++lead;
    while (trail < cs.size() && sp(cs[cs.size() - 1 - trail])) ++trail;
    if (lead > 0) {
      bool first = i == 0 || off.first == 0;
      if (first && add_prefix_space && lead == 1) lead = 0;
      std::size_t b = off.first;
      for (std::size_t k = 0; k < lead && b < text.size(); ++k) {
        b += utf8_len(static_cast<unsigned char>(text[b]));
      }
      off.first = std::min(b, off.second);
    }
    if (trail > 0) {
      std::size_t e2 = off.second, k = 0;
      for (; k < trail && e2 > 0; ++k) {
        do {
          --e2;
        } while (e2 > 0 && (static_cast<unsigned char>(text[e2]) & 0xC0) == 0x80);
      }
      if (k == trail) off.second = std::max(e2, off.first);
    }
  }
}

Encoding special_encoding(const std::vector<TokenId>& ids, const std::vector<std::string>& toks,
                          TokenId type_id) {
  Encoding e;
  e.ids = ids;
  e.tokens = toks;
  e.type_ids.assign(ids.size(), type_id);
  e.attention_mask.assign(ids.size(), 1);
  e.special_tokens_mask.assign(ids.size(), 1);
  e.offsets.assign(ids.size(), {0, 0});
  return e;
}

class TemplateProcessing : public PostProcessor {
 public:
  TemplateProcessing(const json& j, const LoadContext& ctx) {
    const char* c = "post_processor TemplateProcessing";
    const json& sp = field(j, "special_tokens", c, ctx);
    if (!sp.is_object()) ctx.format_error(c, ": 'special_tokens' must be an object");
    for (auto it = sp.begin(); it != sp.end(); ++it) {
      const json& v = it.value();
      const json& ids = field(v, "ids", c, ctx);
      const json& toks = field(v, "tokens", c, ctx);
      if (!ids.is_array() || !toks.is_array() || ids.size() != toks.size()) {
        ctx.format_error(c, ": special token '", it.key(), "' needs 'ids' and 'tokens' arrays of ",
                         "equal length");
      }
      Special s;
      for (auto& x : ids) {
        s.ids.push_back(to_token_id(x, c, "id of special token '" + it.key() + "'", ctx));
      }
      for (auto& x : toks) s.tokens.push_back(x.get<std::string>());
      specials_[it.key()] = std::move(s);
    }
    single_ = parse_template(field(j, "single", c, ctx), c, ctx);
    pair_ = parse_template(field(j, "pair", c, ctx), c, ctx);
  }
  std::size_t added_tokens(bool is_pair) const override {
    std::size_t n = 0;
    for (auto& p : is_pair ? pair_ : single_) {
      if (p.special) n += specials_.at(p.id).ids.size();
    }
    return n;
  }
  void process(std::vector<Encoding>& encs, bool add_special) const override {
    const auto& tpl = encs.size() == 2 ? pair_ : single_;
    Encoding out;
    for (auto& p : tpl) {
      if (p.special) {
        if (!add_special) continue;
        const Special& s = specials_.at(p.id);
        append_encoding(out, special_encoding(s.ids, s.tokens, p.type_id));
      } else {
        std::size_t i = p.id == "A" ? 0 : 1;
        if (i >= encs.size()) continue;
        Encoding e = encs[i];
        e.type_ids.assign(e.size(), p.type_id);
        append_encoding(out, std::move(e));
      }
    }
    encs.clear();
    encs.push_back(std::move(out));
  }

 private:
  struct Piece {
    bool special;
    std::string id;
    TokenId type_id;
  };
  struct Special {
    std::vector<TokenId> ids;
    std::vector<std::string> tokens;
  };
  std::vector<Piece> parse_template(const json& t, const char* c, const LoadContext& ctx) {
    if (!t.is_array()) ctx.format_error(c, ": template must be an array of pieces");
    std::vector<Piece> out;
    for (auto& p : t) {
      bool special = p.is_object() && p.contains("SpecialToken");
      if (!special && !(p.is_object() && p.contains("Sequence"))) {
        ctx.format_error(c, ": template piece must be SpecialToken or Sequence, got ", p.dump());
      }
      const json& v = special ? p["SpecialToken"] : p["Sequence"];
      Piece x{special, get_string(v, "id", c, ctx),
              v.contains("type_id") ? to_token_id(v["type_id"], c, "template 'type_id'", ctx) : 0};
      if (special && !specials_.count(x.id)) {
        ctx.format_error(c, ": template uses special token '", x.id,
                         "' missing from 'special_tokens'");
      }
      if (!special && x.id != "A" && x.id != "B") {
        ctx.format_error(c, ": sequence id must be A or B, got '", x.id, "'");
      }
      out.push_back(std::move(x));
    }
    return out;
  }
  std::map<std::string, Special> specials_;
  std::vector<Piece> single_, pair_;
};

/// BertProcessing and RobertaProcessing.
class ClsSepProcessing : public PostProcessor {
 public:
  ClsSepProcessing(const json& j, bool roberta, const LoadContext& ctx) : roberta_(roberta) {
    const char* c = roberta ? "post_processor RobertaProcessing" : "post_processor BertProcessing";
    auto pair = [&](const char* key, std::string& tok, TokenId& id) {
      const json& v = field(j, key, c, ctx);
      if (!v.is_array() || v.size() != 2 || !v[0].is_string() || !v[1].is_number_integer()) {
        ctx.format_error(c, ": '", key, "' must be [token, id], got ", v.dump());
      }
      tok = v[0].get<std::string>();
      id = to_token_id(v[1], c, std::string("id of '") + key + "'", ctx);
    };
    pair("cls", cls_, cls_id_);
    pair("sep", sep_, sep_id_);
    if (roberta) {
      trim_ = get_bool(j, "trim_offsets", c, ctx, true);
      prefix_ = get_bool(j, "add_prefix_space", c, ctx, true);
    }
  }
  std::size_t added_tokens(bool is_pair) const override { return is_pair ? (roberta_ ? 4 : 3) : 2; }
  void trim(Encoding& e, const std::string& text) const override {
    if (roberta_ && trim_) trim_offsets(e, prefix_, text);
  }
  void process(std::vector<Encoding>& encs, bool add_special) const override {
    if (!add_special) return;
    Encoding out = special_encoding({cls_id_}, {cls_}, 0);
    append_encoding(out, std::move(encs[0]));
    append_encoding(out, special_encoding({sep_id_}, {sep_}, 0));
    if (encs.size() == 2) {
      TokenId t = roberta_ ? 0 : 1;
      if (roberta_) append_encoding(out, special_encoding({sep_id_}, {sep_}, 0));
      Encoding b = std::move(encs[1]);
      b.type_ids.assign(b.size(), t);
      append_encoding(out, std::move(b));
      append_encoding(out, special_encoding({sep_id_}, {sep_}, t));
    }
    encs.clear();
    encs.push_back(std::move(out));
  }

 private:
  bool roberta_;
  std::string cls_, sep_;
  TokenId cls_id_ = 0, sep_id_ = 0;
  bool trim_ = false, prefix_ = false;
};

class ByteLevelProcessing : public PostProcessor {
 public:
  ByteLevelProcessing(bool trim, bool prefix) : trim_(trim), prefix_(prefix) {}
  std::size_t added_tokens(bool) const override { return 0; }
  void process(std::vector<Encoding>&, bool) const override {}
  void trim(Encoding& e, const std::string& text) const override {
    if (trim_) trim_offsets(e, prefix_, text);
  }

 private:
  bool trim_, prefix_;
};

class SequenceProcessing : public PostProcessor {
 public:
  explicit SequenceProcessing(std::vector<std::unique_ptr<PostProcessor>> v) : seq_(std::move(v)) {}
  std::size_t added_tokens(bool is_pair) const override {
    std::size_t n = 0;
    for (auto& p : seq_) n += p->added_tokens(is_pair);
    return n;
  }
  void process(std::vector<Encoding>& encs, bool add_special) const override {
    for (auto& p : seq_) p->process(encs, add_special);
  }
  void trim(Encoding& e, const std::string& text) const override {
    for (auto& p : seq_) p->trim(e, text);
  }

 private:
  std::vector<std::unique_ptr<PostProcessor>> seq_;
};

// ------------------------------------------------------------------ decoders
class ByteLevelDecoder : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string bytes;
    for (auto& t : tokens) {
      std::string tb;
      bool ok = true;
      for (std::size_t k = 0; k < t.size() && ok; k += utf8_len(static_cast<unsigned char>(t[k]))) {
        int b = char_to_byte(decode_utf8(t, k));
        if (b < 0) ok = false;
        tb.push_back(static_cast<char>(b));
      }
      bytes += ok ? tb : t;
    }
    tokens.assign(1, utf8_lossy(bytes));
  }
};

class WordPieceDecoder : public Decoder {
 public:
  WordPieceDecoder(std::string prefix, bool cleanup)
      : prefix_(std::move(prefix)), cleanup_(cleanup) {}
  static void replace_all(std::string& s, const std::string& a, const std::string& b) {
    for (std::size_t p = s.find(a); p != std::string::npos; p = s.find(a, p + b.size())) {
      s.replace(p, a.size(), b);
    }
  }
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      std::string& t = tokens[i];
      if (i != 0) {
        if (t.compare(0, prefix_.size(), prefix_) == 0) {
          t.erase(0, prefix_.size());
        } else {
          t.insert(0, " ");
        }
      }
      if (cleanup_) {
        static const char* kPairs[][2] = {{" .", "."},     {" ?", "?"},           {" !", "!"},
                                          {" ,", ","},     {" ' ", "'"},          {" n't", "n't"},
                                          {" 'm", "'m"},   {" do not", " don't"}, {" 's", "'s"},
                                          {" 've", "'ve"}, {" 're", "'re"}};
        for (auto& p : kPairs) replace_all(t, p[0], p[1]);
      }
    }
  }

 private:
  std::string prefix_;
  bool cleanup_;
};

class MetaspaceDecoder : public Decoder {
 public:
  MetaspaceDecoder(std::string rep, bool prepend) : rep_(std::move(rep)), prepend_(prepend) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      std::string out;
      const std::string& t = tokens[i];
      for (std::size_t p = 0; p < t.size();) {
        if (t.compare(p, rep_.size(), rep_) == 0) {
          if (!(i == 0 && prepend_)) out.push_back(' ');
          p += rep_.size();
        } else {
          out.push_back(t[p++]);
        }
      }
      tokens[i] = std::move(out);
    }
  }

 private:
  std::string rep_;
  bool prepend_;
};

class ByteFallbackDecoder : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    std::string pending;
    auto flush = [&] {
      if (pending.empty()) return;
      if (find_invalid_utf8(pending) == std::string::npos) {
        out.push_back(pending);
      } else {
        for (std::size_t k = 0; k < pending.size(); ++k) out.push_back("\xEF\xBF\xBD");
      }
      pending.clear();
    };
    for (auto& t : tokens) {
      int v = -1;
      if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' && std::isxdigit(t[3]) &&
          std::isxdigit(t[4])) {
        v = std::stoi(t.substr(3, 2), nullptr, 16);
      }
      if (v >= 0) {
        pending.push_back(static_cast<char>(v));
      } else {
        flush();
        out.push_back(std::move(t));
      }
    }
    flush();
    tokens = std::move(out);
  }
};

class FuseDecoder : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string s;
    for (auto& t : tokens) s += t;
    tokens.assign(1, s);
  }
};

class StripDecoder : public Decoder {
 public:
  StripDecoder(char32_t c, std::size_t start, std::size_t stop)
      : c_(c), start_(start), stop_(stop) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) {
      std::vector<std::size_t> pos;  // char starts
      for (std::size_t k = 0; k < t.size(); k += utf8_len(static_cast<unsigned char>(t[k]))) {
        pos.push_back(k);
      }
      std::size_t n = pos.size(), sc = 0, ec = n;
      for (std::size_t i = 0; i < std::min(start_, n); ++i) {
        if (decode_utf8(t, pos[i]) != c_) break;
        sc = i + 1;
      }
      for (std::size_t i = 0; i < stop_ && i < n; ++i) {
        std::size_t idx = n - i - 1;
        if (decode_utf8(t, pos[idx]) != c_) break;
        ec = idx;
      }
      if (ec < sc) ec = sc;
      std::size_t b = sc < n ? pos[sc] : t.size(), e = ec < n ? pos[ec] : t.size();
      t = t.substr(b, e - b);
    }
  }

 private:
  char32_t c_;
  std::size_t start_, stop_;
};

class ReplaceDecoder : public Decoder {
 public:
  ReplaceDecoder(Pattern p, std::string c) : pattern_(std::move(p)), content_(std::move(c)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) {
      std::string out;
      for (auto& [r, m] : pattern_.find_matches(t)) {
        if (m) {
          out += content_;
        } else {
          out.append(t, r.first, r.second - r.first);
        }
      }
      t = std::move(out);
    }
  }

 private:
  Pattern pattern_;
  std::string content_;
};

class BpeDecoder : public Decoder {
 public:
  explicit BpeDecoder(std::string suffix) : suffix_(std::move(suffix)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      std::string rep = i + 1 == tokens.size() ? "" : " ";
      WordPieceDecoder::replace_all(tokens[i], suffix_, rep);
    }
  }

 private:
  std::string suffix_;
};

class SequenceDecoder : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> v) : seq_(std::move(v)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (auto& d : seq_) d->decode_chain(tokens);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> seq_;
};

}  // namespace

std::unique_ptr<PostProcessor> make_post_processor(const json& j, const LoadContext& ctx) {
  if (j.is_null()) return nullptr;
  const char* c = "post_processor";
  std::string type = type_of(j, c, ctx);
  if (type == "TemplateProcessing") return std::make_unique<TemplateProcessing>(j, ctx);
  if (type == "BertProcessing") return std::make_unique<ClsSepProcessing>(j, false, ctx);
  if (type == "RobertaProcessing") return std::make_unique<ClsSepProcessing>(j, true, ctx);
  if (type == "ByteLevel") {
    return std::make_unique<ByteLevelProcessing>(get_bool(j, "trim_offsets", c, ctx, true),
                                                 get_bool(j, "add_prefix_space", c, ctx, true));
  }
  if (type == "Sequence") {
    const json& arr = field(j, "processors", c, ctx);
    if (!arr.is_array()) ctx.format_error("post_processor Sequence: 'processors' must be an array");
    std::vector<std::unique_ptr<PostProcessor>> v;
    for (auto& x : arr) {
      if (auto p = make_post_processor(x, ctx)) v.push_back(std::move(p));
    }
    return std::make_unique<SequenceProcessing>(std::move(v));
  }
  ctx.not_supported("post_processor type '", type, "' is not supported (supported: ",
                    "TemplateProcessing, BertProcessing, RobertaProcessing, ByteLevel, Sequence)");
}

std::unique_ptr<Decoder> make_decoder(const json& j, const LoadContext& ctx) {
  if (j.is_null()) return nullptr;
  const char* c = "decoder";
  std::string type = type_of(j, c, ctx);
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "WordPiece") {
    return std::make_unique<WordPieceDecoder>(get_string(j, "prefix", c, ctx, std::string("##")),
                                              get_bool(j, "cleanup", c, ctx, true));
  }
  if (type == "Metaspace") {
    std::string ps = get_string(j, "prepend_scheme", c, ctx, std::string("always"));
    bool prepend = ps != "never";
    if (j.contains("add_prefix_space") && j["add_prefix_space"].is_boolean()) {
      prepend = prepend && j["add_prefix_space"].get<bool>();
    }
    return std::make_unique<MetaspaceDecoder>(
        get_string(j, "replacement", c, ctx, std::string("\u2581")), prepend);
  }
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Strip") {
    std::string content = get_string(j, "content", c, ctx);
    if (content.empty()) ctx.format_error("decoder Strip: empty 'content'");
    auto num = [&](const char* k) {
      if (!j.contains(k) || !j[k].is_number_unsigned()) {
        ctx.format_error("decoder Strip: '", k, "' must be a non-negative integer");
      }
      return j[k].get<std::size_t>();
    };
    return std::make_unique<StripDecoder>(decode_utf8(content, 0), num("start"), num("stop"));
  }
  if (type == "Replace") {
    return std::make_unique<ReplaceDecoder>(parse_pattern(field(j, "pattern", c, ctx), c, ctx),
                                            get_string(j, "content", c, ctx));
  }
  if (type == "BPEDecoder") {
    return std::make_unique<BpeDecoder>(get_string(j, "suffix", c, ctx, std::string("</w>")));
  }
  if (type == "Sequence") {
    const json& arr = field(j, "decoders", c, ctx);
    if (!arr.is_array()) ctx.format_error("decoder Sequence: 'decoders' must be an array");
    std::vector<std::unique_ptr<Decoder>> v;
    for (auto& x : arr) {
      if (auto d = make_decoder(x, ctx)) v.push_back(std::move(d));
    }
    return std::make_unique<SequenceDecoder>(std::move(v));
  }
  ctx.not_supported("decoder type '", type, "' is not supported (supported: ByteLevel, ",
                    "WordPiece, Metaspace, ByteFallback, Fuse, Strip, Replace, BPEDecoder, ",
                    "Sequence)");
}

}  // namespace peft::io::detail
