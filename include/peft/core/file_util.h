#pragma once
// Whole-file reads and atomic writes (tier 0: torch-free).
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace peft {

/// Reads a whole regular file; throws FormatError naming the path when it cannot be read, is a
/// folder or other non-regular file, or holds more than `max_bytes` (checked before reading).
std::string read_file(const std::string& path, std::size_t max_bytes = SIZE_MAX);

/// A whole regular file mapped read-only. `keepalive` owns the mapping (empty files: no mapping).
struct MappedFile {
  const uint8_t* data = nullptr;
  std::size_t size = 0;
  std::shared_ptr<const void> keepalive;
};

/// Maps `path`; throws FormatError "[tag] path: cannot open file: ..." (or not a regular file,
/// or too short: fewer than `min_size` bytes, with `what_header` saying what a file starts with).
MappedFile map_file(const std::string& path, const std::string& tag, std::size_t min_size = 0,
                    const std::string& what_header = "");

/// A sink that appends bytes to the file being written.
using ByteSink = std::function<void(const void* data, std::size_t n)>;

/// Writes `path` atomically: the body goes to a temp file in the same folder, which is
/// fsync'ed and renamed over `path` (then the folder is fsync'ed). A crash leaves either the
/// old file or the new one, never a partial file.
void write_file_atomic(const std::string& path, const std::function<void(const ByteSink&)>& body);

/// Convenience overload for an in-memory body.
void write_file_atomic(const std::string& path, const std::string& contents);

/// Throws ConfigError ("[<tag>] output <out> is the input <in> or inside it" / "... holds the input
/// <in>") when writing `out` could overwrite or delete an input: `out` is an input path, lies
/// inside an input folder, or holds an input. Paths are compared after resolving symlinks and `..`; an input that does not exist is
/// skipped. Commands call this before writing anything.
void check_output_apart(const std::string& tag, const std::string& out, const std::vector<std::string>& inputs);

}  // namespace peft
