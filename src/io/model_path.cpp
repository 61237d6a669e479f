// Model path detection: each format is recognised the way its own reader validates it (GGUF
// magic + gguf.cpp's parse, safetensors' header rules, llama2.c's header + exact size, the
// tokenizer.bin entry walk of llama2.c's run.c build_tokenizer), with every read bounded.
#include "peft/io/model_path.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>

#include "peft/core/check.h"
#include "peft/core/file_util.h"
#include "peft/core/json_file.h"
#include "peft/io/gguf.h"
#include "peft/io/safetensors.h"

namespace peft::io {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr uint64_t kMaxTokenizerBytes = 64ull << 20;  // llama2.c tokenizers are a few MB at most
constexpr uint64_t kMaxJsonBytes = 16ull << 20;       // config.json / adapter_config.json

std::string join_path(const std::string& dir, const std::string& name) {
  return dir.empty() ? name : (fs::path(dir) / name).string();
}

// A reader's message without its "[tag] path: " opening (the caller names the path).
std::string inner(const std::string& what, const std::string& path) {
  const std::string mark = "] " + path + ": ";
  const auto at = what.find(mark);
  return what.rfind("[", 0) == 0 && at != std::string::npos ? what.substr(at + mark.size()) : what;
}

std::string hex_prefix(const std::string& b) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < b.size() && i < 8; ++i) {
    const auto c = static_cast<unsigned char>(b[i]);
    out += std::string(i ? " " : "") + digits[c >> 4] + digits[c & 15];
  }
  return out;
}

// The first `n` bytes (fewer when the file is shorter); nullopt when it cannot be opened.
std::optional<std::string> read_prefix(const std::string& path, std::size_t n) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::string b(n, '\0');
  in.read(b.data(), static_cast<std::streamsize>(n));
  b.resize(static_cast<std::size_t>(in.gcount()));
  return b;
}

// A small JSON file as an object; nullopt when absent, too big or not an object.
std::optional<json> small_json(const fs::path& p) {
  std::error_code ec;
  if (!fs::is_regular_file(p, ec) || fs::file_size(p, ec) > kMaxJsonBytes || ec) return std::nullopt;
  try {
    json j = read_json_file(p.string());
    if (j.is_object()) return j;
  } catch (const std::exception&) {
  }
  return std::nullopt;
}

std::string json_string(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// llama2.c tokenizer.bin: int32 max_token_length, then (float score, int32 len, len bytes) per
// token up to the end of the file. Sets the counts on success; otherwise, when the first three
// entries parsed, says where it broke.
bool sniff_llama2c_tokenizer(const std::string& path, uint64_t size, ModelPathInfo& out,
                             std::string& plausible) {
  if (size < 4 + 3 * 8 || size > kMaxTokenizerBytes) return false;
  MappedFile m;
  try {
    m = map_file(path, "model_path");
  } catch (const std::exception&) {
    return false;
  }
  const uint8_t* b = m.data;
  int32_t max_len = 0;
  std::memcpy(&max_len, b, 4);
  if (max_len <= 0 || max_len > kMaxLlama2cTokenBytes) return false;  // as the tokenizer reader
  std::size_t pos = 4;
  int64_t count = 0;
  auto broke = [&](const std::string& what) {
    if (count >= 3 && plausible.empty())
      plausible = "looks like a llama2.c tokenizer.bin (max_token_length " + std::to_string(max_len) +
                  ") but " + what;
    return false;
  };
  while (pos < m.size) {
    if (m.size - pos < 8) return broke("ends inside entry " + std::to_string(count) + " (truncated file?)");
    float score = 0;
    int32_t len = 0;
    std::memcpy(&score, b + pos, 4);
    std::memcpy(&len, b + pos + 4, 4);
    if (!std::isfinite(score)) return broke("entry " + std::to_string(count) + " has a non-finite score");
    if (len < 0 || len > max_len)
      return broke("entry " + std::to_string(count) + " has length " + std::to_string(len) +
                   " outside [0, " + std::to_string(max_len) + "]");
    pos += 8;
    if (m.size - pos < static_cast<std::size_t>(len))
      return broke("ends inside the bytes of entry " + std::to_string(count) + " (truncated file?)");
    pos += static_cast<std::size_t>(len);
    ++count;
  }
  if (count < 3) return false;
  out.kind = ModelPathKind::Llama2cTokenizer;
  out.tokenizer_vocab = count;
  out.tokenizer_max_token_length = max_len;
  return true;
}

// The seven legacy header ints all in read_llama2c's ranges (the size then decides).
bool llama2c_fields_plausible(const std::string& b) {
  if (b.size() < 28) return false;
  int32_t v[7];
  std::memcpy(v, b.data(), 28);
  const int64_t caps[7] = {1 << 16, 1 << 18, 1024, 1024, 1024, 1 << 22, 1 << 22};
  for (int k = 0; k < 7; ++k) {
    const int64_t x = k == 5 ? std::llabs(static_cast<int64_t>(v[k])) : v[k];
    if (x <= 0 || x > caps[k]) return false;
  }
  return true;
}

std::vector<std::string> folder_entries(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  fs::directory_iterator it(dir.empty() ? "." : dir, ec), end;
  for (std::size_t seen = 0; !ec && it != end && seen < 64 * kMaxFolderEntries; it.increment(ec), ++seen) {
    const std::string n = it->path().filename().string();
    if (!n.empty() && n[0] != '.') names.push_back(n);
  }
  std::sort(names.begin(), names.end());
  if (names.size() > kMaxFolderEntries) names.resize(kMaxFolderEntries);
  return names;
}

// The llama2.c tokenizer among `tokenizers`: the only one, or the one named tokenizer.bin.
std::string pick_tokenizer(const std::vector<std::string>& tokenizers) {
  if (tokenizers.size() == 1) return tokenizers.front();
  for (const auto& t : tokenizers)
    if (fs::path(t).filename() == "tokenizer.bin") return t;
  return "";
}

std::string tokenizer_beside(const std::string& checkpoint) {
  const std::string dir = fs::path(checkpoint).parent_path().string();
  const std::string self = fs::path(checkpoint).filename().string();
  std::vector<std::string> found;
  for (const auto& n : folder_entries(dir)) {
    if (n == self) continue;
    const std::string p = join_path(dir, n);
    std::error_code ec;
    if (!fs::is_regular_file(p, ec)) continue;
    const uint64_t size = fs::file_size(p, ec);
    ModelPathInfo t;
    std::string ignored;
    if (!ec && sniff_llama2c_tokenizer(p, size, t, ignored)) found.push_back(p);
  }
  return pick_tokenizer(found);
}

ModelPathInfo detect_file(const std::string& path, bool look_beside) {
  ModelPathInfo r;
  r.path = path;
  std::error_code ec;
  r.file_size = fs::file_size(path, ec);
  const auto head = read_prefix(path, 256);
  if (ec || !head) {
    r.reason = "cannot be read";
    return r;
  }
  const std::string& b = *head;
  if (r.file_size == 0) {
    r.reason = "is an empty file";
    return r;
  }
  std::string plausible;
  // GGUF: the magic, then the whole header validated as GgufFile reads it.
  if (b.size() >= 4 && std::memcmp(b.data(), "GGUF", 4) == 0) {
    try {
      // The reader's own limits: a file it would load is never refused here.
      const auto f = GgufFile::open(path);
      r.architecture = f.get_string("general.architecture", "");
      if (f.get_string("general.type", "model") == "adapter") {
        r.kind = ModelPathKind::GgufAdapter;
        r.adapter_type = f.get_string("adapter.type", "");
      } else {
        r.kind = ModelPathKind::GgufModel;
      }
    } catch (const std::exception& e) {
      r.reason = "starts with the GGUF magic but does not parse: " + inner(e.what(), path);
    }
    return r;
  }
  // llama2.c: header fields in range and the file size exactly as they imply.
  try {
    r.llama2c = read_llama2c_header(path);
    r.kind = ModelPathKind::Llama2cCheckpoint;
    if (look_beside) r.tokenizer_beside = tokenizer_beside(path);
    return r;
  } catch (const NotSupported& e) {
    r.reason = "is a llama2.c checkpoint this tool cannot read: " + inner(e.what(), path);
    return r;
  } catch (const std::exception& e) {
    uint32_t magic = 0;
    if (b.size() >= 4) std::memcpy(&magic, b.data(), 4);
    if (magic == 0x616b3432 || llama2c_fields_plausible(b))
      plausible = "looks like a llama2.c checkpoint but does not match: " + inner(e.what(), path);
  }
  // safetensors: a sane 8-byte header length and '{', then the whole header validated.
  if (b.size() >= 10) {
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(b[i]);
    if (n >= 2 && n <= kMaxSafetensorsHeader && n <= r.file_size - 8 && b[8] == '{') {
      try {
        r.tensors = SafetensorsFile::open(path).size();
        r.kind = ModelPathKind::SafetensorsFile;
      } catch (const std::exception& e) {
        r.reason = "looks like a safetensors file but does not parse: " + inner(e.what(), path);
      }
      return r;
    }
  }
  if (sniff_llama2c_tokenizer(path, r.file_size, r, plausible)) return r;
  r.reason = !plausible.empty()
                 ? plausible
                 : "is not a file this tool reads: it starts with bytes " + hex_prefix(b) +
                       ", not a GGUF model, a safetensors file, a llama2.c checkpoint (header and exact "
                       "size) or a llama2.c tokenizer.bin";
  return r;
}

ModelPathInfo detect_folder(const std::string& path, bool scan) {
  ModelPathInfo r;
  r.path = path;
  const fs::path dir(path);
  std::error_code ec;
  if (fs::exists(dir / "adapter_config.json", ec)) {
    r.kind = ModelPathKind::AdapterFolder;
    if (const auto j = small_json(dir / "adapter_config.json")) {
      r.adapter_type = json_string(*j, "peft_type");
      r.base_model = json_string(*j, "base_model_name_or_path");
    }
    return r;
  }
  const bool config = fs::is_regular_file(dir / "config.json", ec);
  const bool index = fs::is_regular_file(dir / "model.safetensors.index.json", ec);
  const bool single = fs::is_regular_file(dir / "model.safetensors", ec);
  if (config && (index || single)) {
    r.kind = ModelPathKind::HfFolder;
    r.sharded = index;
    if (const auto j = small_json(dir / "config.json")) r.architecture = json_string(*j, "model_type");
    return r;
  }
  if (!scan) return r;
  std::vector<std::string> tokenizers;
  for (const auto& n : folder_entries(path)) {
    const std::string p = join_path(path, n);
    ModelPathInfo e;
    if (fs::is_directory(p, ec)) e = detect_folder(p, false);
    else if (fs::is_regular_file(p, ec)) e = detect_file(p, false);
    else continue;
    if (e.kind == ModelPathKind::Unknown) continue;
    if (e.kind == ModelPathKind::Llama2cTokenizer) tokenizers.push_back(p);
    r.contents.push_back(std::move(e));
  }
  const std::string tok = pick_tokenizer(tokenizers);
  for (auto& e : r.contents)
    if (e.kind == ModelPathKind::Llama2cCheckpoint) e.tokenizer_beside = tok;
  if (!r.contents.empty()) {
    r.kind = ModelPathKind::Folder;
    return r;
  }
  if (config) {
    const bool bin = fs::exists(dir / "pytorch_model.bin", ec) || fs::exists(dir / "pytorch_model.bin.index.json", ec);
    r.reason = std::string("has config.json but no model.safetensors or model.safetensors.index.json") +
               (bin ? " (pickled pytorch_model.bin is not read: convert it to safetensors)" : "");
  } else {
    r.reason = "is a folder with no config.json, no adapter_config.json and no GGUF, safetensors or llama2.c "
               "file inside";
  }
  return r;
}

std::string quoted(const std::string& p) {
  const bool plain = !p.empty() && std::all_of(p.begin(), p.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || std::strchr("_-./+=:,@", c) != nullptr;
  });
  if (plain) return p;
  std::string q = "'";
  for (char c : p) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::string name_of(const ModelPathInfo& e) { return fs::path(e.path).filename().string(); }

// "a.bin: a llama2.c checkpoint (...), b.gguf: ... and 3 more" (four entries at most, one line).
std::string listing(const std::vector<const ModelPathInfo*>& items) {
  const std::size_t shown = items.size() > 4 ? 3 : items.size();
  std::vector<std::string> parts;
  for (std::size_t i = 0; i < shown; ++i) parts.push_back(name_of(*items[i]) + ": " + items[i]->summary());
  if (shown < items.size()) parts.push_back(std::to_string(items.size() - shown) + " more");
  std::string s;
  for (std::size_t i = 0; i < parts.size(); ++i) s += (i ? (i + 1 == parts.size() ? " and " : ", ") : "") + parts[i];
  return s;
}

bool has(const std::vector<ModelPathKind>& v, ModelPathKind k) {
  return std::find(v.begin(), v.end(), k) != v.end();
}

std::string fix_for(const ModelPathInfo& info, const std::vector<ModelPathKind>& accepted) {
  using K = ModelPathKind;
  switch (info.kind) {
    case K::Llama2cCheckpoint:
      return "convert it first: " + llama2c_convert_command(info);
    case K::GgufModel:
      return has(accepted, K::HfFolder) ? "convert it first: peft convert " + quoted(info.path) + " OUT" : "";
    case K::HfFolder:
      return has(accepted, K::GgufModel) ? "convert it with llama.cpp's convert_hf_to_gguf.py" : "";
    case K::SafetensorsFile:
      return has(accepted, K::HfFolder)
                 ? "a lone safetensors file has no config.json: give the folder that holds it with its config.json"
                 : "";
    case K::AdapterFolder:
      return "it is an adapter, not a model: give its base model" +
             (info.base_model.empty() ? std::string() : " (" + info.base_model + ")") + " and the adapter separately";
    case K::GgufAdapter:
      return "it is a llama.cpp LoRA adapter, not a model: give the base model it was made for";
    case K::Llama2cTokenizer:
      return "it is a tokenizer, not a model: convert the llama2.c checkpoint with it: peft convert CHECKPOINT.bin "
             "OUT --tokenizer " + quoted(info.path);
    case K::Folder: {
      const auto c = info.candidates();
      if (c.empty()) return "";
      if (c.size() == 1)
        return has(accepted, c[0]->kind) ? "give the file itself: " + c[0]->path : fix_for(*c[0], accepted);
      for (const auto* e : c)
        if (has(accepted, e->kind)) return "give one of them, e.g. " + e->path;
      if (c[0]->kind == K::Llama2cCheckpoint) return "convert one first, e.g. " + llama2c_convert_command(*c[0]);
      return fix_for(*c[0], accepted);
    }
    case K::Missing:
    case K::Unknown:
      return "";
  }
  return "";
}

}  // namespace

std::string model_path_kind_name(ModelPathKind kind) {
  switch (kind) {
    case ModelPathKind::Missing: return "a missing path";
    case ModelPathKind::HfFolder: return "a Hugging Face model folder (config.json + safetensors)";
    case ModelPathKind::SafetensorsFile: return "a .safetensors file";
    case ModelPathKind::AdapterFolder: return "a PEFT adapter folder (adapter_config.json)";
    case ModelPathKind::GgufModel: return "a GGUF model file";
    case ModelPathKind::GgufAdapter: return "a llama.cpp LoRA adapter (GGUF)";
    case ModelPathKind::Llama2cCheckpoint: return "a llama2.c checkpoint";
    case ModelPathKind::Llama2cTokenizer: return "a llama2.c tokenizer.bin";
    case ModelPathKind::Folder: return "a folder holding model files";
    case ModelPathKind::Unknown: return "an unrecognised path";
  }
  return "?";
}

std::vector<const ModelPathInfo*> ModelPathInfo::candidates() const {
  std::vector<const ModelPathInfo*> out;
  for (const auto& e : contents)
    if (e.kind != ModelPathKind::Llama2cTokenizer) out.push_back(&e);
  return out;
}

std::string ModelPathInfo::summary() const {
  using K = ModelPathKind;
  switch (kind) {
    case K::Missing: return "a path that does not exist";
    case K::HfFolder:
      return "a Hugging Face model folder (" + (architecture.empty() ? std::string("model_type -") : "model_type " + architecture) +
             (sharded ? ", sharded" : "") + ")";
    case K::SafetensorsFile: return "a safetensors file (" + std::to_string(tensors) + " tensors, no config.json)";
    case K::AdapterFolder:
      return "a PEFT adapter folder (" + (adapter_type.empty() ? std::string("peft_type -") : adapter_type) +
             (base_model.empty() ? "" : ", base model " + base_model) + ")";
    case K::GgufModel: return "a GGUF model file (" + (architecture.empty() ? std::string("architecture -") : architecture) + ")";
    case K::GgufAdapter:
      return "a llama.cpp " + (adapter_type.empty() ? std::string() : adapter_type + " ") + "adapter GGUF (for " +
             (architecture.empty() ? std::string("-") : architecture) + ")";
    case K::Llama2cCheckpoint:
      return "a llama2.c checkpoint (v" + std::to_string(llama2c.version) + ", dim " + std::to_string(llama2c.dim) +
             ", " + std::to_string(llama2c.n_layers) + " layers, vocab " + std::to_string(llama2c.vocab_size) + ")";
    case K::Llama2cTokenizer:
      return "a llama2.c tokenizer.bin (" + std::to_string(tokenizer_vocab) + " tokens, max token length " +
             std::to_string(tokenizer_max_token_length) + ")";
    case K::Folder: {
      const auto models = candidates();
      std::vector<const ModelPathInfo*> toks;
      for (const auto& e : contents)
        if (e.kind == K::Llama2cTokenizer) toks.push_back(&e);
      std::string s = "a folder holding ";
      if (models.empty()) s += "no model, only ";
      else s += (models.size() == 1 ? std::string("one model, ") : std::to_string(models.size()) + " models, ") + listing(models);
      if (!toks.empty()) s += std::string(models.empty() ? "" : ", and ") + listing(toks);
      return s;
    }
    case K::Unknown: return "a path that " + reason;
  }
  return "?";
}

ModelPathInfo detect_model_path(const std::string& path) {
  std::error_code ec;
  const auto st = fs::status(path, ec);
  if (ec || !fs::exists(st)) {
    ModelPathInfo r;
    r.path = path;
    r.kind = ModelPathKind::Missing;
    r.reason = "does not exist";
    return r;
  }
  if (fs::is_directory(st)) return detect_folder(path, true);
  if (fs::is_regular_file(st)) return detect_file(path, true);
  ModelPathInfo r;
  r.path = path;
  r.reason = "is neither a regular file nor a folder";
  return r;
}

std::string llama2c_convert_command(const ModelPathInfo& checkpoint) {
  return "peft convert " + quoted(checkpoint.path) + " OUT" +
         (checkpoint.tokenizer_beside.empty() ? "" : " --tokenizer " + quoted(checkpoint.tokenizer_beside));
}

std::string model_path_error(const ModelPathInfo& info, const std::vector<ModelPathKind>& accepted,
                             const std::string& tag) {
  std::string expected;
  for (std::size_t i = 0; i < accepted.size(); ++i)
    expected += (i ? (i + 1 == accepted.size() ? " or " : ", ") : "") + model_path_kind_name(accepted[i]);
  const std::string head = "[" + tag + "] " + info.path;
  if (info.kind == ModelPathKind::Missing || info.kind == ModelPathKind::Unknown)
    return head + " " + info.reason + "; expected " + expected;
  const std::string fix = fix_for(info, accepted);
  return head + " is " + info.summary() + ", not " + expected + (fix.empty() ? "" : "; " + fix);
}

void throw_model_path_error(const ModelPathInfo& info, const std::vector<ModelPathKind>& accepted,
                            const std::string& tag) {
  const std::string msg = model_path_error(info, accepted, tag);
  if (info.kind == ModelPathKind::Missing || info.kind == ModelPathKind::Unknown) throw FormatError(msg);
  throw ConfigError(msg);
}

ModelPathInfo require_model_path(const std::string& path, const std::vector<ModelPathKind>& accepted,
                                 const std::string& tag) {
  ModelPathInfo info = detect_model_path(path);
  if (!has(accepted, info.kind)) throw_model_path_error(info, accepted, tag);
  return info;
}

}  // namespace peft::io
