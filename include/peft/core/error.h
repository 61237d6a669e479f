#pragma once
// Exception types used across peft.cpp (tier 0: torch-free).
#include <stdexcept>
#include <string>

namespace peft {

/// Bad field value or combination in a config (mirrors PEFT's ValueError in __post_init__).
class ConfigError : public std::invalid_argument {
 public:
  explicit ConfigError(const std::string& what) : std::invalid_argument(what) {}
};

/// Malformed file: safetensors, JSON, tokenizer, checkpoint.
class FormatError : public std::runtime_error {
 public:
  explicit FormatError(const std::string& what) : std::runtime_error(what) {}
};

/// A valid request that this build does not implement.
class NotSupported : public std::runtime_error {
 public:
  explicit NotSupported(const std::string& what) : std::runtime_error(what) {}
};

}  // namespace peft
