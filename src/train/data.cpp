#include "peft/train/data.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <set>
#include <stdexcept>
#include <utility>

#include "peft/core/check.h"
#include "peft/core/strings.h"
#include "peft/core/file_util.h"
#include "peft/core/json_file.h"
#include "peft/core/regex.h"
#include "peft/core/utf8.h"

namespace peft::train {

namespace {

constexpr int64_t kIgnore = -100;
constexpr const char* kTag = "[train::data] ";

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string extension(const std::string& path) {
  const auto slash = path.find_last_of('/');
  const auto dot = path.find_last_of('.');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return "";
  return lower(path.substr(dot));
}

std::string where(const std::string& file, int64_t line) { return file + ":" + std::to_string(line); }

[[noreturn]] void fail(const std::string& file, int64_t line, const std::string& msg) {
  throw FormatError(kTag + where(file, line) + ": " + msg);
}

std::string load(const std::string& path, InvalidUtf8 invalid_utf8) {
  std::string text = read_file(path);
  if (text.size() >= 3 && text.compare(0, 3, "\xEF\xBB\xBF") == 0) text.erase(0, 3);
  const std::size_t bad = find_invalid_utf8(text);
  if (bad == std::string::npos) return text;
  const auto line = 1 + static_cast<int64_t>(std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(bad), '\n'));
  const std::size_t line_start = text.rfind('\n', bad == 0 ? 0 : bad - 1);
  const std::size_t column = bad - (line_start == std::string::npos || line_start >= bad ? 0 : line_start + 1) + 1;
  if (invalid_utf8 == InvalidUtf8::Error) {
    char byte[8];
    std::snprintf(byte, sizeof byte, "0x%02X", static_cast<unsigned char>(text[bad]));
    fail(path, line, std::string("not valid UTF-8 (byte ") + byte + " at column " + std::to_string(column) +
                         "); convert the file to UTF-8 (e.g. iconv -f latin1 -t utf-8) or set invalid_utf8: replace");
  }
  std::size_t n = 0;
  text = replace_invalid_utf8(text, &n);
  std::cerr << "warning: " << where(path, line) << ": " << n << " invalid UTF-8 sequence" << (n == 1 ? "" : "s")
            << " replaced with U+FFFD (invalid_utf8: replace), the first here\n";
  return text;
}

/// Splits into lines (LF or CRLF), 1-based numbering implied by position.
std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t nl = text.find('\n', start);
    if (nl == std::string::npos) nl = text.size();
    std::string l = text.substr(start, nl - start);
    if (!l.empty() && l.back() == '\r') l.pop_back();
    lines.push_back(std::move(l));
    start = nl + 1;
  }
  return lines;
}

bool blank(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isspace(c) != 0; });
}

// ------------------------------------------------------------------------------------------- JSON

Row json_row(const nlohmann::json& j, const std::string& file, int64_t line) {
  if (!j.is_object()) fail(file, line, std::string("expected a JSON object, got ") + j.type_name());
  Row r;
  r.file = file;
  r.line = line;
  for (const auto& [k, v] : j.items()) {
    if (v.is_null()) continue;
    r.fields[k] = v.is_string() ? v.get<std::string>() : v.dump();
  }
  return r;
}

std::vector<Row> read_json(const std::string& path, const std::string& text) {
  std::vector<Row> rows;
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && text[first] == '[') {  // one JSON array of objects
    const nlohmann::json j = parse_json(text, path);  // errors name the file, line and column
    int64_t n = 0;
    for (const auto& v : j) rows.push_back(json_row(v, path, ++n));
    return rows;
  }
  const auto lines = split_lines(text);
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (blank(lines[i])) continue;
    const auto line = static_cast<int64_t>(i + 1);
    nlohmann::json j;
    try {
      j = parse_json(lines[i], where(path, line));
    } catch (const FormatError& e) {
      throw FormatError(std::string(e.what()) + " (a JSONL file holds one object per line)");
    }
    rows.push_back(json_row(j, path, line));
  }
  return rows;
}

// -------------------------------------------------------------------------------------- CSV / TSV

struct Record {
  std::vector<std::string> fields;
  int64_t line = 0;
};

/// RFC 4180 records; blank lines are skipped.
std::vector<Record> parse_csv(const std::string& path, const std::string& text) {
  std::vector<Record> out;
  std::size_t i = 0;
  int64_t line = 1;
  const std::size_t n = text.size();
  while (i < n) {
    // Blank line (LF or CRLF) between records.
    if (text[i] == '\n' || (text[i] == '\r' && i + 1 < n && text[i + 1] == '\n')) {
      i += text[i] == '\r' ? 2 : 1;
      ++line;
      continue;
    }
    Record rec;
    rec.line = line;
    std::string field;
    bool done = false;
    while (!done) {
      field.clear();
      if (i < n && text[i] == '"') {  // quoted field
        const int64_t open_line = line;
        ++i;
        for (;;) {
          if (i >= n) fail(path, open_line, "unterminated quoted field (a '\"' opened here is never closed)");
          const char c = text[i];
          if (c == '"') {
            if (i + 1 < n && text[i + 1] == '"') {
              field += '"';
              i += 2;
              continue;
            }
            ++i;
            break;
          }
          if (c == '\n') ++line;
          field += c;
          ++i;
        }
        if (i < n && text[i] == '\r' && i + 1 < n && text[i + 1] == '\n') ++i;
        if (i < n && text[i] != ',' && text[i] != '\n')
          fail(path, line, std::string("unexpected character '") + text[i] +
                               "' after a closing quote (quotes inside a quoted field must be doubled: \"\")");
      } else {
        while (i < n && text[i] != ',' && text[i] != '\n') field += text[i++];
        if (!field.empty() && field.back() == '\r' && (i >= n || text[i] == '\n')) field.pop_back();
      }
      rec.fields.push_back(field);
      if (i >= n) {
        done = true;
      } else if (text[i] == ',') {
        ++i;
      } else {  // '\n'
        ++i;
        ++line;
        done = true;
      }
    }
    out.push_back(std::move(rec));
  }
  return out;
}

std::vector<Record> parse_tsv(const std::string& text) {
  std::vector<Record> out;
  const auto lines = split_lines(text);
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].empty()) continue;
    Record rec;
    rec.line = static_cast<int64_t>(i + 1);
    std::size_t start = 0;
    for (;;) {
      const auto tab = lines[i].find('\t', start);
      rec.fields.push_back(lines[i].substr(start, tab == std::string::npos ? std::string::npos : tab - start));
      if (tab == std::string::npos) break;
      start = tab + 1;
    }
    out.push_back(std::move(rec));
  }
  return out;
}

std::vector<Row> records_to_rows(const std::string& path, std::vector<Record> recs,
                                 const std::vector<std::string>& columns) {
  std::vector<std::string> header = columns;
  std::size_t first = 0;
  if (header.empty()) {
    if (recs.empty()) fail(path, 1, "empty file (expected a header row)");
    header = recs[0].fields;
    first = 1;
    std::set<std::string> seen;
    for (const auto& h : header)
      if (!seen.insert(h).second) fail(path, recs[0].line, "duplicate column '" + h + "' in the header row");
  }
  std::vector<Row> rows;
  for (std::size_t r = first; r < recs.size(); ++r) {
    auto& rec = recs[r];
    if (rec.fields.size() != header.size())
      fail(path, rec.line, "row has " + std::to_string(rec.fields.size()) + " fields; the header has " +
                               std::to_string(header.size()));
    Row row;
    row.file = path;
    row.line = rec.line;
    for (std::size_t c = 0; c < header.size(); ++c) row.fields[header[c]] = std::move(rec.fields[c]);
    rows.push_back(std::move(row));
  }
  return rows;
}

// ------------------------------------------------------------------------------- tokenisation

std::vector<int64_t> widen(const std::vector<io::TokenId>& v) { return {v.begin(), v.end()}; }

/// A per-row failure: carries the message without location; the caller adds file:line.
struct RowError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Row `r`'s column `col`, which the data key `key` (text_column, label_column, ...) names.
const std::string& field(const Row& r, const std::string& col, const char* key) {
  auto it = r.fields.find(col);
  if (it == r.fields.end()) {
    std::vector<std::string> cols;
    for (const auto& [k, v] : r.fields) cols.push_back(k);
    throw RowError("missing column '" + col + "' (columns: " + join(cols) + "); set " + key +
                   " to the column that holds it, e.g. " + key + "=" + (cols.empty() ? col : cols.front()));
  }
  return it->second;
}

/// Drops content (non-special) tokens so that the encoding has at most max_length ids, keeping the
/// special tokens: single sequences lose their tail, pairs are truncated longest_first (HF default).
/// Mirrors tokenizers' truncate_encodings (LongestFirst): of the content tokens that fit, the shorter text
/// keeps all it has when that leaves the longer at least as many; otherwise the shorter keeps
/// half (rounded down) and the longer the rest (the second text when both are as long).
void truncate_encoding(io::Encoding& e, std::size_t n_a, std::size_t n_b, int64_t max_length) {
  if (max_length <= 0 || e.size() <= static_cast<std::size_t>(max_length)) return;
  std::vector<std::size_t> content;
  for (std::size_t i = 0; i < e.size(); ++i)
    if (e.special_tokens_mask.empty() || e.special_tokens_mask[i] == 0) content.push_back(i);
  const std::size_t to_remove = e.size() - static_cast<std::size_t>(max_length);
  std::vector<bool> drop(e.size(), false);
  if (content.size() != n_a + n_b) {  // unknown layout: cut the content tail
    n_a = content.size();
    n_b = 0;
  }
  const std::size_t budget = n_a + n_b > to_remove ? n_a + n_b - to_remove : 0;
  const bool a_longer = n_a > n_b;
  const std::size_t shorter = a_longer ? n_b : n_a;
  const std::size_t keep_short = 2 * shorter <= budget ? shorter : budget / 2, keep_long = budget - keep_short;
  const std::size_t keep_a = a_longer ? keep_long : keep_short, keep_b = a_longer ? keep_short : keep_long;
  for (std::size_t k = keep_a; k < n_a; ++k) drop[content[k]] = true;
  for (std::size_t k = n_a + keep_b; k < n_a + n_b; ++k) drop[content[k]] = true;
  io::Encoding out;
  for (std::size_t i = 0; i < e.size(); ++i) {
    if (drop[i]) continue;
    out.ids.push_back(e.ids[i]);
    if (i < e.type_ids.size()) out.type_ids.push_back(e.type_ids[i]);
    if (i < e.special_tokens_mask.size()) out.special_tokens_mask.push_back(e.special_tokens_mask[i]);
  }
  // Only ids, type_ids and the special mask are used past this point.
  e = std::move(out);
}

bool parse_int(const std::string& s, int64_t& v) {
  if (s.empty()) return false;
  errno = 0;
  char* end = nullptr;
  const long long x = std::strtoll(s.c_str(), &end, 10);
  if (errno != 0 || end != s.c_str() + s.size()) return false;
  v = x;
  return true;
}

bool parse_double(const std::string& s, double& v) {
  if (s.empty() || std::isspace(static_cast<unsigned char>(s.front()))) return false;
  errno = 0;
  char* end = nullptr;
  const double x = std::strtod(s.c_str(), &end);
  if (errno != 0 || end != s.c_str() + s.size()) return false;
  v = x;
  return true;
}

/// Sorted label set (numerically when every label is an integer, as Python sorts ints).
std::vector<std::string> sorted_labels(const std::set<std::string>& seen) {
  std::vector<std::string> v(seen.begin(), seen.end());
  bool all_int = !v.empty();
  for (const auto& s : v) {
    int64_t x;
    all_int = all_int && parse_int(s, x);
  }
  if (all_int)
    std::stable_sort(v.begin(), v.end(), [](const std::string& a, const std::string& b) {
      return std::strtoll(a.c_str(), nullptr, 10) < std::strtoll(b.c_str(), nullptr, 10);
    });
  return v;
}

int64_t label_index(const std::vector<std::string>& names, const std::map<std::string, int64_t>& index,
                    const std::string& value, bool allow_int) {
  auto it = index.find(value);
  if (it != index.end()) return it->second;
  int64_t k;
  if (allow_int && parse_int(value, k) && k >= 0 && k < static_cast<int64_t>(names.size())) return k;
  throw RowError("label '" + value + "' is not in label_names [" + join(names) + "]");
}

std::map<std::string, int64_t> make_index(const std::vector<std::string>& names) {
  std::map<std::string, int64_t> m;
  for (std::size_t i = 0; i < names.size(); ++i) m.emplace(names[i], static_cast<int64_t>(i));
  return m;
}

void check_options(const DataOptions& opt) {
  PEFT_CHECK(opt.max_length > 0, ConfigError, kTag, "max_length must be > 0, got ", opt.max_length);
  PEFT_CHECK(opt.max_target_length >= 0, ConfigError, kTag, "max_target_length must be >= 0, got ",
             opt.max_target_length);
}

void finish(Dataset& d, std::size_t n_inputs, const std::string& file) {
  if (!d.examples.empty()) return;
  std::string msg = "no examples";
  if (n_inputs == 0) msg += ": the input is empty";
  else msg += ": all " + std::to_string(n_inputs) + " rows were skipped (first: " + d.skipped_reasons.front() + ")";
  throw FormatError(kTag + (file.empty() ? std::string() : file + ": ") + msg);
}

Example causal_example(const Row& r, const io::Tokenizer& tok, const DataOptions& opt) {
  const auto eos = tok.eos_token_id();
  PEFT_CHECK(!opt.add_eos || eos.has_value(), ConfigError, kTag,
             "add_eos is set but the tokenizer has no eos token; load it with Tokenizer::from_pretrained on a "
             "folder whose tokenizer_config.json names eos_token, or set add_eos = false");
  const bool want_eos = opt.add_eos;
  Example ex;
  if (!opt.prompt_column.empty() && !opt.completion_column.empty()) {
    const auto prompt = widen(tok.encode(field(r, opt.prompt_column, "prompt_column") + opt.prompt_suffix, true).ids);
    auto completion = widen(tok.encode(field(r, opt.completion_column, "completion_column"), false).ids);
    if (want_eos && (completion.empty() || completion.back() != *eos)) completion.push_back(*eos);
    if (completion.empty()) throw RowError("empty completion in column '" + opt.completion_column + "'");
    ex.input_ids = prompt;
    ex.input_ids.insert(ex.input_ids.end(), completion.begin(), completion.end());
    ex.labels.assign(prompt.size(), kIgnore);
    ex.labels.insert(ex.labels.end(), completion.begin(), completion.end());
    const auto n = static_cast<int64_t>(ex.input_ids.size());
    if (n > opt.max_length) {  // keep the end of the completion
      ex.input_ids.erase(ex.input_ids.begin(), ex.input_ids.begin() + (n - opt.max_length));
      ex.labels.erase(ex.labels.begin(), ex.labels.begin() + (n - opt.max_length));
    }
    return ex;
  }
  const std::string& text = field(r, opt.text_column, "text_column");
  ex.input_ids = widen(tok.encode(text, true).ids);
  if (want_eos && (ex.input_ids.empty() || ex.input_ids.back() != *eos)) ex.input_ids.push_back(*eos);
  if (static_cast<int64_t>(ex.input_ids.size()) > opt.max_length) ex.input_ids.resize(opt.max_length);
  if (ex.input_ids.empty()) throw RowError("empty text in column '" + opt.text_column + "'");
  ex.labels = ex.input_ids;
  return ex;
}

// A SeqCls label value: the column as is, or what label_regex extracts from it (nullopt: no match).
std::optional<std::string> extract_label(const std::string& v, const DataOptions& opt) {
  return opt.label_regex.empty() ? std::optional<std::string>(v) : regex_search(opt.label_regex, v);
}

std::string label_of(const Row& r, const DataOptions& opt) {
  auto m = extract_label(field(r, opt.label_column, "label_column"), opt);
  if (!m) throw RowError("label_regex '" + opt.label_regex + "' does not match column '" + opt.label_column + "'");
  // Multi-label rows may have no label; a class or a regression target may not be blank.
  if (!opt.multi_label && blank(*m)) throw RowError("empty label in column '" + opt.label_column + "'");
  return *m;
}

// A multi-label value: a JSON list of names (strings or integers), or names separated by ';'.
std::vector<std::string> split_labels(const std::string& v) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < v.size() && std::isspace(static_cast<unsigned char>(v[i]))) ++i;
  if (i < v.size() && v[i] == '[') {
    nlohmann::json j;
    try {
      j = parse_json(v, "multi-label value");
    } catch (const FormatError&) {
    }
    if (!j.is_array()) throw RowError("multi-label value '" + v + "' starts with '[' but is not a JSON list");
    for (const auto& e : j) {
      if (e.is_string()) out.push_back(e.get<std::string>());
      else if (e.is_number_integer()) out.push_back(e.dump());
      else throw RowError("multi-label value '" + v + "': list items must be label names (strings) or integers");
    }
    return out;
  }
  std::size_t start = 0;
  while (start <= v.size()) {
    auto end = v.find(';', start);
    if (end == std::string::npos) end = v.size();
    std::string name = v.substr(start, end - start);
    while (!name.empty() && std::isspace(static_cast<unsigned char>(name.back()))) name.pop_back();
    std::size_t k = 0;
    while (k < name.size() && std::isspace(static_cast<unsigned char>(name[k]))) ++k;
    if (k < name.size()) out.push_back(name.substr(k));
    start = end + 1;
  }
  return out;
}

Example seqcls_example(const Row& r, const io::Tokenizer& tok, const DataOptions& opt,
                       const std::vector<std::string>& names, const std::map<std::string, int64_t>& index,
                       bool regression) {
  const std::string& a = field(r, opt.text_column, "text_column");
  const std::string* b = opt.text_pair_column.empty() ? nullptr : &field(r, opt.text_pair_column, "text_pair_column");
  const std::string label = label_of(r, opt);
  Example ex;
  if (opt.multi_label) {
    std::set<int64_t> ids;
    for (const auto& l : split_labels(label)) ids.insert(label_index(names, index, l, false));
    ex.label_set.assign(ids.begin(), ids.end());
  } else if (regression) {
    if (!parse_double(label, ex.label_value))
      throw RowError("regression label '" + label + "' in column '" + opt.label_column +
                     "' is not a number (regression, num_labels 1, reads labels as floats)");
  } else {
    ex.label = label_index(names, index, label, true);
  }
  io::Encoding e = b ? tok.encode_pair(a, *b, true) : tok.encode(a, true);
  if (static_cast<int64_t>(e.size()) > opt.max_length) {
    const std::size_t na = tok.encode(a, false).size();
    const std::size_t nb = b ? tok.encode(*b, false).size() : 0;
    truncate_encoding(e, na, nb, opt.max_length);
  }
  ex.input_ids = widen(e.ids);
  ex.token_type_ids = widen(e.type_ids);
  if (ex.token_type_ids.size() != ex.input_ids.size()) ex.token_type_ids.assign(ex.input_ids.size(), 0);
  return ex;
}

Example seq2seq_example(const Row& r, const io::Tokenizer& tok, const DataOptions& opt) {
  const std::string& src = field(r, opt.source_column, "source_column");
  const std::string& tgt = field(r, opt.target_column, "target_column");
  io::Encoding s = tok.encode(src, true);
  truncate_encoding(s, tok.encode(src, false).size(), 0, opt.max_length);
  io::Encoding t = tok.encode(tgt, true);
  const int64_t max_t = opt.max_target_length > 0 ? opt.max_target_length : opt.max_length;
  truncate_encoding(t, tok.encode(tgt, false).size(), 0, max_t);
  Example ex;
  ex.input_ids = widen(s.ids);
  ex.labels = widen(t.ids);
  if (ex.input_ids.empty()) throw RowError("empty source in column '" + opt.source_column + "'");
  if (ex.labels.empty()) throw RowError("empty target in column '" + opt.target_column + "'");
  int64_t start = opt.decoder_start_token_id;
  if (start < 0) {
    if (!tok.pad_token_id()) throw RowError("Seq2Seq needs decoder_start_token_id or a tokenizer pad token");
    start = *tok.pad_token_id();
  }
  ex.decoder_input_ids.push_back(start);
  ex.decoder_input_ids.insert(ex.decoder_input_ids.end(), ex.labels.begin(), ex.labels.end() - 1);
  return ex;
}

}  // namespace

// ---------------------------------------------------------------------------------------- readers

std::vector<Row> read_rows(const std::string& path, const std::vector<std::string>& columns, InvalidUtf8 invalid_utf8) {
  const std::string ext = extension(path);
  PEFT_CHECK(ext == ".jsonl" || ext == ".json" || ext == ".csv" || ext == ".tsv", ConfigError, kTag, "'", path,
             "': unknown data file extension '", ext, "'; expected .jsonl, .json, .csv or .tsv");
  const std::string text = load(path, invalid_utf8);
  std::vector<Row> rows;
  if (ext == ".jsonl" || ext == ".json") rows = read_json(path, text);
  else if (ext == ".csv") rows = records_to_rows(path, parse_csv(path, text), columns);
  else rows = records_to_rows(path, parse_tsv(text), columns);
  if (rows.empty()) fail(path, 1, "no data rows");
  return rows;
}

std::vector<TaggedSentence> read_conll(const std::string& path, int tag_column, InvalidUtf8 invalid_utf8) {
  PEFT_CHECK(tag_column >= -1, ConfigError, kTag, "tag_column must be >= 0 or -1 (last), got ", tag_column);
  const auto lines = split_lines(load(path, invalid_utf8));
  std::vector<TaggedSentence> out;
  TaggedSentence cur;
  auto flush = [&] {
    if (!cur.tokens.empty()) out.push_back(std::move(cur));
    cur = TaggedSentence{};
  };
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const auto line = static_cast<int64_t>(i + 1);
    std::vector<std::string> cols;
    std::size_t p = 0;
    const std::string& l = lines[i];
    while (p < l.size()) {
      while (p < l.size() && (l[p] == ' ' || l[p] == '\t')) ++p;
      const std::size_t s = p;
      while (p < l.size() && l[p] != ' ' && l[p] != '\t') ++p;
      if (p > s) cols.push_back(l.substr(s, p - s));
    }
    if (cols.empty()) {
      flush();
      continue;
    }
    if (cols[0] == "-DOCSTART-") {
      flush();
      continue;
    }
    const std::size_t tc = tag_column < 0 ? cols.size() - 1 : static_cast<std::size_t>(tag_column);
    if (cols.size() < 2 || tc >= cols.size() || tc == 0)
      fail(path, line, "expected 'token ... tag' columns (tag column " + std::to_string(tag_column) + "), got " +
                           std::to_string(cols.size()) + " column(s): '" + l + "'");
    if (cur.tokens.empty()) {
      cur.file = path;
      cur.line = line;
    }
    cur.tokens.push_back(cols[0]);
    cur.tags.push_back(cols[tc]);
  }
  flush();
  if (out.empty()) fail(path, 1, "no sentences");
  return out;
}

std::string to_string(TaskFormat t) {
  switch (t) {
    case TaskFormat::CausalLM: return "CAUSAL_LM";
    case TaskFormat::SeqCls: return "SEQ_CLS";
    case TaskFormat::TokenCls: return "TOKEN_CLS";
    case TaskFormat::Seq2Seq: return "SEQ_2_SEQ_LM";
  }
  return "?";
}

TaskFormat task_format_from_string(const std::string& s) {
  for (auto t : {TaskFormat::CausalLM, TaskFormat::SeqCls, TaskFormat::TokenCls, TaskFormat::Seq2Seq})
    if (s == to_string(t)) return t;
  throw ConfigError(std::string(kTag) + "unknown task '" + s +
                    "'; expected one of CAUSAL_LM, SEQ_CLS, TOKEN_CLS, SEQ_2_SEQ_LM");
}

// ------------------------------------------------------------------------------------ datasets

std::string problem_type(const Dataset& d) {
  if (d.label_names.size() == 1 && d.label_names[0] == kRegressionLabel) return "regression";
  return d.multi_label ? "multi_label_classification" : "single_label_classification";
}

Dataset build_dataset(const std::vector<Row>& rows, const io::Tokenizer& tok, const DataOptions& opt) {
  check_options(opt);
  PEFT_CHECK(opt.task != TaskFormat::TokenCls, ConfigError, kTag,
             "TokenCls data comes from read_conll + build_token_dataset, not build_dataset");
  Dataset d;
  const bool regression = opt.task == TaskFormat::SeqCls && opt.label_names.size() == 1 &&
                          opt.label_names[0] == kRegressionLabel;
  PEFT_CHECK(!(opt.multi_label && regression), ConfigError, kTag, "multi_label data cannot be regression data");
  d.multi_label = opt.multi_label && opt.task == TaskFormat::SeqCls;
  if (opt.task == TaskFormat::SeqCls) {
    d.label_names = opt.label_names;
    if (d.label_names.empty()) {
      std::set<std::string> seen;
      for (const auto& r : rows) {
        auto it = r.fields.find(opt.label_column);
        if (it == r.fields.end()) continue;
        auto m = extract_label(it->second, opt);
        if (!m) continue;
        if (!opt.multi_label) {
          seen.insert(*m);
          continue;
        }
        try {
          for (auto& l : split_labels(*m)) seen.insert(std::move(l));
        } catch (const RowError&) {  // reported with its file:line below
        }
      }
      d.label_names = sorted_labels(seen);
    }
  }
  const auto index = make_index(d.label_names);
  for (const auto& r : rows) {
    try {
      switch (opt.task) {
        case TaskFormat::CausalLM: d.examples.push_back(causal_example(r, tok, opt)); break;
        case TaskFormat::SeqCls: d.examples.push_back(seqcls_example(r, tok, opt, d.label_names, index, regression)); break;
        case TaskFormat::Seq2Seq: d.examples.push_back(seq2seq_example(r, tok, opt)); break;
        case TaskFormat::TokenCls: break;
      }
      d.examples.back().source = &r - rows.data();
    } catch (const RowError& e) {
      const std::string msg = where(r.file, r.line) + ": " + e.what();
      if (!opt.skip_bad_rows) throw FormatError(kTag + msg);
      ++d.skipped;
      d.skipped_reasons.push_back(msg);
    }
  }
  finish(d, rows.size(), rows.empty() ? std::string() : rows.front().file);
  return d;
}

Dataset build_token_dataset(const std::vector<TaggedSentence>& sents, const io::Tokenizer& tok,
                            const DataOptions& opt) {
  check_options(opt);
  Dataset d;
  d.label_names = opt.label_names;
  if (d.label_names.empty()) {
    std::set<std::string> seen;
    for (const auto& s : sents) seen.insert(s.tags.begin(), s.tags.end());
    d.label_names = sorted_labels(seen);
  }
  const auto index = make_index(d.label_names);
  // The special tokens the tokenizer puts around a single sequence ([CLS] ... [SEP], <s> ..., none).
  std::vector<int64_t> prefix, suffix;
  {
    const io::Encoding probe = tok.encode("a", true);
    std::size_t first = probe.size(), last = 0;
    for (std::size_t i = 0; i < probe.size(); ++i)
      if (probe.special_tokens_mask.empty() || probe.special_tokens_mask[i] == 0) {
        first = std::min(first, i);
        last = i + 1;
      }
    for (std::size_t i = 0; i < first && i < probe.size(); ++i) prefix.push_back(probe.ids[i]);
    for (std::size_t i = std::max(last, first); i < probe.size(); ++i) suffix.push_back(probe.ids[i]);
  }
  const auto n_special = static_cast<int64_t>(prefix.size() + suffix.size());
  PEFT_CHECK(opt.max_length > n_special, ConfigError, kTag, "max_length ", opt.max_length,
             " leaves no room next to ", n_special, " special tokens");
  for (const auto& s : sents) {
    try {
      if (s.tokens.size() != s.tags.size())
        throw RowError(std::to_string(s.tokens.size()) + " tokens but " + std::to_string(s.tags.size()) + " tags");
      Example ex;
      ex.input_ids = prefix;
      ex.labels.assign(prefix.size(), kIgnore);
      const auto budget = static_cast<std::size_t>(opt.max_length - static_cast<int64_t>(suffix.size()));
      for (std::size_t w = 0; w < s.tokens.size(); ++w) {
        int64_t tag;
        try {
          tag = label_index(d.label_names, index, s.tags[w], false);
        } catch (const RowError& e) {  // name the token's own line
          throw FormatError(kTag + where(s.file, s.line + static_cast<int64_t>(w)) + ": " + e.what());
        }
        const auto pieces = tok.encode(opt.add_prefix_space ? " " + s.tokens[w] : s.tokens[w], false).ids;
        for (std::size_t k = 0; k < pieces.size() && ex.input_ids.size() < budget; ++k) {
          ex.input_ids.push_back(pieces[k]);
          ex.labels.push_back(k == 0 ? tag : kIgnore);
        }
      }
      ex.input_ids.insert(ex.input_ids.end(), suffix.begin(), suffix.end());
      ex.labels.resize(ex.input_ids.size(), kIgnore);
      ex.token_type_ids.assign(ex.input_ids.size(), 0);
      if (ex.input_ids.size() == prefix.size() + suffix.size()) throw RowError("sentence has no tokens after tokenisation");
      ex.source = &s - sents.data();
      d.examples.push_back(std::move(ex));
    } catch (const FormatError& e) {
      if (!opt.skip_bad_rows) throw;
      ++d.skipped;
      d.skipped_reasons.push_back(std::string(e.what()).substr(std::string(kTag).size()));
    } catch (const RowError& e) {
      const std::string msg = where(s.file, s.line) + ": " + e.what();
      if (!opt.skip_bad_rows) throw FormatError(kTag + msg);
      ++d.skipped;
      d.skipped_reasons.push_back(msg);
    }
  }
  finish(d, sents.size(), sents.empty() ? std::string() : sents.front().file);
  return d;
}

// ------------------------------------------------------------------------------------- batching

namespace {

/// Uniform integer in [0, bound] from a 64-bit engine, by rejection (no implementation-defined distribution).
uint64_t uniform_upto(std::mt19937_64& rng, uint64_t bound) {
  if (bound == 0) return 0;
  if (bound == ~uint64_t{0}) return rng();
  const uint64_t range = bound + 1;
  const uint64_t rem = (~uint64_t{0} % range + 1) % range;  // 2^64 mod range
  for (;;) {
    const uint64_t x = rng();
    if (x <= ~uint64_t{0} - rem) return x % range;
  }
}

}  // namespace

std::vector<std::vector<int64_t>> make_batches(const Dataset& d, int64_t batch_size, bool shuffle, uint64_t seed,
                                               bool group_by_length, bool drop_last) {
  PEFT_CHECK(batch_size > 0, ConfigError, kTag, "batch_size must be > 0, got ", batch_size);
  const auto n = static_cast<int64_t>(d.examples.size());
  std::vector<int64_t> order(static_cast<std::size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[i] = i;
  if (shuffle) {
    std::mt19937_64 rng(seed);
    for (int64_t i = n - 1; i > 0; --i) {
      const auto j = static_cast<int64_t>(uniform_upto(rng, static_cast<uint64_t>(i)));
      std::swap(order[i], order[j]);
    }
  }
  if (group_by_length && n > 0) {
    auto len = [&](int64_t i) { return d.examples[i].input_ids.size(); };
    const int64_t mega = 50 * batch_size;
    std::vector<std::size_t> mega_starts;
    for (int64_t s = 0; s < n; s += mega) {
      const auto e = std::min(n, s + mega);
      std::stable_sort(order.begin() + s, order.begin() + e,
                       [&](int64_t a, int64_t b) { return len(a) > len(b); });
      mega_starts.push_back(static_cast<std::size_t>(s));
    }
    // Each megabatch starts with its longest; move the overall longest to the very front.
    std::size_t best = 0;
    for (auto s : mega_starts)
      if (len(order[s]) > len(order[best])) best = s;
    std::swap(order[0], order[best]);
  }
  std::vector<std::vector<int64_t>> batches;
  for (int64_t s = 0; s < n; s += batch_size) {
    const auto e = std::min(n, s + batch_size);
    if (drop_last && e - s < batch_size) break;
    batches.emplace_back(order.begin() + s, order.begin() + e);
  }
  return batches;
}

Batch collate(const Dataset& d, const std::vector<int64_t>& idx, int64_t pad_id, int64_t pad_to_multiple_of) {
  PEFT_CHECK(!idx.empty(), std::invalid_argument, kTag, "collate: empty batch");
  PEFT_CHECK(pad_to_multiple_of >= 0, ConfigError, kTag, "pad_to_multiple_of must be >= 0, got ", pad_to_multiple_of);
  const auto round = [&](int64_t c) {
    return pad_to_multiple_of > 1 ? (c + pad_to_multiple_of - 1) / pad_to_multiple_of * pad_to_multiple_of : c;
  };
  Batch b;
  b.rows = static_cast<int64_t>(idx.size());
  bool any_labels = false, any_types = false, any_dec = false, any_label = false;
  for (auto i : idx) {
    PEFT_CHECK(i >= 0 && i < static_cast<int64_t>(d.examples.size()), std::out_of_range, kTag,
               "collate: example index ", i, " out of range [0, ", d.examples.size(), ")");
    const auto& ex = d.examples[i];
    b.cols = std::max(b.cols, static_cast<int64_t>(ex.input_ids.size()));
    any_labels |= !ex.labels.empty();
    any_types |= !ex.token_type_ids.empty();
    any_dec |= !ex.decoder_input_ids.empty();
    any_label |= ex.label != kIgnore;
    if (!ex.decoder_input_ids.empty())
      b.decoder_cols = std::max(b.decoder_cols, static_cast<int64_t>(ex.decoder_input_ids.size()));
  }
  b.cols = round(b.cols);
  if (any_dec) b.decoder_cols = round(b.decoder_cols);
  const auto R = static_cast<std::size_t>(b.rows), C = static_cast<std::size_t>(b.cols);
  const auto LC = any_dec ? static_cast<std::size_t>(b.decoder_cols) : C;
  b.input_ids.assign(R * C, pad_id);
  b.attention_mask.assign(R * C, 0);
  if (any_labels) b.labels.assign(R * LC, kIgnore);
  if (any_types) b.token_type_ids.assign(R * C, 0);
  if (any_dec) b.decoder_input_ids.assign(R * LC, pad_id);
  const bool regression = d.label_names.size() == 1 && d.label_names[0] == kRegressionLabel;
  for (std::size_t r = 0; r < R; ++r) {
    const auto& ex = d.examples[idx[r]];
    std::copy(ex.input_ids.begin(), ex.input_ids.end(), b.input_ids.begin() + r * C);
    std::fill_n(b.attention_mask.begin() + r * C, ex.input_ids.size(), 1);
    b.n_tokens += static_cast<int64_t>(ex.input_ids.size());
    if (any_labels) std::copy(ex.labels.begin(), ex.labels.begin() + std::min(ex.labels.size(), LC),
                              b.labels.begin() + r * LC);
    for (auto l : ex.labels) b.n_label_tokens += l != kIgnore;
    if (any_types) std::copy(ex.token_type_ids.begin(), ex.token_type_ids.end(), b.token_type_ids.begin() + r * C);
    if (any_dec) std::copy(ex.decoder_input_ids.begin(), ex.decoder_input_ids.end(), b.decoder_input_ids.begin() + r * LC);
    if (d.multi_label) {
      const std::size_t n = d.label_names.size();
      b.seq_multi_hot.resize((r + 1) * n, 0.0f);
      for (auto k : ex.label_set) b.seq_multi_hot[r * n + static_cast<std::size_t>(k)] = 1.0f;
    } else if (regression) b.seq_values.push_back(ex.label_value);
    else if (any_label) b.seq_labels.push_back(ex.label);
    if (!d.tasks.empty()) b.seq_tasks.push_back(ex.task);
  }
  return b;
}

Dataset merge_tasks(const std::vector<std::string>& names, const std::vector<Dataset>& sets) {
  PEFT_CHECK(names.size() == sets.size(), ConfigError, kTag, "merge_tasks: ", names.size(), " names for ",
             sets.size(), " datasets");
  PEFT_CHECK(!sets.empty(), ConfigError, kTag, "merge_tasks: no tasks");
  Dataset out;
  std::set<std::string> seen;
  bool token_level = false;
  for (std::size_t t = 0; t < sets.size(); ++t) {
    const Dataset& d = sets[t];
    const std::string& name = names[t];
    PEFT_CHECK(!name.empty(), ConfigError, kTag, "merge_tasks: task ", t, " has no name");
    PEFT_CHECK(seen.insert(name).second, ConfigError, kTag, "merge_tasks: task name '", name, "' is used twice");
    PEFT_CHECK(!d.label_names.empty() && !(d.label_names.size() == 1 && d.label_names[0] == kRegressionLabel),
               ConfigError, kTag, "merge_tasks: task '", name, "' is not a classification set (label names: [",
               join(d.label_names), "])");
    PEFT_CHECK(d.tasks.empty(), ConfigError, kTag, "merge_tasks: task '", name, "' is already a multi-task set");
    PEFT_CHECK(!d.multi_label, NotSupported, kTag, "merge_tasks: task '", name, "' is multi-label data; multi-task "
               "runs join single-label classification sets");
    TaskSpan span;
    span.name = name;
    span.label_offset = static_cast<int64_t>(out.label_names.size());
    span.num_labels = static_cast<int64_t>(d.label_names.size());
    span.label_names = d.label_names;
    for (const auto& l : d.label_names) out.label_names.push_back(name + ":" + l);
    for (Example ex : d.examples) {
      const bool cls = ex.label != kIgnore;  // SeqCls: one class; TokenCls: a tag per token
      if (out.examples.empty()) token_level = !cls;  // the first example sets the kind
      PEFT_CHECK(cls != token_level, ConfigError, kTag, "merge_tasks: task '", name, "' mixes sequence and token ",
                 "classification examples with the tasks before it (all tasks must be one kind)");
      if (cls) {
        PEFT_CHECK(ex.label >= 0 && ex.label < span.num_labels, ConfigError, kTag, "merge_tasks: task '", name,
                   "' has a class label ", ex.label, " outside its ", span.num_labels, " labels");
        ex.label += span.label_offset;
      } else {
        PEFT_CHECK(!ex.labels.empty(), ConfigError, kTag, "merge_tasks: task '", name, "' has an example without labels");
        for (auto& l : ex.labels) {
          if (l == kIgnore) continue;
          PEFT_CHECK(l >= 0 && l < span.num_labels, ConfigError, kTag, "merge_tasks: task '", name, "' has a tag ", l,
                     " outside its ", span.num_labels, " labels");
          l += span.label_offset;
        }
      }
      ex.task = static_cast<int64_t>(t);
      out.examples.push_back(std::move(ex));
    }
    out.skipped += d.skipped;
    out.skipped_reasons.insert(out.skipped_reasons.end(), d.skipped_reasons.begin(), d.skipped_reasons.end());
    out.tasks.push_back(std::move(span));
  }
  return out;
}

Dataset pack(const Dataset& d, int64_t block_size) {
  PEFT_CHECK(block_size > 0, ConfigError, kTag, "pack: block_size must be > 0, got ", block_size);
  std::vector<int64_t> ids, labels;
  for (std::size_t i = 0; i < d.examples.size(); ++i) {
    const auto& ex = d.examples[i];
    PEFT_CHECK(ex.decoder_input_ids.empty() && ex.label == kIgnore, ConfigError, kTag,
               "pack: only causal-LM examples can be packed (example ", i, " has a class label or decoder ids)");
    ids.insert(ids.end(), ex.input_ids.begin(), ex.input_ids.end());
    if (ex.labels.size() == ex.input_ids.size()) labels.insert(labels.end(), ex.labels.begin(), ex.labels.end());
    else labels.insert(labels.end(), ex.input_ids.begin(), ex.input_ids.end());
  }
  Dataset out;
  out.label_names = d.label_names;
  out.skipped = d.skipped;
  out.skipped_reasons = d.skipped_reasons;
  const std::size_t bs = static_cast<std::size_t>(block_size);
  const std::size_t n_blocks = ids.size() / bs;
  PEFT_CHECK(n_blocks > 0, FormatError, kTag, "pack: the dataset has ", ids.size(),
             " tokens, fewer than one block of ", block_size, "; lower block_size or add data");
  for (std::size_t k = 0; k < n_blocks; ++k) {
    Example ex;
    ex.input_ids.assign(ids.begin() + k * bs, ids.begin() + (k + 1) * bs);
    ex.labels.assign(labels.begin() + k * bs, labels.begin() + (k + 1) * bs);
    out.examples.push_back(std::move(ex));
  }
  return out;
}

}  // namespace peft::train
