#include "peft/train/metrics.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <stdexcept>
#include <tuple>
#include <unordered_map>

#include "peft/core/check.h"

namespace peft::train {

namespace {

// ------------------------------------------------------------------ UTF-8 helpers
// Inputs are UTF-8; invalid bytes are treated as single non-space characters (Python would
// have rejected them when decoding, so any consistent choice is fine).

/// Decodes the code point at s[i]; sets `len` to its byte length.
uint32_t decode_utf8(const std::string& s, size_t i, size_t& len) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  auto cont = [&](size_t k) {
    return i + k < s.size() && (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
  };
  auto cb = [&](size_t k) { return static_cast<uint32_t>(static_cast<unsigned char>(s[i + k]) & 0x3F); };
  if (b0 < 0x80) {
    len = 1;
    return b0;
  }
  if ((b0 & 0xE0) == 0xC0 && cont(1)) {
    len = 2;
    return ((b0 & 0x1Fu) << 6) | cb(1);
  }
  if ((b0 & 0xF0) == 0xE0 && cont(1) && cont(2)) {
    len = 3;
    return ((b0 & 0x0Fu) << 12) | (cb(1) << 6) | cb(2);
  }
  if ((b0 & 0xF8) == 0xF0 && cont(1) && cont(2) && cont(3)) {
    len = 4;
    return ((b0 & 0x07u) << 18) | (cb(1) << 12) | (cb(2) << 6) | cb(3);
  }
  len = 1;
  return 0xFFFD;
}

/// Python's str.isspace().
bool is_py_space(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

/// Python's str.split() with no separator: runs of Unicode whitespace separate tokens.
std::vector<std::string> py_split(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  for (size_t i = 0; i < s.size();) {
    size_t len = 1;
    const uint32_t c = decode_utf8(s, i, len);
    if (is_py_space(c)) {
      if (!cur.empty()) out.push_back(std::move(cur));
      cur.clear();
    } else {
      cur.append(s, i, len);
    }
    i += len;
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

/// Python's str.rstrip() with no argument.
std::string py_rstrip(const std::string& s) {
  size_t end = 0;  // one past the last non-space character
  for (size_t i = 0; i < s.size();) {
    size_t len = 1;
    const uint32_t c = decode_utf8(s, i, len);
    i += len;
    if (!is_py_space(c)) end = i;
  }
  return s.substr(0, end);
}

/// Python's str.replace(from, to) (all non-overlapping occurrences, left to right).
std::string replace_all(const std::string& s, const std::string& from, const std::string& to) {
  std::string out;
  size_t pos = 0;
  for (size_t hit; (hit = s.find(from, pos)) != std::string::npos; pos = hit + from.size()) {
    out.append(s, pos, hit - pos);
    out += to;
  }
  out.append(s, pos, std::string::npos);
  return out;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

/// re.sub for a two-character pattern ([a])([b]) -> replacement built from the two matched
/// characters. Working on bytes is equivalent to Python's code points here because every class
/// that is not "[^0-9]" is ASCII-only, and UTF-8 continuation bytes never match an ASCII class.
template <typename First, typename Second, typename Emit>
std::string sub_pair(const std::string& s, First first, Second second, Emit emit) {
  std::string out;
  out.reserve(s.size() + s.size() / 4);
  size_t i = 0;
  while (i < s.size()) {
    if (i + 1 < s.size() && first(s[i]) && second(s[i + 1])) {
      emit(out, s[i], s[i + 1]);
      i += 2;
    } else {
      out += s[i++];
    }
  }
  return out;
}

// ------------------------------------------------------------------ BLEU helpers

constexpr int kMaxOrder = 4;

/// n-gram counts of a tokenised segment (tokens never contain spaces, so space-joined keys are
/// unambiguous and distinct across orders).
std::unordered_map<std::string, int64_t> ngram_counts(const std::vector<std::string>& toks) {
  std::unordered_map<std::string, int64_t> counts;
  for (int n = 1; n <= kMaxOrder; ++n) {
    for (size_t i = 0; i + n <= toks.size(); ++i) {
      std::string key = toks[i];
      for (int k = 1; k < n; ++k) key += ' ' + toks[i + k];
      ++counts[key];
    }
  }
  return counts;
}

/// sacrebleu.utils.my_log
double my_log(double x) { return x == 0.0 ? -9999999999.0 : std::log(x); }

// ------------------------------------------------------------------ seqeval helpers

struct Chunk {
  std::string type;
  int64_t begin, end;
  bool operator<(const Chunk& o) const { return std::tie(type, begin, end) < std::tie(o.type, o.begin, o.end); }
};

bool end_of_chunk(char prev_tag, char tag, const std::string& prev_type, const std::string& type) {
  bool end = false;
  if (prev_tag == 'E' || prev_tag == 'S') end = true;
  if (prev_tag == 'B' && (tag == 'B' || tag == 'S' || tag == 'O')) end = true;
  if (prev_tag == 'I' && (tag == 'B' || tag == 'S' || tag == 'O')) end = true;
  if (prev_tag != 'O' && prev_tag != '.' && prev_type != type) end = true;
  return end;
}

bool start_of_chunk(char prev_tag, char tag, const std::string& prev_type, const std::string& type) {
  bool start = false;
  if (tag == 'B' || tag == 'S') start = true;
  if (prev_tag == 'E' && (tag == 'E' || tag == 'I')) start = true;
  if (prev_tag == 'S' && (tag == 'E' || tag == 'I')) start = true;
  if (prev_tag == 'O' && (tag == 'E' || tag == 'I')) start = true;
  if (tag != 'O' && tag != '.' && prev_type != type) start = true;
  return start;
}

/// seqeval.metrics.sequence_labeling.get_entities over the sentences joined with "O" (prefix
/// tags, suffix=False). A non-ASCII first character is never a tag letter, so it maps to '\0'.
std::set<Chunk> get_entities(const std::vector<std::vector<std::string>>& sents) {
  std::set<Chunk> chunks;
  char prev_tag = 'O';
  std::string prev_type;  // '' initially, as in seqeval
  int64_t begin = 0, i = 0;
  auto step = [&](const std::string& label) {
    size_t len = 1;
    const uint32_t c0 = decode_utf8(label, 0, len);
    const char tag = c0 < 0x80 ? static_cast<char>(c0) : '\0';
    // type_ = chunk[1:].split('-', maxsplit=1)[-1] or '_'
    const std::string rest = label.substr(len);
    const size_t dash = rest.find('-');
    std::string type = dash == std::string::npos ? rest : rest.substr(dash + 1);
    if (type.empty()) type = "_";
    if (end_of_chunk(prev_tag, tag, prev_type, type)) chunks.insert({prev_type, begin, i - 1});
    if (start_of_chunk(prev_tag, tag, prev_type, type)) begin = i;
    prev_tag = tag;
    prev_type = std::move(type);
    ++i;
  };
  for (size_t s = 0; s < sents.size(); ++s) {
    for (const auto& label : sents[s]) {
      PEFT_CHECK(!label.empty(), std::invalid_argument, "[train::entity_f1] sentence ", s,
                 " contains an empty tag; expected tags like 'O', 'B-PER', 'I-LOC'.");
      step(label);
    }
    step("O");  // seqeval appends 'O' to each sentence when flattening
  }
  step("O");  // and one more to close the last chunk
  return chunks;
}

template <typename A, typename B>
void check_same_size(const char* where, const char* a_name, const A& a, const char* b_name, const B& b) {
  PEFT_CHECK(a.size() == b.size(), std::invalid_argument, "[train::", where, "] ", a_name, " has ", a.size(),
             " elements but ", b_name, " has ", b.size(), "; they must be the same length.");
}

}  // namespace

// ------------------------------------------------------------------ classification

double accuracy(const std::vector<int64_t>& pred, const std::vector<int64_t>& gold) {
  check_same_size("accuracy", "pred", pred, "gold", gold);
  PEFT_CHECK(!gold.empty(), std::invalid_argument, "[train::accuracy] pred and gold are empty.");
  int64_t hit = 0;
  for (size_t i = 0; i < gold.size(); ++i) hit += pred[i] == gold[i];
  return static_cast<double>(hit) / static_cast<double>(gold.size());
}

double macro_f1(const std::vector<int64_t>& pred, const std::vector<int64_t>& gold) {
  check_same_size("macro_f1", "pred", pred, "gold", gold);
  PEFT_CHECK(!gold.empty(), std::invalid_argument, "[train::macro_f1] pred and gold are empty.");
  struct Counts {
    int64_t tp = 0, n_true = 0, n_pred = 0;
  };
  std::map<int64_t, Counts> per_label;  // sorted, like sklearn's unique_labels
  for (size_t i = 0; i < gold.size(); ++i) {
    ++per_label[gold[i]].n_true;
    ++per_label[pred[i]].n_pred;
    if (pred[i] == gold[i]) ++per_label[gold[i]].tp;
  }
  // sklearn: f = (1 + beta^2) tp / (beta^2 true + pred); never 0/0 over the union of labels.
  double sum = 0.0;
  for (const auto& [label, c] : per_label) {
    (void)label;
    sum += 2.0 * static_cast<double>(c.tp) / (static_cast<double>(c.n_true) + static_cast<double>(c.n_pred));
  }
  return sum / static_cast<double>(per_label.size());
}

double binary_f1(const std::vector<int64_t>& pred, const std::vector<int64_t>& gold, int64_t positive) {
  check_same_size("binary_f1", "pred", pred, "gold", gold);
  PEFT_CHECK(!gold.empty(), std::invalid_argument, "[train::binary_f1] pred and gold are empty.");
  int64_t tp = 0, n_true = 0, n_pred = 0;
  for (size_t i = 0; i < gold.size(); ++i) {
    n_true += gold[i] == positive;
    n_pred += pred[i] == positive;
    tp += gold[i] == positive && pred[i] == positive;
  }
  return n_true + n_pred == 0 ? 0.0 : 2.0 * static_cast<double>(tp) / static_cast<double>(n_true + n_pred);
}

MultiLabelScores multi_label_scores(const std::vector<std::vector<int64_t>>& pred,
                                    const std::vector<std::vector<int64_t>>& gold) {
  check_same_size("multi_label_scores", "pred", pred, "gold", gold);
  PEFT_CHECK(!gold.empty(), std::invalid_argument, "[train::multi_label_scores] pred and gold are empty.");
  const size_t n = gold.front().size();
  std::vector<int64_t> tp(n), n_true(n), n_pred(n);
  int64_t exact = 0;
  for (size_t i = 0; i < gold.size(); ++i) {
    PEFT_CHECK(gold[i].size() == n && pred[i].size() == n, std::invalid_argument, "[train::multi_label_scores] row ", i,
               " has ", gold[i].size(), " gold and ", pred[i].size(), " predicted labels; expected ", n);
    bool same = true;
    for (size_t k = 0; k < n; ++k) {
      const bool g = gold[i][k] != 0, p = pred[i][k] != 0;
      n_true[k] += g;
      n_pred[k] += p;
      tp[k] += g && p;
      same = same && g == p;
    }
    exact += same;
  }
  auto f1 = [](int64_t t, int64_t nt, int64_t np) {
    return nt + np == 0 ? 0.0 : 2.0 * static_cast<double>(t) / static_cast<double>(nt + np);
  };
  MultiLabelScores s;
  int64_t all_tp = 0, all_true = 0, all_pred = 0;
  for (size_t k = 0; k < n; ++k) {
    s.macro_f1 += f1(tp[k], n_true[k], n_pred[k]);
    all_tp += tp[k];
    all_true += n_true[k];
    all_pred += n_pred[k];
  }
  s.macro_f1 = n ? s.macro_f1 / static_cast<double>(n) : 0.0;
  s.micro_f1 = f1(all_tp, all_true, all_pred);
  s.subset_accuracy = static_cast<double>(exact) / static_cast<double>(gold.size());
  return s;
}

// ------------------------------------------------------------------ regression

double mean_squared_error(const std::vector<double>& pred, const std::vector<double>& gold) {
  check_same_size("mean_squared_error", "pred", pred, "gold", gold);
  PEFT_CHECK(!gold.empty(), std::invalid_argument, "[train::mean_squared_error] pred and gold are empty.");
  double s = 0;
  for (size_t i = 0; i < gold.size(); ++i) s += (pred[i] - gold[i]) * (pred[i] - gold[i]);
  return s / static_cast<double>(gold.size());
}

double pearson(const std::vector<double>& pred, const std::vector<double>& gold) {
  check_same_size("pearson", "pred", pred, "gold", gold);
  PEFT_CHECK(gold.size() >= 2, std::invalid_argument, "[train::pearson] needs at least 2 values, got ", gold.size(), ".");
  const double n = static_cast<double>(gold.size());
  double mx = 0, my = 0;
  for (size_t i = 0; i < gold.size(); ++i) {
    mx += pred[i];
    my += gold[i];
  }
  mx /= n;
  my /= n;
  double sxy = 0, sxx = 0, syy = 0;
  for (size_t i = 0; i < gold.size(); ++i) {
    sxy += (pred[i] - mx) * (gold[i] - my);
    sxx += (pred[i] - mx) * (pred[i] - mx);
    syy += (gold[i] - my) * (gold[i] - my);
  }
  if (sxx == 0 || syy == 0) return std::numeric_limits<double>::quiet_NaN();
  const double r = sxy / std::sqrt(sxx * syy);
  return std::max(-1.0, std::min(1.0, r));  // scipy clips rounding past +-1
}

namespace {
// 1-based ranks with ties given their average rank (scipy.stats.rankdata(method="average")).
std::vector<double> average_ranks(const std::vector<double>& v) {
  std::vector<size_t> order(v.size());
  for (size_t i = 0; i < v.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return v[a] < v[b]; });
  std::vector<double> r(v.size());
  for (size_t i = 0; i < order.size();) {
    size_t j = i;
    while (j + 1 < order.size() && v[order[j + 1]] == v[order[i]]) ++j;
    const double rank = (static_cast<double>(i) + static_cast<double>(j)) / 2.0 + 1.0;
    for (size_t k = i; k <= j; ++k) r[order[k]] = rank;
    i = j + 1;
  }
  return r;
}
}  // namespace

double spearman(const std::vector<double>& pred, const std::vector<double>& gold) {
  check_same_size("spearman", "pred", pred, "gold", gold);
  return pearson(average_ranks(pred), average_ranks(gold));
}

// ------------------------------------------------------------------ sequence labelling

EntityScores entity_f1(const std::vector<std::vector<std::string>>& gold,
                       const std::vector<std::vector<std::string>>& pred) {
  check_same_size("entity_f1", "gold", gold, "pred", pred);
  for (size_t s = 0; s < gold.size(); ++s) {
    PEFT_CHECK(gold[s].size() == pred[s].size(), std::invalid_argument, "[train::entity_f1] sentence ", s,
               " has ", gold[s].size(), " gold tags but ", pred[s].size(), " predicted tags.");
  }
  const std::set<Chunk> g = get_entities(gold), p = get_entities(pred);
  EntityScores r;
  r.n_gold = static_cast<int64_t>(g.size());
  r.n_pred = static_cast<int64_t>(p.size());
  for (const auto& c : p) r.n_correct += g.count(c);
  r.precision = r.n_pred ? static_cast<double>(r.n_correct) / static_cast<double>(r.n_pred) : 0.0;
  r.recall = r.n_gold ? static_cast<double>(r.n_correct) / static_cast<double>(r.n_gold) : 0.0;
  const double denom = r.precision + r.recall;
  r.f1 = denom == 0.0 ? 0.0 : 2.0 * r.precision * r.recall / denom;
  return r;
}

// ------------------------------------------------------------------ BLEU

namespace detail {

std::string tokenize_13a(const std::string& raw) {
  std::string line = py_rstrip(raw);  // BLEU._preprocess_segment
  line = replace_all(line, "<skipped>", "");
  line = replace_all(line, "-\n", "");
  line = replace_all(line, "\n", " ");
  if (line.find('&') != std::string::npos) {
    line = replace_all(line, "&quot;", "\"");
    line = replace_all(line, "&amp;", "&");
    line = replace_all(line, "&lt;", "<");
    line = replace_all(line, "&gt;", ">");
  }
  line = " " + line + " ";
  // ([\{-\~\[-\` -\&\(-\+\:-\@\/]) -> ' \1 '
  std::string a;
  a.reserve(line.size() * 2);
  for (char ch : line) {
    const auto c = static_cast<unsigned char>(ch);
    const bool punct = (c >= 0x7B && c <= 0x7E) || (c >= 0x5B && c <= 0x60) || (c >= 0x20 && c <= 0x26) ||
                       (c >= 0x28 && c <= 0x2B) || (c >= 0x3A && c <= 0x40) || c == 0x2F;
    if (punct) {
      a += ' ';
      a += ch;
      a += ' ';
    } else {
      a += ch;
    }
  }
  auto not_digit = [](char c) { return !is_digit(c); };
  auto dot_comma = [](char c) { return c == '.' || c == ','; };
  // ([^0-9])([\.,]) -> '\1 \2 '
  a = sub_pair(a, not_digit, dot_comma, [](std::string& o, char x, char y) {
    o += x;
    o += ' ';
    o += y;
    o += ' ';
  });
  // ([\.,])([^0-9]) -> ' \1 \2'
  a = sub_pair(a, dot_comma, not_digit, [](std::string& o, char x, char y) {
    o += ' ';
    o += x;
    o += ' ';
    o += y;
  });
  // ([0-9])(-) -> '\1 \2 '
  a = sub_pair(a, is_digit, [](char c) { return c == '-'; }, [](std::string& o, char x, char y) {
    o += x;
    o += ' ';
    o += y;
    o += ' ';
  });
  std::string out;
  for (const auto& t : py_split(a)) {
    if (!out.empty()) out += ' ';
    out += t;
  }
  return out;
}

std::vector<std::string> tokenize_rouge(const std::string& text) {
  // text.lower(); re.sub("[^a-z0-9]+", " "); split; keep non-empty tokens. Only two non-ASCII
  // code points lower-case to ASCII letters: U+0130 (-> "i" + U+0307, a separator) and U+212A KELVIN
  // SIGN (-> "k").
  std::vector<std::string> toks;
  std::string cur;
  for (size_t i = 0; i < text.size();) {
    size_t len = 1;
    const uint32_t c = decode_utf8(text, i, len);
    i += len;
    char keep = 0;
    if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) keep = static_cast<char>(c);
    else if (c >= 'A' && c <= 'Z') keep = static_cast<char>(c - 'A' + 'a');
    else if (c == 0x212A) keep = 'k';
    if (c == 0x130) cur += 'i';  // "i" + U+0307: the combining dot then ends the token
    if (keep) {
      cur += keep;
    } else if (!cur.empty()) {
      toks.push_back(std::move(cur));
      cur.clear();
    }
  }
  if (!cur.empty()) toks.push_back(std::move(cur));
  return toks;
}

}  // namespace detail

double corpus_bleu(const std::vector<std::string>& hyps, const std::vector<std::vector<std::string>>& refs_per_hyp) {
  check_same_size("corpus_bleu", "hyps", hyps, "refs_per_hyp", refs_per_hyp);
  PEFT_CHECK(!hyps.empty(), std::invalid_argument, "[train::corpus_bleu] hyps and refs_per_hyp are empty.");
  int64_t sys_len = 0, ref_len = 0;
  std::array<int64_t, kMaxOrder> correct{}, total{};
  for (size_t h = 0; h < hyps.size(); ++h) {
    const auto& refs = refs_per_hyp[h];
    PEFT_CHECK(!refs.empty(), std::invalid_argument, "[train::corpus_bleu] hypothesis ", h,
               " has no references; every hypothesis needs at least one.");
    // Reference n-grams: max count over the references.
    std::unordered_map<std::string, int64_t> ref_ngrams;
    std::vector<int64_t> ref_lens;
    for (const auto& r : refs) {
      const auto toks = py_split(detail::tokenize_13a(r));
      ref_lens.push_back(static_cast<int64_t>(toks.size()));
      for (const auto& [g, n] : ngram_counts(toks)) {
        auto& m = ref_ngrams[g];
        m = std::max(m, n);
      }
    }
    const auto hyp_toks = py_split(detail::tokenize_13a(hyps[h]));
    const auto hyp_len = static_cast<int64_t>(hyp_toks.size());
    // Closest reference length; ties go to the shorter one.
    int64_t best_diff = -1, best_len = -1;
    for (int64_t rl : ref_lens) {
      const int64_t diff = std::llabs(hyp_len - rl);
      if (best_diff == -1 || diff < best_diff) {
        best_diff = diff;
        best_len = rl;
      } else if (diff == best_diff && rl < best_len) {
        best_len = rl;
      }
    }
    sys_len += hyp_len;
    ref_len += best_len;
    for (const auto& [g, n] : ngram_counts(hyp_toks)) {
      const size_t order = static_cast<size_t>(std::count(g.begin(), g.end(), ' '));
      total[order] += n;
      auto it = ref_ngrams.find(g);
      if (it != ref_ngrams.end()) correct[order] += std::min(n, it->second);
    }
  }
  // BLEU.compute_bleu with smooth_method="exp", effective_order=False.
  double bp = 1.0;
  if (sys_len < ref_len)
    bp = sys_len > 0 ? std::exp(1.0 - static_cast<double>(ref_len) / static_cast<double>(sys_len)) : 0.0;
  if (std::all_of(correct.begin(), correct.end(), [](int64_t c) { return c == 0; })) return 0.0;
  std::array<double, kMaxOrder> precisions{};
  double smooth = 1.0;
  for (int n = 0; n < kMaxOrder; ++n) {
    if (total[n] == 0) break;
    if (correct[n] == 0) {
      smooth *= 2;
      precisions[n] = 100.0 / (smooth * static_cast<double>(total[n]));
    } else {
      precisions[n] = 100.0 * static_cast<double>(correct[n]) / static_cast<double>(total[n]);
    }
  }
  double log_sum = 0.0;
  for (double p : precisions) log_sum += my_log(p);
  return bp * std::exp(log_sum / kMaxOrder);
}

// ------------------------------------------------------------------ ROUGE-L

double rouge_l(const std::vector<std::string>& hyps, const std::vector<std::vector<std::string>>& refs_per_hyp) {
  check_same_size("rouge_l", "hyps", hyps, "refs_per_hyp", refs_per_hyp);
  PEFT_CHECK(!hyps.empty(), std::invalid_argument, "[train::rouge_l] hyps and refs_per_hyp are empty.");
  double sum = 0.0;
  std::vector<int64_t> prev, cur;
  for (size_t h = 0; h < hyps.size(); ++h) {
    PEFT_CHECK(!refs_per_hyp[h].empty(), std::invalid_argument, "[train::rouge_l] hypothesis ", h,
               " has no references; every hypothesis needs at least one.");
    const auto can = detail::tokenize_rouge(hyps[h]);
    double best = 0.0;
    bool first = true;
    for (const auto& r : refs_per_hyp[h]) {
      const auto ref = detail::tokenize_rouge(r);
      double f = 0.0;
      if (!ref.empty() && !can.empty()) {
        prev.assign(can.size() + 1, 0);
        cur.assign(can.size() + 1, 0);
        for (size_t i = 1; i <= ref.size(); ++i) {
          for (size_t j = 1; j <= can.size(); ++j)
            cur[j] = ref[i - 1] == can[j - 1] ? prev[j - 1] + 1 : std::max(prev[j], cur[j - 1]);
          std::swap(prev, cur);
        }
        const auto lcs = static_cast<double>(prev[can.size()]);
        const double p = lcs / static_cast<double>(can.size());
        const double rc = lcs / static_cast<double>(ref.size());
        f = p + rc > 0 ? 2 * p * rc / (p + rc) : 0.0;
      }
      if (first || f > best) best = f;  // np.argmax: first maximum
      first = false;
    }
    sum += best;
  }
  return 100.0 * sum / static_cast<double>(hyps.size());
}

double perplexity(double mean_loss) { return std::exp(mean_loss); }

}  // namespace peft::train
