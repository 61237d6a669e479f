// safetensors: validation rules follow the reference implementation (safetensors/src/tensor.rs:
// Metadata::validate): header length cap, header starts with '{', known dtypes, spans that tile
// the data section exactly in offset order, shape x itemsize == span.
#include "peft/io/safetensors.h"


#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>

#include "peft/core/check.h"
#include "peft/core/file_util.h"
#include "peft/core/json_file.h"

namespace peft::io {

using nlohmann::json;

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

namespace {


[[noreturn]] void fail(const std::string& file, const std::string& what) {
  throw FormatError("[safetensors] " + file + ": " + what);
}

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  SafetensorsFile f;
  f.path_ = path;
  const MappedFile m =
      map_file(path, "safetensors", 8, "a safetensors file starts with an 8-byte header length");
  f.storage_ = m.keepalive;
  f.parse(m.data, m.size);
  return f;
}

SafetensorsFile SafetensorsFile::from_bytes(std::string bytes, const std::string& label) {
  SafetensorsFile f;
  f.path_ = label;
  auto owned = std::make_shared<std::string>(std::move(bytes));
  f.storage_ = owned;
  f.parse(reinterpret_cast<const uint8_t*>(owned->data()), owned->size());
  return f;
}

const TensorInfo& SafetensorsFile::at(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end())
    throw std::out_of_range("[safetensors] " + path_ + ": no tensor named '" + name + "'");
  return it->second;
}

void SafetensorsFile::parse(const uint8_t* bytes, std::size_t size) {
  const std::string& file = path_;
  if (size < 8)
    fail(file, "file is " + std::to_string(size) +
                   " bytes; a safetensors file starts with an 8-byte header length");
  const uint64_t n = read_u64_le(bytes);
  if (n > kMaxSafetensorsHeader)
    fail(file, "header length " + std::to_string(n) + " exceeds the limit of " +
                   std::to_string(kMaxSafetensorsHeader) + " bytes");
  if (n > size - 8)
    fail(file, "header length " + std::to_string(n) + " runs past the end of the file (" +
                   std::to_string(size) + " bytes): truncated file?");
  if (n == 0 || bytes[8] != '{') fail(file, "header does not start with '{'");
  const char* hbeg = reinterpret_cast<const char*>(bytes + 8);

  std::set<std::string> seen;
  std::string duplicate;
  json::parser_callback_t cb = [&](int depth, json::parse_event_t ev, json& parsed) {
    if (ev == json::parse_event_t::key && depth == 1) {
      const auto& k = parsed.get_ref<const std::string&>();
      if (!seen.insert(k).second && duplicate.empty()) duplicate = k;
    }
    return true;
  };
  JsonLimits lim;
  lim.max_bytes = kMaxSafetensorsHeader;
  lim.max_depth = 16;  // a header nests three levels: name, fields, shape
  try {
    check_json_bounds(std::string_view(hbeg, n), file, lim);
  } catch (const FormatError& e) {
    fail(file, std::string("header: ") + e.what());
  }
  json header;
  try {
    header = json::parse(hbeg, hbeg + n, cb);
  } catch (const json::exception& e) {
    fail(file, std::string("header is not valid JSON: ") + e.what());
  }
  if (!duplicate.empty()) fail(file, "tensor name '" + duplicate + "' appears more than once");
  if (!header.is_object()) fail(file, "header is not a JSON object");

  const uint64_t data_size = size - 8 - n;
  const uint8_t* data = bytes + 8 + n;
  std::vector<TensorInfo> infos;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) fail(file, "__metadata__ is not an object of strings");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string())
          fail(file, "__metadata__ value for '" + m.key() + "' is not a string");
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor '" + name + "': ";
    if (!v.is_object()) fail(file, where + "entry is not an object");
    auto d = v.find("dtype");
    if (d == v.end() || !d->is_string()) fail(file, where + "missing string field 'dtype'");
    auto dt = parse_dtype(d->get<std::string>());
    if (!dt) fail(file, where + "unknown dtype '" + d->get<std::string>() + "'");
    auto s = v.find("shape");
    if (s == v.end() || !s->is_array()) fail(file, where + "missing array field 'shape'");
    auto o = v.find("data_offsets");
    if (o == v.end() || !o->is_array() || o->size() != 2)
      fail(file, where + "'data_offsets' must be an array [begin, end]");
    TensorInfo info;
    info.name = name;
    info.dtype = *dt;
    uint64_t numel = 1;
    for (const auto& dim : *s) {
      if (!dim.is_number_unsigned())
        fail(file, where + "shape entries must be non-negative integers, got " + dim.dump());
      const uint64_t dv = dim.get<uint64_t>();
      if (dv > static_cast<uint64_t>(INT64_MAX) || __builtin_mul_overflow(numel, dv, &numel))
        fail(file, where + "shape " + s->dump() + " overflows");
      info.shape.push_back(static_cast<int64_t>(dv));
    }
    for (const auto& off : *o)
      if (!off.is_number_unsigned())
        fail(file, where + "data_offsets must be non-negative integers, got " + o->dump());
    info.begin = (*o)[0].get<uint64_t>();
    info.end = (*o)[1].get<uint64_t>();
    if (info.end < info.begin)
      fail(file, where + "data_offsets " + o->dump() + " end before they begin");
    if (info.end > data_size)
      fail(file, where + "data_offsets " + o->dump() + " run past the data section (" +
                     std::to_string(data_size) + " bytes)");
    uint64_t nbytes = 0;
    if (__builtin_mul_overflow(numel, static_cast<uint64_t>(dtype_size(*dt)), &nbytes) ||
        nbytes != info.end - info.begin)
      fail(file, where + "shape " + s->dump() + " of " + std::string(dtype_name(*dt)) +
                     " needs " + std::to_string(numel) + " x " + std::to_string(dtype_size(*dt)) +
                     " bytes but data_offsets " + o->dump() + " span " +
                     std::to_string(info.end - info.begin));
    info.data = data + info.begin;
    infos.push_back(std::move(info));
  }
  std::sort(infos.begin(), infos.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t cursor = 0;
  for (const auto& t : infos) {
    if (t.begin < cursor)
      fail(file, "tensor '" + t.name + "' [" + std::to_string(t.begin) + ", " +
                     std::to_string(t.end) + ") overlaps the previous tensor (ends at " +
                     std::to_string(cursor) + ")");
    if (t.begin > cursor)
      fail(file, "gap in the data section before tensor '" + t.name + "': bytes [" +
                     std::to_string(cursor) + ", " + std::to_string(t.begin) + ") belong to no tensor");
    cursor = t.end;
  }
  if (cursor != data_size)
    fail(file, "data section is " + std::to_string(data_size) + " bytes but the tensors cover " +
                   std::to_string(cursor) + " (trailing bytes or truncated file)");
  for (auto& t : infos) {
    order_.push_back(t.name);
    tensors_.emplace(t.name, std::move(t));
  }
}

static std::string serialize_safetensors_header(const std::map<std::string, TensorBytes>& tensors,
                                         const std::map<std::string, std::string>& metadata,
                                         std::vector<std::string>& layout) {
  layout.clear();
  for (const auto& kv : tensors) layout.push_back(kv.first);
  std::stable_sort(layout.begin(), layout.end(), [&](const std::string& a, const std::string& b) {
    return dtype_size(tensors.at(a).dtype) > dtype_size(tensors.at(b).dtype);
  });
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& name : layout) {
    const auto& t = tensors.at(name);
    PEFT_CHECK(name != "__metadata__", std::invalid_argument,
               "[write_safetensors] '__metadata__' is reserved and cannot name a tensor");
    uint64_t numel = 1;
    for (auto d : t.shape) {
      PEFT_CHECK(d >= 0, std::invalid_argument, "[write_safetensors] tensor '", name,
                 "' has a negative dimension");
      numel *= static_cast<uint64_t>(d);
    }
    PEFT_CHECK(numel * dtype_size(t.dtype) == t.nbytes, std::invalid_argument,
               "[write_safetensors] tensor '", name, "': shape needs ", numel * dtype_size(t.dtype),
               " bytes, got ", t.nbytes);
    PEFT_CHECK(t.nbytes == 0 || t.data != nullptr, std::invalid_argument,
               "[write_safetensors] tensor '", name, "' has no data");
    header[name] = {{"dtype", std::string(dtype_name(t.dtype))},
                    {"shape", t.shape},
                    {"data_offsets", {offset, offset + t.nbytes}}};
    offset += t.nbytes;
  }
  std::string h = header.dump();
  while (h.size() % 8 != 0) h.push_back(' ');
  return h;
}

namespace {

void emit(const std::map<std::string, TensorBytes>& tensors,
          const std::map<std::string, std::string>& metadata,
          const std::function<void(const void*, std::size_t)>& sink) {
  std::vector<std::string> layout;
  const std::string h = serialize_safetensors_header(tensors, metadata, layout);
  uint8_t len[8];
  uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n >> (8 * i));
  sink(len, 8);
  sink(h.data(), h.size());
  for (const auto& name : layout) {
    const auto& t = tensors.at(name);
    if (t.nbytes) sink(t.data, t.nbytes);
  }
}

}  // namespace

std::string serialize_safetensors(const std::map<std::string, TensorBytes>& tensors,
                                  const std::map<std::string, std::string>& metadata) {
  std::string out;
  emit(tensors, metadata, [&](const void* p, std::size_t n) {
    out.append(static_cast<const char*>(p), n);
  });
  return out;
}

void write_safetensors(const std::string& path, const std::map<std::string, TensorBytes>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  // Validate (and build the header) before touching the file system.
  std::vector<std::string> layout;
  (void)serialize_safetensors_header(tensors, metadata, layout);
  write_file_atomic(path, [&](const ByteSink& sink) { emit(tensors, metadata, sink); });
}

}  // namespace peft::io
