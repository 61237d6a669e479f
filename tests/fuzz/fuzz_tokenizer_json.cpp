// tokenizer.json (+ tokenizer_config.json) as Tokenizer::from_pretrained reads a model folder,
// then encode / encode_pair / encode_batch / decode on strings from the input. Input:
// tokenizer.json, optionally followed by NUL + tokenizer_config.json (empty: none), then NUL +
// each text to encode (a default set when there are none).
// Loading must give a tokenizer or FormatError / ConfigError / NotSupported; encoding must give
// consistent encodings whose offsets lie inside the text, or std::invalid_argument (not UTF-8) or
// FormatError (text the model cannot encode); decoding must take any id.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "fuzz_util.h"
#include "peft/core/error.h"
#include "peft/io/tokenizer.h"

namespace fs = std::filesystem;
using peft::io::Encoding;
using peft::io::Tokenizer;

namespace {

const char* const kTexts[] = {"Hello world! It's 2 o'clock.", "  leading spaces\tand\ttabs\n\nnew lines ",
                              "\xc3\xbcn\xc3\xaf\x63\xc3\xb6\x64\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x99\x82", ""};

void check(const Encoding& e, std::size_t text_size) {
  const std::size_t n = e.ids.size();
  if (e.type_ids.size() != n || e.attention_mask.size() != n || e.offsets.size() != n || e.tokens.size() != n ||
      e.special_tokens_mask.size() != n)
    std::abort();
  for (const auto& [b, end] : e.offsets)
    if (b > end || end > text_size) std::abort();
}

void exercise(const Tokenizer& tok, const std::vector<std::string>& texts) {
  std::vector<peft::io::TokenId> all;
  for (const auto& t : texts) {
    try {
      const Encoding e = tok.encode(t);
      check(e, t.size());
      all.insert(all.end(), e.ids.begin(), e.ids.end());
      (void)tok.decode(e.ids);
      (void)tok.decode(e.ids, /*skip_special_tokens=*/true);
      check(tok.encode(t, /*add_special_tokens=*/false), t.size());
    } catch (const std::invalid_argument&) {  // not UTF-8
    } catch (const peft::FormatError&) {  // the model cannot encode it
    }
  }
  try {
    const std::string& a = texts.front();
    const std::string& b = texts.back();
    const Encoding p = tok.encode_pair(a, b);
    check(p, std::max(a.size(), b.size()));
    peft::io::BatchOptions o;
    o.padding = peft::io::PaddingStrategy::Longest;
    o.truncation = true;
    o.max_length = 7;
    o.pad_to_multiple_of = 4;
    o.padding_side = peft::io::Side::Left;
    o.pad_id = 0;
    const auto batch = tok.encode_batch(texts, o);
    for (const auto& e : batch) {  // padded to one length, a multiple of 4
      if (e.size() != batch.front().size() || e.size() % 4 != 0) std::abort();
    }
  } catch (const std::invalid_argument&) {
  } catch (const peft::FormatError&) {
  }
  // Ids from the text bytes: out of range, negative, special.
  for (const auto& t : texts)
    for (std::size_t i = 0; i + 4 <= t.size(); i += 4) {
      int32_t id;
      std::memcpy(&id, t.data() + i, 4);
      all.push_back(id);
      all.push_back(id & 0xffff);
    }
  (void)tok.decode(all);
  (void)tok.decode(all, true);
  for (const auto id : all) {
    if (const auto s = tok.id_to_token(id)) (void)tok.token_to_id(*s);
  }
  (void)tok.vocab_size();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto parts = peft::fuzz::split_nul(peft::fuzz::as_text(data, size));
  peft::fuzz::write_scratch("tokenizer.json", parts[0]);
  const std::string config = peft::fuzz::scratch_dir() + "/tokenizer_config.json";
  if (parts.size() > 1 && !parts[1].empty()) {
    peft::fuzz::write_scratch("tokenizer_config.json", parts[1]);
  } else {
    std::error_code ec;
    fs::remove(config, ec);
  }
  std::vector<std::string> texts(parts.size() > 2 ? parts.begin() + 2 : parts.end(), parts.end());
  if (texts.empty()) texts.assign(std::begin(kTexts), std::end(kTexts));
  std::optional<Tokenizer> tok;
  try {
    tok = Tokenizer::from_pretrained(peft::fuzz::scratch_dir());
  } catch (const peft::FormatError&) {
  } catch (const peft::ConfigError&) {
  } catch (const peft::NotSupported&) {
  }
  if (tok) exercise(*tok, texts);
  return 0;
}
