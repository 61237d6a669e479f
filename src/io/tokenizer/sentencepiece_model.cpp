// SentencePiece tokenizer.model backend (libsentencepiece).
#include <sentencepiece_processor.h>

#include "io/tokenizer/components_impl.h"
#include "io/tokenizer/tokenizer_impl.h"

namespace peft::io::detail {
namespace {

class SentencePieceBackend : public TokenizerBackend {
 public:
  explicit SentencePieceBackend(const std::string& path) : path_(path) {
    auto st = sp_.Load(path);
    if (!st.ok()) {
      throw FormatError(peft::detail::str_cat(
          "[io::tokenizer] ", path, ": cannot load SentencePiece model: ", st.ToString()));
    }
    auto opt = [](int id) { return id >= 0 ? std::optional<TokenId>(id) : std::nullopt; };
    bos_id = opt(sp_.bos_id());
    eos_id = opt(sp_.eos_id());
    pad_id = opt(sp_.pad_id());
  }

  Encoding encode_raw(const std::string& text, TokenId type_id) const override {
    sentencepiece::ImmutableSentencePieceText spt;
    auto st = sp_.Encode(text, spt.mutable_proto());
    if (!st.ok()) {
      throw std::invalid_argument(peft::detail::str_cat(
          "[io::tokenizer] ", path_, ": SentencePiece encode failed: ", st.ToString()));
    }
    Encoding e;
    for (const auto& p : spt.pieces()) {
      e.ids.push_back(static_cast<TokenId>(p.id()));
      e.tokens.emplace_back(p.piece());
      e.offsets.emplace_back(p.begin(), p.end());
    }
    e.type_ids.assign(e.ids.size(), type_id);
    e.attention_mask.assign(e.ids.size(), 1);
    e.special_tokens_mask.assign(e.ids.size(), 0);
    return e;
  }

  /// LlamaTokenizer default: <s> A (and <s> B for pairs); no eos.
  Encoding post_process(std::vector<Encoding> encs, bool add_special) const override {
    Encoding out;
    for (std::size_t i = 0; i < encs.size(); ++i) {
      if (add_special && bos_id) {
        Encoding b;
        b.ids = {*bos_id};
        b.tokens = {sp_.IdToPiece(*bos_id)};
        b.type_ids = {static_cast<TokenId>(i)};
        b.attention_mask = {1};
        b.special_tokens_mask = {1};
        b.offsets = {{0, 0}};
        append_encoding(out, std::move(b));
      }
      append_encoding(out, std::move(encs[i]));
    }
    return out;
  }
  std::size_t added_tokens(bool is_pair) const override { return bos_id ? (is_pair ? 2 : 1) : 0; }

  std::string decode(const std::vector<TokenId>& ids, bool skip_special) const override {
    std::vector<int> v;
    for (TokenId id : ids) {
      if (id < 0 || id >= sp_.GetPieceSize()) continue;
      if (skip_special && sp_.IsControl(id)) continue;
      v.push_back(id);
    }
    std::string out;
    sp_.Decode(v, &out);
    return out;
  }
  std::optional<TokenId> token_to_id(const std::string& t) const override {
    int id = sp_.PieceToId(t);
    if (id == sp_.unk_id() && t != sp_.IdToPiece(id)) return std::nullopt;
    return id;
  }
  std::optional<std::string> id_to_token(TokenId id) const override {
    if (id < 0 || id >= sp_.GetPieceSize()) return std::nullopt;
    return sp_.IdToPiece(id);
  }
  std::size_t vocab_size() const override { return static_cast<std::size_t>(sp_.GetPieceSize()); }

 private:
  std::string path_;
  sentencepiece::SentencePieceProcessor sp_;
};

}  // namespace

std::shared_ptr<TokenizerBackend> load_sentencepiece(const std::string& path) {
  return std::make_shared<SentencePieceBackend>(path);
}

}  // namespace peft::io::detail
