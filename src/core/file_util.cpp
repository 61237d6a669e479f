#include "peft/core/file_util.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "peft/core/check.h"

namespace peft {

std::string read_file(const std::string& path, std::size_t max_bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  PEFT_CHECK(fd >= 0, FormatError, "[read_file] cannot open '", path, "': ", std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  PEFT_CHECK(::fstat(fd, &st) == 0, FormatError, "[read_file] cannot stat '", path, "': ", std::strerror(errno));
  PEFT_CHECK(!S_ISDIR(st.st_mode), FormatError, "[read_file] '", path, "' is a folder; a file was expected");
  PEFT_CHECK(S_ISREG(st.st_mode) || S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode), FormatError, "[read_file] '",
             path, "' is not a regular file");
  if (S_ISREG(st.st_mode))
    PEFT_CHECK(static_cast<uint64_t>(st.st_size) <= max_bytes, FormatError, "[read_file] '", path, "' is ",
               st.st_size, " bytes; at most ", max_bytes, " are read from a file of this kind");
  std::string out;
  if (S_ISREG(st.st_mode)) out.reserve(static_cast<std::size_t>(st.st_size));
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    PEFT_CHECK(n >= 0, FormatError, "[read_file] error while reading '", path, "': ", std::strerror(errno));
    if (n == 0) break;
    PEFT_CHECK(out.size() + static_cast<std::size_t>(n) <= max_bytes, FormatError, "[read_file] '", path,
               "' holds more than ", max_bytes, " bytes; at most that many are read from a file of this kind");
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

namespace {

struct Mapping {
  void* addr = nullptr;
  std::size_t size = 0;
  ~Mapping() {
    if (addr != nullptr && addr != MAP_FAILED) ::munmap(addr, size);
  }
};

}  // namespace

MappedFile map_file(const std::string& path, const std::string& tag, std::size_t min_size,
                    const std::string& what_header) {
  auto fail = [&](const std::string& what) { throw FormatError("[" + tag + "] " + path + ": " + what); };
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(std::string("cannot open file: ") + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    fail(std::string("cannot stat file: ") + std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("not a regular file");
  }
  auto map = std::make_shared<Mapping>();
  map->size = static_cast<std::size_t>(st.st_size);
  if (map->size < min_size) {
    ::close(fd);
    fail("file is " + std::to_string(map->size) + " bytes; " + what_header);
  }
  if (map->size > 0) map->addr = ::mmap(nullptr, map->size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map->addr == MAP_FAILED) fail(std::string("mmap failed: ") + std::strerror(errno));
  MappedFile m;
  m.data = static_cast<const uint8_t*>(map->addr);
  m.size = map->size;
  m.keepalive = map;
  return m;
}

namespace {

void fsync_dir(const std::filesystem::path& dir) {
  int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

}  // namespace

void write_file_atomic(const std::string& path, const std::function<void(const ByteSink&)>& body) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const fs::path dir = target.parent_path();
  std::string tmpl = (dir.empty() ? std::string(".") : dir.string()) + "/." +
                     target.filename().string() + ".tmp.XXXXXX";
  int fd = ::mkstemp(tmpl.data());
  PEFT_CHECK(fd >= 0, std::runtime_error, "[write_file_atomic] cannot create a temp file next to '",
             path, "': ", std::strerror(errno));
  const std::string tmp = tmpl;
  try {
    ByteSink sink = [&](const void* data, std::size_t n) {
      const char* p = static_cast<const char*>(data);
      while (n > 0) {
        ssize_t w = ::write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        PEFT_CHECK(w > 0, std::runtime_error, "[write_file_atomic] write to '", tmp,
                   "' failed: ", std::strerror(errno));
        p += w;
        n -= static_cast<std::size_t>(w);
      }
    };
    body(sink);
    PEFT_CHECK(::fsync(fd) == 0, std::runtime_error, "[write_file_atomic] fsync of '", tmp,
               "' failed: ", std::strerror(errno));
    ::fchmod(fd, 0644);
    ::close(fd);
    fd = -1;
    PEFT_CHECK(::rename(tmp.c_str(), path.c_str()) == 0, std::runtime_error,
               "[write_file_atomic] rename '", tmp, "' -> '", path, "' failed: ", std::strerror(errno));
    fsync_dir(dir);
  } catch (...) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
}

void write_file_atomic(const std::string& path, const std::string& contents) {
  write_file_atomic(path, [&](const ByteSink& sink) { sink(contents.data(), contents.size()); });
}

namespace {

// a is b or lies inside it: b's components are a prefix of a's.
bool within(const std::filesystem::path& a, const std::filesystem::path& b) {
  auto norm = [](std::filesystem::path p) {
    p = p.lexically_normal();
    if (!p.has_filename() && p.has_parent_path()) p = p.parent_path();  // "dir/" -> "dir"
    return p;
  };
  const std::filesystem::path x = norm(a), y = norm(b);
  return std::mismatch(x.begin(), x.end(), y.begin(), y.end()).second == y.end();
}

}  // namespace

void check_output_apart(const std::string& tag, const std::string& out, const std::vector<std::string>& inputs) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path o = fs::weakly_canonical(fs::absolute(out), ec);
  if (ec) return;
  for (const auto& in : inputs) {
    if (in.empty() || !fs::exists(in)) continue;
    const fs::path i = fs::weakly_canonical(fs::absolute(in), ec);
    if (ec) continue;
    PEFT_CHECK(!within(o, i), ConfigError, "[", tag, "] output ", out, " is the input ", in,
               " or inside it; writing there would overwrite the input. Choose another output path");
    PEFT_CHECK(!within(i, o), ConfigError, "[", tag, "] output ", out, " holds the input ", in,
               "; writing there could replace the input. Choose another output path");
  }
}

namespace {

// renameat2(RENAME_EXCHANGE): swaps two paths in one step; false (errno set) where unsupported.
bool exchange_paths(const char* a, const char* b) {
#if defined(SYS_renameat2)
  constexpr unsigned kRenameExchange = 1u << 1;  // RENAME_EXCHANGE in <linux/fs.h>
  return ::syscall(SYS_renameat2, AT_FDCWD, a, AT_FDCWD, b, kRenameExchange) == 0;
#else
  errno = ENOSYS;
  return false;
#endif
}

}  // namespace

void replace_folder(const std::string& tmp, const std::string& dst) {
  namespace fs = std::filesystem;
  std::error_code ec;
  auto fail = [&](const std::string& from, const std::string& to) {
    throw std::runtime_error("[replace_folder] rename '" + from + "' -> '" + to + "' failed: " + std::strerror(errno));
  };
  if (!fs::exists(fs::symlink_status(dst, ec))) {
    if (::rename(tmp.c_str(), dst.c_str()) != 0) fail(tmp, dst);
  } else if (exchange_paths(tmp.c_str(), dst.c_str())) {
    fs::remove_all(tmp, ec);  // the old folder
  } else if (errno == EINVAL || errno == ENOSYS || errno == ENOTSUP || errno == EPERM) {
    // No atomic swap here: the old folder steps aside, the new one takes its name.
    const std::string old = tmp + "-old";
    fs::remove_all(old, ec);
    if (::rename(dst.c_str(), old.c_str()) != 0) fail(dst, old);
    if (::rename(tmp.c_str(), dst.c_str()) != 0) {
      const int e = errno;
      ::rename(old.c_str(), dst.c_str());
      errno = e;
      fail(tmp, dst);
    }
    fs::remove_all(old, ec);
  } else {
    fail(tmp, dst);
  }
  fsync_dir(fs::path(dst).parent_path());
}

bool is_model_folder_file(const std::string& name) {
  auto ends_with = [](const std::string& s, const std::string& e) {
    return s.size() >= e.size() && s.compare(s.size() - e.size(), e.size(), e) == 0;
  };
  for (const char* f : {"config.json", "generation_config.json", "model.safetensors", "model.safetensors.index.json",
                        "tokenizer.json", "tokenizer_config.json", "tokenizer.model", "tokenizer.bin",
                        "special_tokens_map.json", "added_tokens.json"})
    if (name == f) return true;
  if (name.rfind("model-", 0) == 0 && ends_with(name, ".safetensors")) return true;
  // write_file_atomic's temp file ".<file>.tmp.XXXXXX", left by a killed write.
  if (name.size() > 1 && name[0] == '.') {
    const auto t = name.rfind(".tmp.");
    if (t != std::string::npos && t > 1 && name.size() == t + 11) return is_model_folder_file(name.substr(1, t - 1));
  }
  return false;
}

void check_output_folder(const std::string& tag, const std::string& out, const ReplaceableEntry& replaceable) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const auto st = fs::status(out, ec);
  if (!fs::exists(st)) return;
  PEFT_CHECK(fs::is_directory(st), ConfigError, "[", tag, "] output ", out,
             " is a file; a folder is written there. Choose another output path");
  const fs::path o = fs::weakly_canonical(fs::absolute(out), ec), cwd = fs::current_path(ec);
  PEFT_CHECK(ec || !within(cwd, o), ConfigError, "[", tag, "] output ", out,
             " is the current folder or holds it; the output folder is replaced as a whole. Choose another output path");
  for (const auto& e : fs::directory_iterator(out, ec)) {
    const std::string name = e.path().filename().string();
    PEFT_CHECK(fs::is_regular_file(e.symlink_status()) && replaceable(name), ConfigError, "[", tag, "] output ", out,
               " holds ", name, ", which this command does not write; the folder would be replaced as a whole. "
               "Choose a new or empty folder, or remove ", out, " first");
  }
  PEFT_CHECK(!ec, ConfigError, "[", tag, "] output ", out, ": cannot list the folder: ", ec.message());
}

void check_output_file(const std::string& tag, const std::string& out) {
  namespace fs = std::filesystem;
  std::error_code ec;
  PEFT_CHECK(!fs::is_directory(out, ec), ConfigError, "[", tag, "] output ", out,
             " is a folder; a file is written there. Give a file path");
  const fs::path parent = fs::path(out).parent_path();
  PEFT_CHECK(parent.empty() || fs::is_directory(parent, ec), ConfigError, "[", tag, "] output ", out, ": the folder ",
             parent.string(), " does not exist");
}

void write_folder_atomic(const std::string& tag, const std::string& out, const ReplaceableEntry& replaceable,
                         const std::function<void(const std::string& tmp_dir)>& body) {
  namespace fs = std::filesystem;
  check_output_folder(tag, out, replaceable);
  // The resolved path: "out/" and "a/../out" name out, a symlink keeps pointing at the new folder.
  fs::path dst = fs::weakly_canonical(fs::absolute(out));
  if (!dst.has_filename()) dst = dst.parent_path();
  const fs::path parent = dst.parent_path();
  fs::create_directories(parent);
  const std::string stem = "." + dst.filename().string() + ".tmp-";
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(parent, ec)) {
    const std::string n = e.path().filename().string();
    if (n.size() <= stem.size() || n.size() > stem.size() + 9 || n.rfind(stem, 0) != 0 ||
        n.find_first_not_of("0123456789", stem.size()) != std::string::npos)
      continue;
    const auto pid = static_cast<pid_t>(std::stol(n.substr(stem.size())));
    if (pid != ::getpid() && ::kill(pid, 0) != 0 && errno == ESRCH) fs::remove_all(e.path(), ec);
  }
  const fs::path tmp = parent / (stem + std::to_string(::getpid()));
  fs::remove_all(tmp);
  fs::create_directory(tmp);
  try {
    body(tmp.string());
    check_output_folder(tag, out, replaceable);  // nothing else arrived there meanwhile
    replace_folder(tmp.string(), dst.string());
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
}

}  // namespace peft
