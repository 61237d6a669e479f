#pragma once
// UTF-8 helpers, Unicode properties (utf8proc) and a PCRE2 regex wrapper for the tokenizers.
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace peft::io::detail {

/// Byte length of the UTF-8 sequence starting with `lead` (1 for invalid lead bytes).
inline std::size_t utf8_len(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead >> 5) == 0x6) return 2;
  if ((lead >> 4) == 0xE) return 3;
  if ((lead >> 3) == 0x1E) return 4;
  return 1;
}

/// Decodes the code point at byte `i` of valid UTF-8 `s`.
char32_t decode_utf8(std::string_view s, std::size_t i);
void append_utf8(std::string& out, char32_t c);
/// Index of the first invalid byte, or npos when `s` is valid UTF-8.
std::size_t find_invalid_utf8(std::string_view s);

bool is_whitespace(char32_t c);       // Unicode White_Space (Rust char::is_whitespace)
bool is_punctuation(char32_t c);      // ASCII punctuation or general category P*
bool is_numeric(char32_t c);          // N*
bool is_other(char32_t c);            // C*
bool is_mark_nonspacing(char32_t c);  // Mn
bool is_combining_mark(char32_t c);   // M*
bool is_word_char(char32_t c);        // regex \w (Alphabetic, M, Nd, Pc, Join_Control)
bool is_chinese_char(char32_t c);     // the BERT CJK ranges
int combining_class(char32_t c);
/// Full lowercase mapping of one character (Rust char::to_lowercase).
void append_lowercase(std::u32string& out, char32_t c);

enum class NormalForm { NFC, NFD, NFKC, NFKD };
/// Normalises a UTF-8 string (input must be valid UTF-8).
std::string normalize_utf8(std::string_view s, NormalForm form);

/// PCRE2 regex compiled with UTF | UCP (and JIT when available).
class Regex {
 public:
  /// Throws FormatError naming `where` when the pattern does not compile.
  Regex(const std::string& pattern, const std::string& where);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  /// Non-overlapping matches, left to right, as byte ranges.
  void find_all(std::string_view s, std::vector<std::pair<std::size_t, std::size_t>>& out) const;

 private:
  void* code_ = nullptr;
};

/// Escapes a literal string for use as a PCRE2 pattern.
std::string regex_escape(const std::string& literal);

}  // namespace peft::io::detail
