#pragma once
// Bounds on a YAML document before it reaches the parser (tier 0: torch-free, no yaml-cpp).
//
//   const std::string text = peft::read_yaml_text("run.yaml");   // size-capped, bounds checked
//   YAML::Node root = YAML::Load(text);
#include <cstddef>
#include <string>
#include <string_view>

namespace peft {

struct YamlLimits {
  std::size_t max_bytes = std::size_t{4} << 20;  ///< a run config is a few hundred bytes
  int max_depth = 128;                           ///< nesting levels (flow brackets, "- ", indentation)
};

/// Throws ConfigError "[config] <source>: ..." when `text` is larger than `lim.max_bytes`, is not
/// UTF-8 or nests deeper than `lim.max_depth` levels, naming the line. The depth is an upper bound
/// read line by line: open flow brackets ([ {) plus the block-sequence indicators ("- ") that
/// start the line plus its indentation in columns; a linear scan with no recursion.
void check_yaml_bounds(std::string_view text, const std::string& source, const YamlLimits& lim = {});

/// Reads a YAML file within the limits (a folder, an unreadable or oversized file is one
/// ConfigError naming it) and checks its bounds; returns the text for the parser.
std::string read_yaml_text(const std::string& path, const YamlLimits& lim = {});

}  // namespace peft
