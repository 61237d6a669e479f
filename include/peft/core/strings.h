#pragma once
// Small string helpers for messages and reports (tier 0).
#include <cstdint>
#include <initializer_list>
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

/// One section of a one-line error listing: " <what> (N): a, b, c and K more" (at most
/// `max_items` named); "" when `v` is empty. Sections concatenate: "...: shape mismatches (2): ...;
/// missing (1): ..." (each after the first starts with "; ").
inline std::string listing(const char* what, const std::vector<std::string>& v, std::size_t max_items) {
  if (v.empty()) return "";
  std::string s = " " + std::string(what) + " (" + std::to_string(v.size()) + "): ";
  for (std::size_t i = 0; i < v.size() && i < max_items; ++i) s += (i ? ", " : "") + v[i];
  if (v.size() > max_items) s += " and " + std::to_string(v.size() - max_items) + " more";
  return s;
}

/// Joins listing() sections: the first after ":", the others after ";".
inline std::string listings(std::initializer_list<std::string> sections) {
  std::string s;
  for (const auto& x : sections)
    if (!x.empty()) s += (s.empty() ? "" : ";") + x;
  return s;
}

}  // namespace peft
