#pragma once
// Python-`re`-compatible matching for config patterns (target_modules, rank_pattern, ...),
// backed by PCRE2 (tier 0: torch-free).
#include <optional>
#include <string>

namespace peft {

/// True when `pattern` matches the whole of `text` (Python's re.fullmatch).
/// Throws ConfigError naming the pattern when it does not compile.
bool regex_fullmatch(const std::string& pattern, const std::string& text);

/// The first match of `pattern` anywhere in `text` (Python's re.search): its first capture group
/// when the pattern has one, else the whole match; nullopt when nothing matches (or the group did
/// not take part). Throws ConfigError naming the pattern when it does not compile.
std::optional<std::string> regex_search(const std::string& pattern, const std::string& text);

}  // namespace peft
