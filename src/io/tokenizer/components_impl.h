#pragma once
// The tokenizer.json pipeline components (normalizers, pre-tokenizers, models, post-processors,
// decoders) and their factories from JSON.
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "io/tokenizer/normalized_impl.h"
#include "peft/core/check.h"
#include "peft/io/tokenizer.h"

namespace peft::io::detail {

/// Where a component comes from, for error messages: "[io::tokenizer] <file>: ...".
struct LoadContext {
  std::string file;
  template <typename... Args>
  [[noreturn]] void format_error(const Args&... args) const {
    throw FormatError(peft::detail::str_cat("[io::tokenizer] ", file, ": ", args...));
  }
  template <typename... Args>
  [[noreturn]] void not_supported(const Args&... args) const {
    throw NotSupported(peft::detail::str_cat("[io::tokenizer] ", file, ": ", args...));
  }
};

/// Typed field access that throws FormatError naming the component and field.
const nlohmann::json& field(const nlohmann::json& j, const char* key, const char* component,
                            const LoadContext& ctx);
std::string get_string(const nlohmann::json& j, const char* key, const char* component,
                       const LoadContext& ctx, std::optional<std::string> def = std::nullopt);
bool get_bool(const nlohmann::json& j, const char* key, const char* component,
              const LoadContext& ctx, std::optional<bool> def = std::nullopt);
/// Token ids and type ids index tables, so they are bounded: at most 2^23 tokens.
inline constexpr TokenId kMaxTokenId = TokenId{1} << 23;
/// `v` as an id in [0, kMaxTokenId): FormatError naming `component` and `what` for anything else
/// (a float, a negative or huge number, a string), before any narrowing conversion.
TokenId to_token_id(const nlohmann::json& v, const char* component, const std::string& what,
                    const LoadContext& ctx);
std::string type_of(const nlohmann::json& j, const char* component, const LoadContext& ctx);
SplitBehavior parse_behavior(const nlohmann::json& j, const char* component,
                             const LoadContext& ctx);
/// {"String": s} or {"Regex": r}.
Pattern parse_pattern(const nlohmann::json& j, const char* component, const LoadContext& ctx);

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void normalize(NormalizedString& s) const = 0;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  virtual void pre_tokenize(PreTokenizedString& s) const = 0;
};

class Model {
 public:
  virtual ~Model() = default;
  /// Tokenizes one pre-token; offsets are byte offsets in `s`.
  virtual void tokenize(const std::string& s, std::vector<Token>& out) const = 0;
  virtual std::optional<TokenId> token_to_id(const std::string& t) const = 0;
  virtual std::optional<std::string> id_to_token(TokenId id) const = 0;
  virtual std::size_t vocab_size() const = 0;
};

class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  virtual std::size_t added_tokens(bool is_pair) const = 0;
  /// Processes 1 or 2 encodings; the caller concatenates what is left.
  virtual void process(std::vector<Encoding>& encs, bool add_special_tokens) const = 0;
  /// ByteLevel/Roberta trim_offsets, applied to each sequence's encoding with its input text
  /// (HF trims in characters of the input; offsets here are bytes).
  virtual void trim(Encoding& /*e*/, const std::string& /*text*/) const {}
};

class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual void decode_chain(std::vector<std::string>& tokens) const = 0;
};

std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& j, const LoadContext& ctx);
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& j, const LoadContext& ctx);
std::unique_ptr<Model> make_model(const nlohmann::json& j, const LoadContext& ctx);
std::unique_ptr<PostProcessor> make_post_processor(const nlohmann::json& j, const LoadContext& ctx);
std::unique_ptr<Decoder> make_decoder(const nlohmann::json& j, const LoadContext& ctx);

/// GPT-2 byte <-> unicode-character table.
const std::string& byte_to_char_utf8(unsigned char b);
/// Byte of a byte-level character, or -1.
int char_to_byte(char32_t c);

/// Concatenates encodings (HF Encoding::merge with growing offsets left as is).
void append_encoding(Encoding& dst, Encoding&& src);

}  // namespace peft::io::detail
