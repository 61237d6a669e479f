// SentencePiece tokenizer.model backend, through the libpeft_spm.so module.
//
// libsentencepiece (Debian 0.1.97) embeds and exports its own protobuf-lite, which clashes with
// the libprotobuf LibTorch loads. So peft_core never links it: spm_module.cpp wraps it behind a
// C ABI, and this file dlopens that module lazily with RTLD_LOCAL | RTLD_DEEPBIND, keeping
// sentencepiece's symbols out of the global scope and binding its references to its own copies.
//
// The module is looked up in this order: $PEFT_SPM_MODULE (only that, when set); the build-tree
// path (PEFT_SPM_BUILD_PATH); the install path (PEFT_SPM_INSTALL_PATH); next to the running
// executable (and <exe>/../<libdir>/peft/).
#include <dlfcn.h>
#include <unistd.h>

#include <cstddef>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "io/tokenizer/components_impl.h"
#include "io/tokenizer/tokenizer_impl.h"

namespace peft::io::detail {
namespace {

// ------------------------------------------------------------------ the module's C ABI
// Mirrors the peft_spm_* definitions in spm_module.cpp.
constexpr int kSpmAbiVersion = 1;
extern "C" {
typedef void (*peft_spm_piece_cb)(void* user, int id, const char* piece, std::size_t piece_len,
                                  std::size_t begin, std::size_t end);
typedef void (*peft_spm_string_cb)(void* user, const char* s, std::size_t len);
}

struct SpmApi {
  int (*abi_version)();
  void* (*load)(const char* path, char* err, std::size_t errlen);
  void (*free)(void* h);
  int (*encode)(const void* h, const char* text, std::size_t len, peft_spm_piece_cb cb,
                void* user, char* err, std::size_t errlen);
  int (*decode)(const void* h, const int* ids, std::size_t n, peft_spm_string_cb cb, void* user,
                char* err, std::size_t errlen);
  int (*piece_size)(const void* h);
  int (*piece_to_id)(const void* h, const char* piece, std::size_t len);
  int (*id_to_piece)(const void* h, int id, peft_spm_string_cb cb, void* user);
  int (*is_control)(const void* h, int id);
  int (*bos_id)(const void* h);
  int (*eos_id)(const void* h);
  int (*pad_id)(const void* h);
  int (*unk_id)(const void* h);
};

constexpr const char* kModuleName = "libpeft_spm.so";

std::string exe_dir() {
  std::string buf(4096, '\0');
  ssize_t n = ::readlink("/proc/self/exe", buf.data(), buf.size() - 1);
  if (n <= 0) return {};
  buf.resize(static_cast<std::size_t>(n));
  auto slash = buf.rfind('/');
  return slash == std::string::npos ? std::string() : buf.substr(0, slash);
}

std::vector<std::string> candidates() {
  if (const char* env = std::getenv("PEFT_SPM_MODULE"); env && *env) return {env};
  std::vector<std::string> c;
#ifdef PEFT_SPM_BUILD_PATH
  c.emplace_back(PEFT_SPM_BUILD_PATH);
#endif
#ifdef PEFT_SPM_INSTALL_PATH
  c.emplace_back(PEFT_SPM_INSTALL_PATH);
#endif
  if (std::string d = exe_dir(); !d.empty()) {
    c.push_back(d + "/" + kModuleName);
#ifdef PEFT_SPM_INSTALL_LIBDIR
    c.push_back(d + "/../" PEFT_SPM_INSTALL_LIBDIR "/peft/" + kModuleName);
#endif
  }
  return c;
}

#if defined(__SANITIZE_ADDRESS__)
#define PEFT_SPM_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PEFT_SPM_ASAN 1
#endif
#endif

int dlopen_flags() {
#ifdef PEFT_SPM_ASAN
  // The sanitizer runtimes refuse RTLD_DEEPBIND; without it sentencepiece still works in
  // processes that do not also load libprotobuf (e.g. test_core).
  return RTLD_NOW | RTLD_LOCAL;
#else
  return RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND;
#endif
}

/// Tries one candidate; fills `api` and returns true, or appends why not to `why`.
bool try_open(const std::string& path, SpmApi& api, std::string& why) {
  if (::access(path.c_str(), F_OK) != 0) {
    why += "\n  " + path + ": not found";
    return false;
  }
  void* lib = ::dlopen(path.c_str(), dlopen_flags());
  if (!lib) {
    const char* e = ::dlerror();
    why += "\n  " + path + ": " + (e ? e : "dlopen failed");
    return false;
  }
  std::string missing;
  auto sym = [&](auto& fn, const char* name) {
    void* p = ::dlsym(lib, name);
    if (!p) missing += std::string(missing.empty() ? "" : ", ") + name;
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(p);
  };
  sym(api.abi_version, "peft_spm_abi_version");
  sym(api.load, "peft_spm_load");
  sym(api.free, "peft_spm_free");
  sym(api.encode, "peft_spm_encode");
  sym(api.decode, "peft_spm_decode");
  sym(api.piece_size, "peft_spm_piece_size");
  sym(api.piece_to_id, "peft_spm_piece_to_id");
  sym(api.id_to_piece, "peft_spm_id_to_piece");
  sym(api.is_control, "peft_spm_is_control");
  sym(api.bos_id, "peft_spm_bos_id");
  sym(api.eos_id, "peft_spm_eos_id");
  sym(api.pad_id, "peft_spm_pad_id");
  sym(api.unk_id, "peft_spm_unk_id");
  if (!missing.empty()) {
    why += "\n  " + path + ": missing symbols " + missing;
  } else if (int v = api.abi_version(); v != kSpmAbiVersion) {
    why += "\n  " + path + ": ABI version " + std::to_string(v) + ", expected " +
           std::to_string(kSpmAbiVersion);
  } else {
    return true;  // never dlclose'd: sentencepiece's static state lives as long as the process
  }
  ::dlclose(lib);
  return false;
}

/// The loaded module (loaded on first use; a failed attempt is retried next time).
const SpmApi& spm_api(const std::string& model_path) {
  static std::mutex mu;
  static SpmApi api{};
  static bool loaded = false;
  std::lock_guard<std::mutex> lock(mu);
  if (loaded) return api;
  std::string why;
  for (const auto& c : candidates()) {
    SpmApi a{};
    if (try_open(c, a, why)) {
      api = a;
      loaded = true;
      return api;
    }
  }
  throw NotSupported(peft::detail::str_cat(
      "[io::tokenizer] ", model_path, ": cannot load the SentencePiece module ", kModuleName,
      " (set PEFT_SPM_MODULE to its path); tried:", why.empty() ? " nothing" : why));
}

constexpr std::size_t kErrLen = 1024;

void append_string(void* user, const char* s, std::size_t len) {
  static_cast<std::string*>(user)->assign(s, len);
}

void append_piece(void* user, int id, const char* piece, std::size_t piece_len, std::size_t begin,
                  std::size_t end) {
  auto& e = *static_cast<Encoding*>(user);
  e.ids.push_back(static_cast<TokenId>(id));
  e.tokens.emplace_back(piece, piece_len);
  e.offsets.emplace_back(begin, end);
}

class SentencePieceBackend : public TokenizerBackend {
 public:
  explicit SentencePieceBackend(const std::string& path) : path_(path), api_(spm_api(path)) {
    char err[kErrLen] = {0};
    h_ = api_.load(path.c_str(), err, sizeof err);
    if (!h_) {
      throw FormatError(peft::detail::str_cat(
          "[io::tokenizer] ", path, ": cannot load SentencePiece model: ", err));
    }
    n_ = api_.piece_size(h_);
    unk_ = api_.unk_id(h_);
    auto opt = [](int id) { return id >= 0 ? std::optional<TokenId>(id) : std::nullopt; };
    bos_id = opt(api_.bos_id(h_));
    eos_id = opt(api_.eos_id(h_));
    pad_id = opt(api_.pad_id(h_));
  }
  ~SentencePieceBackend() override { api_.free(h_); }
  SentencePieceBackend(const SentencePieceBackend&) = delete;
  SentencePieceBackend& operator=(const SentencePieceBackend&) = delete;

  Encoding encode_raw(const std::string& text, TokenId type_id) const override {
    Encoding e;
    char err[kErrLen] = {0};
    if (api_.encode(h_, text.data(), text.size(), &append_piece, &e, err, sizeof err) != 0) {
      // The text is UTF-8 (Tokenizer::encode checked it): the model is at fault.
      throw FormatError(peft::detail::str_cat("[io::tokenizer] ", path_,
                                              ": this SentencePiece model cannot encode the text: ", err));
    }
    e.type_ids.assign(e.ids.size(), type_id);
    e.attention_mask.assign(e.ids.size(), 1);
    e.special_tokens_mask.assign(e.ids.size(), 0);
    return e;
  }

  /// LlamaTokenizer default: <s> A (and <s> B for pairs); no eos.
  Encoding post_process(std::vector<Encoding> encs, bool add_special) const override {
    Encoding out;
    for (std::size_t i = 0; i < encs.size(); ++i) {
      if (add_special && bos_id) {
        Encoding b;
        b.ids = {*bos_id};
        b.tokens = {piece(*bos_id)};
        b.type_ids = {static_cast<TokenId>(i)};
        b.attention_mask = {1};
        b.special_tokens_mask = {1};
        b.offsets = {{0, 0}};
        append_encoding(out, std::move(b));
      }
      append_encoding(out, std::move(encs[i]));
    }
    return out;
  }
  std::size_t added_tokens(bool is_pair) const override { return bos_id ? (is_pair ? 2 : 1) : 0; }

  std::string decode(const std::vector<TokenId>& ids, bool skip_special) const override {
    std::vector<int> v;
    for (TokenId id : ids) {
      if (id < 0 || id >= n_) continue;
      if (skip_special && api_.is_control(h_, static_cast<int>(id))) continue;
      v.push_back(static_cast<int>(id));
    }
    std::string out;
    char err[kErrLen] = {0};
    if (api_.decode(h_, v.data(), v.size(), &append_string, &out, err, sizeof err) != 0) {
      throw FormatError(peft::detail::str_cat("[io::tokenizer] ", path_,
                                              ": this SentencePiece model cannot decode the ids: ", err));
    }
    return out;
  }
  std::optional<TokenId> token_to_id(const std::string& t) const override {
    int id = api_.piece_to_id(h_, t.data(), t.size());
    if (id < 0) return std::nullopt;
    if (id == unk_ && t != piece(id)) return std::nullopt;
    return id;
  }
  std::optional<std::string> id_to_token(TokenId id) const override {
    if (id < 0 || id >= n_) return std::nullopt;
    return piece(static_cast<int>(id));
  }
  std::size_t vocab_size() const override { return static_cast<std::size_t>(n_); }

 private:
  std::string piece(int id) const {
    std::string s;
    api_.id_to_piece(h_, id, &append_string, &s);
    return s;
  }

  std::string path_;
  const SpmApi& api_;
  void* h_ = nullptr;
  int n_ = 0, unk_ = -1;
};

}  // namespace

std::shared_ptr<TokenizerBackend> load_sentencepiece(const std::string& path) {
  return std::make_shared<SentencePieceBackend>(path);
}

}  // namespace peft::io::detail
