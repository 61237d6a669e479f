// Any byte string must either parse into a consistent file or raise FormatError.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "peft/core/error.h"
#include "peft/io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto f = peft::io::SafetensorsFile::from_bytes(
        std::string(reinterpret_cast<const char*>(data), size), "fuzz");
    uint64_t sum = 0;
    for (const auto& n : f.names()) {
      const auto& t = f.at(n);
      if (t.end < t.begin || static_cast<int64_t>(t.nbytes()) != t.numel() * static_cast<int64_t>(peft::dtype_size(t.dtype)))
        std::abort();
      for (std::size_t i = 0; i < t.nbytes(); ++i) sum += t.data[i];  // every byte is in bounds
    }
    (void)sum;
  } catch (const peft::FormatError&) {
  }
  return 0;
}
