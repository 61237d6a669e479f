#include "peft/core/yaml_bounds.h"

#include <algorithm>

#include "peft/core/error.h"
#include "peft/core/file_util.h"
#include "peft/core/utf8.h"

namespace peft {

namespace {

[[noreturn]] void fail(const std::string& source, const std::string& what) {
  throw ConfigError("[config] " + source + ": " + what);
}

}  // namespace

void check_yaml_bounds(std::string_view text, const std::string& source, const YamlLimits& lim) {
  if (text.size() > lim.max_bytes)
    fail(source, std::to_string(text.size()) + " bytes of YAML; a config holds at most " +
                     std::to_string(lim.max_bytes));
  // YAML is UTF-8 text; yaml-cpp passes other bytes on, into JSON files and the tokenizer.
  if (const std::size_t bad = find_invalid_utf8(text); bad != std::string_view::npos) {
    const std::size_t line_start = bad == 0 ? 0 : text.rfind('\n', bad - 1) + 1;  // npos + 1 == 0
    const auto line = 1 + std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(line_start), '\n');
    fail(source, "not valid UTF-8 at line " + std::to_string(line) + " (byte " + std::to_string(bad - line_start + 1) +
                     " of the line); a config file is UTF-8 text");
  }
  int flow = 0;  // open [ and { carried across lines
  std::size_t line = 1;
  std::size_t i = 0;
  while (i < text.size()) {
    // Indentation, then "- " / "? " indicators that open nested block collections on this line.
    int indent = 0, indicators = 0;
    while (i < text.size() && text[i] == ' ') ++indent, ++i;
    while (i + 1 < text.size() && (text[i] == '-' || text[i] == '?') && (text[i + 1] == ' ' || text[i + 1] == '\t')) {
      ++indicators;
      i += 2;
      while (i < text.size() && (text[i] == ' ' || text[i] == '\t')) ++i;
    }
    int line_max = flow;
    char quote = 0;
    for (; i < text.size() && text[i] != '\n'; ++i) {
      const char c = text[i];
      if (quote) {
        if (c == '\\' && quote == '"') ++i;
        else if (c == quote) quote = 0;
        continue;
      }
      if (c == '"' || c == '\'') quote = c;
      else if (c == '#' && (i == 0 || text[i - 1] == ' ' || text[i - 1] == '\t')) {
        while (i < text.size() && text[i] != '\n') ++i;
        break;
      } else if (c == '[' || c == '{') {
        if (++flow > line_max) line_max = flow;
      } else if ((c == ']' || c == '}') && flow > 0) {
        --flow;
      }
    }
    const long long depth = static_cast<long long>(line_max) + indicators + indent;
    if (depth > lim.max_depth)
      fail(source, "nested deeper than " + std::to_string(lim.max_depth) + " levels at line " + std::to_string(line) +
                       " (" + std::to_string(indent) + " columns of indentation, " + std::to_string(indicators) +
                       " '- ' items, " + std::to_string(line_max) + " open brackets); a run config is a flat "
                       "mapping of key: value");
    ++i;  // past '\n'
    ++line;
  }
}

std::string read_yaml_text(const std::string& path, const YamlLimits& lim) {
  std::string text;
  try {
    text = read_file(path, lim.max_bytes);
  } catch (const FormatError& e) {
    throw ConfigError(std::string("[config] ") + e.what());
  }
  check_yaml_bounds(text, path, lim);
  return text;
}

}  // namespace peft
