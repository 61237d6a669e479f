// libpeft_spm.so: a tiny loadable module wrapping libsentencepiece behind a C ABI.
//
// Why: Debian's libsentencepiece.so.0 embeds its own protobuf-lite (3.14) and exports those
// symbols, while LibTorch loads the system libprotobuf (3.21). Linked into one process they bind
// to each other's copies (start-up crash, or a protobuf version-check abort). peft_core dlopens
// this module with RTLD_LOCAL | RTLD_DEEPBIND (see sentencepiece_model.cpp), so sentencepiece's
// symbols never enter the global scope and its own references resolve to its own copies.
//
// Only C types cross the boundary: strings are handed out through callbacks and copied by the
// caller; no exception escapes. Everything except the peft_spm_* functions is hidden.
// Keep in sync with the declarations in sentencepiece_model.cpp (PEFT_SPM_ABI_VERSION).
#include <sentencepiece_processor.h>

#include <cstddef>
#include <cstdio>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#define PEFT_SPM_API extern "C" __attribute__((visibility("default")))

namespace {

constexpr int kAbiVersion = 1;

void set_err(char* err, std::size_t errlen, const std::string& msg) {
  if (err && errlen) std::snprintf(err, errlen, "%s", msg.c_str());
}

const sentencepiece::SentencePieceProcessor& sp(const void* h) {
  return *static_cast<const sentencepiece::SentencePieceProcessor*>(h);
}

}  // namespace

/// Receives one piece of an encoding: id, piece bytes, byte range in the input text.
typedef void (*peft_spm_piece_cb)(void* user, int id, const char* piece, std::size_t piece_len,
                                  std::size_t begin, std::size_t end);
/// Receives a string (decoded text, a piece).
typedef void (*peft_spm_string_cb)(void* user, const char* s, std::size_t len);

PEFT_SPM_API int peft_spm_abi_version() { return kAbiVersion; }

/// Loads a .model file; null on failure (message in err).
PEFT_SPM_API void* peft_spm_load(const char* path, char* err, std::size_t errlen) {
  try {
    auto p = std::make_unique<sentencepiece::SentencePieceProcessor>();
    auto st = p->Load(path);
    if (!st.ok()) {
      set_err(err, errlen, st.ToString());
      return nullptr;
    }
    return p.release();
  } catch (const std::exception& e) {
    set_err(err, errlen, e.what());
  } catch (...) {
    set_err(err, errlen, "unknown exception");
  }
  return nullptr;
}

PEFT_SPM_API void peft_spm_free(void* h) {
  delete static_cast<sentencepiece::SentencePieceProcessor*>(h);
}

/// Encodes `text` (len bytes) and calls cb once per piece. 0 on success, -1 on failure.
PEFT_SPM_API int peft_spm_encode(const void* h, const char* text, std::size_t len,
                                 peft_spm_piece_cb cb, void* user, char* err, std::size_t errlen) {
  try {
    sentencepiece::ImmutableSentencePieceText spt;
    auto st = sp(h).Encode(std::string_view(text, len), spt.mutable_proto());
    if (!st.ok()) {
      set_err(err, errlen, st.ToString());
      return -1;
    }
    for (const auto& p : spt.pieces()) {
      const std::string& piece = p.piece();
      cb(user, static_cast<int>(p.id()), piece.data(), piece.size(), p.begin(), p.end());
    }
    return 0;
  } catch (const std::exception& e) {
    set_err(err, errlen, e.what());
  } catch (...) {
    set_err(err, errlen, "unknown exception");
  }
  return -1;
}

/// Decodes n ids and passes the text to cb. 0 on success, -1 on failure.
PEFT_SPM_API int peft_spm_decode(const void* h, const int* ids, std::size_t n,
                                 peft_spm_string_cb cb, void* user, char* err,
                                 std::size_t errlen) {
  try {
    std::vector<int> v(ids, ids + n);
    std::string out;
    auto st = sp(h).Decode(v, &out);
    if (!st.ok()) {
      set_err(err, errlen, st.ToString());
      return -1;
    }
    cb(user, out.data(), out.size());
    return 0;
  } catch (const std::exception& e) {
    set_err(err, errlen, e.what());
  } catch (...) {
    set_err(err, errlen, "unknown exception");
  }
  return -1;
}

PEFT_SPM_API int peft_spm_piece_size(const void* h) { return sp(h).GetPieceSize(); }

/// Id of a piece (unk id when unknown); -1 on internal failure.
PEFT_SPM_API int peft_spm_piece_to_id(const void* h, const char* piece, std::size_t len) {
  try {
    return sp(h).PieceToId(std::string_view(piece, len));
  } catch (...) {
    return -1;
  }
}

/// Passes the piece of `id` to cb. 0 on success, -1 when id is out of range or on failure.
PEFT_SPM_API int peft_spm_id_to_piece(const void* h, int id, peft_spm_string_cb cb, void* user) {
  try {
    if (id < 0 || id >= sp(h).GetPieceSize()) return -1;
    const std::string& s = sp(h).IdToPiece(id);
    cb(user, s.data(), s.size());
    return 0;
  } catch (...) {
    return -1;
  }
}

PEFT_SPM_API int peft_spm_is_control(const void* h, int id) {
  try {
    return sp(h).IsControl(id) ? 1 : 0;
  } catch (...) {
    return 0;
  }
}

PEFT_SPM_API int peft_spm_bos_id(const void* h) { return sp(h).bos_id(); }
PEFT_SPM_API int peft_spm_eos_id(const void* h) { return sp(h).eos_id(); }
PEFT_SPM_API int peft_spm_pad_id(const void* h) { return sp(h).pad_id(); }
PEFT_SPM_API int peft_spm_unk_id(const void* h) { return sp(h).unk_id(); }
