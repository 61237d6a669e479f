#pragma once
// The one place safetensors bytes become at::Tensor and back (tier 1: ATen/core/Tensor.h only).
#include <ATen/core/Tensor.h>

#include <map>
#include <string>

#include "peft/io/hf_checkpoint.h"
#include "peft/io/safetensors.h"

namespace peft::io {

/// A tensor over the file's bytes. With copy=false it shares the mapping (read-only memory:
/// clone before writing in place); with copy=true it owns its data.
at::Tensor to_tensor(const SafetensorsFile& file, const std::string& name, bool copy = false);
/// Same, looking the name up across the checkpoint's shards.
at::Tensor to_tensor(const HfCheckpoint& ckpt, const std::string& name, bool copy = false);

/// Loads every tensor of a safetensors file (copies).
std::map<std::string, at::Tensor> load_safetensors(const std::string& path);

/// The safetensors dtype of an at::ScalarType; throws NotSupported for others.
DType to_dtype(c10::ScalarType t);
c10::ScalarType to_scalar_type(DType t);

/// How many NaN or infinite values `t` holds (0 for integer and bool tensors). Contiguous CPU
/// float32/float64/bfloat16/float16 tensors are scanned by their exponent bits in one parallel
/// pass with no allocation (about a memory read per byte); other tensors go through ATen.
int64_t count_nonfinite(const at::Tensor& t);

/// Writes tensors atomically (CPU copies are made for other devices and non-contiguous inputs).
void save_safetensors(const std::string& path, const std::map<std::string, at::Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

}  // namespace peft::io
