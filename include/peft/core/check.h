#pragma once
// PEFT_CHECK: builds its message only when the check fails (tier 0: torch-free).
#include <sstream>
#include <string>

#include "peft/core/error.h"

namespace peft::detail {

template <typename... Args>
std::string str_cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

}  // namespace peft::detail

/// PEFT_CHECK(cond, ExceptionType, "[where] ", parts...) throws ExceptionType(message) when !cond.
#define PEFT_CHECK(cond, Exc, ...)                         \
  do {                                                     \
    if (!(cond)) throw Exc(::peft::detail::str_cat(__VA_ARGS__)); \
  } while (0)
