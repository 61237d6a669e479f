// GGUF: the validation rules follow llama.cpp's reader (ggml/src/gguf.cpp: gguf_init_from_file_impl)
// — magic, version 2/3, unique keys and tensor names, general.alignment a power of two of type
// UINT32, at most 4 dimensions, rows a multiple of the block size, tensor offsets equal to the
// running padded sum — plus what a mmap reader needs: every read bounded by the file, caps on
// strings, arrays and counts, and tensor bytes inside the file.
#include "peft/io/gguf.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>
#include <sstream>
#include <stdexcept>

#include "peft/core/check.h"
#include "peft/core/file_util.h"

namespace peft::io {

// ------------------------------------------------------------------------------- ggml types

namespace {

struct TypeRow {
  uint32_t tag;
  GgmlTypeTraits traits;
};

constexpr int64_t QK_K = 256;

// gguf-py/gguf/constants.py GGML_QUANT_SIZES (ggml.c type_traits).
const TypeRow kTypes[] = {
    {0, {"F32", 1, 4}},
    {1, {"F16", 1, 2}},
    {2, {"Q4_0", 32, 2 + 16}},
    {3, {"Q4_1", 32, 2 + 2 + 16}},
    {6, {"Q5_0", 32, 2 + 4 + 16}},
    {7, {"Q5_1", 32, 2 + 2 + 4 + 16}},
    {8, {"Q8_0", 32, 2 + 32}},
    {9, {"Q8_1", 32, 4 + 4 + 32}},
    {10, {"Q2_K", 256, 2 + 2 + QK_K / 16 + QK_K / 4}},
    {11, {"Q3_K", 256, 2 + QK_K / 4 + QK_K / 8 + 12}},
    {12, {"Q4_K", 256, 2 + 2 + QK_K / 2 + 12}},
    {13, {"Q5_K", 256, 2 + 2 + QK_K / 2 + QK_K / 8 + 12}},
    {14, {"Q6_K", 256, 2 + QK_K / 2 + QK_K / 4 + QK_K / 16}},
    {15, {"Q8_K", 256, 4 + QK_K + QK_K / 8}},
    {16, {"IQ2_XXS", 256, 2 + QK_K / 4}},
    {17, {"IQ2_XS", 256, 2 + QK_K / 4 + QK_K / 32}},
    {18, {"IQ3_XXS", 256, 2 + QK_K / 4 + QK_K / 8}},
    {19, {"IQ1_S", 256, 2 + QK_K / 8 + QK_K / 16}},
    {20, {"IQ4_NL", 32, 2 + 16}},
    {21, {"IQ3_S", 256, 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4}},
    {22, {"IQ2_S", 256, 2 + QK_K / 4 + QK_K / 16}},
    {23, {"IQ4_XS", 256, 2 + 2 + QK_K / 2 + QK_K / 64}},
    {24, {"I8", 1, 1}},
    {25, {"I16", 1, 2}},
    {26, {"I32", 1, 4}},
    {27, {"I64", 1, 8}},
    {28, {"F64", 1, 8}},
    {29, {"IQ1_M", 256, QK_K / 8 + QK_K / 16 + QK_K / 32}},
    {30, {"BF16", 1, 2}},
    {34, {"TQ1_0", 256, 2 + 4 * 13}},
    {35, {"TQ2_0", 256, 2 + 64}},
    {39, {"MXFP4", 32, 1 + 16}},
};

}  // namespace

const GgmlTypeTraits* ggml_type_traits(uint32_t type) {
  for (const auto& r : kTypes)
    if (r.tag == type) return &r.traits;
  return nullptr;
}

const GgmlTypeTraits& ggml_traits(GgmlType type) {
  const GgmlTypeTraits* t = ggml_type_traits(static_cast<uint32_t>(type));
  PEFT_CHECK(t != nullptr, std::invalid_argument, "[gguf] unknown ggml type ",
             static_cast<uint32_t>(type));
  return *t;
}

std::string ggml_type_name(uint32_t type) {
  const GgmlTypeTraits* t = ggml_type_traits(type);
  return t ? std::string(t->name) : "type " + std::to_string(type);
}

std::optional<GgmlType> parse_ggml_type(const std::string& name) {
  std::string up = name;
  for (auto& c : up) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (const auto& r : kTypes)
    if (up == r.traits.name) return static_cast<GgmlType>(r.tag);
  return std::nullopt;
}

uint64_t ggml_row_bytes(GgmlType type, int64_t n) {
  const auto& t = ggml_traits(type);
  PEFT_CHECK(n >= 0 && n % t.block_size == 0, std::invalid_argument, "[gguf] ", t.name,
             " stores blocks of ", t.block_size, " elements; ", n, " is not a multiple");
  return static_cast<uint64_t>(n / t.block_size) * static_cast<uint64_t>(t.type_size);
}

// ---------------------------------------------------------------------------- metadata values

std::string gguf_type_name(GgufType t) {
  switch (t) {
    case GgufType::UINT8: return "UINT8";
    case GgufType::INT8: return "INT8";
    case GgufType::UINT16: return "UINT16";
    case GgufType::INT16: return "INT16";
    case GgufType::UINT32: return "UINT32";
    case GgufType::INT32: return "INT32";
    case GgufType::FLOAT32: return "FLOAT32";
    case GgufType::BOOL: return "BOOL";
    case GgufType::STRING: return "STRING";
    case GgufType::ARRAY: return "ARRAY";
    case GgufType::UINT64: return "UINT64";
    case GgufType::INT64: return "INT64";
    case GgufType::FLOAT64: return "FLOAT64";
  }
  return "type " + std::to_string(static_cast<uint32_t>(t));
}

namespace {

bool is_unsigned(GgufType t) {
  return t == GgufType::UINT8 || t == GgufType::UINT16 || t == GgufType::UINT32 || t == GgufType::UINT64;
}
bool is_signed(GgufType t) {
  return t == GgufType::INT8 || t == GgufType::INT16 || t == GgufType::INT32 || t == GgufType::INT64;
}
// Bytes of a scalar type; 0 for STRING/ARRAY (variable) and unknown tags.
uint64_t scalar_size(GgufType t) {
  switch (t) {
    case GgufType::UINT8: case GgufType::INT8: case GgufType::BOOL: return 1;
    case GgufType::UINT16: case GgufType::INT16: return 2;
    case GgufType::UINT32: case GgufType::INT32: case GgufType::FLOAT32: return 4;
    case GgufType::UINT64: case GgufType::INT64: case GgufType::FLOAT64: return 8;
    default: return 0;
  }
}
bool known_type(uint32_t t) { return t <= static_cast<uint32_t>(GgufType::FLOAT64); }

}  // namespace

bool GgufValue::is_integer() const { return is_unsigned(type) || is_signed(type); }

GgufValue GgufValue::from_u32(uint32_t v) { GgufValue x; x.type = GgufType::UINT32; x.u = v; return x; }
GgufValue GgufValue::from_i32(int32_t v) { GgufValue x; x.type = GgufType::INT32; x.i = v; return x; }
GgufValue GgufValue::from_u64(uint64_t v) { GgufValue x; x.type = GgufType::UINT64; x.u = v; return x; }
GgufValue GgufValue::from_f32(float v) { GgufValue x; x.type = GgufType::FLOAT32; x.f = v; return x; }
GgufValue GgufValue::from_bool(bool v) { GgufValue x; x.type = GgufType::BOOL; x.b = v; return x; }
GgufValue GgufValue::from_string(std::string v) {
  GgufValue x;
  x.type = GgufType::STRING;
  x.s = std::move(v);
  return x;
}
GgufValue GgufValue::from_strings(const std::vector<std::string>& v) {
  GgufValue x;
  x.type = GgufType::ARRAY;
  x.elem_type = GgufType::STRING;
  x.items.reserve(v.size());
  for (const auto& s : v) x.items.push_back(from_string(s));
  return x;
}
GgufValue GgufValue::from_f32s(const std::vector<float>& v) {
  GgufValue x;
  x.type = GgufType::ARRAY;
  x.elem_type = GgufType::FLOAT32;
  x.items.reserve(v.size());
  for (float f : v) x.items.push_back(from_f32(f));
  return x;
}
GgufValue GgufValue::from_i32s(const std::vector<int32_t>& v) {
  GgufValue x;
  x.type = GgufType::ARRAY;
  x.elem_type = GgufType::INT32;
  x.items.reserve(v.size());
  for (int32_t i : v) x.items.push_back(from_i32(i));
  return x;
}

std::string GgufValue::brief() const {
  std::ostringstream os;
  if (type == GgufType::ARRAY) {
    os << "[" << items.size() << " " << gguf_type_name(elem_type) << "]";
  } else if (type == GgufType::STRING) {
    std::string v = s.size() > 60 ? s.substr(0, 57) + "..." : s;
    for (auto& c : v)
      if (c == '\n' || c == '\r' || c == '\t') c = ' ';
    os << '"' << v << '"';
  } else if (type == GgufType::BOOL) {
    os << (b ? "true" : "false");
  } else if (is_unsigned(type)) {
    os << u;
  } else if (is_signed(type)) {
    os << i;
  } else {
    os << f;
  }
  return os.str();
}

// ----------------------------------------------------------------------------------- reading

int64_t GgufTensorInfo::numel() const {
  int64_t n = 1;
  for (auto d : ne) n *= d;
  return n;
}

std::vector<int64_t> GgufTensorInfo::shape() const { return {ne.rbegin(), ne.rend()}; }

namespace {


constexpr char kMagic[4] = {'G', 'G', 'U', 'F'};

// Bounded little-endian cursor: every read names what it was reading when it runs out.
class Cursor {
 public:
  Cursor(const uint8_t* p, std::size_t n, const std::string& file) : p_(p), n_(n), file_(file) {}
  std::size_t pos() const { return pos_; }
  std::size_t remaining() const { return n_ - pos_; }
  [[noreturn]] void fail(const std::string& what) const {
    throw FormatError("[gguf] " + file_ + ": " + what);
  }
  void need(uint64_t k, const std::string& what) const {
    if (k > remaining())
      fail(what + " needs " + std::to_string(k) + " bytes at offset " + std::to_string(pos_) +
           " but the file ends after " + std::to_string(remaining()) + " (truncated file?)");
  }
  template <typename T>
  T read(const std::string& what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, p_ + pos_, sizeof(T));  // GGUF is little-endian, as is every host we build for
    pos_ += sizeof(T);
    return v;
  }
  std::string read_string(const std::string& what, uint64_t max_len) {
    const uint64_t len = read<uint64_t>(what + " length");
    if (len > max_len)
      fail(what + " is " + std::to_string(len) + " bytes long; the limit is " + std::to_string(max_len));
    need(len, what);
    std::string s(reinterpret_cast<const char*>(p_ + pos_), static_cast<std::size_t>(len));
    pos_ += static_cast<std::size_t>(len);
    return s;
  }

 private:
  const uint8_t* p_;
  std::size_t n_;
  std::size_t pos_ = 0;
  const std::string& file_;
};

uint64_t pad_to(uint64_t x, uint64_t align) { return (x + align - 1) / align * align; }

GgufValue read_value(Cursor& c, GgufType type, const std::string& key, const GgufLimits& lim,
                     int depth, uint64_t& budget) {
  GgufValue v;
  v.type = type;
  auto charge = [&](uint64_t bytes) {
    if (bytes > budget)
      c.fail("key '" + key + "': metadata exceeds the limit of " +
             std::to_string(lim.max_metadata_bytes) + " bytes");
    budget -= bytes;
  };
  charge(sizeof(GgufValue));
  switch (type) {
    case GgufType::UINT8: v.u = c.read<uint8_t>("key '" + key + "'"); break;
    case GgufType::INT8: v.i = c.read<int8_t>("key '" + key + "'"); break;
    case GgufType::UINT16: v.u = c.read<uint16_t>("key '" + key + "'"); break;
    case GgufType::INT16: v.i = c.read<int16_t>("key '" + key + "'"); break;
    case GgufType::UINT32: v.u = c.read<uint32_t>("key '" + key + "'"); break;
    case GgufType::INT32: v.i = c.read<int32_t>("key '" + key + "'"); break;
    case GgufType::UINT64: v.u = c.read<uint64_t>("key '" + key + "'"); break;
    case GgufType::INT64: v.i = c.read<int64_t>("key '" + key + "'"); break;
    case GgufType::FLOAT32: v.f = c.read<float>("key '" + key + "'"); break;
    case GgufType::FLOAT64: v.f = c.read<double>("key '" + key + "'"); break;
    case GgufType::BOOL: {
      const uint8_t b = c.read<uint8_t>("key '" + key + "'");
      if (b > 1) c.fail("key '" + key + "': BOOL value " + std::to_string(b) + " is not 0 or 1");
      v.b = b != 0;
      break;
    }
    case GgufType::STRING:
      v.s = c.read_string("key '" + key + "' string", lim.max_string);
      charge(v.s.size());
      break;
    case GgufType::ARRAY: {
      if (depth >= lim.max_nesting)
        c.fail("key '" + key + "': arrays nested deeper than " + std::to_string(lim.max_nesting));
      const uint32_t et = c.read<uint32_t>("key '" + key + "' array type");
      if (!known_type(et))
        c.fail("key '" + key + "': unknown array element type " + std::to_string(et) +
               " (expected 0-12)");
      v.elem_type = static_cast<GgufType>(et);
      const uint64_t n = c.read<uint64_t>("key '" + key + "' array length");
      if (n > lim.max_array)
        c.fail("key '" + key + "': array of " + std::to_string(n) + " elements exceeds the limit of " +
               std::to_string(lim.max_array));
      // Every element takes at least one byte (strings and arrays at least 8): a count the
      // remaining bytes cannot hold is rejected before anything is allocated.
      const uint64_t min_elem = scalar_size(v.elem_type) ? scalar_size(v.elem_type)
                                                         : (v.elem_type == GgufType::ARRAY ? 12 : 8);
      if (n > c.remaining() / min_elem)
        c.fail("key '" + key + "': array of " + std::to_string(n) + " " + gguf_type_name(v.elem_type) +
               " elements needs at least " + std::to_string(n) + " x " + std::to_string(min_elem) +
               " bytes but the file ends after " + std::to_string(c.remaining()) + " (truncated file?)");
      charge(n * sizeof(GgufValue));
      v.items.reserve(static_cast<std::size_t>(n));
      for (uint64_t k = 0; k < n; ++k)
        v.items.push_back(read_value(c, v.elem_type, key, lim, depth + 1, budget));
      break;
    }
  }
  return v;
}

[[noreturn]] void fail_file(const std::string& file, const std::string& what) {
  throw FormatError("[gguf] " + file + ": " + what);
}

}  // namespace

GgufFile GgufFile::open(const std::string& path, const GgufLimits& limits) {
  GgufFile f;
  f.path_ = path;
  const MappedFile m =
      map_file(path, "gguf", 24, "a GGUF file starts with a 24-byte header (magic, version, counts)");
  f.storage_ = m.keepalive;
  f.parse(m.data, m.size, limits);
  return f;
}

GgufFile GgufFile::from_bytes(std::string bytes, const std::string& label, const GgufLimits& limits) {
  GgufFile f;
  f.path_ = label;
  auto owned = std::make_shared<std::string>(std::move(bytes));
  f.storage_ = owned;
  f.parse(reinterpret_cast<const uint8_t*>(owned->data()), owned->size(), limits);
  return f;
}

bool is_gguf_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char m[4] = {};
  const bool ok = ::read(fd, m, 4) == 4 && std::memcmp(m, kMagic, 4) == 0;
  ::close(fd);
  return ok;
}

void GgufFile::parse(const uint8_t* bytes, std::size_t size, const GgufLimits& lim) {
  const std::string& file = path_;
  file_size_ = size;
  Cursor c(bytes, size, file);
  if (size < 4)
    c.fail("file is " + std::to_string(size) + " bytes; a GGUF file starts with the magic 'GGUF'");
  if (std::memcmp(bytes, kMagic, 4) != 0) {
    std::string got;
    for (int k = 0; k < 4; ++k) {
      const unsigned char ch = bytes[k];
      got += std::isprint(ch) ? std::string(1, static_cast<char>(ch)) : "\\x" + std::to_string(ch);
    }
    c.fail("not a GGUF file: starts with '" + got + "', expected 'GGUF'");
  }
  (void)c.read<uint32_t>("the magic");
  version_ = c.read<uint32_t>("the version");
  if (version_ == 1) c.fail("GGUF version 1 is not supported (versions 2 and 3 are)");
  if ((version_ & 0xFFFF) == 0 && version_ != 0)
    c.fail("version field " + std::to_string(version_) +
           " looks byte-swapped: big-endian GGUF files are not supported");
  if (version_ != 2 && version_ != 3)
    c.fail("unsupported GGUF version " + std::to_string(version_) + " (expected 2 or 3)");
  const uint64_t n_tensors = c.read<uint64_t>("the tensor count");
  const uint64_t n_kv = c.read<uint64_t>("the metadata count");
  if (n_tensors > lim.max_tensors)
    c.fail("tensor count " + std::to_string(n_tensors) + " exceeds the limit of " +
           std::to_string(lim.max_tensors));
  if (n_kv > lim.max_kv)
    c.fail("metadata count " + std::to_string(n_kv) + " exceeds the limit of " + std::to_string(lim.max_kv));
  // A key-value pair takes at least 8 (key length) + 4 (type) + 1 bytes, a tensor info at least
  // 8 + 4 + 8 + 4 + 8: counts the file cannot hold are rejected before allocating.
  if (n_kv > c.remaining() / 13)
    c.fail("metadata count " + std::to_string(n_kv) + " cannot fit in the remaining " +
           std::to_string(c.remaining()) + " bytes (truncated or corrupt header)");

  uint64_t budget = lim.max_metadata_bytes;
  for (uint64_t k = 0; k < n_kv; ++k) {
    const std::string where = "metadata entry " + std::to_string(k);
    std::string key = c.read_string(where + " key", lim.max_string);
    if (key.empty()) c.fail(where + " has an empty key");
    if (kv_.count(key)) c.fail("key '" + key + "' appears more than once");
    const uint32_t t = c.read<uint32_t>("key '" + key + "' type");
    if (!known_type(t))
      c.fail("key '" + key + "': unknown value type " + std::to_string(t) + " (expected 0-12)");
    GgufValue v = read_value(c, static_cast<GgufType>(t), key, lim, 0, budget);
    key_order_.push_back(key);
    kv_.emplace(std::move(key), std::move(v));
  }

  if (const GgufValue* a = find("general.alignment")) {
    if (a->type != GgufType::UINT32)
      c.fail("key 'general.alignment' must be UINT32, got " + gguf_type_name(a->type));
    if (a->u == 0 || (a->u & (a->u - 1)) != 0)
      c.fail("key 'general.alignment' = " + std::to_string(a->u) + " is not a power of two");
    alignment_ = a->u;
  }

  if (n_tensors > c.remaining() / 32)
    c.fail("tensor count " + std::to_string(n_tensors) + " cannot fit in the remaining " +
           std::to_string(c.remaining()) + " bytes (truncated or corrupt header)");
  tensors_.reserve(static_cast<std::size_t>(n_tensors));
  for (uint64_t k = 0; k < n_tensors; ++k) {
    GgufTensorInfo t;
    // llama.cpp caps names at GGML_MAX_NAME - 1 = 63 bytes.
    t.name = c.read_string("tensor info " + std::to_string(k) + " name", 63);
    if (t.name.empty()) c.fail("tensor info " + std::to_string(k) + " has an empty name");
    const std::string where = "tensor '" + t.name + "'";
    if (index_.count(t.name)) c.fail(where + " appears more than once");
    const uint32_t n_dims = c.read<uint32_t>(where + " dimension count");
    if (n_dims == 0 || n_dims > 4)
      c.fail(where + " has " + std::to_string(n_dims) + " dimensions (expected 1 to 4)");
    uint64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t n = c.read<uint64_t>(where + " dimensions");
      if (n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
          __builtin_mul_overflow(numel, n, &numel) ||
          numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        c.fail(where + ": shape overflows 64-bit element counts");
      t.ne.push_back(static_cast<int64_t>(n));
    }
    t.type = c.read<uint32_t>(where + " type");
    const GgmlTypeTraits* tr = ggml_type_traits(t.type);
    if (!tr) c.fail(where + " has unknown ggml type " + std::to_string(t.type));
    if (t.ne[0] % tr->block_size != 0)
      c.fail(where + " of type " + tr->name + " has rows of " + std::to_string(t.ne[0]) +
             " elements, not a multiple of the block size " + std::to_string(tr->block_size));
    const uint64_t blocks = numel / static_cast<uint64_t>(tr->block_size);
    if (__builtin_mul_overflow(blocks, static_cast<uint64_t>(tr->type_size), &t.nbytes))
      c.fail(where + ": byte size overflows");
    t.offset = c.read<uint64_t>(where + " offset");
    index_.emplace(t.name, tensors_.size());
    tensors_.push_back(std::move(t));
  }

  // The data section starts at the next multiple of the alignment (llama.cpp pads even when the
  // header ends aligned; no padding is needed without tensors).
  data_offset_ = pad_to(c.pos(), alignment_);
  if (n_tensors == 0) {
    // Nothing follows the metadata but, at most, the padding some writers add anyway.
    if (size - c.pos() >= alignment_)
      c.fail(std::to_string(size - c.pos()) + " bytes follow the metadata of a file without tensors");
    data_offset_ = size;
    return;
  }
  if (data_offset_ > size)
    c.fail("the data section would start at byte " + std::to_string(data_offset_) +
           " past the end of the file (" + std::to_string(size) + " bytes; truncated file?)");
  const uint64_t data_size = size - data_offset_;
  uint64_t expect = 0;
  for (auto& t : tensors_) {
    const std::string where = "tensor '" + t.name + "'";
    if (t.offset != expect)
      c.fail(where + " has offset " + std::to_string(t.offset) + ", expected " + std::to_string(expect) +
             " (tensors must follow each other in order, each padded to the alignment of " +
             std::to_string(alignment_) + ")");
    if (t.offset > data_size || t.nbytes > data_size - t.offset)
      c.fail(where + " [" + std::to_string(t.offset) + ", +" + std::to_string(t.nbytes) +
             ") runs past the end of the data section (" + std::to_string(data_size) +
             " bytes; truncated file?)");
    t.data = bytes + data_offset_ + t.offset;
    if (t.nbytes > std::numeric_limits<uint64_t>::max() - alignment_) c.fail(where + ": size overflows");
    expect = t.offset + pad_to(t.nbytes, alignment_);
  }
  // After the last tensor only its alignment padding may follow.
  if (!tensors_.empty() && data_size > expect)
    c.fail("data section is " + std::to_string(data_size) + " bytes but the tensors and their padding cover " +
           std::to_string(expect) + " (trailing bytes)");
}

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = kv_.find(key);
  return it == kv_.end() ? nullptr : &it->second;
}

const GgufValue& GgufFile::at(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) fail_file(path_, "missing metadata key '" + key + "'");
  return *v;
}

namespace {
[[noreturn]] void wrong_type(const std::string& file, const std::string& key, const GgufValue& v,
                             const std::string& expected) {
  std::string got = gguf_type_name(v.type);
  if (v.type == GgufType::ARRAY) got += " of " + gguf_type_name(v.elem_type);
  fail_file(file, "key '" + key + "' must be " + expected + ", got " + got);
}
}  // namespace

std::string GgufFile::get_string(const std::string& key) const {
  const GgufValue& v = at(key);
  if (v.type != GgufType::STRING) wrong_type(path_, key, v, "a STRING");
  return v.s;
}
std::string GgufFile::get_string(const std::string& key, const std::string& dflt) const {
  return has(key) ? get_string(key) : dflt;
}

uint64_t GgufFile::get_uint(const std::string& key) const {
  const GgufValue& v = at(key);
  if (is_unsigned(v.type)) return v.u;
  if (is_signed(v.type) && v.i >= 0) return static_cast<uint64_t>(v.i);
  if (is_signed(v.type)) fail_file(path_, "key '" + key + "' = " + std::to_string(v.i) + " must be non-negative");
  wrong_type(path_, key, v, "an unsigned integer");
}
uint64_t GgufFile::get_uint(const std::string& key, uint64_t dflt) const {
  return has(key) ? get_uint(key) : dflt;
}

int64_t GgufFile::get_int(const std::string& key) const {
  const GgufValue& v = at(key);
  if (is_signed(v.type)) return v.i;
  if (is_unsigned(v.type) && v.u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    return static_cast<int64_t>(v.u);
  if (is_unsigned(v.type)) fail_file(path_, "key '" + key + "' = " + std::to_string(v.u) + " is too large");
  wrong_type(path_, key, v, "an integer");
}
int64_t GgufFile::get_int(const std::string& key, int64_t dflt) const {
  return has(key) ? get_int(key) : dflt;
}

double GgufFile::get_float(const std::string& key) const {
  const GgufValue& v = at(key);
  if (v.type == GgufType::FLOAT32 || v.type == GgufType::FLOAT64) return v.f;
  if (is_unsigned(v.type)) return static_cast<double>(v.u);
  if (is_signed(v.type)) return static_cast<double>(v.i);
  wrong_type(path_, key, v, "a number");
}
double GgufFile::get_float(const std::string& key, double dflt) const {
  return has(key) ? get_float(key) : dflt;
}

bool GgufFile::get_bool(const std::string& key, bool dflt) const {
  if (!has(key)) return dflt;
  const GgufValue& v = at(key);
  if (v.type != GgufType::BOOL) wrong_type(path_, key, v, "a BOOL");
  return v.b;
}

std::vector<std::string> GgufFile::get_strings(const std::string& key) const {
  const GgufValue& v = at(key);
  if (v.type != GgufType::ARRAY || v.elem_type != GgufType::STRING)
    wrong_type(path_, key, v, "an ARRAY of STRING");
  std::vector<std::string> out;
  out.reserve(v.items.size());
  for (const auto& x : v.items) out.push_back(x.s);
  return out;
}

std::vector<float> GgufFile::get_floats(const std::string& key) const {
  const GgufValue& v = at(key);
  if (v.type != GgufType::ARRAY || !(v.elem_type == GgufType::FLOAT32 || v.elem_type == GgufType::FLOAT64))
    wrong_type(path_, key, v, "an ARRAY of FLOAT32");
  std::vector<float> out;
  out.reserve(v.items.size());
  for (const auto& x : v.items) out.push_back(static_cast<float>(x.f));
  return out;
}

std::vector<int64_t> GgufFile::get_ints(const std::string& key) const {
  const GgufValue& v = at(key);
  if (v.type != GgufType::ARRAY || !(is_signed(v.elem_type) || is_unsigned(v.elem_type)))
    wrong_type(path_, key, v, "an ARRAY of integers");
  std::vector<int64_t> out;
  out.reserve(v.items.size());
  for (const auto& x : v.items) {
    if (is_unsigned(x.type) && x.u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      fail_file(path_, "key '" + key + "' holds " + std::to_string(x.u) + ", too large");
    out.push_back(is_unsigned(x.type) ? static_cast<int64_t>(x.u) : x.i);
  }
  return out;
}

const GgufTensorInfo* GgufFile::find_tensor(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

const GgufTensorInfo& GgufFile::tensor(const std::string& name) const {
  const GgufTensorInfo* t = find_tensor(name);
  if (!t) fail_file(path_, "no tensor named '" + name + "'");
  return *t;
}

// ----------------------------------------------------------------------------------- writing

namespace {

template <typename T>
void put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof(T));
}
void put_string(std::string& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  out.append(s);
}

void put_value(std::string& out, const GgufValue& v, const std::string& key) {
  switch (v.type) {
    case GgufType::UINT8: put<uint8_t>(out, static_cast<uint8_t>(v.u)); break;
    case GgufType::INT8: put<int8_t>(out, static_cast<int8_t>(v.i)); break;
    case GgufType::UINT16: put<uint16_t>(out, static_cast<uint16_t>(v.u)); break;
    case GgufType::INT16: put<int16_t>(out, static_cast<int16_t>(v.i)); break;
    case GgufType::UINT32: put<uint32_t>(out, static_cast<uint32_t>(v.u)); break;
    case GgufType::INT32: put<int32_t>(out, static_cast<int32_t>(v.i)); break;
    case GgufType::UINT64: put<uint64_t>(out, v.u); break;
    case GgufType::INT64: put<int64_t>(out, v.i); break;
    case GgufType::FLOAT32: put<float>(out, static_cast<float>(v.f)); break;
    case GgufType::FLOAT64: put<double>(out, v.f); break;
    case GgufType::BOOL: put<uint8_t>(out, v.b ? 1 : 0); break;
    case GgufType::STRING: put_string(out, v.s); break;
    case GgufType::ARRAY:
      put<uint32_t>(out, static_cast<uint32_t>(v.elem_type));
      put<uint64_t>(out, v.items.size());
      for (const auto& x : v.items) {
        PEFT_CHECK(x.type == v.elem_type, std::invalid_argument, "[write_gguf] key '", key,
                   "': array element of type ", gguf_type_name(x.type), " in an array of ",
                   gguf_type_name(v.elem_type));
        put_value(out, x, key);
      }
      break;
  }
}

// Header + tensor infos + padding (everything before the data section); checks the inputs.
std::string gguf_header(const std::vector<std::pair<std::string, GgufValue>>& metadata,
                        const std::vector<GgufTensorBytes>& tensors, uint64_t& alignment) {
  alignment = 32;
  std::set<std::string> keys;
  for (const auto& [k, v] : metadata) {
    PEFT_CHECK(!k.empty(), std::invalid_argument, "[write_gguf] empty metadata key");
    PEFT_CHECK(keys.insert(k).second, std::invalid_argument, "[write_gguf] key '", k, "' given twice");
    if (k == "general.alignment") {
      PEFT_CHECK(v.type == GgufType::UINT32 && v.u != 0 && (v.u & (v.u - 1)) == 0, std::invalid_argument,
                 "[write_gguf] general.alignment must be a UINT32 power of two");
      alignment = v.u;
    }
  }
  std::string out(kMagic, 4);
  put<uint32_t>(out, 3);
  put<uint64_t>(out, tensors.size());
  put<uint64_t>(out, metadata.size());
  for (const auto& [k, v] : metadata) {
    put_string(out, k);
    put<uint32_t>(out, static_cast<uint32_t>(v.type));
    put_value(out, v, k);
  }
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    PEFT_CHECK(!t.name.empty() && t.name.size() <= 63, std::invalid_argument, "[write_gguf] tensor name '",
               t.name, "' must be 1 to 63 bytes");
    PEFT_CHECK(names.insert(t.name).second, std::invalid_argument, "[write_gguf] tensor '", t.name,
               "' given twice");
    PEFT_CHECK(!t.ne.empty() && t.ne.size() <= 4, std::invalid_argument, "[write_gguf] tensor '", t.name,
               "' needs 1 to 4 dimensions, got ", t.ne.size());
    int64_t numel = 1;
    for (auto d : t.ne) {
      PEFT_CHECK(d >= 0, std::invalid_argument, "[write_gguf] tensor '", t.name, "' has a negative dimension");
      numel *= d;
    }
    const uint64_t row = ggml_row_bytes(t.type, t.ne[0]);
    const uint64_t need = t.ne[0] == 0 ? 0 : row * static_cast<uint64_t>(numel / t.ne[0]);
    PEFT_CHECK(need == t.nbytes, std::invalid_argument, "[write_gguf] tensor '", t.name, "': ",
               ggml_traits(t.type).name, " shape needs ", need, " bytes, got ", t.nbytes);
    PEFT_CHECK(t.nbytes == 0 || t.data != nullptr, std::invalid_argument, "[write_gguf] tensor '",
               t.name, "' has no data");
    put_string(out, t.name);
    put<uint32_t>(out, static_cast<uint32_t>(t.ne.size()));
    for (auto d : t.ne) put<uint64_t>(out, static_cast<uint64_t>(d));
    put<uint32_t>(out, static_cast<uint32_t>(t.type));
    put<uint64_t>(out, offset);
    offset += pad_to(t.nbytes, alignment);
  }
  if (!tensors.empty()) out.resize(pad_to(out.size(), alignment), '\0');
  return out;
}

void emit_gguf(const std::vector<std::pair<std::string, GgufValue>>& metadata,
               const std::vector<GgufTensorBytes>& tensors, const ByteSink& sink) {
  uint64_t alignment = 32;
  const std::string header = gguf_header(metadata, tensors, alignment);
  sink(header.data(), header.size());
  static const char zeros[256] = {};
  for (const auto& t : tensors) {
    if (t.nbytes) sink(t.data, t.nbytes);
    uint64_t pad = pad_to(t.nbytes, alignment) - t.nbytes;
    while (pad > 0) {
      const uint64_t k = std::min<uint64_t>(pad, sizeof(zeros));
      sink(zeros, k);
      pad -= k;
    }
  }
}

}  // namespace

std::string serialize_gguf(const std::vector<std::pair<std::string, GgufValue>>& metadata,
                           const std::vector<GgufTensorBytes>& tensors) {
  std::string out;
  emit_gguf(metadata, tensors, [&](const void* p, std::size_t n) { out.append(static_cast<const char*>(p), n); });
  return out;
}

void write_gguf(const std::string& path, const std::vector<std::pair<std::string, GgufValue>>& metadata,
                const std::vector<GgufTensorBytes>& tensors) {
  uint64_t alignment = 32;
  (void)gguf_header(metadata, tensors, alignment);  // validate before touching the file system
  write_file_atomic(path, [&](const ByteSink& sink) { emit_gguf(metadata, tensors, sink); });
}

}  // namespace peft::io
