#pragma once
// NormalizedString (text + alignment to the original input) and PreTokenizedString, as in HF
// tokenizers, plus the split behaviours shared by pre-tokenizers.
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "io/tokenizer/unicode_impl.h"
#include "peft/io/tokenizer.h"

namespace peft::io::detail {

using Range = std::pair<std::size_t, std::size_t>;

/// A literal string or a regex, as HF's String/Regex patterns.
class Pattern {
 public:
  static Pattern literal(std::string s);
  static Pattern regex(const std::string& re, const std::string& where);
  /// (range, is_match) pieces covering all of `s` (HF Pattern::find_matches).
  std::vector<std::pair<Range, bool>> find_matches(std::string_view s) const;

 private:
  std::string literal_;
  std::shared_ptr<Regex> regex_;
};

enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

/// Text being normalised; align_[i] is the original byte range of normalised byte i.
struct NormalizedString {
  std::string text;
  std::vector<Range> align;
  /// Original range of this piece (used when it is empty).
  Range original{0, 0};

  static NormalizedString from_original(const std::string& s, std::size_t base = 0);
  bool empty() const { return text.empty(); }

  /// Replaces every character c by f(c) (a possibly empty list of characters); the new
  /// characters are aligned to c's original range.
  template <typename F>
  void map_chars(F&& f);
  void prepend(const std::string& s);
  void replace(const Pattern& p, const std::string& content);
  void lowercase();
  void normalize(NormalForm form);
  void strip(bool left, bool right);
  NormalizedString slice(std::size_t b, std::size_t e) const;
  /// Original range of normalised bytes [b, e).
  Range to_original(std::size_t b, std::size_t e) const;
  std::vector<NormalizedString> split(const std::vector<std::pair<Range, bool>>& matches,
                                      SplitBehavior behavior) const;
  /// Splits on characters for which pred(c) holds.
  template <typename P>
  std::vector<NormalizedString> split_chars(P&& pred, SplitBehavior behavior) const;
};

struct Token {
  TokenId id;
  std::string value;
  std::size_t begin, end;  // byte offsets in the split's normalised text
};

struct Split {
  NormalizedString normalized;
  std::optional<std::vector<Token>> tokens;
};

struct PreTokenizedString {
  std::vector<Split> splits;

  /// Applies f(NormalizedString) -> vector<NormalizedString> to the splits without tokens,
  /// dropping empty results.
  template <typename F>
  void split(F&& f) {
    std::vector<Split> out;
    out.reserve(splits.size());
    for (auto& s : splits) {
      if (s.tokens) {
        out.push_back(std::move(s));
        continue;
      }
      for (auto& n : f(std::move(s.normalized))) {
        if (!n.empty()) out.push_back(Split{std::move(n), std::nullopt});
      }
    }
    splits = std::move(out);
  }
};

// ------------------------------------------------------------------ template bodies
template <typename F>
void NormalizedString::map_chars(F&& f) {
  std::string t;
  std::vector<Range> a;
  t.reserve(text.size());
  a.reserve(align.size());
  std::u32string buf;
  for (std::size_t i = 0; i < text.size();) {
    std::size_t n = utf8_len(static_cast<unsigned char>(text[i]));
    char32_t c = decode_utf8(text, i);
    buf.clear();
    f(c, buf);
    Range r{align[i].first, align[i + n - 1].second};
    for (char32_t o : buf) {
      std::size_t before = t.size();
      append_utf8(t, o);
      a.insert(a.end(), t.size() - before, r);
    }
    i += n;
  }
  text = std::move(t);
  align = std::move(a);
}

template <typename P>
std::vector<NormalizedString> NormalizedString::split_chars(P&& pred,
                                                            SplitBehavior behavior) const {
  std::vector<std::pair<Range, bool>> m;
  std::size_t last = 0;
  for (std::size_t i = 0; i < text.size();) {
    std::size_t n = utf8_len(static_cast<unsigned char>(text[i]));
    if (pred(decode_utf8(text, i))) {
      if (last < i) m.push_back({{last, i}, false});
      m.push_back({{i, i + n}, true});
      last = i + n;
    }
    i += n;
  }
  if (last < text.size()) m.push_back({{last, text.size()}, false});
  return split(m, behavior);
}

}  // namespace peft::io::detail
