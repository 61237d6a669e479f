#pragma once
// Element types as named by the safetensors format (tier 0: torch-free).
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace peft {

enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, Bool, U16, U32, U64, F8E4M3, F8E5M2 };

/// Bytes per element.
std::size_t dtype_size(DType t);
/// The safetensors name ("F32", "BF16", "BOOL", ...).
std::string_view dtype_name(DType t);
/// Parses a safetensors dtype name; nullopt when unknown.
std::optional<DType> parse_dtype(std::string_view name);

}  // namespace peft
