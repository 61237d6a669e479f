#pragma once
// safetensors reading (mmap, fully validated) and atomic writing (tier 0: torch-free).
//
//   auto f = peft::io::SafetensorsFile::open("model.safetensors");
//   const auto& t = f.at("lm_head.weight");   // dtype, shape, bytes
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "peft/core/dtype.h"
#include "peft/core/error.h"

namespace peft::io {

/// One tensor inside a safetensors file. `data` points into the mapping (valid while the file lives).
struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  ///< offset of the first byte inside the data section
  uint64_t end = 0;    ///< one past the last byte inside the data section
  const uint8_t* data = nullptr;
  std::size_t nbytes() const { return static_cast<std::size_t>(end - begin); }
  int64_t numel() const;
};

/// Largest JSON header accepted (the Python library's cap).
constexpr uint64_t kMaxSafetensorsHeader = 100'000'000;

/// A read-only, validated safetensors file. Copies share the mapping.
class SafetensorsFile {
 public:
  /// Maps `path` and validates header and layout; throws FormatError naming the file and problem.
  static SafetensorsFile open(const std::string& path);
  /// Validates an in-memory image (tests, fuzzing); `label` names it in errors.
  static SafetensorsFile from_bytes(std::string bytes, const std::string& label = "<memory>");

  const std::string& path() const { return path_; }
  /// Tensor names in data-offset order.
  const std::vector<std::string>& names() const { return order_; }
  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
  /// Throws std::out_of_range naming the file and the tensor when absent.
  const TensorInfo& at(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  std::size_t size() const { return order_.size(); }
  /// Keeps the mapping alive (used by the zero-copy tensor bridge).
  std::shared_ptr<const void> keepalive() const { return storage_; }

 private:
  void parse(const uint8_t* bytes, std::size_t size);

  std::string path_;
  std::shared_ptr<const void> storage_;
  std::map<std::string, TensorInfo> tensors_;
  std::vector<std::string> order_;
  std::map<std::string, std::string> metadata_;
};

/// A tensor to write: raw little-endian bytes, row-major.
struct TensorBytes {
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  std::size_t nbytes = 0;
};

/// Writes a safetensors file atomically: keys sorted in the header, header padded with spaces
/// to a multiple of 8, data laid out by element size (largest first) then name so every tensor
/// is naturally aligned, `__metadata__` kept when non-empty.
void write_safetensors(const std::string& path, const std::map<std::string, TensorBytes>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

/// The file image write_safetensors would produce (tests, fuzz corpus).
std::string serialize_safetensors(const std::map<std::string, TensorBytes>& tensors,
                                  const std::map<std::string, std::string>& metadata = {});

}  // namespace peft::io
