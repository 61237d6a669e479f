// Any byte string must either parse into a consistent GGUF file or raise FormatError.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "peft/core/error.h"
#include "peft/io/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  peft::io::GgufLimits lim;
  lim.max_metadata_bytes = 1u << 24;  // keep the fuzzer's memory bounded
  try {
    const auto f = peft::io::GgufFile::from_bytes(std::string(reinterpret_cast<const char*>(data), size),
                                                  "fuzz", lim);
    uint64_t sum = 0;
    for (const auto& k : f.keys()) sum += f.at(k).brief().size();
    for (const auto& t : f.tensors()) {
      const auto* tr = peft::io::ggml_type_traits(t.type);
      if (!tr || t.ne.empty() || t.ne.size() > 4 || t.ne[0] % tr->block_size != 0) std::abort();
      if (f.data_offset() + t.offset + t.nbytes > f.file_size()) std::abort();
      for (uint64_t i = 0; i < t.nbytes; ++i) sum += t.data[i];  // every byte is in bounds
    }
    (void)sum;
  } catch (const peft::FormatError&) {
  }
  return 0;
}
