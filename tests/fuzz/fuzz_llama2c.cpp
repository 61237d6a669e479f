// llama2.c files as `peft convert` and model path detection read them. Input: one selector byte,
// then the file: even, a checkpoint (read_llama2c_header, read_llama2c, the HF config.json it
// converts to); odd, a tokenizer.bin (Tokenizer::from_llama2c, then encode and decode).
// Any input must give a model / tokenizer or FormatError / NotSupported; a checkpoint read must
// agree with its header and hold every tensor whole.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "fuzz_util.h"
#include "peft/core/error.h"
#include "peft/io/llama2c.h"
#include "peft/io/tokenizer.h"

namespace {

void checkpoint(const std::string& path) {
  const peft::io::Llama2cConfig h = peft::io::read_llama2c_header(path);
  const peft::io::Llama2cModel m = peft::io::read_llama2c(path);
  if (m.config.dim != h.dim || m.config.vocab_size != h.vocab_size || m.config.version != h.version ||
      m.config.shared_classifier != h.shared_classifier)
    std::abort();
  uint64_t params = 0;
  for (const auto& [name, t] : m.tensors) {
    int64_t n = 1;
    for (const int64_t d : t.shape) n *= d;
    if (n != static_cast<int64_t>(t.data.size())) std::abort();
    params += t.data.size();
  }
  if (params != peft::io::llama2c_parameter_count(m.config)) std::abort();
  (void)peft::io::llama2c_hf_config_json(m.config);
}

void tokenizer(const std::string& path) {
  const auto tok = peft::io::Tokenizer::from_llama2c(path);
  for (const char* text : {"Once upon a time, there was a little girl named Lily.", " \xc3\xa9t\xc3\xa9 \xf0\x9f\x99\x82 ", ""}) {
    const auto e = tok.encode(text);
    (void)tok.decode(e.ids);
  }
  (void)tok.decode({0, 1, 2, 3, 258, 100000, -1});
  (void)tok.vocab_size();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const bool is_tokenizer = data[0] & 1;
  const std::string path =
      peft::fuzz::write_scratch(is_tokenizer ? "tokenizer.bin" : "model.bin", peft::fuzz::as_text(data + 1, size - 1));
  try {
    if (is_tokenizer) tokenizer(path);
    else checkpoint(path);
  } catch (const peft::FormatError&) {
  } catch (const peft::NotSupported&) {
  }
  return 0;
}
