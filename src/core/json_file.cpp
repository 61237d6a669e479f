#include "peft/core/json_file.h"

#include <nlohmann/json.hpp>

#include "peft/core/error.h"
#include "peft/core/file_util.h"

namespace peft {

using nlohmann::json;

json read_json_file(const std::string& path) {
  const std::string text = read_file(path);
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    throw FormatError("[json] " + path + ": not valid JSON: " + e.what());
  }
}

void write_json_file(const std::string& path, const json& j) {
  write_file_atomic(path, j.dump(2) + "\n");
}

}  // namespace peft
