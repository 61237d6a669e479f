// Dataset layer: readers, tokenisation per task against transformers (tools/reference/gen_data.py),
// batching, collation, packing.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "peft/core/error.h"
#include "peft/core/file_util.h"
#include "peft/io/tokenizer.h"
#include "peft/train/data.h"
#include "test_utils.h"

namespace {

using nlohmann::json;
using namespace peft::train;
using peft::FormatError;
using peft::io::Tokenizer;
using I64 = std::vector<int64_t>;

std::string data_fixture(const std::string& rel) { return peft::test::fixture("data/" + rel); }

const json& expected() {
  static const json j = json::parse(peft::read_file(data_fixture("expected.json")));
  return j;
}

/// tokenizer.json plus a tokenizer_config.json naming the special tokens (as in a model folder).
Tokenizer with_config(const std::string& name, const std::string& config) {
  const std::string dir = peft::test::tmp_dir("data_tok_" + name);
  std::filesystem::copy_file(peft::test::fixture("tokenizers/" + name + "/tokenizer.json"), dir + "/tokenizer.json");
  std::ofstream(dir + "/tokenizer_config.json") << config;
  return Tokenizer::from_pretrained(dir);
}

const Tokenizer& bert() {
  static const Tokenizer t = with_config("bert", R"({"pad_token": "[PAD]"})");
  return t;
}
const Tokenizer& gpt2() {
  static const Tokenizer t = with_config("gpt2", R"({"eos_token": "<|endoftext|>", "bos_token": "<|endoftext|>"})");
  return t;
}

std::string write_tmp(const std::string& name, const std::string& body) {
  static const std::string dir = peft::test::tmp_dir("data");
  const std::string p = dir + "/" + name;
  std::ofstream(p, std::ios::binary) << body;
  return p;
}

Row row(std::map<std::string, std::string> f, int64_t line = 2) { return Row{std::move(f), "mem.csv", line}; }

// ------------------------------------------------------------------------------------- readers

TEST(DataReaders, CsvQuotingMatchesPythonCsv) {
  const auto rows = read_rows(data_fixture("reader.csv"));
  const auto& want = expected()["csv"];
  ASSERT_EQ(rows.size(), want.size());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(rows[i].fields.size(), 3u);
    for (const auto& [k, v] : want[i].items()) EXPECT_EQ(rows[i].fields.at(k), v.get<std::string>()) << i << k;
  }
  EXPECT_EQ(rows[0].line, 2);
  EXPECT_EQ(rows[1].line, 3);
  EXPECT_EQ(rows[2].line, 5);  // row 2 spans lines 3-4
  EXPECT_EQ(rows[4].line, 8);  // blank line 7 skipped
  EXPECT_EQ(rows[0].file, data_fixture("reader.csv"));
}

TEST(DataReaders, CsvErrorsNameFileAndLine) {
  const auto bad_count = write_tmp("count.csv", "a,b\n1,2\n3,4,5\n");
  peft::test::expect_throw_with<FormatError>([&] { read_rows(bad_count); },
                                             {"[train::data]", "count.csv:3:", "3 fields", "header has 2"});
  const auto unterminated = write_tmp("open.csv", "a,b\n1,2\n\"x,3\n4,5\n");
  peft::test::expect_throw_with<FormatError>([&] { read_rows(unterminated); }, {"open.csv:3:", "unterminated"});
  const auto junk = write_tmp("junk.csv", "a,b\n\"x\"y,2\n");
  peft::test::expect_throw_with<FormatError>([&] { read_rows(junk); }, {"junk.csv:2:", "closing quote"});
  const auto empty = write_tmp("empty.csv", "");
  peft::test::expect_throw_with<FormatError>([&] { read_rows(empty); }, {"empty.csv:1:"});
  const auto header_only = write_tmp("header.csv", "a,b\n");
  peft::test::expect_throw_with<FormatError>([&] { read_rows(header_only); }, {"header.csv:1:", "no data rows"});
  EXPECT_THROW(read_rows(write_tmp("x.parquet", "a")), peft::ConfigError);
}

TEST(DataReaders, TsvWithHeaderAndWithColumns) {
  const auto rows = read_rows(data_fixture("reader.tsv"));
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].fields.at("sentence"), "it is good");
  EXPECT_EQ(rows[1].fields.at("sentence"), "it is \"bad");  // no quoting in TSV
  EXPECT_EQ(rows[1].fields.at("label"), "0");
  EXPECT_EQ(rows[1].line, 3);
  const auto p = write_tmp("nohdr.tsv", "x\t1\r\ny\t0\r\n");
  const auto r2 = read_rows(p, {"text", "label"});
  ASSERT_EQ(r2.size(), 2u);
  EXPECT_EQ(r2[0].fields.at("text"), "x");
  EXPECT_EQ(r2[1].fields.at("label"), "0");
  EXPECT_EQ(r2[0].line, 1);
  peft::test::expect_throw_with<FormatError>([&] { read_rows(write_tmp("bad.tsv", "a\tb\nx\n")); },
                                             {"bad.tsv:2:", "1 fields"});
}

TEST(DataReaders, JsonlValues) {
  const auto rows = read_rows(data_fixture("reader.jsonl"));
  ASSERT_EQ(rows.size(), 2u);
  const auto& f = rows[0].fields;
  EXPECT_EQ(f.at("text"), "a");
  EXPECT_EQ(f.at("n"), "3");
  EXPECT_EQ(f.at("f"), "1.5");
  EXPECT_EQ(f.at("b"), "true");
  EXPECT_EQ(f.at("tags"), "[\"x\",\"y\"]");
  EXPECT_EQ(f.at("obj"), "{\"k\":1}");
  EXPECT_EQ(f.count("none"), 0u);
  EXPECT_EQ(rows[1].fields.at("text"), "caf\xC3\xA9 \"q\"");
  EXPECT_EQ(rows[1].line, 3);
  peft::test::expect_throw_with<FormatError>([&] { read_rows(write_tmp("bad.jsonl", "{\"a\":1}\n{\"a\":\n")); },
                                             {"bad.jsonl:2:", "not valid JSON", "one object per line"});
  peft::test::expect_throw_with<FormatError>([&] { read_rows(write_tmp("arr.jsonl", "[1,2]\n")); },
                                             {"arr.jsonl:1:", "expected a JSON object"});
  const auto arr = read_rows(write_tmp("arr.json", "[{\"text\": \"x\"}, {\"text\": \"y\"}]"));
  ASSERT_EQ(arr.size(), 2u);
  EXPECT_EQ(arr[1].fields.at("text"), "y");
}

TEST(DataReaders, InvalidUtf8IsNamedByLineOrReplacedWhenAsked) {
  const std::string csv = write_tmp("latin1.csv", "text,label\ncaf\xc3\xa9,1\nna\xefve,0\n");
  peft::test::expect_throw_with<FormatError>([&] { read_rows(csv); },
                                             {"latin1.csv:3:", "not valid UTF-8", "0xEF", "column 3", "invalid_utf8: replace"});
  const auto rows = read_rows(csv, {}, peft::train::InvalidUtf8::Replace);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].fields.at("text"), "caf\xc3\xa9");
  EXPECT_EQ(rows[1].fields.at("text"), "na\xef\xbf\xbdve");
  const std::string conll = write_tmp("bad.conll", "EU B-ORG\nre\xe2\x82jects O\n");
  peft::test::expect_throw_with<FormatError>([&] { read_conll(conll); }, {"bad.conll:2:", "not valid UTF-8"});
  const auto s = read_conll(conll, -1, peft::train::InvalidUtf8::Replace);
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].tokens[1], "re\xef\xbf\xbdjects");
  peft::test::expect_throw_with<FormatError>([&] { read_rows(write_tmp("u.jsonl", "{\"text\": \"ok\"}\n{\"text\": \"\xff\"}\n")); },
                                             {"u.jsonl:2:", "not valid UTF-8"});
}

TEST(DataReaders, Conll) {
  const auto s = read_conll(data_fixture("ner.conll"));
  ASSERT_EQ(s.size(), 3u);
  EXPECT_EQ(s[0].tokens.size(), 9u);
  EXPECT_EQ(s[0].tokens[0], "EU");
  EXPECT_EQ(s[0].tags[0], "B-ORG");
  EXPECT_EQ(s[0].line, 3);
  EXPECT_EQ(s[1].line, 13);
  EXPECT_EQ(s[2].tags.back(), "O");
  const auto pos = read_conll(data_fixture("ner.conll"), 1);
  EXPECT_EQ(pos[0].tags[0], "NNP");
  peft::test::expect_throw_with<FormatError>([&] { read_conll(write_tmp("bad.conll", "a O\nb\n")); },
                                             {"bad.conll:2:"});
  peft::test::expect_throw_with<FormatError>([&] { read_conll(write_tmp("e.conll", "-DOCSTART- O\n\n")); },
                                             {"e.conll:1:", "no sentences"});
}

TEST(DataReaders, E2ESlice) {
  const auto train = read_rows(peft::test::source_path("data/e2e/train.csv"));
  const auto dev = read_rows(peft::test::source_path("data/e2e/dev.csv"));
  ASSERT_EQ(train.size(), 2000u);
  ASSERT_EQ(dev.size(), 200u);
  EXPECT_EQ(train[0].fields.at("mr"),
            "name[The Vaults], eatType[pub], priceRange[more than \xC2\xA3" "30], customer rating[5 out of 5], "
            "near[Caf\xC3\xA9 Adriatic]");
  EXPECT_EQ(train[0].fields.at("ref"), "The Vaults pub near Caf\xC3\xA9 Adriatic has a 5 star rating.  Prices start at \xC2\xA3" "30.");
  EXPECT_EQ(dev[0].fields.size(), 2u);
}

// ------------------------------------------------------------------------------- task formats

I64 to_i64(const json& j) { return j.get<I64>(); }

TEST(DataTasks, CausalLMPlainTextMatchesTransformers) {
  const auto& c = expected()["causal"];
  std::vector<Row> rows;
  for (const auto& t : c["texts"]) rows.push_back(row({{"text", t.get<std::string>()}}));
  DataOptions opt;
  const auto d = build_dataset(rows, gpt2(), opt);
  ASSERT_EQ(d.examples.size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(d.examples[i].input_ids, to_i64(c["ids"][i]));
    EXPECT_EQ(d.examples[i].labels, d.examples[i].input_ids);
    EXPECT_EQ(d.examples[i].input_ids.back(), 50256);
  }
  const Tokenizer bare = Tokenizer::from_file(peft::test::fixture("tokenizers/gpt2/tokenizer.json"));
  peft::test::expect_throw_with<peft::ConfigError>([&] { build_dataset(rows, bare, opt); }, {"no eos token"});
  opt.max_length = 3;
  opt.add_eos = false;
  const auto t = build_dataset(rows, gpt2(), opt);
  I64 want = to_i64(c["ids"][0]);
  want.resize(3);
  EXPECT_EQ(t.examples[0].input_ids, want);
}

TEST(DataTasks, PromptCompletionMasksThePrompt) {
  const auto& c = expected()["causal"];
  DataOptions opt;
  opt.prompt_column = "mr";
  opt.completion_column = "ref";
  opt.prompt_suffix = " ||";
  const auto d = build_dataset({row({{"mr", "name[The Vaults], eatType[pub]"}, {"ref", c["completion"].get<std::string>()}})},
                               gpt2(), opt);
  const I64 p = to_i64(c["prompt_ids"]);
  I64 comp = to_i64(c["completion_ids"]);
  comp.push_back(50256);
  I64 ids = p;
  ids.insert(ids.end(), comp.begin(), comp.end());
  I64 labels(p.size(), -100);
  labels.insert(labels.end(), comp.begin(), comp.end());
  ASSERT_EQ(d.examples.size(), 1u);
  EXPECT_EQ(d.examples[0].input_ids, ids);
  EXPECT_EQ(d.examples[0].labels, labels);
  // Truncation keeps the completion's end and drops the start of the prompt.
  opt.max_length = static_cast<int64_t>(comp.size()) + 2;
  const auto t = build_dataset({row({{"mr", "name[The Vaults], eatType[pub]"}, {"ref", c["completion"].get<std::string>()}})},
                               gpt2(), opt);
  EXPECT_EQ(t.examples[0].input_ids, I64(ids.end() - opt.max_length, ids.end()));
  EXPECT_EQ(t.examples[0].labels, I64(labels.end() - opt.max_length, labels.end()));
}

TEST(DataTasks, SeqClsPairsTruncateLongestFirstLikeTransformers) {
  const auto& s = expected()["seq_cls"];
  std::vector<Row> rows;
  const char* labels[] = {"pos", "neg", "pos", "neg", "pos", "neg"};
  for (std::size_t i = 0; i < s["pairs"].size(); ++i)
    rows.push_back(row({{"a", s["pairs"][i][0].get<std::string>()}, {"b", s["pairs"][i][1].get<std::string>()},
                        {"label", labels[i]}},
                       static_cast<int64_t>(i + 2)));
  DataOptions opt;
  opt.task = TaskFormat::SeqCls;
  opt.text_column = "a";
  opt.text_pair_column = "b";
  opt.max_length = s["max_length"];
  const auto d = build_dataset(rows, bert(), opt);
  EXPECT_EQ(d.label_names, (std::vector<std::string>{"neg", "pos"}));
  for (std::size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(d.examples[i].input_ids, to_i64(s["bert"][i]["input_ids"])) << i;
    EXPECT_EQ(d.examples[i].token_type_ids, to_i64(s["bert"][i]["token_type_ids"])) << i;
  }
  EXPECT_EQ(d.examples[0].label, 1);
  EXPECT_EQ(d.examples[1].label, 0);

  DataOptions one;
  one.task = TaskFormat::SeqCls;
  one.max_length = s["single"]["max_length"];
  const auto d1 = build_dataset({row({{"text", s["single"]["text"].get<std::string>()}, {"label", "1"}})}, bert(), one);
  EXPECT_EQ(d1.examples[0].input_ids, to_i64(s["single"]["input_ids"]));
}

TEST(DataTasks, SeqClsLabelsAndErrors) {
  DataOptions opt;
  opt.task = TaskFormat::SeqCls;
  // Collected integer labels sort numerically.
  const auto d = build_dataset({row({{"text", "a"}, {"label", "10"}}), row({{"text", "b"}, {"label", "2"}})}, bert(), opt);
  EXPECT_EQ(d.label_names, (std::vector<std::string>{"2", "10"}));
  EXPECT_EQ(d.examples[0].label, 1);
  // Given names: by name or by index in range.
  opt.label_names = {"neg", "pos"};
  const auto g = build_dataset({row({{"text", "a"}, {"label", "pos"}}), row({{"text", "b"}, {"label", "0"}})}, bert(), opt);
  EXPECT_EQ(g.examples[0].label, 1);
  EXPECT_EQ(g.examples[1].label, 0);
  peft::test::expect_throw_with<FormatError>(
      [&] { build_dataset({row({{"text", "a"}, {"label", "maybe"}}, 7)}, bert(), opt); },
      {"[train::data] mem.csv:7:", "'maybe'", "neg, pos"});
  peft::test::expect_throw_with<FormatError>(
      [&] { build_dataset({row({{"txt", "a"}, {"label", "pos"}}, 4)}, bert(), opt); },
      {"mem.csv:4:", "missing column 'text'", "label, txt"});
  // Skipping: counted with reasons; all skipped -> error.
  opt.skip_bad_rows = true;
  const auto s = build_dataset({row({{"text", "a"}, {"label", "x"}}, 3), row({{"text", "b"}, {"label", "neg"}}, 4)}, bert(), opt);
  EXPECT_EQ(s.examples.size(), 1u);
  EXPECT_EQ(s.skipped, 1);
  ASSERT_EQ(s.skipped_reasons.size(), 1u);
  EXPECT_NE(s.skipped_reasons[0].find("mem.csv:3:"), std::string::npos);
  peft::test::expect_throw_with<FormatError>(
      [&] { build_dataset({row({{"text", "a"}, {"label", "x"}}, 3)}, bert(), opt); }, {"no examples", "mem.csv:3:"});
  // Regression.
  DataOptions reg;
  reg.task = TaskFormat::SeqCls;
  reg.label_names = {kRegressionLabel};
  const auto r = build_dataset({row({{"text", "a"}, {"label", "3.25"}})}, bert(), reg);
  EXPECT_DOUBLE_EQ(r.examples[0].label_value, 3.25);
  EXPECT_EQ(r.examples[0].label, -100);
  peft::test::expect_throw_with<FormatError>(
      [&] { build_dataset({row({{"text", "a"}, {"label", "high"}}, 5)}, bert(), reg); },
      {"mem.csv:5:", "'high'", "not a number"});
  const auto b = collate(r, {0}, 0);
  EXPECT_TRUE(b.seq_labels.empty());
  EXPECT_EQ(b.seq_values, (std::vector<double>{3.25}));
}

// Sentence pairs take the tokenizer's pair template ([CLS] a [SEP] b [SEP], type ids 0 then 1), as
// the `tokenizers` library encodes them (tests/fixtures/tokenizers/bert/pairs.jsonl), and collate
// keeps each row's token_type_ids (0 on padding).
std::vector<std::string> file_lines(const std::string& path) {
  std::vector<std::string> v;
  std::ifstream f(path);
  for (std::string line; std::getline(f, line);) v.push_back(line);
  return v;
}

TEST(DataTasks, SeqClsPairsMatchTokenizersPairTemplate) {
  std::vector<std::string> corpus;
  for (const auto& line : file_lines(peft::test::fixture("tokenizers/corpus.jsonl")))
    if (!line.empty()) corpus.push_back(json::parse(line).get<std::string>());
  std::vector<Row> rows;
  std::vector<json> want;
  for (const auto& line : file_lines(peft::test::fixture("tokenizers/bert/pairs.jsonl"))) {
    if (line.empty()) continue;
    want.push_back(json::parse(line));
    rows.push_back(row({{"s1", corpus.at(want.back()["a"].get<std::size_t>())},
                        {"s2", corpus.at(want.back()["b"].get<std::size_t>())}, {"label", "1"}}));
  }
  ASSERT_GE(rows.size(), 50u);
  DataOptions opt;
  opt.task = TaskFormat::SeqCls;
  opt.text_column = "s1";
  opt.text_pair_column = "s2";
  opt.max_length = 100000;
  const auto d = build_dataset(rows, bert(), opt);
  ASSERT_EQ(d.examples.size(), rows.size());
  std::vector<int64_t> all(rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(d.examples[i].input_ids, to_i64(want[i]["ids"])) << i;
    EXPECT_EQ(d.examples[i].token_type_ids, to_i64(want[i]["type_ids"])) << i;
    all[i] = static_cast<int64_t>(i);
  }
  const Batch b = collate(d, all, 0);
  ASSERT_EQ(b.token_type_ids.size(), static_cast<std::size_t>(b.rows * b.cols));
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const auto w = to_i64(want[i]["type_ids"]);
    for (int64_t t = 0; t < b.cols; ++t)
      ASSERT_EQ(b.token_type_ids[i * b.cols + t], t < static_cast<int64_t>(w.size()) ? w[t] : 0) << i << " " << t;
  }
}

// Multi-label: a JSON list or ';'-separated names; multi-hot rows in the batch; unknown names are
// errors naming file:line.
TEST(DataTasks, SeqClsMultiLabel) {
  DataOptions opt;
  opt.task = TaskFormat::SeqCls;
  opt.multi_label = true;
  const std::vector<Row> rows = {row({{"text", "a"}, {"label", R"(["sports","politics"])"}}, 2),
                                 row({{"text", "b"}, {"label", "economy; sports"}}, 3),
                                 row({{"text", "c"}, {"label", "[]"}}, 4), row({{"text", "d"}, {"label", ""}}, 5)};
  const auto d = build_dataset(rows, bert(), opt);
  EXPECT_TRUE(d.multi_label);
  EXPECT_EQ(problem_type(d), "multi_label_classification");
  EXPECT_EQ(d.label_names, (std::vector<std::string>{"economy", "politics", "sports"}));
  EXPECT_EQ(d.examples[0].label_set, (I64{1, 2}));
  EXPECT_EQ(d.examples[1].label_set, (I64{0, 2}));
  EXPECT_TRUE(d.examples[2].label_set.empty());
  const Batch b = collate(d, {0, 1, 2, 3}, 0);
  EXPECT_TRUE(b.seq_labels.empty());
  EXPECT_EQ(b.seq_multi_hot, (std::vector<float>{0, 1, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0}));
  opt.label_names = d.label_names;
  peft::test::expect_throw_with<FormatError>(
      [&] { build_dataset({row({{"text", "a"}, {"label", "sports;weather"}}, 9)}, bert(), opt); },
      {"mem.csv:9:", "'weather'", "economy, politics, sports"});
  peft::test::expect_throw_with<FormatError>(
      [&] { build_dataset({row({{"text", "a"}, {"label", "[1.5]"}}, 6)}, bert(), opt); },
      {"mem.csv:6:", "label names"});
  // Single-label and regression data name their problem types too.
  DataOptions reg;
  reg.task = TaskFormat::SeqCls;
  reg.label_names = {kRegressionLabel};
  EXPECT_EQ(problem_type(build_dataset({row({{"text", "a"}, {"label", "1.5"}})}, bert(), reg)), "regression");
  DataOptions one;
  one.task = TaskFormat::SeqCls;
  EXPECT_EQ(problem_type(build_dataset({row({{"text", "a"}, {"label", "x"}})}, bert(), one)),
            "single_label_classification");
}

// label_regex: the label is what the regex extracts from the label column (Python's re.search:
// group 1, or the whole match); rows it does not match are bad rows naming the regex and column.
TEST(DataTasks, SeqClsLabelRegex) {
  DataOptions opt;
  opt.task = TaskFormat::SeqCls;
  opt.text_column = "ref";
  opt.label_column = "mr";
  opt.label_regex = R"(eatType\[([^\]]+)\])";
  const auto d = build_dataset({row({{"ref", "a pub"}, {"mr", "name[X], eatType[pub], area[riverside]"}}),
                                row({{"ref", "a cafe"}, {"mr", "eatType[coffee shop]"}})},
                               bert(), opt);
  EXPECT_EQ(d.label_names, (std::vector<std::string>{"coffee shop", "pub"}));
  EXPECT_EQ(d.examples[0].label, 1);
  EXPECT_EQ(d.examples[1].label, 0);
  peft::test::expect_throw_with<FormatError>(
      [&] { build_dataset({row({{"ref", "x"}, {"mr", "name[Y]"}}, 9)}, bert(), opt); },
      {"mem.csv:9:", "label_regex", "column 'mr'"});
  opt.skip_bad_rows = true;
  const auto s = build_dataset({row({{"ref", "x"}, {"mr", "name[Y]"}}, 2), row({{"ref", "y"}, {"mr", "eatType[pub]"}}, 3)},
                               bert(), opt);
  EXPECT_EQ(s.label_names, (std::vector<std::string>{"pub"}));
  EXPECT_EQ(s.skipped, 1);
  // Without a group the whole match is the label.
  opt.label_regex = "(?:yes|no)$";
  const auto w = build_dataset({row({{"ref", "x"}, {"mr", "familyFriendly yes"}})}, bert(), opt);
  EXPECT_EQ(w.label_names, (std::vector<std::string>{"yes"}));
  opt.label_regex = "([unclosed";
  EXPECT_THROW(build_dataset({row({{"ref", "x"}, {"mr", "y"}})}, bert(), opt), peft::ConfigError);
}

TEST(DataTasks, Seq2Seq) {
  DataOptions opt;
  opt.task = TaskFormat::Seq2Seq;
  opt.max_target_length = 3;
  const auto d = build_dataset({row({{"source", "hello world"}, {"target", "the quick brown fox"}})}, bert(), opt);
  const auto& ex = d.examples[0];
  EXPECT_EQ(ex.input_ids, (I64{101, 7592, 2088, 102}));
  EXPECT_EQ(ex.labels, (I64{101, 1996, 102}));  // truncated, specials kept
  EXPECT_EQ(ex.decoder_input_ids, (I64{0, 101, 1996}));  // [pad] + labels[:-1]
  const auto b = collate(d, {0}, 0, 8);
  EXPECT_EQ(b.cols, 8);
  EXPECT_EQ(b.decoder_cols, 8);
  EXPECT_EQ(b.labels.size(), 8u);
  EXPECT_EQ(b.labels[3], -100);
}

// --------------------------------------------------------------------------- token classification

void check_token_cls(const Tokenizer& tok, const json& want, int64_t max_length, bool prefix_space) {
  const auto sents = read_conll(data_fixture("ner.conll"));
  DataOptions opt;
  opt.task = TaskFormat::TokenCls;
  opt.max_length = max_length;
  opt.add_prefix_space = prefix_space;
  const auto d = build_token_dataset(sents, tok, opt);
  EXPECT_EQ(d.label_names, expected()["token_cls"]["label_list"].get<std::vector<std::string>>());
  ASSERT_EQ(d.examples.size(), want.size());
  for (std::size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(d.examples[i].input_ids, to_i64(want[i]["input_ids"])) << i;
    EXPECT_EQ(d.examples[i].labels, to_i64(want[i]["labels"])) << i;
  }
}

TEST(DataTasks, TokenClsAlignmentMatchesRunNer) {
  check_token_cls(bert(), expected()["token_cls"]["bert"], 512, false);
  check_token_cls(bert(), expected()["token_cls"]["bert_max8"], 8, false);
  check_token_cls(gpt2(), expected()["token_cls"]["gpt2_prefix_space"], 512, true);
}

TEST(DataTasks, TokenClsUnknownTagNamesItsLine) {
  auto sents = read_conll(data_fixture("ner.conll"));
  DataOptions opt;
  opt.task = TaskFormat::TokenCls;
  opt.label_names = {"O", "B-PER", "I-PER", "B-LOC", "B-ORG"};  // no B-MISC
  peft::test::expect_throw_with<FormatError>([&] { build_token_dataset(sents, bert(), opt); },
                                             {"ner.conll:5:", "'B-MISC'"});
  opt.skip_bad_rows = true;
  const auto d = build_token_dataset(sents, bert(), opt);
  EXPECT_EQ(d.examples.size(), 2u);
  EXPECT_EQ(d.skipped, 1);
}

// ------------------------------------------------------------------------ batching, collate, pack

Dataset lengths_dataset(const std::vector<int>& lens) {
  Dataset d;
  for (std::size_t i = 0; i < lens.size(); ++i) {
    Example e;
    for (int k = 0; k < lens[i]; ++k) e.input_ids.push_back(static_cast<int64_t>(i * 100 + k + 1));
    e.labels = e.input_ids;
    d.examples.push_back(e);
  }
  return d;
}

void expect_cover_once(const std::vector<std::vector<int64_t>>& b, std::size_t n) {
  std::vector<int64_t> all;
  for (const auto& x : b) all.insert(all.end(), x.begin(), x.end());
  std::sort(all.begin(), all.end());
  ASSERT_EQ(all.size(), n);
  for (std::size_t i = 0; i < n; ++i) EXPECT_EQ(all[i], static_cast<int64_t>(i));
}

TEST(DataBatches, DeterministicShuffleCoversEveryExample) {
  std::vector<int> lens;
  for (int i = 0; i < 103; ++i) lens.push_back(1 + (i * 37) % 29);
  const auto d = lengths_dataset(lens);
  const auto a = make_batches(d, 8, true, 42, false);
  EXPECT_EQ(a, make_batches(d, 8, true, 42, false));
  EXPECT_NE(a, make_batches(d, 8, true, 43, false));
  ASSERT_EQ(a.size(), 13u);
  EXPECT_EQ(a.back().size(), 7u);
  expect_cover_once(a, 103);
  // Pinned first batch for seed 42: the shuffle is our own Fisher-Yates over mt19937_64, the same everywhere.
  EXPECT_EQ(a[0], (I64{79, 98, 73, 80, 101, 27, 97, 13}));
  const auto plain = make_batches(d, 8, false, 0, false);
  EXPECT_EQ(plain[0], (I64{0, 1, 2, 3, 4, 5, 6, 7}));
  EXPECT_EQ(make_batches(d, 8, true, 42, false, true).size(), 12u);
  EXPECT_THROW(make_batches(d, 0, false, 0, false), peft::ConfigError);
}

TEST(DataBatches, GroupByLength) {
  std::vector<int> lens;
  for (int i = 0; i < 250; ++i) lens.push_back(1 + (i * 53) % 97);
  lens[201] = 500;  // the longest sits in the second megabatch (50*2 = 100 per megabatch) when unshuffled
  const auto d = lengths_dataset(lens);
  const auto b = make_batches(d, 2, false, 0, true);
  expect_cover_once(b, 250);
  EXPECT_EQ(b[0][0], 201);
  for (int seed : {1, 2, 3}) {
    const auto s = make_batches(d, 2, true, seed, true);
    expect_cover_once(s, 250);
    EXPECT_EQ(s[0][0], 201);
    EXPECT_EQ(s, make_batches(d, 2, true, seed, true));
    // Inside each megabatch (50 batches) lengths are non-increasing, except for the swapped head.
    for (std::size_t m = 0; m < s.size(); m += 50) {
      std::vector<std::size_t> l;
      for (std::size_t k = m; k < std::min(s.size(), m + 50); ++k)
        for (auto i : s[k]) l.push_back(d.examples[i].input_ids.size());
      EXPECT_TRUE(std::is_sorted(l.begin() + 1, l.end(), std::greater<>())) << m;
    }
  }
}

TEST(DataBatches, CollatePadsRight) {
  Dataset d = lengths_dataset({3, 1, 5});
  d.examples[1].labels = {-100};
  d.examples[0].token_type_ids = {0, 1, 1};
  const auto b = collate(d, {0, 1}, 9);
  EXPECT_EQ(b.rows, 2);
  EXPECT_EQ(b.cols, 3);
  EXPECT_EQ(b.input_ids, (I64{1, 2, 3, 101, 9, 9}));
  EXPECT_EQ(b.attention_mask, (I64{1, 1, 1, 1, 0, 0}));
  EXPECT_EQ(b.labels, (I64{1, 2, 3, -100, -100, -100}));
  EXPECT_EQ(b.token_type_ids, (I64{0, 1, 1, 0, 0, 0}));
  EXPECT_EQ(b.n_tokens, 4);
  EXPECT_EQ(b.n_label_tokens, 3);
  EXPECT_TRUE(b.seq_labels.empty());
  EXPECT_TRUE(b.decoder_input_ids.empty());
  const auto m = collate(d, {2, 1}, 0, 4);
  EXPECT_EQ(m.cols, 8);
  EXPECT_EQ(m.input_ids.size(), 16u);
  EXPECT_EQ(m.attention_mask[5], 0);
  EXPECT_THROW(collate(d, {3}, 0), std::out_of_range);

  Dataset cls;
  cls.label_names = {"a", "b"};
  Example e;
  e.input_ids = {5, 6};
  e.label = 1;
  cls.examples = {e, e};
  cls.examples[1].label = 0;
  EXPECT_EQ(collate(cls, {0, 1}, 0).seq_labels, (I64{1, 0}));
  EXPECT_TRUE(collate(cls, {0, 1}, 0).labels.empty());
}

TEST(DataBatches, PackLikeGroupTexts) {
  Dataset d = lengths_dataset({3, 4, 2});
  d.examples[1].labels = {-100, -100, 102, 103};
  const auto p = pack(d, 4);
  ASSERT_EQ(p.examples.size(), 2u);  // 9 tokens -> 2 blocks of 4, remainder dropped
  EXPECT_EQ(p.examples[0].input_ids, (I64{1, 2, 3, 101}));
  EXPECT_EQ(p.examples[0].labels, (I64{1, 2, 3, -100}));
  EXPECT_EQ(p.examples[1].input_ids, (I64{102, 103, 104, 201}));
  EXPECT_EQ(p.examples[1].labels, (I64{-100, 102, 103, 201}));
  peft::test::expect_throw_with<FormatError>([&] { pack(d, 10); }, {"9 tokens", "10"});
}

TEST(DataBatches, EndToEndE2E) {
  const auto rows = read_rows(peft::test::source_path("data/e2e/dev.csv"));
  DataOptions opt;
  opt.prompt_column = "mr";
  opt.completion_column = "ref";
  opt.max_length = 64;
  const auto d = build_dataset(rows, gpt2(), opt);
  ASSERT_EQ(d.examples.size(), 200u);
  for (const auto& ex : d.examples) {
    EXPECT_LE(ex.input_ids.size(), 64u);
    EXPECT_EQ(ex.labels.size(), ex.input_ids.size());
    EXPECT_EQ(ex.labels.back(), 50256);
  }
  const auto batches = make_batches(d, 16, true, 7, true);
  expect_cover_once(batches, 200);
  const auto b = collate(d, batches[0], 50256, 8);
  EXPECT_EQ(b.cols % 8, 0);
}

}  // namespace
