// Built instead of sentencepiece_model.cpp when libsentencepiece is not available.
#include "io/tokenizer/tokenizer_impl.h"
#include "peft/core/check.h"

namespace peft::io::detail {

std::shared_ptr<TokenizerBackend> load_sentencepiece(const std::string& path) {
  throw NotSupported(
      peft::detail::str_cat("[io::tokenizer] ", path,
                            ": built without libsentencepiece; install libsentencepiece-dev "
                            "and reconfigure, or convert the model to tokenizer.json"));
}

}  // namespace peft::io::detail
