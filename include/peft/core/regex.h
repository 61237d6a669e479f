#pragma once
// Python-`re`-compatible matching for config patterns (target_modules, rank_pattern, ...),
// backed by PCRE2 (tier 0: torch-free).
#include <string>

namespace peft {

/// True when `pattern` matches the whole of `text` (Python's re.fullmatch).
/// Throws ConfigError naming the pattern when it does not compile.
bool regex_fullmatch(const std::string& pattern, const std::string& text);

}  // namespace peft
