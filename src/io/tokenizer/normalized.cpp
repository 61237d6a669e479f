// NormalizedString with alignments, patterns and split behaviours (HF tokenizers semantics).
#include <algorithm>

#include "io/tokenizer/normalized_impl.h"

namespace peft::io::detail {

Pattern Pattern::literal(std::string s) {
  Pattern p;
  p.literal_ = std::move(s);
  return p;
}

Pattern Pattern::regex(const std::string& re, const std::string& where) {
  Pattern p;
  p.regex_ = std::make_shared<Regex>(re, where);
  return p;
}

std::vector<std::pair<Range, bool>> Pattern::find_matches(std::string_view s) const {
  std::vector<std::pair<Range, bool>> out;
  if (s.empty()) {
    out.push_back({{0, 0}, false});
    return out;
  }
  std::vector<Range> m;
  if (regex_) {
    regex_->find_all(s, m);
  } else if (!literal_.empty()) {
    for (std::size_t p = s.find(literal_); p != std::string_view::npos;
         p = s.find(literal_, p + literal_.size())) {
      m.emplace_back(p, p + literal_.size());
    }
  } else {
    out.push_back({{0, s.size()}, false});
    return out;
  }
  std::size_t prev = 0;
  for (auto [b, e] : m) {
    if (prev != b) out.push_back({{prev, b}, false});
    out.push_back({{b, e}, true});
    prev = e;
  }
  if (prev != s.size()) out.push_back({{prev, s.size()}, false});
  return out;
}

NormalizedString NormalizedString::from_original(const std::string& s, std::size_t base) {
  NormalizedString n;
  n.text = s;
  n.align.resize(s.size());
  for (std::size_t i = 0; i < s.size();) {
    std::size_t len = std::min(utf8_len(static_cast<unsigned char>(s[i])), s.size() - i);
    for (std::size_t k = 0; k < len; ++k) n.align[i + k] = {base + i, base + i + len};
    i += len;
  }
  n.original = {base, base + s.size()};
  return n;
}

void NormalizedString::prepend(const std::string& s) {
  Range r = text.empty() ? Range{original.first, original.first}
                         : Range{align[0].first, align[utf8_len(text[0]) - 1].second};
  text.insert(0, s);
  align.insert(align.begin(), s.size(), r);
}

void NormalizedString::replace(const Pattern& p, const std::string& content) {
  auto matches = p.find_matches(text);
  bool any = false;
  for (auto& m : matches) any = any || m.second;
  if (!any) return;
  std::string t;
  std::vector<Range> a;
  t.reserve(text.size());
  a.reserve(align.size());
  for (auto& [r, is_match] : matches) {
    if (!is_match) {
      t.append(text, r.first, r.second - r.first);
      a.insert(a.end(), align.begin() + r.first, align.begin() + r.second);
      continue;
    }
    Range al = r.second == 0 ? Range{0, 0} : align[r.second - 1];
    t += content;
    a.insert(a.end(), content.size(), al);
  }
  text = std::move(t);
  align = std::move(a);
}

void NormalizedString::lowercase() {
  bool ascii_lower = true;
  for (char c : text) {
    if (static_cast<unsigned char>(c) >= 0x80 || (c >= 'A' && c <= 'Z')) {
      ascii_lower = false;
      break;
    }
  }
  if (ascii_lower) return;
  map_chars([](char32_t c, std::u32string& out) { append_lowercase(out, c); });
}

namespace {

bool hangul_vt(char32_t c) { return (c >= 0x1161 && c <= 0x1175) || (c >= 0x11A8 && c <= 0x11C2); }

/// Aligns the normalised chars `out` of one segment to its input chars (HF/unicode-normalization
/// alignment: decomposed chars keep their source char's range, a composed char takes its
/// starter's range, marks left uncomposed keep their own). False when no mapping is found.
bool align_segment(const std::vector<char32_t>& in, const std::vector<Range>& in_r,
                   const std::vector<char32_t>& out, NormalForm form, std::vector<Range>& out_r) {
  bool compat = form == NormalForm::NFKC || form == NormalForm::NFKD;
  bool compose = form == NormalForm::NFC || form == NormalForm::NFKC;
  std::vector<std::pair<char32_t, std::size_t>> dec;  // decomposed char, source index
  for (std::size_t i = 0; i < in.size(); ++i) {
    std::string one;
    append_utf8(one, in[i]);
    std::string d = normalize_utf8(one, compat ? NormalForm::NFKD : NormalForm::NFD);
    for (std::size_t k = 0; k < d.size(); k += utf8_len(static_cast<unsigned char>(d[k]))) {
      dec.emplace_back(decode_utf8(d, k), i);
    }
  }
  out_r.clear();
  if (!compose) {
    if (dec.size() != out.size()) return false;
    for (std::size_t j = 0; j < out.size(); ++j) {
      std::size_t src = dec[j].second;
      for (auto& x : dec) {  // canonical reordering: find the same char
        if (x.first == out[j]) {
          src = x.second;
          break;
        }
      }
      out_r.push_back(in_r[src]);
    }
    return true;
  }
  std::vector<bool> used(dec.size(), false);
  for (std::size_t j = 0; j < out.size(); ++j) {
    std::size_t src = in.size();
    std::size_t k = 0;
    for (; k < dec.size(); ++k) {
      if (!used[k] && dec[k].first == out[j]) break;
    }
    if (k < dec.size()) {
      used[k] = true;
      src = dec[k].second;
    } else {  // a composed char: the first unused decomposed char is its starter
      for (k = 0; k < dec.size() && used[k]; ++k) {
      }
      if (k == dec.size()) return false;
      used[k] = true;
      src = dec[k].second;
      // the marks it absorbed are consumed when they are not found later
    }
    out_r.push_back(in_r[src]);
  }
  return true;
}

}  // namespace

void NormalizedString::normalize(NormalForm form) {
  bool ascii = std::all_of(text.begin(), text.end(),
                           [](char c) { return static_cast<unsigned char>(c) < 0x80; });
  if (ascii) return;
  std::string whole = normalize_utf8(text, form);
  // Align segment by segment: a starter with its following non-starters (and Hangul V/T jamo).
  std::string t;
  std::vector<Range> a;
  std::vector<char32_t> in, out;
  std::vector<Range> in_r, out_r;
  for (std::size_t i = 0; i < text.size();) {
    std::size_t j = i + utf8_len(static_cast<unsigned char>(text[i]));
    while (j < text.size()) {
      char32_t c = decode_utf8(text, j);
      if (combining_class(c) == 0 && !hangul_vt(c)) break;
      j += utf8_len(static_cast<unsigned char>(text[j]));
    }
    std::string_view src = std::string_view(text).substr(i, j - i);
    std::string seg = normalize_utf8(src, form);
    if (seg == src) {
      t += seg;
      a.insert(a.end(), align.begin() + i, align.begin() + j);
      i = j;
      continue;
    }
    in.clear();
    in_r.clear();
    out.clear();
    for (std::size_t k = i; k < j; k += utf8_len(static_cast<unsigned char>(text[k]))) {
      in.push_back(decode_utf8(text, k));
      in_r.push_back(
          {align[k].first, align[k + utf8_len(static_cast<unsigned char>(text[k])) - 1].second});
    }
    for (std::size_t k = 0; k < seg.size(); k += utf8_len(static_cast<unsigned char>(seg[k]))) {
      out.push_back(decode_utf8(seg, k));
    }
    Range whole_r{align[i].first, align[j - 1].second};
    bool ok = align_segment(in, in_r, out, form, out_r);
    for (std::size_t k = 0; k < out.size(); ++k) {
      std::size_t before = t.size();
      append_utf8(t, out[k]);
      a.insert(a.end(), t.size() - before, ok ? out_r[k] : whole_r);
    }
    i = j;
  }
  if (t != whole) {  // composition across segments: coarse alignment
    Range r = text.empty() ? original : Range{align.front().first, align.back().second};
    t = std::move(whole);
    a.assign(t.size(), r);
  }
  text = std::move(t);
  align = std::move(a);
}

void NormalizedString::strip(bool left, bool right) {
  std::size_t b = 0, e = text.size();
  if (left) {
    while (b < e && is_whitespace(decode_utf8(text, b))) {
      b += utf8_len(static_cast<unsigned char>(text[b]));
    }
  }
  if (right) {
    while (e > b) {
      std::size_t k = e - 1;
      while (k > b && (static_cast<unsigned char>(text[k]) & 0xC0) == 0x80) --k;
      if (!is_whitespace(decode_utf8(text, k))) break;
      e = k;
    }
  }
  if (b == 0 && e == text.size()) return;
  *this = slice(b, e);
}

Range NormalizedString::to_original(std::size_t b, std::size_t e) const {
  if (b < e) return {align[b].first, align[e - 1].second};
  if (b < align.size()) return {align[b].first, align[b].first};
  if (!align.empty()) return {align.back().second, align.back().second};
  return {original.first, original.first};
}

NormalizedString NormalizedString::slice(std::size_t b, std::size_t e) const {
  NormalizedString n;
  n.text = text.substr(b, e - b);
  n.align.assign(align.begin() + b, align.begin() + e);
  n.original = to_original(b, e);
  return n;
}

std::vector<NormalizedString> NormalizedString::split(
    const std::vector<std::pair<Range, bool>>& matches, SplitBehavior behavior) const {
  std::vector<std::pair<Range, bool>> splits;  // (range, remove)
  splits.reserve(matches.size());
  switch (behavior) {
    case SplitBehavior::Isolated:
      for (auto& m : matches) splits.push_back({m.first, false});
      break;
    case SplitBehavior::Removed:
      splits = matches;
      break;
    case SplitBehavior::Contiguous: {
      bool prev = false;
      for (auto& [r, is_match] : matches) {
        if (is_match == prev && !splits.empty()) {
          splits.back().first.second = r.second;
        } else {
          splits.push_back({r, false});
        }
        prev = is_match;
      }
      break;
    }
    case SplitBehavior::MergedWithPrevious: {
      bool prev = false;
      for (auto& [r, is_match] : matches) {
        if (is_match && !prev && !splits.empty()) {
          splits.back().first.second = r.second;
        } else {
          splits.push_back({r, false});
        }
        prev = is_match;
      }
      break;
    }
    case SplitBehavior::MergedWithNext: {
      bool prev = false;
      for (auto it = matches.rbegin(); it != matches.rend(); ++it) {
        if (it->second && !prev && !splits.empty()) {
          splits.back().first.first = it->first.first;
        } else {
          splits.push_back({it->first, false});
        }
        prev = it->second;
      }
      std::reverse(splits.begin(), splits.end());
      break;
    }
  }
  std::vector<NormalizedString> out;
  out.reserve(splits.size());
  for (auto& [r, remove] : splits) {
    if (!remove) out.push_back(slice(r.first, r.second));
  }
  return out;
}

}  // namespace peft::io::detail
