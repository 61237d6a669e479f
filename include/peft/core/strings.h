#pragma once
// Small string helpers for messages and reports (tier 0).
#include <cstdint>
#include <string>
#include <vector>

namespace peft {

/// "a, b, c", at most `max_items` entries then ", ... (N in all)".
inline std::string join(const std::vector<std::string>& v, std::size_t max_items = 20) {
  std::string s;
  for (std::size_t i = 0; i < v.size() && i < max_items; ++i) s += (i ? ", " : "") + v[i];
  if (v.size() > max_items) s += ", ... (" + std::to_string(v.size()) + " in all)";
  return s;
}

/// 1234567 -> "1,234,567".
inline std::string thousands(int64_t n) {
  const std::string s = std::to_string(n < 0 ? -n : n);
  std::string out = n < 0 ? "-" : "";
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (i && (s.size() - i) % 3 == 0) out.push_back(',');
    out.push_back(s[i]);
  }
  return out;
}

/// One section of an error listing: "\n  <what> (N):" and a line per item, at most `max_items`
/// then "... and K more"; "" when `v` is empty.
inline std::string listing(const char* what, const std::vector<std::string>& v, std::size_t max_items) {
  if (v.empty()) return "";
  std::string s = "\n  " + std::string(what) + " (" + std::to_string(v.size()) + "):";
  for (std::size_t i = 0; i < v.size() && i < max_items; ++i) s += "\n    " + v[i];
  if (v.size() > max_items) s += "\n    ... and " + std::to_string(v.size() - max_items) + " more";
  return s;
}

}  // namespace peft
