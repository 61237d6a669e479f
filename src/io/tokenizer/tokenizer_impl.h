#pragma once
// Backend interface behind peft::io::Tokenizer (tokenizer.json pipeline, SentencePiece).
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "peft/io/tokenizer.h"

namespace peft::io::detail {

class TokenizerBackend {
 public:
  virtual ~TokenizerBackend() = default;
  /// Encodes one sequence without special tokens (before truncation/post-processing).
  virtual Encoding encode_raw(const std::string& text, TokenId type_id) const = 0;
  /// Adds special tokens (when asked) and merges 1 or 2 encodings into one.
  virtual Encoding post_process(std::vector<Encoding> encs, bool add_special_tokens) const = 0;
  virtual std::size_t added_tokens(bool is_pair) const = 0;
  virtual std::string decode(const std::vector<TokenId>& ids, bool skip_special) const = 0;
  virtual std::optional<TokenId> token_to_id(const std::string& t) const = 0;
  virtual std::optional<std::string> id_to_token(TokenId id) const = 0;
  virtual std::size_t vocab_size() const = 0;

  /// Defaults known from the file itself (tokenizer.json "padding", SentencePiece ids).
  std::optional<TokenId> pad_id, bos_id, eos_id;
};

/// Parses tokenizer.json text; `file` names it in error messages.
std::shared_ptr<TokenizerBackend> load_hf_tokenizer(const std::string& json_text,
                                                    const std::string& file);
/// A SentencePiece .model (NotSupported when built without libsentencepiece).
std::shared_ptr<TokenizerBackend> load_sentencepiece(const std::string& path);
/// BPE merges of a SentencePiece vocabulary with scores (HF's SentencePieceExtractor, which also
/// reproduces llama.cpp's llm_tokenizer_spm): every split of a piece into two pieces of `vocab`,
/// ranked by the whole piece's score (highest first), then by the ids of the halves.
/// `vocab` maps each piece to its id (first occurrence); scores are indexed by id.
std::vector<std::pair<TokenId, TokenId>> sentencepiece_merges(
    const std::vector<std::pair<std::string, TokenId>>& vocab, const std::vector<float>& scores);
/// The tokenizer.json text equivalent to a llama2.c tokenizer.bin.
std::string llama2c_tokenizer_json(const std::string& bin_path);

}  // namespace peft::io::detail
