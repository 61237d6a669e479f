// tokenizer.json normalizers and pre-tokenizers.
#include <array>

#include "io/tokenizer/components_impl.h"

namespace peft::io::detail {
namespace {

using nlohmann::json;

// ------------------------------------------------------------------ normalizers
class UnicodeNormalizer : public Normalizer {
 public:
  explicit UnicodeNormalizer(NormalForm f) : form_(f) {}
  void normalize(NormalizedString& s) const override { s.normalize(form_); }

 private:
  NormalForm form_;
};

class LowercaseNormalizer : public Normalizer {
 public:
  void normalize(NormalizedString& s) const override { s.lowercase(); }
};

class StripAccentsNormalizer : public Normalizer {
 public:
  void normalize(NormalizedString& s) const override {
    s.map_chars([](char32_t c, std::u32string& out) {
      if (!is_combining_mark(c)) out.push_back(c);
    });
  }
};

class BertNormalizer : public Normalizer {
 public:
  BertNormalizer(bool clean, bool chinese, bool strip, bool lower)
      : clean_(clean), chinese_(chinese), strip_(strip), lower_(lower) {}
  void normalize(NormalizedString& s) const override {
    if (clean_) {
      s.map_chars([](char32_t c, std::u32string& out) {
        bool ws = c == '\t' || c == '\n' || c == '\r' || is_whitespace(c);
        bool control = !(c == '\t' || c == '\n' || c == '\r') && is_other(c);
        if (c == 0 || c == 0xFFFD || control) return;
        out.push_back(ws ? U' ' : c);
      });
    }
    if (chinese_) {
      s.map_chars([](char32_t c, std::u32string& out) {
        if (is_chinese_char(c)) {
          out.push_back(U' ');
          out.push_back(c);
          out.push_back(U' ');
        } else {
          out.push_back(c);
        }
      });
    }
    if (strip_) {
      s.normalize(NormalForm::NFD);
      s.map_chars([](char32_t c, std::u32string& out) {
        if (!is_mark_nonspacing(c)) out.push_back(c);
      });
    }
    if (lower_) s.lowercase();
  }

 private:
  bool clean_, chinese_, strip_, lower_;
};

class PrependNormalizer : public Normalizer {
 public:
  explicit PrependNormalizer(std::string p) : prepend_(std::move(p)) {}
  void normalize(NormalizedString& s) const override {
    if (!s.empty()) s.prepend(prepend_);
  }

 private:
  std::string prepend_;
};

class ReplaceNormalizer : public Normalizer {
 public:
  ReplaceNormalizer(Pattern p, std::string c) : pattern_(std::move(p)), content_(std::move(c)) {}
  void normalize(NormalizedString& s) const override { s.replace(pattern_, content_); }

 private:
  Pattern pattern_;
  std::string content_;
};

class StripNormalizer : public Normalizer {
 public:
  StripNormalizer(bool l, bool r) : left_(l), right_(r) {}
  void normalize(NormalizedString& s) const override { s.strip(left_, right_); }

 private:
  bool left_, right_;
};

class ByteLevelNormalizer : public Normalizer {
 public:
  void normalize(NormalizedString& s) const override {
    s.map_chars([](char32_t c, std::u32string& out) {
      std::string bytes;
      append_utf8(bytes, c);
      for (unsigned char b : bytes) out.push_back(decode_utf8(byte_to_char_utf8(b), 0));
    });
  }
};

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> v) : seq_(std::move(v)) {}
  void normalize(NormalizedString& s) const override {
    for (auto& n : seq_) n->normalize(s);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> seq_;
};

// ------------------------------------------------------------------ pre-tokenizers
const char* kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool prefix, bool use_regex, const LoadContext& ctx)
      : prefix_(prefix), use_regex_(use_regex) {
    if (use_regex_) regex_ = Pattern::regex(kGpt2Regex, ctx.file + ": pre_tokenizer ByteLevel");
  }
  void pre_tokenize(PreTokenizedString& p) const override {
    p.split([&](NormalizedString n) {
      if (prefix_ && n.text.compare(0, 1, " ") != 0) n.prepend(" ");
      if (!use_regex_) return std::vector<NormalizedString>{std::move(n)};
      return n.split(regex_.find_matches(n.text), SplitBehavior::Isolated);
    });
    for (auto& s : p.splits) {
      if (s.tokens) continue;
      NormalizedString& n = s.normalized;
      std::string t;
      std::vector<Range> a;
      t.reserve(n.text.size() * 2);
      a.reserve(n.text.size() * 2);
      for (std::size_t i = 0; i < n.text.size();) {
        std::size_t len = utf8_len(static_cast<unsigned char>(n.text[i]));
        Range r{n.align[i].first, n.align[i + len - 1].second};
        for (std::size_t k = 0; k < len; ++k) {
          const std::string& c = byte_to_char_utf8(static_cast<unsigned char>(n.text[i + k]));
          t += c;
          a.insert(a.end(), c.size(), r);
        }
        i += len;
      }
      n.text = std::move(t);
      n.align = std::move(a);
    }
  }

 private:
  bool prefix_, use_regex_;
  Pattern regex_;
};

class CharSplitPreTokenizer : public PreTokenizer {
 public:
  enum class Kind { Whitespace, Punctuation, Digits, Delimiter };
  CharSplitPreTokenizer(Kind k, SplitBehavior b, char32_t delim = 0)
      : kind_(k), behavior_(b), delim_(delim) {}
  void pre_tokenize(PreTokenizedString& p) const override {
    p.split([&](NormalizedString n) {
      switch (kind_) {
        case Kind::Whitespace:
          return n.split_chars(is_whitespace, behavior_);
        case Kind::Punctuation:
          return n.split_chars(is_punctuation, behavior_);
        case Kind::Digits:
          return n.split_chars(is_numeric, behavior_);
        case Kind::Delimiter:
          break;
      }
      return n.split_chars([&](char32_t c) { return c == delim_; }, behavior_);
    });
  }

 private:
  Kind kind_;
  SplitBehavior behavior_;
  char32_t delim_;
};

class BertPreTokenizer : public PreTokenizer {
 public:
  void pre_tokenize(PreTokenizedString& p) const override {
    p.split(
        [](NormalizedString n) { return n.split_chars(is_whitespace, SplitBehavior::Removed); });
    p.split(
        [](NormalizedString n) { return n.split_chars(is_punctuation, SplitBehavior::Isolated); });
  }
};

/// Whitespace: `\w+|[^\w\s]+` kept, the rest removed.
class WhitespacePreTokenizer : public PreTokenizer {
 public:
  void pre_tokenize(PreTokenizedString& p) const override {
    p.split([](NormalizedString n) {
      std::vector<std::pair<Range, bool>> m;  // is_match = to be removed
      std::size_t i = 0, last = 0;
      const std::string& t = n.text;
      auto cls = [](char32_t c) { return is_word_char(c) ? 1 : is_whitespace(c) ? 0 : 2; };
      while (i < t.size()) {
        int k = cls(decode_utf8(t, i));
        std::size_t j = i + utf8_len(static_cast<unsigned char>(t[i]));
        while (j < t.size() && cls(decode_utf8(t, j)) == k) {
          j += utf8_len(static_cast<unsigned char>(t[j]));
        }
        if (k != 0) {
          if (last < i) m.push_back({{last, i}, true});
          m.push_back({{i, j}, false});
          last = j;
        }
        i = j;
      }
      if (last < t.size()) m.push_back({{last, t.size()}, true});
      return n.split(m, SplitBehavior::Removed);
    });
  }
};

class MetaspacePreTokenizer : public PreTokenizer {
 public:
  enum class Scheme { First, Never, Always };
  MetaspacePreTokenizer(std::string rep, Scheme s, bool split)
      : rep_(std::move(rep)), scheme_(s), split_(split), space_(Pattern::literal(" ")) {}
  void pre_tokenize(PreTokenizedString& p) const override {
    p.split([&](NormalizedString n) {
      n.replace(space_, rep_);
      bool starts = n.text.compare(0, rep_.size(), rep_) == 0;
      if (!starts &&
          (scheme_ == Scheme::Always || (scheme_ == Scheme::First && n.original.first == 0))) {
        n.prepend(rep_);
      }
      if (!split_) return std::vector<NormalizedString>{std::move(n)};
      char32_t r = decode_utf8(rep_, 0);
      return n.split_chars([r](char32_t c) { return c == r; }, SplitBehavior::MergedWithNext);
    });
  }

 private:
  std::string rep_;
  Scheme scheme_;
  bool split_;
  Pattern space_;
};

class SplitPreTokenizer : public PreTokenizer {
 public:
  SplitPreTokenizer(Pattern p, SplitBehavior b, bool invert)
      : pattern_(std::move(p)), behavior_(b), invert_(invert) {}
  void pre_tokenize(PreTokenizedString& p) const override {
    p.split([&](NormalizedString n) {
      auto m = pattern_.find_matches(n.text);
      if (invert_) {
        for (auto& x : m) x.second = !x.second;
      }
      return n.split(m, behavior_);
    });
  }

 private:
  Pattern pattern_;
  SplitBehavior behavior_;
  bool invert_;
};

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> v)
      : seq_(std::move(v)) {}
  void pre_tokenize(PreTokenizedString& p) const override {
    for (auto& x : seq_) x->pre_tokenize(p);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> seq_;
};

}  // namespace

std::unique_ptr<Normalizer> make_normalizer(const json& j, const LoadContext& ctx) {
  if (j.is_null()) return nullptr;
  const char* c = "normalizer";
  std::string type = type_of(j, c, ctx);
  if (type == "NFC") return std::make_unique<UnicodeNormalizer>(NormalForm::NFC);
  if (type == "NFD") return std::make_unique<UnicodeNormalizer>(NormalForm::NFD);
  if (type == "NFKC") return std::make_unique<UnicodeNormalizer>(NormalForm::NFKC);
  if (type == "NFKD") return std::make_unique<UnicodeNormalizer>(NormalForm::NFKD);
  if (type == "Lowercase") return std::make_unique<LowercaseNormalizer>();
  if (type == "StripAccents") return std::make_unique<StripAccentsNormalizer>();
  if (type == "ByteLevel") return std::make_unique<ByteLevelNormalizer>();
  if (type == "BertNormalizer") {
    bool lower = get_bool(j, "lowercase", c, ctx, true);
    const json* sa = j.contains("strip_accents") ? &j["strip_accents"] : nullptr;
    bool strip = (sa == nullptr || sa->is_null()) ? lower : get_bool(j, "strip_accents", c, ctx);
    return std::make_unique<BertNormalizer>(get_bool(j, "clean_text", c, ctx, true),
                                            get_bool(j, "handle_chinese_chars", c, ctx, true),
                                            strip, lower);
  }
  if (type == "Prepend")
    return std::make_unique<PrependNormalizer>(get_string(j, "prepend", c, ctx));
  if (type == "Replace") {
    return std::make_unique<ReplaceNormalizer>(parse_pattern(field(j, "pattern", c, ctx), c, ctx),
                                               get_string(j, "content", c, ctx));
  }
  if (type == "Strip") {
    return std::make_unique<StripNormalizer>(get_bool(j, "strip_left", c, ctx, true),
                                             get_bool(j, "strip_right", c, ctx, true));
  }
  if (type == "Sequence") {
    const json& arr = field(j, "normalizers", c, ctx);
    if (!arr.is_array()) ctx.format_error("normalizer Sequence: 'normalizers' must be an array");
    std::vector<std::unique_ptr<Normalizer>> v;
    for (auto& x : arr) {
      if (auto n = make_normalizer(x, ctx)) v.push_back(std::move(n));
    }
    return std::make_unique<SequenceNormalizer>(std::move(v));
  }
  ctx.not_supported("normalizer type '", type, "' is not supported (supported: NFC, NFD, NFKC, ",
                    "NFKD, Lowercase, StripAccents, BertNormalizer, Prepend, Replace, Strip, ",
                    "ByteLevel, Sequence)");
}

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const json& j, const LoadContext& ctx) {
  if (j.is_null()) return nullptr;
  const char* c = "pre_tokenizer";
  using K = CharSplitPreTokenizer::Kind;
  std::string type = type_of(j, c, ctx);
  if (type == "ByteLevel") {
    return std::make_unique<ByteLevelPreTokenizer>(get_bool(j, "add_prefix_space", c, ctx, true),
                                                   get_bool(j, "use_regex", c, ctx, true), ctx);
  }
  if (type == "BertPreTokenizer") return std::make_unique<BertPreTokenizer>();
  if (type == "Whitespace") return std::make_unique<WhitespacePreTokenizer>();
  if (type == "WhitespaceSplit") {
    return std::make_unique<CharSplitPreTokenizer>(K::Whitespace, SplitBehavior::Removed);
  }
  if (type == "Punctuation") {
    SplitBehavior b =
        j.contains("behavior") ? parse_behavior(j["behavior"], c, ctx) : SplitBehavior::Isolated;
    return std::make_unique<CharSplitPreTokenizer>(K::Punctuation, b);
  }
  if (type == "Digits") {
    bool ind = get_bool(j, "individual_digits", c, ctx, false);
    return std::make_unique<CharSplitPreTokenizer>(
        K::Digits, ind ? SplitBehavior::Isolated : SplitBehavior::Contiguous);
  }
  if (type == "CharDelimiterSplit") {
    std::string d = get_string(j, "delimiter", c, ctx);
    if (d.empty()) ctx.format_error("pre_tokenizer CharDelimiterSplit: empty delimiter");
    return std::make_unique<CharSplitPreTokenizer>(K::Delimiter, SplitBehavior::Removed,
                                                   decode_utf8(d, 0));
  }
  if (type == "Metaspace") {
    std::string rep = get_string(j, "replacement", c, ctx, std::string("\u2581"));
    if (rep.empty() || utf8_len(static_cast<unsigned char>(rep[0])) != rep.size()) {
      ctx.format_error("pre_tokenizer Metaspace: replacement must be one character, got '", rep,
                       "'");
    }
    using S = MetaspacePreTokenizer::Scheme;
    S scheme = S::Always;
    std::string ps = get_string(j, "prepend_scheme", c, ctx, std::string("always"));
    if (ps == "first") {
      scheme = S::First;
    } else if (ps == "never") {
      scheme = S::Never;
    } else if (ps != "always") {
      ctx.format_error("pre_tokenizer Metaspace: prepend_scheme '", ps,
                       "' is not one of first, always, never");
    }
    if (j.contains("add_prefix_space") && j["add_prefix_space"].is_boolean() &&
        !j["add_prefix_space"].get<bool>()) {
      scheme = S::Never;
    }
    return std::make_unique<MetaspacePreTokenizer>(rep, scheme, get_bool(j, "split", c, ctx, true));
  }
  if (type == "Split") {
    return std::make_unique<SplitPreTokenizer>(parse_pattern(field(j, "pattern", c, ctx), c, ctx),
                                               parse_behavior(field(j, "behavior", c, ctx), c, ctx),
                                               get_bool(j, "invert", c, ctx, false));
  }
  if (type == "Sequence") {
    const json& arr = field(j, "pretokenizers", c, ctx);
    if (!arr.is_array())
      ctx.format_error("pre_tokenizer Sequence: 'pretokenizers' must be an array");
    std::vector<std::unique_ptr<PreTokenizer>> v;
    for (auto& x : arr) {
      if (auto p = make_pre_tokenizer(x, ctx)) v.push_back(std::move(p));
    }
    return std::make_unique<SequencePreTokenizer>(std::move(v));
  }
  ctx.not_supported("pre_tokenizer type '", type, "' is not supported (supported: ByteLevel, ",
                    "BertPreTokenizer, Whitespace, WhitespaceSplit, Metaspace, Split, Digits, ",
                    "Punctuation, CharDelimiterSplit, Sequence)");
}

}  // namespace peft::io::detail
