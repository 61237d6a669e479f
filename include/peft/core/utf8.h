#pragma once
// UTF-8 validation and repair (tier 0: torch-free), for text read from users' files.
//
//   if (auto at = peft::find_invalid_utf8(text); at != std::string_view::npos) ...
//   std::size_t n = 0;  std::string fixed = peft::replace_invalid_utf8(text, &n);
#include <cstddef>
#include <string>
#include <string_view>

namespace peft {

/// Index of the first byte of `s` that does not start a well-formed UTF-8 sequence (overlong
/// forms, surrogates and code points above U+10FFFF are ill-formed), or npos when `s` is valid.
std::size_t find_invalid_utf8(std::string_view s);

/// Bytes of the well-formed UTF-8 sequence starting at s[i] (1 for ASCII), 0 when ill-formed.
std::size_t utf8_sequence_length(std::string_view s, std::size_t i);

/// `s` with every maximal ill-formed subsequence replaced by U+FFFD, as Python's
/// bytes.decode("utf-8", errors="replace") does; `replaced` (optional) receives how many.
std::string replace_invalid_utf8(std::string_view s, std::size_t* replaced = nullptr);

}  // namespace peft
