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

}  // namespace peft
