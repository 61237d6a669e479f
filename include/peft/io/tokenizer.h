#pragma once
// Tokenizers: HF tokenizer.json, SentencePiece tokenizer.model, llama2.c tokenizer.bin, GGUF
// tokenizer metadata (tier 0).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace peft::io {

using TokenId = std::int32_t;

/// Result of encoding one sequence (or a pair), as HF `tokenizers.Encoding`.
struct Encoding {
  std::vector<TokenId> ids;
  std::vector<TokenId> type_ids;
  std::vector<std::uint8_t> attention_mask;
  /// Byte offsets [begin, end) into the input text ((0, 0) for added special/padding tokens).
  std::vector<std::pair<std::size_t, std::size_t>> offsets;
  std::vector<std::string> tokens;
  std::vector<std::uint8_t> special_tokens_mask;

  std::size_t size() const { return ids.size(); }
};

enum class PaddingStrategy { None, Longest, MaxLength };
enum class Side { Left, Right };

/// Options of encode_batch (transformers' __call__ padding/truncation arguments).
struct BatchOptions {
  PaddingStrategy padding = PaddingStrategy::None;
  std::optional<std::size_t> pad_to_multiple_of;
  bool truncation = false;
  std::optional<std::size_t> max_length;
  Side padding_side = Side::Right;
  Side truncation_side = Side::Right;
  bool add_special_tokens = true;
  /// Pad id override; defaults to the tokenizer's pad token.
  std::optional<TokenId> pad_id;
};

namespace detail {
class TokenizerBackend;
}
class GgufFile;  // peft/io/gguf.h

class Tokenizer {
 public:
  /// Loads an HF tokenizer.json.
  static Tokenizer from_file(const std::string& path);
  /// AutoTokenizer-style folder load: tokenizer.json, else tokenizer.model, else tokenizer.bin,
  /// (a GGUF model file: from_gguf),
  /// plus tokenizer_config.json (pad/bos/eos tokens, add_bos_token/add_eos_token) when present.
  static Tokenizer from_pretrained(const std::string& dir);
  /// A SentencePiece model file (needs a build with libsentencepiece).
  static Tokenizer from_sentencepiece(const std::string& path);
  /// A llama2.c tokenizer.bin (converted in memory as write_llama2c_tokenizer_json does).
  static Tokenizer from_llama2c(const std::string& path);
  /// The tokenizer of a GGUF file (tokenizer.ggml.* keys; gpt2 = byte-level BPE, llama =
  /// SentencePiece), converted as gguf_tokenizer_json does; ids equal llama.cpp's (llama-tokenize
  /// defaults: special tokens parsed in the text, BOS/EOS as the file says).
  static Tokenizer from_gguf(const std::string& path);

  /// std::invalid_argument when `text` is not UTF-8; FormatError naming the file when the
  /// tokenizer cannot encode it (a Unigram model without unk_id meeting a character it has no
  /// piece for, as HF tokenizers fails; a SentencePiece model that fails on it).
  Encoding encode(const std::string& text, bool add_special_tokens = true) const;
  Encoding encode_pair(const std::string& a, const std::string& b,
                       bool add_special_tokens = true) const;
  std::vector<Encoding> encode_batch(const std::vector<std::string>& texts,
                                     const BatchOptions& options = {}) const;
  std::string decode(const std::vector<TokenId>& ids, bool skip_special_tokens = false) const;

  std::optional<TokenId> token_to_id(const std::string& token) const;
  std::optional<std::string> id_to_token(TokenId id) const;
  /// Model vocabulary plus added tokens (HF get_vocab_size(with_added_tokens=True)).
  std::size_t vocab_size() const;

  std::optional<TokenId> pad_token_id() const { return pad_id_; }
  std::optional<TokenId> bos_token_id() const { return bos_id_; }
  std::optional<TokenId> eos_token_id() const { return eos_id_; }

 private:
  explicit Tokenizer(std::shared_ptr<const detail::TokenizerBackend> backend);
  void apply_config(const std::string& config_path);

  std::shared_ptr<const detail::TokenizerBackend> backend_;
  std::optional<TokenId> pad_id_, bos_id_, eos_id_;
  /// From tokenizer_config.json when it overrides the backend's own special-token handling.
  std::optional<bool> add_bos_, add_eos_;
};

/// Converts a llama2.c tokenizer.bin into an HF tokenizer.json equivalent to a Llama
/// (SentencePiece BPE, byte_fallback) tokenizer; encoding with it reproduces llama2.c's encode.
void write_llama2c_tokenizer_json(const std::string& bin_path, const std::string& out_json_path);
/// The number of entries of a llama2.c tokenizer.bin (validated as write_llama2c_tokenizer_json
/// reads it). llama2.c reads exactly the model's vocab_size entries, so the two must be equal.
std::size_t llama2c_tokenizer_entries(const std::string& bin_path);

/// The HF tokenizer.json equivalent to a GGUF file's tokenizer. Throws FormatError naming the
/// file and key for an unknown tokenizer.ggml.model / pre, missing merges, arrays whose lengths
/// differ from tokenizer.ggml.tokens, or special-token ids outside the vocabulary.
std::string gguf_tokenizer_json(const GgufFile& file);
/// tokenizer_config.json for it: bos/eos/unk/pad tokens, add_bos_token, add_eos_token,
/// chat_template.
std::string gguf_tokenizer_config_json(const GgufFile& file);
/// Writes tokenizer.json and tokenizer_config.json into `out_dir` (created when missing).
void write_gguf_tokenizer(const GgufFile& file, const std::string& out_dir);

}  // namespace peft::io
