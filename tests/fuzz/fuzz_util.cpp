#include "fuzz_util.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace peft::fuzz {

namespace fs = std::filesystem;

namespace {

std::string make_scratch_dir() {
  fs::path base = "/dev/shm";
  std::error_code ec;
  if (!fs::is_directory(base, ec) || ::access(base.c_str(), W_OK) != 0) {
    const char* tmp = std::getenv("TMPDIR");
    base = tmp && *tmp ? tmp : "/tmp";
  }
  const fs::path dir = base / ("peft-fuzz-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  static const std::string kept = dir.string();
  std::atexit([] {
    std::error_code e;
    fs::remove_all(kept, e);
  });
  return dir.string();
}

}  // namespace

const std::string& scratch_dir() {
  static const std::string dir = make_scratch_dir();
  return dir;
}

std::string write_scratch(const std::string& name, std::string_view bytes) {
  const std::string path = scratch_dir() + "/" + name;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  if (!bytes.empty() && std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size()) std::abort();
  std::fclose(f);
  return path;
}

std::vector<std::string_view> split_nul(std::string_view text) {
  std::vector<std::string_view> parts;
  std::size_t begin = 0;
  for (;;) {
    const std::size_t nul = text.find('\0', begin);
    if (nul == std::string_view::npos) {
      parts.push_back(text.substr(begin));
      return parts;
    }
    parts.push_back(text.substr(begin, nul - begin));
    begin = nul + 1;
  }
}

}  // namespace peft::fuzz
