#pragma once
// GGUF (llama.cpp's model and adapter format): a validated mmap reader and an atomic writer
// (tier 0: torch-free). Versions 2 and 3, little-endian.
//
//   auto f = peft::io::GgufFile::open("SmolLM2-135M-Instruct.Q4_1.gguf");
//   std::string arch = f.get_string("general.architecture");       // "llama"
//   const auto& t = f.tensor("blk.0.attn_q.weight");              // type, ne, bytes
//
// Every length, count, type tag, string, array, tensor offset and the alignment are checked
// before use with overflow-safe arithmetic; a bad file gives one FormatError naming the file and
// the key or tensor.
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "peft/core/error.h"

namespace peft::io {

// ------------------------------------------------------------------------------- ggml types

/// ggml tensor element types (ggml.h `enum ggml_type`; gguf-py GGMLQuantizationType).
enum class GgmlType : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
  IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22,
  IQ4_XS = 23, I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30,
  TQ1_0 = 34, TQ2_0 = 35, MXFP4 = 39,
};

/// Block layout of a ggml type: `block_size` elements take `type_size` bytes.
struct GgmlTypeTraits {
  const char* name;
  int64_t block_size;
  int64_t type_size;
};

/// Traits of a type tag as stored in a file; nullptr for a tag ggml does not define.
const GgmlTypeTraits* ggml_type_traits(uint32_t type);
/// Traits of a known type (never null).
const GgmlTypeTraits& ggml_traits(GgmlType type);
/// "Q4_K", "F32", ...; "type <n>" for an unknown tag.
std::string ggml_type_name(uint32_t type);
/// Parses "q8_0" / "Q8_0" / "f16" ...; nullopt when unknown.
std::optional<GgmlType> parse_ggml_type(const std::string& name);
/// Bytes of `n` elements of `type` (n must be a multiple of the block size; throws otherwise).
uint64_t ggml_row_bytes(GgmlType type, int64_t n);

// ---------------------------------------------------------------------------- metadata values

/// GGUF metadata value types (gguf.h `enum gguf_type`).
enum class GgufType : uint32_t {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};
std::string gguf_type_name(GgufType t);

/// One metadata value. Scalars use one of `u`, `i`, `f`, `b`, `s` by type (integers of every
/// width land in `u` when unsigned and `i` when signed); arrays keep their element type and
/// elements (nested arrays are allowed).
struct GgufValue {
  GgufType type = GgufType::UINT32;
  uint64_t u = 0;
  int64_t i = 0;
  double f = 0.0;
  bool b = false;
  std::string s;
  GgufType elem_type = GgufType::UINT32;  ///< arrays only
  std::vector<GgufValue> items;           ///< arrays only

  static GgufValue from_u32(uint32_t v);
  static GgufValue from_i32(int32_t v);
  static GgufValue from_u64(uint64_t v);
  static GgufValue from_f32(float v);
  static GgufValue from_bool(bool v);
  static GgufValue from_string(std::string v);
  static GgufValue from_strings(const std::vector<std::string>& v);
  static GgufValue from_f32s(const std::vector<float>& v);
  static GgufValue from_i32s(const std::vector<int32_t>& v);

  bool is_integer() const;
  bool is_number() const { return is_integer() || type == GgufType::FLOAT32 || type == GgufType::FLOAT64; }
  /// A short rendering for messages and `peft info` ("[49152 STRING]" for arrays).
  std::string brief() const;
};

// ----------------------------------------------------------------------------------- reading

/// One tensor of a GGUF file. `ne` is ggml's order (ne[0] = elements per row, the fastest
/// dimension); `shape()` is the row-major (PyTorch) order, i.e. `ne` reversed.
struct GgufTensorInfo {
  std::string name;
  uint32_t type = 0;             ///< ggml type tag (ggml_type_traits(type) is never null here)
  std::vector<int64_t> ne;       ///< 1 to 4 dimensions, innermost first
  uint64_t offset = 0;           ///< inside the data section
  uint64_t nbytes = 0;
  const uint8_t* data = nullptr; ///< into the mapping (valid while the file lives)

  GgmlType ggml_type() const { return static_cast<GgmlType>(type); }
  int64_t numel() const;
  std::vector<int64_t> shape() const;
  /// Elements per row (ne[0]) and rows (the product of the other dimensions).
  int64_t row_length() const { return ne.empty() ? 1 : ne[0]; }
  int64_t rows() const { return row_length() == 0 ? 0 : numel() / row_length(); }
};

/// Caps that bound what a hostile header can make the reader allocate.
struct GgufLimits {
  uint64_t max_string = 64ull << 20;        ///< bytes of one string
  uint64_t max_array = 1ull << 26;          ///< elements of one array
  uint64_t max_metadata_bytes = 1ull << 30; ///< all metadata, decoded
  int max_nesting = 4;                      ///< arrays of arrays
  uint64_t max_tensors = 1ull << 20;
  uint64_t max_kv = 1ull << 20;
};

/// A read-only, validated GGUF file. Copies share the mapping.
class GgufFile {
 public:
  static GgufFile open(const std::string& path, const GgufLimits& limits = {});
  /// Validates an in-memory image (tests, fuzzing); `label` names it in errors.
  static GgufFile from_bytes(std::string bytes, const std::string& label = "<memory>",
                             const GgufLimits& limits = {});

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  /// Byte offset of the data section in the file.
  uint64_t data_offset() const { return data_offset_; }
  uint64_t file_size() const { return file_size_; }

  /// Keys in file order.
  const std::vector<std::string>& keys() const { return key_order_; }
  bool has(const std::string& key) const { return kv_.count(key) != 0; }
  /// nullptr when absent.
  const GgufValue* find(const std::string& key) const;
  /// Throws FormatError naming the file and key when absent.
  const GgufValue& at(const std::string& key) const;

  // Typed getters: FormatError naming the file and key when absent or of another type. Integer
  // getters accept any integer type whose value fits; float getters accept any number.
  std::string get_string(const std::string& key) const;
  std::string get_string(const std::string& key, const std::string& dflt) const;
  uint64_t get_uint(const std::string& key) const;
  uint64_t get_uint(const std::string& key, uint64_t dflt) const;
  int64_t get_int(const std::string& key) const;
  int64_t get_int(const std::string& key, int64_t dflt) const;
  double get_float(const std::string& key) const;
  double get_float(const std::string& key, double dflt) const;
  bool get_bool(const std::string& key, bool dflt) const;
  std::vector<std::string> get_strings(const std::string& key) const;
  std::vector<float> get_floats(const std::string& key) const;
  std::vector<int64_t> get_ints(const std::string& key) const;

  /// Tensors in file order.
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  bool has_tensor(const std::string& name) const { return index_.count(name) != 0; }
  /// nullptr when absent.
  const GgufTensorInfo* find_tensor(const std::string& name) const;
  /// Throws FormatError naming the file and the tensor when absent.
  const GgufTensorInfo& tensor(const std::string& name) const;
  /// Keeps the mapping alive (zero-copy views).
  std::shared_ptr<const void> keepalive() const { return storage_; }

 private:
  void parse(const uint8_t* bytes, std::size_t size, const GgufLimits& limits);

  std::string path_;
  std::shared_ptr<const void> storage_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  uint64_t file_size_ = 0;
  std::map<std::string, GgufValue> kv_;
  std::vector<std::string> key_order_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, std::size_t> index_;
};

/// True when the file starts with the GGUF magic (cheap sniff for CLI dispatch).
bool is_gguf_file(const std::string& path);

// ----------------------------------------------------------------------------------- writing

/// A tensor to write. `ne` in ggml order; `data` holds exactly ggml_row_bytes(type, ne[0]) x rows
/// bytes (already quantised for block types).
struct GgufTensorBytes {
  std::string name;
  GgmlType type = GgmlType::F32;
  std::vector<int64_t> ne;
  const void* data = nullptr;
  uint64_t nbytes = 0;
};

/// Writes a GGUF v3 file atomically: metadata in the given order, tensor infos and data in the
/// given order, each tensor padded to `general.alignment` (default 32) as llama.cpp requires.
/// Validates names, shapes and sizes first; throws std::invalid_argument naming the tensor/key.
void write_gguf(const std::string& path,
                const std::vector<std::pair<std::string, GgufValue>>& metadata,
                const std::vector<GgufTensorBytes>& tensors);

/// The file image write_gguf would produce (tests, fuzz corpus).
std::string serialize_gguf(const std::vector<std::pair<std::string, GgufValue>>& metadata,
                           const std::vector<GgufTensorBytes>& tensors);

}  // namespace peft::io
