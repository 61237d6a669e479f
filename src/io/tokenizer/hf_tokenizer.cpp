// The tokenizer.json pipeline: added tokens, normalizer, pre-tokenizer, model, post-processor,
// decoder (HF tokenizers' Tokenizer::encode / decode).
#include <algorithm>
#include <unordered_map>
#include <unordered_set>

#include "io/tokenizer/components_impl.h"
#include "peft/core/json_file.h"
#include "io/tokenizer/tokenizer_impl.h"

namespace peft::io::detail {
namespace {

using nlohmann::json;

struct AddedToken {
  TokenId id;
  std::string content;
  bool single_word = false, lstrip = false, rstrip = false, normalized = true, special = false;
  std::string match;  // content, normalised when `normalized`
};

/// Leftmost-longest matcher over a set of added tokens.
class AddedMatcher {
 public:
  void add(const AddedToken* t) {
    if (t->match.empty()) return;
    by_first_[static_cast<unsigned char>(t->match[0])].push_back(t);
    any_ = true;
  }
  bool empty() const { return !any_; }
  /// Splits `n` into pieces; matched pieces carry the added token.
  void split(NormalizedString&& n, std::vector<Split>& out) const {
    const std::string& s = n.text;
    if (!any_ || s.empty()) {
      out.push_back({std::move(n), std::nullopt});
      return;
    }
    std::size_t start_offset = 0;
    std::vector<std::pair<Range, const AddedToken*>> pieces;
    for (std::size_t i = 0; i < s.size();) {
      const AddedToken* best = nullptr;
      auto it = by_first_.find(static_cast<unsigned char>(s[i]));
      if (it != by_first_.end()) {
        for (const AddedToken* t : it->second) {
          if (s.compare(i, t->match.size(), t->match) == 0 &&
              (!best || t->match.size() > best->match.size())) {
            best = t;
          }
        }
      }
      if (!best) {
        ++i;
        continue;
      }
      std::size_t start = i, stop = i + best->match.size();
      i = stop;
      if (best->single_word) {
        bool start_space = start == 0 || !ends_with_word(s, start);
        bool stop_space = stop == s.size() || !is_word_char(decode_utf8(s, stop));
        if (!start_space || !stop_space) continue;
      }
      if (best->lstrip) {
        std::size_t b = start;
        while (b > 0) {
          std::size_t k = b - 1;
          while (k > 0 && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
          if (!is_whitespace(decode_utf8(s, k))) break;
          b = k;
        }
        start = std::max(b, start_offset);
      }
      if (best->rstrip) {
        while (stop < s.size() && is_whitespace(decode_utf8(s, stop))) {
          stop += utf8_len(static_cast<unsigned char>(s[stop]));
        }
        i = stop;
      }
      if (start_offset < start) pieces.push_back({{start_offset, start}, nullptr});
      pieces.push_back({{start, stop}, best});
      start_offset = stop;
    }
    if (start_offset < s.size()) pieces.push_back({{start_offset, s.size()}, nullptr});
    for (auto& [r, t] : pieces) {
      NormalizedString piece = n.slice(r.first, r.second);
      if (t) {
        std::string value = piece.text;
        std::size_t len = value.size();
        out.push_back({std::move(piece), std::vector<Token>{{t->id, std::move(value), 0, len}}});
      } else {
        out.push_back({std::move(piece), std::nullopt});
      }
    }
  }

 private:
  static bool ends_with_word(const std::string& s, std::size_t end) {
    std::size_t k = end - 1;
    while (k > 0 && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
    return is_word_char(decode_utf8(s, k));
  }
  std::unordered_map<unsigned char, std::vector<const AddedToken*>> by_first_;
  bool any_ = false;
};

class HfTokenizer : public TokenizerBackend {
 public:
  HfTokenizer(const json& j, const std::string& file) {
    ctx_.file = file;
    if (!j.is_object()) ctx_.format_error("top level must be a JSON object");
    normalizer_ = make_normalizer(j.value("normalizer", json()), ctx_);
    pre_tokenizer_ = make_pre_tokenizer(j.value("pre_tokenizer", json()), ctx_);
    if (!j.contains("model")) ctx_.format_error("missing 'model'");
    model_ = make_model(j["model"], ctx_);
    post_processor_ = make_post_processor(j.value("post_processor", json()), ctx_);
    decoder_ = make_decoder(j.value("decoder", json()), ctx_);
    load_added_tokens(j.value("added_tokens", json::array()));
    const json& pad = j.value("padding", json());
    if (pad.is_object() && pad.contains("pad_id") && pad["pad_id"].is_number_integer()) {
      pad_id = to_token_id(pad["pad_id"], "padding", "pad_id", ctx_);
    }
  }

  Encoding encode_raw(const std::string& text, TokenId type_id) const override {
    std::vector<Split> splits;
    non_normalized_.split(NormalizedString::from_original(text), splits);
    PreTokenizedString pre;
    for (auto& s : splits) {
      if (s.tokens) {
        pre.splits.push_back(std::move(s));
        continue;
      }
      if (normalizer_) normalizer_->normalize(s.normalized);
      normalized_.split(std::move(s.normalized), pre.splits);
    }
    if (pre_tokenizer_) pre_tokenizer_->pre_tokenize(pre);
    Encoding e;
    std::vector<Token> toks;
    for (auto& s : pre.splits) {
      if (!s.tokens) {
        toks.clear();
        if (!s.normalized.empty()) model_->tokenize(s.normalized.text, toks);
      }
      const std::vector<Token>& ts = s.tokens ? *s.tokens : toks;
      for (const Token& t : ts) {
        e.ids.push_back(t.id);
        e.tokens.push_back(t.value);
        e.offsets.push_back(s.normalized.to_original(t.begin, t.end));
      }
    }
    e.type_ids.assign(e.ids.size(), type_id);
    e.attention_mask.assign(e.ids.size(), 1);
    e.special_tokens_mask.assign(e.ids.size(), 0);
    if (post_processor_) post_processor_->trim(e, text);
    return e;
  }

  Encoding post_process(std::vector<Encoding> encs, bool add_special) const override {
    if (post_processor_) post_processor_->process(encs, add_special);
    Encoding out = std::move(encs[0]);
    for (std::size_t i = 1; i < encs.size(); ++i) append_encoding(out, std::move(encs[i]));
    return out;
  }

  std::size_t added_tokens(bool is_pair) const override {
    return post_processor_ ? post_processor_->added_tokens(is_pair) : 0;
  }

  std::string decode(const std::vector<TokenId>& ids, bool skip_special) const override {
    std::vector<std::string> tokens;
    tokens.reserve(ids.size());
    for (TokenId id : ids) {
      std::optional<std::string> t;
      auto it = added_by_id_.find(id);
      if (it != added_by_id_.end()) {
        t = it->second->match;
      } else {
        t = model_->id_to_token(id);
      }
      if (!t) continue;
      if (skip_special && special_set_.count(*t)) continue;
      tokens.push_back(std::move(*t));
    }
    if (!decoder_) {
      std::string s;
      for (std::size_t i = 0; i < tokens.size(); ++i) s += (i ? " " : "") + tokens[i];
      return s;
    }
    decoder_->decode_chain(tokens);
    std::string s;
    for (auto& t : tokens) s += t;
    return s;
  }

  std::optional<TokenId> token_to_id(const std::string& t) const override {
    auto it = added_by_content_.find(t);
    if (it != added_by_content_.end()) return it->second;
    return model_->token_to_id(t);
  }
  std::optional<std::string> id_to_token(TokenId id) const override {
    auto it = added_by_id_.find(id);
    if (it != added_by_id_.end()) return it->second->content;
    return model_->id_to_token(id);
  }
  std::size_t vocab_size() const override {
    std::size_t n = model_->vocab_size();
    for (auto& t : added_) {
      if (!model_->id_to_token(t.id)) ++n;
    }
    return n;
  }

 private:
  void load_added_tokens(const json& arr) {
    const char* c = "added_tokens";
    if (!arr.is_array()) ctx_.format_error("'added_tokens' must be an array");
    added_.reserve(arr.size());
    for (auto& a : arr) {
      if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer()) {
        ctx_.format_error(c, ": each entry needs an integer 'id', got ", a.dump());
      }
      AddedToken t;
      t.id = to_token_id(a["id"], c, "id", ctx_);
      t.content = get_string(a, "content", c, ctx_);
      t.special = get_bool(a, "special", c, ctx_, false);
      t.single_word = get_bool(a, "single_word", c, ctx_, false);
      t.lstrip = get_bool(a, "lstrip", c, ctx_, false);
      t.rstrip = get_bool(a, "rstrip", c, ctx_, false);
      t.normalized = get_bool(a, "normalized", c, ctx_, !t.special);
      t.match = t.content;
      if (t.normalized && normalizer_) {
        NormalizedString n = NormalizedString::from_original(t.content);
        normalizer_->normalize(n);
        t.match = n.text;
      }
      added_.push_back(std::move(t));
    }
    for (auto& t : added_) {
      added_by_id_[t.id] = &t;
      added_by_content_[t.content] = t.id;
      if (t.special) special_set_.insert(t.content);
      (t.normalized ? normalized_ : non_normalized_).add(&t);
    }
  }

  LoadContext ctx_;
  std::unique_ptr<Normalizer> normalizer_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<PostProcessor> post_processor_;
  std::unique_ptr<Decoder> decoder_;
  std::vector<AddedToken> added_;
  std::unordered_map<TokenId, const AddedToken*> added_by_id_;
  std::unordered_map<std::string, TokenId> added_by_content_;
  std::unordered_set<std::string> special_set_;
  AddedMatcher non_normalized_, normalized_;
};

}  // namespace

std::shared_ptr<TokenizerBackend> load_hf_tokenizer(const std::string& json_text,
                                                    const std::string& file) {
  const json j = parse_json(json_text, file);
  try {
    return std::make_shared<HfTokenizer>(j, file);
  } catch (const json::exception& e) {  // a wrongly typed field deep inside a component
    throw FormatError(
        peft::detail::str_cat("[io::tokenizer] ", file, ": malformed field: ", e.what()));
  }
}

}  // namespace peft::io::detail
