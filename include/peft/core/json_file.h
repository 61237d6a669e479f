#pragma once
// JSON documents (tier 0: torch-free): every JSON text the project reads goes through
// parse_json, which bounds its size and nesting depth before anything is built, so a hostile
// file gives one error naming it instead of a stack overflow or unbounded memory.
//
//   nlohmann::json cfg = peft::read_json_file("model/config.json");
//   nlohmann::json row = peft::parse_json(line, "data.jsonl:12");
//   peft::write_json_file("out/adapter_config.json", cfg);
#include <nlohmann/json_fwd.hpp>
#include <cstddef>
#include <string>
#include <string_view>

namespace peft {

/// Bounds on one JSON document. The defaults hold every real config, tokenizer and data file
/// with room to spare (tokenizer.json files reach ~35 MB and ~10 levels).
struct JsonLimits {
  std::size_t max_bytes = std::size_t{512} << 20;  ///< text size
  int max_depth = 256;                             ///< nested arrays/objects
};

/// Throws FormatError "[json] <source>: ..." when `text` is larger than `lim.max_bytes` or nests
/// arrays/objects deeper than `lim.max_depth` (naming the line and column where it does). A
/// linear scan with no recursion; for callers that run nlohmann's parser themselves.
void check_json_bounds(std::string_view text, const std::string& source, const JsonLimits& lim = {});

/// Parses `text` after check_json_bounds; a syntax error is a FormatError naming `source` and
/// the line and column.
nlohmann::json parse_json(std::string_view text, const std::string& source, const JsonLimits& lim = {});

/// Reads and parses a JSON file (the size is checked before it is read); errors name the file.
nlohmann::json read_json_file(const std::string& path, const JsonLimits& lim = {});

/// Writes JSON atomically (write_file_atomic), indented like Python's json.dump(indent=2).
void write_json_file(const std::string& path, const nlohmann::json& j);

}  // namespace peft
