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

/// Puts the complete folder `tmp` at `dst`: a rename when `dst` does not exist; otherwise the two
/// are swapped in one step (renameat2 RENAME_EXCHANGE; two renames on a filesystem without it)
/// and the old folder, now at `tmp`, removed. A crash leaves `dst` whole, the old or the new one.
/// Throws std::runtime_error naming both paths when a rename fails.
void replace_folder(const std::string& tmp, const std::string& dst);

/// Which entries an existing output folder may hold to be replaced as a whole (a previous output).
using ReplaceableEntry = std::function<bool(const std::string& name)>;

/// A file of a Hugging Face model folder as merge and convert write it: config.json,
/// generation_config.json, model*.safetensors, model.safetensors.index.json, tokenizer.json,
/// tokenizer_config.json, tokenizer.model, tokenizer.bin, special_tokens_map.json,
/// added_tokens.json, or a temp file of an interrupted write_file_atomic of one of them.
bool is_model_folder_file(const std::string& name);

/// Throws ConfigError ("[<tag>] output <out> ...") unless `out` can be written as a whole folder:
/// it does not exist, or is a folder (not the current folder or one holding it) whose entries
/// are all regular files `replaceable` accepts. Commands call it before their work, to fail fast.
void check_output_folder(const std::string& tag, const std::string& out, const ReplaceableEntry& replaceable);

/// Throws ConfigError ("[<tag>] output <out> ...") unless write_file_atomic can put a file at
/// `out`: it is not a folder, and the folder it goes in exists. Commands call it before their work.
void check_output_file(const std::string& tag, const std::string& out);

/// Writes the folder `out` as a whole: `body` fills a fresh temp sibling `.<name>.tmp-<pid>`,
/// which takes `out`'s place (replace_folder) only when `body` returns; when anything throws the
/// temp folder is removed and `out` is left as it was. check_output_folder runs first; temp
/// siblings of processes that no longer run (`.<name>.tmp-<pid>`, a killed write) are removed.
void write_folder_atomic(const std::string& tag, const std::string& out, const ReplaceableEntry& replaceable,
                         const std::function<void(const std::string& tmp_dir)>& body);

}  // namespace peft
