#include "peft/core/json_file.h"

#include <nlohmann/json.hpp>

#include "peft/core/error.h"
#include "peft/core/file_util.h"

namespace peft {

using nlohmann::json;

namespace {

[[noreturn]] void fail(const std::string& source, const std::string& what) {
  throw FormatError("[json] " + source + ": " + what);
}

// nlohmann's messages start with "[json.exception.parse_error.101] "; the tag adds nothing.
std::string strip_tag(const char* what) {
  std::string s = what;
  if (!s.empty() && s[0] == '[') {
    const auto e = s.find("] ");
    if (e != std::string::npos) s.erase(0, e + 2);
  }
  return s;
}

}  // namespace

void check_json_bounds(std::string_view text, const std::string& source, const JsonLimits& lim) {
  if (text.size() > lim.max_bytes)
    fail(source, std::to_string(text.size()) + " bytes of JSON; at most " + std::to_string(lim.max_bytes) +
                     " are read");
  int depth = 0;
  bool in_string = false;
  std::size_t line = 1, line_start = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;  // the escaped character cannot end the string
      else if (c == '"') in_string = false;
      else if (c == '\n') ++line, line_start = i + 1;  // invalid JSON; the parser says so
      continue;
    }
    switch (c) {
      case '"': in_string = true; break;
      case '[': case '{':
        if (++depth > lim.max_depth)
          fail(source, "arrays/objects nested deeper than " + std::to_string(lim.max_depth) +
                           " levels (at line " + std::to_string(line) + ", column " +
                           std::to_string(i - line_start + 1) + "); not a file this program reads");
        break;
      case ']': case '}': if (depth > 0) --depth; break;
      case '\n': ++line, line_start = i + 1; break;
      default: break;
    }
  }
}

json parse_json(std::string_view text, const std::string& source, const JsonLimits& lim) {
  check_json_bounds(text, source, lim);
  try {
    return json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {
    fail(source, "not valid JSON: " + strip_tag(e.what()));
  }
}

json read_json_file(const std::string& path, const JsonLimits& lim) {
  return parse_json(read_file(path, lim.max_bytes), path, lim);
}

void write_json_file(const std::string& path, const json& j) {
  write_file_atomic(path, j.dump(2) + "\n");
}

}  // namespace peft
