#pragma once
// JSON files (tier 0: torch-free): parse with an error naming the file, write atomically.
//
//   nlohmann::json cfg = peft::read_json_file("model/config.json");
//   peft::write_json_file("out/adapter_config.json", cfg);
#include <nlohmann/json_fwd.hpp>
#include <string>

namespace peft {

/// Reads and parses a JSON file; throws FormatError naming the file and the parse error.
nlohmann::json read_json_file(const std::string& path);

/// Writes JSON atomically (write_file_atomic), indented like Python's json.dump(indent=2).
void write_json_file(const std::string& path, const nlohmann::json& j);

}  // namespace peft
