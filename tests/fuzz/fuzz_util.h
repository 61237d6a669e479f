#pragma once
// Helpers shared by the fuzz targets: readers that take a path get the input written to a file
// in a scratch folder of this process on a tmpfs.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace peft::fuzz {

/// This process's scratch folder (created on first use under /dev/shm, else $TMPDIR or /tmp;
/// removed at exit).
const std::string& scratch_dir();

/// Writes `bytes` to scratch_dir()/name (overwritten on every call) and returns its path.
std::string write_scratch(const std::string& name, std::string_view bytes);

/// The input as text.
inline std::string_view as_text(const uint8_t* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

/// `text` split at every NUL byte (n+1 parts for n NULs). JSON and YAML never hold a raw NUL, so
/// a target reads one document and its extra inputs (strings to encode, a second file) this way.
std::vector<std::string_view> split_nul(std::string_view text);

}  // namespace peft::fuzz
