// peft::io::Tokenizer: loading, special tokens from tokenizer_config.json, batching.
#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "io/tokenizer/components_impl.h"
#include "io/tokenizer/tokenizer_impl.h"
#include "peft/core/file_util.h"
#include "peft/core/json_file.h"
#include "peft/io/gguf.h"
#include "peft/io/model_path.h"

namespace peft::io {

namespace fs = std::filesystem;
using detail::TokenizerBackend;

Tokenizer::Tokenizer(std::shared_ptr<const TokenizerBackend> backend)
    : backend_(std::move(backend)),
      pad_id_(backend_->pad_id),
      bos_id_(backend_->bos_id),
      eos_id_(backend_->eos_id) {}

Tokenizer Tokenizer::from_file(const std::string& path) {
  return Tokenizer(detail::load_hf_tokenizer(read_file(path, JsonLimits{}.max_bytes), path));
}

Tokenizer Tokenizer::from_sentencepiece(const std::string& path) {
  return Tokenizer(detail::load_sentencepiece(path));
}

Tokenizer Tokenizer::from_llama2c(const std::string& path) {
  Tokenizer t(detail::load_hf_tokenizer(detail::llama2c_tokenizer_json(path), path));
  t.bos_id_ = 1;
  t.eos_id_ = 2;
  return t;
}

Tokenizer Tokenizer::from_pretrained(const std::string& dir) {
  fs::path d(dir);
  if (fs::is_regular_file(d) && is_gguf_file(dir)) return from_gguf(dir);  // a GGUF model file
  // What a model path can hold instead (a llama2.c checkpoint, a folder of them, an adapter):
  // one line saying what it is and what to do.
  const std::vector<ModelPathKind> models = {ModelPathKind::HfFolder, ModelPathKind::GgufModel};
  if (!fs::is_directory(d)) throw_model_path_error(detect_model_path(dir), models, "io::Tokenizer::from_pretrained");
  std::optional<Tokenizer> t;
  if (fs::exists(d / "tokenizer.json")) {
    t = from_file((d / "tokenizer.json").string());
  } else if (fs::exists(d / "tokenizer.model")) {
    t = from_sentencepiece((d / "tokenizer.model").string());
  } else if (fs::exists(d / "tokenizer.bin")) {
    t = from_llama2c((d / "tokenizer.bin").string());
  } else {
    const auto what = detect_model_path(dir);
    if (what.kind == ModelPathKind::Folder || what.kind == ModelPathKind::AdapterFolder)
      throw_model_path_error(what, models, "io::Tokenizer::from_pretrained");
    throw FormatError(
        peft::detail::str_cat("[io::Tokenizer::from_pretrained] '", dir,
                              "' has none of tokenizer.json, tokenizer.model, tokenizer.bin"));
  }
  if (fs::exists(d / "tokenizer_config.json")) {
    t->apply_config((d / "tokenizer_config.json").string());
  }
  return *t;
}

void Tokenizer::apply_config(const std::string& path) {
  const nlohmann::json j = read_json_file(path);
  PEFT_CHECK(j.is_object(), FormatError, "[io::tokenizer] ", path, ": expected a JSON object");
  auto special = [&](const char* key, std::optional<TokenId>& dst) {
    if (!j.contains(key) || j[key].is_null()) return;
    const auto& v = j[key];
    std::string content;
    if (v.is_string()) {
      content = v.get<std::string>();
    } else if (v.is_object() && v.contains("content") && v["content"].is_string()) {
      content = v["content"].get<std::string>();
    } else {
      throw FormatError(peft::detail::str_cat("[io::tokenizer] ", path, ": '", key,
                                              "' must be a string or an AddedToken object"));
    }
    auto id = backend_->token_to_id(content);
    PEFT_CHECK(id.has_value(), FormatError, "[io::tokenizer] ", path, ": ", key, " '", content,
               "' is not in the vocabulary");
    dst = id;
  };
  special("pad_token", pad_id_);
  special("bos_token", bos_id_);
  special("eos_token", eos_id_);
  if (j.contains("add_bos_token") && j["add_bos_token"].is_boolean()) {
    add_bos_ = j["add_bos_token"].get<bool>();
  }
  if (j.contains("add_eos_token") && j["add_eos_token"].is_boolean()) {
    add_eos_ = j["add_eos_token"].get<bool>();
  }
}

namespace {

void check_utf8(const std::string& text, const char* where) {
  auto bad = detail::find_invalid_utf8(text);
  PEFT_CHECK(bad == std::string::npos, std::invalid_argument, "[io::Tokenizer::", where,
             "] input is not valid UTF-8 (byte ", bad, "); decode it to UTF-8 first");
}

Encoding special_token(TokenId id, const std::string& tok, TokenId type_id) {
  Encoding e;
  e.ids = {id};
  e.tokens = {tok};
  e.type_ids = {type_id};
  e.attention_mask = {1};
  e.special_tokens_mask = {1};
  e.offsets = {{0, 0}};
  return e;
}

void truncate(Encoding& e, std::size_t n, Side side) {
  if (e.size() <= n) return;
  auto cut = [&](auto& v) {
    if (side == Side::Right) {
      v.resize(n);
    } else {
      v.erase(v.begin(), v.end() - static_cast<std::ptrdiff_t>(n));
    }
  };
  cut(e.ids);
  cut(e.type_ids);
  cut(e.attention_mask);
  cut(e.offsets);
  cut(e.tokens);
  cut(e.special_tokens_mask);
}

}  // namespace

Encoding Tokenizer::encode(const std::string& text, bool add_special_tokens) const {
  check_utf8(text, "encode");
  std::vector<Encoding> encs;
  encs.push_back(backend_->encode_raw(text, 0));
  if (add_bos_ || add_eos_) {  // tokenizer_config.json decides: [bos] A [eos]
    Encoding out;
    if (add_special_tokens && add_bos_.value_or(false) && bos_id_) {
      detail::append_encoding(out, special_token(*bos_id_, *id_to_token(*bos_id_), 0));
    }
    detail::append_encoding(out, std::move(encs[0]));
    if (add_special_tokens && add_eos_.value_or(false) && eos_id_) {
      detail::append_encoding(out, special_token(*eos_id_, *id_to_token(*eos_id_), 0));
    }
    return out;
  }
  return backend_->post_process(std::move(encs), add_special_tokens);
}

Encoding Tokenizer::encode_pair(const std::string& a, const std::string& b,
                                bool add_special_tokens) const {
  check_utf8(a, "encode_pair");
  check_utf8(b, "encode_pair");
  std::vector<Encoding> encs;
  encs.push_back(backend_->encode_raw(a, 0));
  encs.push_back(backend_->encode_raw(b, 1));
  if (add_bos_ || add_eos_) {
    Encoding out;
    for (TokenId t = 0; t < 2; ++t) {
      if (add_special_tokens && add_bos_.value_or(false) && bos_id_) {
        detail::append_encoding(out, special_token(*bos_id_, *id_to_token(*bos_id_), t));
      }
      detail::append_encoding(out, std::move(encs[t]));
      if (add_special_tokens && add_eos_.value_or(false) && eos_id_) {
        detail::append_encoding(out, special_token(*eos_id_, *id_to_token(*eos_id_), t));
      }
    }
    return out;
  }
  return backend_->post_process(std::move(encs), add_special_tokens);
}

std::vector<Encoding> Tokenizer::encode_batch(const std::vector<std::string>& texts,
                                              const BatchOptions& o) const {
  PEFT_CHECK(!o.truncation || o.max_length, ConfigError,
             "[io::Tokenizer::encode_batch] truncation=true needs max_length");
  PEFT_CHECK(o.padding != PaddingStrategy::MaxLength || o.max_length, ConfigError,
             "[io::Tokenizer::encode_batch] padding=max_length needs max_length");
  std::vector<Encoding> out;
  out.reserve(texts.size());
  std::size_t n_added = 0;
  if (o.add_special_tokens) {
    n_added = (add_bos_ || add_eos_)
                  ? static_cast<std::size_t>(add_bos_.value_or(false) && bos_id_) +
                        static_cast<std::size_t>(add_eos_.value_or(false) && eos_id_)
                  : backend_->added_tokens(false);
  }
  for (const auto& t : texts) {
    if (!o.truncation) {
      out.push_back(encode(t, o.add_special_tokens));
      continue;
    }
    check_utf8(t, "encode_batch");
    Encoding raw = backend_->encode_raw(t, 0);
    std::size_t keep = *o.max_length > n_added ? *o.max_length - n_added : 0;
    truncate(raw, keep, o.truncation_side);
    if (add_bos_ || add_eos_) {
      Encoding e;
      if (o.add_special_tokens && add_bos_.value_or(false) && bos_id_) {
        detail::append_encoding(e, special_token(*bos_id_, *id_to_token(*bos_id_), 0));
      }
      detail::append_encoding(e, std::move(raw));
      if (o.add_special_tokens && add_eos_.value_or(false) && eos_id_) {
        detail::append_encoding(e, special_token(*eos_id_, *id_to_token(*eos_id_), 0));
      }
      out.push_back(std::move(e));
    } else {
      std::vector<Encoding> encs;
      encs.push_back(std::move(raw));
      out.push_back(backend_->post_process(std::move(encs), o.add_special_tokens));
    }
  }
  if (o.padding == PaddingStrategy::None) return out;
  std::size_t target = 0;
  if (o.padding == PaddingStrategy::MaxLength) {
    target = *o.max_length;
  } else {
    for (auto& e : out) target = std::max(target, e.size());
  }
  if (o.pad_to_multiple_of && *o.pad_to_multiple_of > 0 && target % *o.pad_to_multiple_of != 0) {
    target += *o.pad_to_multiple_of - target % *o.pad_to_multiple_of;
  }
  std::optional<TokenId> pad = o.pad_id ? o.pad_id : pad_id_;
  PEFT_CHECK(pad.has_value(), ConfigError,
             "[io::Tokenizer::encode_batch] padding requested but the tokenizer has no pad token;"
             " set BatchOptions::pad_id");
  std::string pad_tok = id_to_token(*pad).value_or("");
  for (auto& e : out) {
    if (e.size() >= target) continue;
    std::size_t n = target - e.size();
    auto pad_vec = [&](auto& v, auto value) {
      if (o.padding_side == Side::Right) {
        v.insert(v.end(), n, value);
      } else {
        v.insert(v.begin(), n, value);
      }
    };
    pad_vec(e.ids, *pad);
    pad_vec(e.type_ids, TokenId{0});
    pad_vec(e.attention_mask, std::uint8_t{0});
    pad_vec(e.offsets, std::pair<std::size_t, std::size_t>{0, 0});
    pad_vec(e.tokens, pad_tok);
    pad_vec(e.special_tokens_mask, std::uint8_t{1});
  }
  return out;
}

std::string Tokenizer::decode(const std::vector<TokenId>& ids, bool skip_special_tokens) const {
  return backend_->decode(ids, skip_special_tokens);
}

std::optional<TokenId> Tokenizer::token_to_id(const std::string& token) const {
  return backend_->token_to_id(token);
}

std::optional<std::string> Tokenizer::id_to_token(TokenId id) const {
  return backend_->id_to_token(id);
}

std::size_t Tokenizer::vocab_size() const { return backend_->vocab_size(); }

}  // namespace peft::io
