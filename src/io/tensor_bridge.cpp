#include "peft/io/tensor_bridge.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/isfinite.h>
#include <ATen/Parallel.h>

#include <atomic>
#include <cstring>
#include <vector>

#include "peft/core/check.h"

namespace peft::io {

DType to_dtype(c10::ScalarType t) {
  switch (t) {
    case at::kDouble: return DType::F64;
    case at::kFloat: return DType::F32;
    case at::kHalf: return DType::F16;
    case at::kBFloat16: return DType::BF16;
    case at::kLong: return DType::I64;
    case at::kInt: return DType::I32;
    case at::kShort: return DType::I16;
    case at::kChar: return DType::I8;
    case at::kByte: return DType::U8;
    case at::kBool: return DType::Bool;
    default:
      throw NotSupported(std::string("[tensor_bridge] dtype ") + c10::toString(t) +
                         " has no safetensors equivalent here");
  }
}

c10::ScalarType to_scalar_type(DType t) {
  switch (t) {
    case DType::F64: return at::kDouble;
    case DType::F32: return at::kFloat;
    case DType::F16: return at::kHalf;
    case DType::BF16: return at::kBFloat16;
    case DType::I64: return at::kLong;
    case DType::I32: return at::kInt;
    case DType::I16: return at::kShort;
    case DType::I8: return at::kChar;
    case DType::U8: return at::kByte;
    case DType::Bool: return at::kBool;
    default:
      throw NotSupported("[tensor_bridge] safetensors dtype " + std::string(dtype_name(t)) +
                         " has no LibTorch equivalent in this build");
  }
}

at::Tensor to_tensor(const SafetensorsFile& file, const std::string& name, bool copy) {
  const TensorInfo& info = file.at(name);
  const auto st = to_scalar_type(info.dtype);
  const auto opts = at::TensorOptions().dtype(st);
  if (copy || info.nbytes() == 0 ||
      reinterpret_cast<uintptr_t>(info.data) % dtype_size(info.dtype) != 0) {
    at::Tensor t = at::empty(info.shape, opts);
    if (info.nbytes()) std::memcpy(t.data_ptr(), info.data, info.nbytes());
    return t;
  }
  auto keep = file.keepalive();
  return at::from_blob(const_cast<uint8_t*>(info.data), info.shape,
                       [keep](void*) mutable { keep.reset(); }, opts);
}

at::Tensor to_tensor(const HfCheckpoint& ckpt, const std::string& name, bool copy) {
  return to_tensor(ckpt.shard_of(name), name, copy);
}

std::map<std::string, at::Tensor> load_safetensors(const std::string& path) {
  const auto f = SafetensorsFile::open(path);
  std::map<std::string, at::Tensor> out;
  for (const auto& n : f.names()) out.emplace(n, to_tensor(f, n, /*copy=*/true));
  return out;
}

void save_safetensors(const std::string& path, const std::map<std::string, at::Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::map<std::string, at::Tensor> cpu;
  std::map<std::string, TensorBytes> views;
  for (const auto& [name, t] : tensors) {
    PEFT_CHECK(t.defined(), std::invalid_argument, "[save_safetensors] tensor '", name,
               "' is undefined");
    at::Tensor c = t.detach().to(at::kCPU).contiguous();
    cpu[name] = c;
    views[name] = TensorBytes{to_dtype(c.scalar_type()), c.sizes().vec(), c.data_ptr(),
                              static_cast<std::size_t>(c.numel() * c.element_size())};
  }
  write_safetensors(path, views, metadata);
}

namespace {
// Counts elements whose exponent bits are all ones (NaN or infinity) in n words of type U.
template <typename U>
int64_t count_exponent_saturated(const void* data, int64_t n, U exp_mask) {
  const U* p = static_cast<const U*>(data);
  std::atomic<int64_t> total{0};
  at::parallel_for(0, n, int64_t{1} << 16, [&](int64_t b, int64_t e) {
    int64_t c = 0;
    for (int64_t i = b; i < e; ++i) c += (p[i] & exp_mask) == exp_mask;
    total += c;
  });
  return total.load();
}
}  // namespace

int64_t count_nonfinite(const at::Tensor& t) {
  if (!t.defined() || !t.is_floating_point() || t.numel() == 0) return 0;
  if (t.device().is_cpu() && t.is_contiguous() && !t.is_conj() && !t.is_neg()) {
    const int64_t n = t.numel();
    switch (t.scalar_type()) {
      case at::kFloat: return count_exponent_saturated<uint32_t>(t.data_ptr(), n, 0x7F800000u);
      case at::kDouble: return count_exponent_saturated<uint64_t>(t.data_ptr(), n, 0x7FF0000000000000ull);
      case at::kBFloat16: return count_exponent_saturated<uint16_t>(t.data_ptr(), n, uint16_t{0x7F80});
      case at::kHalf: return count_exponent_saturated<uint16_t>(t.data_ptr(), n, uint16_t{0x7C00});
      default: break;
    }
  }
  return t.numel() - at::isfinite(t).sum().item<int64_t>();
}

}  // namespace peft::io
