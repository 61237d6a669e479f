// Bounded readers: JSON and YAML depth/size caps, model and adapter sizes checked before
// allocation, and the context added to errors that name nothing.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "peft/core/error.h"
#include "peft/core/error_context.h"
#include "peft/core/file_util.h"
#include "peft/core/json_file.h"
#include "peft/core/memory_bounds.h"
#include "peft/core/utf8.h"
#include "peft/core/yaml_bounds.h"
#include "peft/io/safetensors.h"
#include "peft/models/model_size.h"
#include "test_utils.h"

namespace fs = std::filesystem;
using peft::test::expect_throw_with;

namespace {

std::string nested(int depth, char open, char close) {
  return std::string(static_cast<std::size_t>(depth), open) + std::string(static_cast<std::size_t>(depth), close);
}

fs::path scratch(const std::string& name) {
  const fs::path d = fs::path(PEFT_TEST_OUTPUT_DIR) / "bounds" / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

TEST(JsonBounds, DeepNestingIsRefusedNamingTheSourceAndPosition) {
  // 200,000 levels overflowed the stack of the recursive copies and dumps that followed a parse.
  const std::string deep = "{\"a\": " + nested(200000, '[', ']') + "}";
  expect_throw_with<peft::FormatError>([&] { peft::parse_json(deep, "x/config.json"); },
                                       {"[json] x/config.json", "nested deeper than 256", "line 1, column 262"});
  // Objects count as levels too, and the position is on the right line.
  std::string objs = "{\n";
  for (int i = 0; i < 300; ++i) objs += "{\"k\":";
  expect_throw_with<peft::FormatError>([&] { peft::parse_json(objs, "t.json"); }, {"t.json", "line 2, column 1276"});
  // At the limit it parses.
  const auto ok = peft::parse_json(nested(256, '[', ']'), "ok.json");
  EXPECT_TRUE(ok.is_array());
}

TEST(JsonBounds, BracketsInsideStringsAreNotNesting) {
  const std::string text = "{\"s\": \"" + std::string(5000, '[') + "\\\"" + std::string(5000, '{') + "\"}";
  const auto j = peft::parse_json(text, "s.json");
  EXPECT_EQ(j["s"].get<std::string>().size(), 10001u);
}

TEST(JsonBounds, SizeCapAndSyntaxErrorsNameTheFile) {
  peft::JsonLimits lim;
  lim.max_bytes = 10;
  expect_throw_with<peft::FormatError>([&] { peft::parse_json("{\"a\": 12345}", "big.json", lim); },
                                       {"big.json", "12 bytes", "at most 10"});
  expect_throw_with<peft::FormatError>([&] { peft::parse_json("{\"a\": 1,,}", "bad.json"); },
                                       {"[json] bad.json: not valid JSON", "line 1, column 9"});
  // nlohmann's "[json.exception...]" tag is not part of the message.
  try {
    peft::parse_json("[1", "t.json");
    FAIL();
  } catch (const peft::FormatError& e) {
    EXPECT_EQ(std::string(e.what()).find("json.exception"), std::string::npos) << e.what();
  }
}

TEST(JsonBounds, ReadJsonFileChecksTheFileBeforeReadingIt) {
  const fs::path d = scratch("json_file");
  expect_throw_with<peft::FormatError>([&] { peft::read_json_file(d.string()); }, {d.string(), "is a folder"});
  const fs::path f = d / "c.json";
  std::ofstream(f) << "{\"x\": [" << std::string(4000, ' ') << "]}";
  peft::JsonLimits lim;
  lim.max_bytes = 1000;
  expect_throw_with<peft::FormatError>([&] { peft::read_json_file(f.string(), lim); },
                                       {f.string(), "4009 bytes", "at most 1000"});
  EXPECT_EQ(peft::read_json_file(f.string())["x"].size(), 0u);
  expect_throw_with<peft::FormatError>([&] { peft::read_json_file((d / "none.json").string()); },
                                       {"none.json", "cannot open"});
}

TEST(JsonBounds, SafetensorsHeadersAreBoundedToo) {
  const std::string header = "{\"a\": " + nested(100, '[', ']') + "}";
  std::string file(8, '\0');
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) file[static_cast<std::size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
  file += header;
  const fs::path p = scratch("st") / "deep.safetensors";
  std::ofstream(p, std::ios::binary) << file;
  expect_throw_with<peft::FormatError>([&] { peft::io::SafetensorsFile::open(p.string()); },
                                       {p.string(), "nested deeper than 16"});
}

TEST(YamlBounds, DeepFlowSequencesAndIndentationAreRefusedNamingTheLine) {
  expect_throw_with<peft::ConfigError>([&] { peft::check_yaml_bounds("a: 1\nb: " + std::string(200, '['), "r.yaml"); },
                                       {"[config] r.yaml", "nested deeper than 128 levels at line 2", "200 open brackets"});
  std::string seq = "model:\n";
  for (int i = 0; i < 200; ++i) seq += "- ";
  expect_throw_with<peft::ConfigError>([&] { peft::check_yaml_bounds(seq + "x\n", "s.yaml"); },
                                       {"s.yaml", "line 2", "200 '- ' items"});
  expect_throw_with<peft::ConfigError>(
      [&] { peft::check_yaml_bounds("a:\n" + std::string(300, ' ') + "b: 1\n", "i.yaml"); },
      {"i.yaml", "line 2", "300 columns of indentation"});
  // Brackets in quotes and comments do not nest; a real run config passes.
  peft::check_yaml_bounds("a: '" + std::string(500, '[') + "'\nb: \"" + std::string(500, '{') + "\"  # " +
                              std::string(500, '[') + "\ntarget_modules: [q_proj, v_proj]\n",
                          "q.yaml");
  const std::string cfg = peft::read_file(std::string(PEFT_SOURCE_DIR) + "/examples/configs/e2e_lora.yaml");
  peft::check_yaml_bounds(cfg, "e2e_lora.yaml");
  peft::YamlLimits lim;
  lim.max_bytes = 100;
  expect_throw_with<peft::ConfigError>([&] { peft::check_yaml_bounds(cfg, "e2e_lora.yaml", lim); },
                                       {"e2e_lora.yaml", "at most 100"});
}

// yaml-cpp passes bytes that are not UTF-8 on as they are (into JSON files, which then fail to
// write, and the tokenizer): the bounds check refuses them, naming the line.
TEST(YamlBounds, TextThatIsNotUtf8IsRefusedNamingTheLine) {
  expect_throw_with<peft::ConfigError>([&] { peft::check_yaml_bounds("model: m\nrun_name: caf\xe9\n", "l.yaml"); },
                                       {"[config] l.yaml", "not valid UTF-8 at line 2", "byte 14"});
  expect_throw_with<peft::ConfigError>([&] { peft::check_yaml_bounds("a: \xed\xa0\x80\n", "s.yaml"); },
                                       {"s.yaml", "line 1"});  // a surrogate
  peft::check_yaml_bounds("run_name: caf\xc3\xa9 \xf0\x9f\x99\x82\n", "ok.yaml");
}

TEST(YamlBounds, ReadYamlTextNamesFoldersAndMissingFiles) {
  const fs::path d = scratch("yaml");
  expect_throw_with<peft::ConfigError>([&] { peft::read_yaml_text(d.string()); }, {d.string(), "is a folder"});
  expect_throw_with<peft::ConfigError>([&] { peft::read_yaml_text((d / "no.yaml").string()); }, {"no.yaml"});
}

TEST(MemoryBounds, SizesBeyondThisMachineAreRefusedBeforeAllocation) {
  ASSERT_GT(peft::physical_memory_bytes(), 0u);
  peft::check_fits_in_memory("[x] small", 1024.0, "1 KiB");
  expect_throw_with<peft::ConfigError>(
      [] { peft::check_fits_in_memory("[lora] adapter 'default'", 4e15, "r up to 1000000000 on 7 modules"); },
      {"[lora] adapter 'default' needs at least 3.6 PiB", "r up to 1000000000", "this machine has"});
  EXPECT_EQ(peft::format_bytes(1536.0 * 1024 * 1024), "1.5 GiB");
}

// Every model fixture: the lower bound is at most what its checkpoint really holds, and its own
// weights pass the check.
TEST(ModelSize, LowerBoundHoldsForEveryFixtureModel) {
  int checked = 0;
  for (const auto& e : fs::directory_iterator(fs::path(PEFT_FIXTURES_DIR) / "models")) {
    const fs::path st = e.path() / "model.safetensors";
    if (!fs::exists(st) || !fs::exists(e.path() / "config.json")) continue;
    const auto f = peft::io::SafetensorsFile::open(st.string());
    double params = 0;
    for (const auto& name : f.names()) {
      double n = 1;
      for (auto d : f.at(name).shape) n *= static_cast<double>(d);
      params += n;
    }
    const peft::models::ModelConfig cfg(peft::read_json_file((e.path() / "config.json").string()), "config.json");
    EXPECT_LE(peft::models::min_parameter_count(cfg), params) << e.path();
    EXPECT_GT(peft::models::min_parameter_count(cfg), 0.0) << e.path();
    peft::models::check_model_size(cfg, 4.0, static_cast<double>(fs::file_size(st)));
    ++checked;
  }
  EXPECT_GE(checked, 10);
}

TEST(ModelSize, AbsurdSizesAreRefusedNamingTheField) {
  nlohmann::json j = peft::read_json_file(std::string(PEFT_FIXTURES_DIR) + "/models/llama_causal/config.json");
  j["num_hidden_layers"] = 1000000000;
  const peft::models::ModelConfig huge(j, "m/config.json");
  expect_throw_with<peft::ConfigError>([&] { huge.get_positive("num_hidden_layers"); },
                                       {"m/config.json", "'num_hidden_layers' is 1000000000", "at most 4096"});
  // Under every per-field cap, but far more than the checkpoint's bytes.
  j["num_hidden_layers"] = 4000;
  j["hidden_size"] = 4096;
  const peft::models::ModelConfig big(j, "m/config.json");
  expect_throw_with<peft::ConfigError>([&] { peft::models::check_model_size(big, 4.0, 80000.0); },
                                       {"m/config.json describes a model of at least", "num_hidden_layers 4000",
                                        "hidden_size 4096", "does not belong to these weights"});
  // ... and more than this machine holds, with no checkpoint to compare against.
  j["num_hidden_layers"] = 4096;
  j["hidden_size"] = 131072;
  j["intermediate_size"] = 1 << 20;
  expect_throw_with<peft::ConfigError>(
      [&] { peft::models::check_model_size(peft::models::ModelConfig(j, "m/config.json"), 4.0); },
      {"the model needs at least", "this machine has"});
}

TEST(ErrorContext, RawErrorsGetWhatWasBeingDoneOwnErrorsStayAsTheyAre) {
  try {
    peft::ErrorContext outer("loading the model m");
    peft::ErrorContext inner("reading m/model.safetensors");
    throw std::runtime_error("index out of range in self\nException raised from foo at bar.cpp:1\nframe #0: baz");
  } catch (const std::exception& e) {
    EXPECT_EQ(peft::describe_error(e),
              "while loading the model m, reading m/model.safetensors: index out of range in self");
  }
  try {
    peft::ErrorContext outer("loading the model m");
    throw peft::FormatError("[safetensors] m/model.safetensors: truncated");
  } catch (const std::exception& e) {
    EXPECT_EQ(peft::describe_error(e), "[safetensors] m/model.safetensors: truncated");
  }
  // A handled exception's steps do not leak into the next error.
  try {
    peft::ErrorContext a("step a");
    throw std::runtime_error("x");
  } catch (const std::exception&) {
  }
  try {
    peft::ErrorContext b("step b");
    throw std::bad_alloc();
  } catch (const std::exception& e) {
    EXPECT_EQ(peft::describe_error(e), "while step b: out of memory");
  }
  EXPECT_TRUE(peft::take_error_context().empty());
}

}  // namespace

namespace {

TEST(ErrorContext, MessagesArePrintedAsOnePrintableLine) {
  // A parser quoting a binary file's bytes (valid UTF-8 kept); a library's message is its first line.
  EXPECT_EQ(peft::describe_error(std::runtime_error("last read: '\xff\x01' caf\xc3\xa9\nnext")),
            "last read: '\\xff\\x01' caf\xc3\xa9");
  EXPECT_EQ(peft::describe_error(peft::FormatError("[x] a\nb \xed\xa0\x80")), "[x] a b \\xed\\xa0\\x80");
}

}  // namespace

// Python: b"a\xff\xc3(b\xe2\x82\xf0\x9f\x98z\xed\xa0\x80\xc0\xaf\xf4\x90\x80\x80\xe0\x80q".decode("utf-8", "replace")
// gives 15 U+FFFD: one per maximal ill-formed subpart (the truncated E2 82 and F0 9F 98 count once each;
// surrogates ED A0 80, overlongs C0 AF / E0 80 and F4 90.. above U+10FFFF byte by byte).
TEST(Utf8, ReplacementMatchesPythonsErrorsReplace) {
  const std::string bad = "a\xff\xc3(b\xe2\x82\xf0\x9f\x98z\xed\xa0\x80\xc0\xaf\xf4\x90\x80\x80\xe0\x80q";
  const std::string R = "\xef\xbf\xbd";
  std::string want = "a" + R + R + "(b" + R + R + "z";
  for (int i = 0; i < 11; ++i) want += R;
  want += "q";
  std::size_t n = 0;
  EXPECT_EQ(peft::replace_invalid_utf8(bad, &n), want);
  EXPECT_EQ(n, 15u);
  EXPECT_EQ(peft::find_invalid_utf8(bad), 1u);
  const std::string good = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf";
  EXPECT_EQ(peft::find_invalid_utf8(good), std::string::npos);
  EXPECT_EQ(peft::replace_invalid_utf8(good, &n), good);
  EXPECT_EQ(n, 0u);
}

