// SentencePiece tokenizer.model (a protobuf ModelProto) as Tokenizer::from_sentencepiece reads
// it through the peft_spm module, then encode / decode. Input: the .model file.
// Any input must give a tokenizer or FormatError; encoding valid UTF-8 and
// decoding any id must work.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "fuzz_util.h"
#include "peft/core/error.h"
#include "peft/io/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = peft::fuzz::write_scratch("tokenizer.model", peft::fuzz::as_text(data, size));
  try {
    const auto tok = peft::io::Tokenizer::from_sentencepiece(path);
    std::vector<peft::io::TokenId> ids;
    for (const char* text : {"Hello world! It's 2 o'clock.", "  \xc3\xa9t\xc3\xa9\t\xf0\x9f\x99\x82 \n", ""}) {
      const auto e = tok.encode(text);
      if (e.offsets.size() != e.ids.size() || e.tokens.size() != e.ids.size()) std::abort();
      ids.insert(ids.end(), e.ids.begin(), e.ids.end());
      (void)tok.encode_pair(text, "second");
    }
    for (const peft::io::TokenId id : {-1, 0, 1, 2, 3, 255, 1 << 20}) ids.push_back(id);
    (void)tok.decode(ids);
    (void)tok.decode(ids, /*skip_special_tokens=*/true);
    for (const peft::io::TokenId id : ids)
      if (const auto piece = tok.id_to_token(id)) (void)tok.token_to_id(*piece);
    (void)tok.vocab_size();
  } catch (const peft::FormatError&) {  // NotSupported (no SentencePiece module) is a setup error
  }
  return 0;
}
