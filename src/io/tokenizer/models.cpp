// tokenizer.json models: BPE, WordPiece, Unigram.
#include <cstdio>
#include <limits>
#include <mutex>
#include <queue>
#include <string_view>
#include <unordered_map>

#include "io/tokenizer/components_impl.h"

namespace peft::io::detail {
namespace {

using nlohmann::json;

/// Vocabulary token -> id with the reverse table (ids may be sparse).
struct Vocab {
  std::unordered_map<std::string, TokenId> to_id;
  std::vector<std::string> to_token;
  std::vector<bool> present;

  /// `id` comes checked by to_token_id: the reverse table is indexed by it, so a stray huge id
  /// would allocate gigabytes.
  void add(const std::string& t, TokenId id) {
    to_id[t] = id;
    if (static_cast<std::size_t>(id) >= to_token.size()) {
      to_token.resize(id + 1);
      present.resize(id + 1, false);
    }
    to_token[id] = t;
    present[id] = true;
  }
  std::optional<TokenId> find(const std::string& t) const {
    auto it = to_id.find(t);
    if (it == to_id.end()) return std::nullopt;
    return it->second;
  }
  std::optional<std::string> token(TokenId id) const {
    if (id < 0 || static_cast<std::size_t>(id) >= to_token.size() || !present[id]) {
      return std::nullopt;
    }
    return to_token[id];
  }
};

Vocab read_vocab_object(const json& j, const char* component, const LoadContext& ctx) {
  if (!j.is_object()) ctx.format_error(component, ": 'vocab' must be an object token -> id");
  Vocab v;
  v.to_id.reserve(j.size());
  for (auto it = j.begin(); it != j.end(); ++it) {
    v.add(it.key(), to_token_id(it.value(), component, "id of token '" + it.key() + "'", ctx));
  }
  return v;
}

std::string opt_string(const json& j, const char* key) {
  if (!j.contains(key) || j[key].is_null()) return {};
  return j[key].is_string() ? j[key].get<std::string>() : std::string();
}

// ------------------------------------------------------------------ BPE
class Bpe : public Model {
 public:
  Bpe(const json& j, const LoadContext& ctx) {
    const char* c = "model BPE";
    vocab_ = read_vocab_object(field(j, "vocab", c, ctx), c, ctx);
    unk_ = opt_string(j, "unk_token");
    prefix_ = opt_string(j, "continuing_subword_prefix");
    suffix_ = opt_string(j, "end_of_word_suffix");
    fuse_unk_ = get_bool(j, "fuse_unk", c, ctx, false);
    byte_fallback_ = get_bool(j, "byte_fallback", c, ctx, false);
    ignore_merges_ = get_bool(j, "ignore_merges", c, ctx, false);
    if (!unk_.empty()) unk_id_ = vocab_.find(unk_);
    for (int b = 0; b < 256; ++b) {
      char name[8];
      std::snprintf(name, sizeof(name), "<0x%02X>", b);
      auto id = vocab_.find(name);
      byte_ids_[b] = id ? *id : -1;
    }
    const json& merges = field(j, "merges", c, ctx);
    if (!merges.is_array()) ctx.format_error(c, ": 'merges' must be an array");
    merges_.reserve(merges.size() * 2);
    std::uint32_t rank = 0;
    for (auto& m : merges) {
      std::string a, b;
      if (m.is_string()) {
        const std::string& s = m.get_ref<const std::string&>();
        auto sp = s.find(' ');
        if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos) {
          ctx.format_error(c, ": merge ", rank, " '", s, "' is not of the form 'a b'");
        }
        a = s.substr(0, sp);
        b = s.substr(sp + 1);
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        a = m[0].get<std::string>();
        b = m[1].get<std::string>();
      } else {
        ctx.format_error(c, ": merge ", rank, " must be \"a b\" or [\"a\", \"b\"], got ", m.dump());
      }
      auto ia = vocab_.find(a), ib = vocab_.find(b);
      if (!ia || !ib) {
        ctx.format_error(c, ": merge ", rank, " references token '", ia ? b : a,
                         "' which is not in the vocab");
      }
      std::string merged = a + (b.size() >= prefix_.size() ? b.substr(prefix_.size()) : b);
      auto in = vocab_.find(merged);
      if (!in) {
        ctx.format_error(c, ": merge ", rank, " produces token '", merged,
                         "' which is not in the vocab");
      }
      merges_[key(*ia, *ib)] = {rank, *in};
      ++rank;
    }
  }

  void tokenize(const std::string& s, std::vector<Token>& out) const override {
    if (s.empty()) return;
    if (ignore_merges_) {
      if (auto id = vocab_.find(s)) {
        out.push_back({*id, s, 0, s.size()});
        return;
      }
    }
    std::vector<std::pair<TokenId, std::size_t>> word;  // (id, byte length)
    {
      std::lock_guard<std::mutex> lock(cache_mu_);
      auto it = cache_.find(s);
      if (it != cache_.end()) word = it->second;
    }
    if (word.empty()) {
      word = merge_word(s);
      if (s.size() < 256) {
        std::lock_guard<std::mutex> lock(cache_mu_);
        if (cache_.size() >= 20000) cache_.clear();
        cache_.emplace(s, word);
      }
    }
    std::size_t pos = 0;
    for (auto [id, len] : word) {
      out.push_back({id, vocab_.to_token[id], pos, pos + len});
      pos += len;
    }
  }

  std::optional<TokenId> token_to_id(const std::string& t) const override { return vocab_.find(t); }
  std::optional<std::string> id_to_token(TokenId id) const override { return vocab_.token(id); }
  std::size_t vocab_size() const override { return vocab_.to_id.size(); }

 private:
  struct Symbol {
    TokenId id;
    std::ptrdiff_t prev, next;
    std::size_t len;
  };
  struct Merge {
    std::uint32_t rank;
    std::size_t pos;
    TokenId new_id;
    bool operator>(const Merge& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  static std::uint64_t key(TokenId a, TokenId b) {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(a)) << 32) |
           static_cast<std::uint32_t>(b);
  }
  const std::pair<std::uint32_t, TokenId>* find_merge(TokenId a, TokenId b) const {
    auto it = merges_.find(key(a, b));
    return it == merges_.end() ? nullptr : &it->second;
  }

  std::vector<std::pair<TokenId, std::size_t>> merge_word(const std::string& w) const {
    std::vector<Symbol> sym;
    sym.reserve(w.size());
    auto add = [&](TokenId id, std::size_t len) {
      std::ptrdiff_t n = static_cast<std::ptrdiff_t>(sym.size());
      sym.push_back({id, n - 1, -1, len});
      if (n > 0) sym[n - 1].next = n;
    };
    bool has_unk = false;  // a pending (possibly fused) unk: (unk_tok, unk_len)
    TokenId unk_tok = 0;
    std::size_t unk_len = 0;
    std::string piece;
    for (std::size_t i = 0; i < w.size();) {
      std::size_t n = utf8_len(static_cast<unsigned char>(w[i]));
      piece.assign(w, i, n);
      if (i > 0 && !prefix_.empty()) piece.insert(0, prefix_);
      if (i + n >= w.size() && !suffix_.empty()) piece += suffix_;
      auto id = vocab_.find(piece);
      if (id) {
        if (has_unk) {
          add(unk_tok, unk_len);
          has_unk = false;
        }
        add(*id, n);
      } else {
        bool done = false;
        if (byte_fallback_) {
          bool all = true;
          for (unsigned char b : piece) all = all && byte_ids_[b] >= 0;
          if (all) {  // like HF, a pending unk stays pending until an in-vocab piece
            for (unsigned char b : piece) add(byte_ids_[b], 1);
            done = true;
          }
        }
        if (!done && unk_id_) {
          if (has_unk && fuse_unk_) {
            unk_len += n;
          } else {
            if (has_unk) add(unk_tok, unk_len);
            has_unk = true;
            unk_tok = *unk_id_;
            unk_len = n;
          }
        }
      }
      i += n;
    }
    if (has_unk) add(unk_tok, unk_len);

    std::priority_queue<Merge, std::vector<Merge>, std::greater<Merge>> queue;
    for (std::size_t i = 0; i + 1 < sym.size(); ++i) {
      if (auto m = find_merge(sym[i].id, sym[i + 1].id)) queue.push({m->first, i, m->second});
    }
    while (!queue.empty()) {
      Merge top = queue.top();
      queue.pop();
      Symbol& cur = sym[top.pos];
      if (cur.len == 0 || cur.next == -1) continue;
      std::size_t next_pos = static_cast<std::size_t>(cur.next);
      Symbol right = sym[next_pos];
      auto m = find_merge(cur.id, right.id);
      if (m == nullptr || m->second != top.new_id) continue;
      cur.id = top.new_id;
      cur.len += right.len;
      cur.next = right.next;
      sym[next_pos].len = 0;
      if (right.next >= 0) sym[right.next].prev = static_cast<std::ptrdiff_t>(top.pos);
      if (cur.prev >= 0) {
        if (auto pm = find_merge(sym[cur.prev].id, cur.id)) {
          queue.push({pm->first, static_cast<std::size_t>(cur.prev), pm->second});
        }
      }
      if (cur.next >= 0) {
        if (auto nm = find_merge(cur.id, sym[cur.next].id)) {
          queue.push({nm->first, top.pos, nm->second});
        }
      }
    }
    std::vector<std::pair<TokenId, std::size_t>> out;
    for (auto& s : sym) {
      if (s.len != 0) out.emplace_back(s.id, s.len);
    }
    return out;
  }

  Vocab vocab_;
  std::unordered_map<std::uint64_t, std::pair<std::uint32_t, TokenId>> merges_;
  std::string unk_, prefix_, suffix_;
  std::optional<TokenId> unk_id_;
  bool fuse_unk_ = false, byte_fallback_ = false, ignore_merges_ = false;
  TokenId byte_ids_[256];
  mutable std::mutex cache_mu_;
  mutable std::unordered_map<std::string, std::vector<std::pair<TokenId, std::size_t>>> cache_;
};

// ------------------------------------------------------------------ WordPiece
class WordPiece : public Model {
 public:
  WordPiece(const json& j, const LoadContext& ctx) {
    const char* c = "model WordPiece";
    vocab_ = read_vocab_object(field(j, "vocab", c, ctx), c, ctx);
    unk_ = get_string(j, "unk_token", c, ctx, std::string("[UNK]"));
    prefix_ = get_string(j, "continuing_subword_prefix", c, ctx, std::string("##"));
    if (j.contains("max_input_chars_per_word") && !j["max_input_chars_per_word"].is_null()) {
      if (!j["max_input_chars_per_word"].is_number_unsigned()) {
        ctx.format_error(c, ": 'max_input_chars_per_word' must be a non-negative integer");
      }
      max_chars_ = j["max_input_chars_per_word"].get<std::size_t>();
    }
    auto u = vocab_.find(unk_);
    if (!u) ctx.format_error(c, ": unk_token '", unk_, "' is not in the vocab");
    unk_id_ = *u;
  }

  void tokenize(const std::string& s, std::vector<Token>& out) const override {
    std::size_t nchars = 0;
    for (std::size_t i = 0; i < s.size(); i += utf8_len(static_cast<unsigned char>(s[i]))) {
      ++nchars;
    }
    if (nchars > max_chars_) {
      out.push_back({unk_id_, unk_, 0, s.size()});
      return;
    }
    std::size_t first = out.size();
    std::size_t start = 0;
    std::string sub;
    while (start < s.size()) {
      std::size_t end = s.size();
      bool found = false;
      while (start < end) {
        sub.clear();
        if (start > 0) sub = prefix_;
        sub.append(s, start, end - start);
        if (auto id = vocab_.find(sub)) {
          out.push_back({*id, sub, start, end});
          found = true;
          break;
        }
        do {
          --end;
        } while (end > start && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80);
      }
      if (!found) {
        out.resize(first);
        out.push_back({unk_id_, unk_, 0, s.size()});
        return;
      }
      start = end;
    }
  }

  std::optional<TokenId> token_to_id(const std::string& t) const override { return vocab_.find(t); }
  std::optional<std::string> id_to_token(TokenId id) const override { return vocab_.token(id); }
  std::size_t vocab_size() const override { return vocab_.to_id.size(); }

 private:
  Vocab vocab_;
  std::string unk_, prefix_;
  TokenId unk_id_ = 0;
  std::size_t max_chars_ = 100;
};

// ------------------------------------------------------------------ Unigram
class Unigram : public Model {
 public:
  Unigram(const json& j, const LoadContext& ctx) : ctx_(ctx) {
    const char* c = "model Unigram";
    const json& v = field(j, "vocab", c, ctx);
    if (!v.is_array()) ctx.format_error(c, ": 'vocab' must be an array of [piece, score]");
    pieces_.reserve(v.size());
    for (auto& e : v) {
      if (!e.is_array() || e.size() != 2 || !e[0].is_string() || !e[1].is_number()) {
        ctx.format_error(c, ": vocab entry ", pieces_.size(), " is not [piece, score]: ", e.dump());
      }
      pieces_.push_back({e[0].get<std::string>(), e[1].get<double>()});
    }
    min_score_ = std::numeric_limits<double>::infinity();
    for (std::size_t i = 0; i < pieces_.size(); ++i) {
      to_id_[pieces_[i].first] = static_cast<TokenId>(i);
      min_score_ = std::min(min_score_, pieces_[i].second);
      max_len_ = std::max(max_len_, pieces_[i].first.size());
    }
    if (j.contains("unk_id") && !j["unk_id"].is_null()) {
      if (!j["unk_id"].is_number_unsigned() || j["unk_id"].get<std::size_t>() >= pieces_.size()) {
        ctx.format_error(c, ": unk_id ", j["unk_id"].dump(), " is not an index into the vocab (",
                         pieces_.size(), " pieces)");
      }
      unk_id_ = to_token_id(j["unk_id"], c, "unk_id", ctx);
    }
    byte_fallback_ = get_bool(j, "byte_fallback", c, ctx, false);
  }

  void tokenize(const std::string& s, std::vector<Token>& out) const override {
    if (s.empty()) return;
    struct Node {
      TokenId id = 0;
      double score = 0;
      std::ptrdiff_t start = -1;
    };
    const double unk_score = min_score_ - 10.0;
    std::vector<Node> best(s.size() + 1);
    for (std::size_t st = 0; st < s.size();) {
      double here = best[st].score;
      std::size_t mblen = utf8_len(static_cast<unsigned char>(s[st]));
      bool single = false;
      std::size_t lim = std::min(max_len_, s.size() - st);
      for (std::size_t len = 1; len <= lim; ++len) {
        auto it = to_id_.find(std::string_view(s.data() + st, len));
        if (it == to_id_.end()) continue;
        Node& t = best[st + len];
        double cand = here + pieces_[it->second].second;
        if (t.start < 0 || cand > t.score) t = {it->second, cand, static_cast<std::ptrdiff_t>(st)};
        if (len == mblen) single = true;
      }
      if (!single) {
        if (!unk_id_) {  // HF tokenizers fails the same way (Unigram's MissingUnkId)
          ctx_.format_error("model Unigram: cannot encode '", s.substr(st, mblen),
                            "': no piece holds it and the model has no unk_id");
        }
        Node& t = best[st + mblen];
        double cand = here + unk_score;
        if (t.start < 0 || cand > t.score) t = {*unk_id_, cand, static_cast<std::ptrdiff_t>(st)};
      }
      st += mblen;
    }
    // Backtrack (right to left), then fuse consecutive unknown pieces (HF fuse_unk = true).
    std::vector<Range> rev;
    for (std::size_t e = s.size(); e > 0; e = static_cast<std::size_t>(best[e].start)) {
      rev.push_back({static_cast<std::size_t>(best[e].start), e});
    }
    std::vector<Range> merged;  // (begin, end) left to right
    bool prev_unk = false;
    for (auto it = rev.rbegin(); it != rev.rend(); ++it) {
      bool is_unk = unk_id_ && best[it->second].id == *unk_id_;
      if (is_unk && prev_unk) {
        merged.back().second = it->second;
      } else {
        merged.push_back(*it);
      }
      prev_unk = is_unk;
    }
    for (auto [b, e] : merged) {
      std::string piece = s.substr(b, e - b);
      auto it = to_id_.find(std::string_view(piece));
      if (it != to_id_.end()) {
        out.push_back({it->second, piece, b, e});
        continue;
      }
      if (byte_fallback_) {
        std::vector<Token> bytes;
        for (unsigned char ch : piece) {
          char name[8];
          std::snprintf(name, sizeof(name), "<0x%02X>", ch);
          auto bt = to_id_.find(std::string_view(name));
          if (bt == to_id_.end()) break;
          bytes.push_back({bt->second, name, b, e});
        }
        if (bytes.size() == piece.size()) {
          out.insert(out.end(), bytes.begin(), bytes.end());
          continue;
        }
      }
      out.push_back({*unk_id_, piece, b, e});
    }
  }

  std::optional<TokenId> token_to_id(const std::string& t) const override {
    auto it = to_id_.find(std::string_view(t));
    if (it == to_id_.end()) return std::nullopt;
    return it->second;
  }
  std::optional<std::string> id_to_token(TokenId id) const override {
    if (id < 0 || static_cast<std::size_t>(id) >= pieces_.size()) return std::nullopt;
    return pieces_[id].first;
  }
  std::size_t vocab_size() const override { return pieces_.size(); }

 private:
  std::vector<std::pair<std::string, double>> pieces_;
  std::unordered_map<std::string_view, TokenId> to_id_;  // views into pieces_
  LoadContext ctx_;  // names the file in encoding errors
  double min_score_ = 0;
  std::size_t max_len_ = 0;
  std::optional<TokenId> unk_id_;
  bool byte_fallback_ = false;
};

}  // namespace

std::unique_ptr<Model> make_model(const json& j, const LoadContext& ctx) {
  if (!j.is_object()) ctx.format_error("'model' must be an object");
  std::string type;
  if (j.contains("type")) {
    type = type_of(j, "model", ctx);
  } else if (j.contains("merges")) {  // older files omit the type
    type = "BPE";
  } else if (j.contains("vocab") && j["vocab"].is_array()) {
    type = "Unigram";
  } else {
    ctx.format_error("model has no 'type'");
  }
  if (type == "BPE") return std::make_unique<Bpe>(j, ctx);
  if (type == "WordPiece") return std::make_unique<WordPiece>(j, ctx);
  if (type == "Unigram") return std::make_unique<Unigram>(j, ctx);
  ctx.not_supported("model type '", type,
                    "' is not supported (supported: BPE, WordPiece, Unigram)");
}

}  // namespace peft::io::detail
