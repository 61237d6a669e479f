// GGUF reader and writer: a gguf-py-written file read value for value, writer round trips, and a
// hostile-file set (each must raise one FormatError naming the file and the key or tensor).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <fstream>
#include <nlohmann/json.hpp>

#include "peft/core/error.h"
#include "peft/core/file_util.h"
#include "peft/io/gguf.h"
#include "test_utils.h"

namespace {

using peft::FormatError;
using peft::io::GgmlType;
using peft::io::GgufFile;
using peft::io::GgufTensorBytes;
using peft::io::GgufType;
using peft::io::GgufValue;
using peft::test::expect_throw_with;
using peft::test::fixture;
using Meta = std::vector<std::pair<std::string, GgufValue>>;

// A small valid image: a few keys of several types and two F32 tensors.
struct Image {
  std::vector<float> a = std::vector<float>(6), b = std::vector<float>(3);
  Meta meta;
  std::vector<GgufTensorBytes> tensors;
  Image() {
    for (std::size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>(i) * 0.5f;
    for (std::size_t i = 0; i < b.size(); ++i) b[i] = -static_cast<float>(i);
    meta = {{"general.architecture", GgufValue::from_string("llama")},
            {"llama.block_count", GgufValue::from_u32(2)},
            {"llama.rope.freq_base", GgufValue::from_f32(10000.f)},
            {"tokenizer.ggml.tokens", GgufValue::from_strings({"<unk>", "a", "b"})}};
    tensors = {{"t.a", GgmlType::F32, {3, 2}, a.data(), a.size() * 4},
               {"t.b", GgmlType::F32, {3}, b.data(), b.size() * 4}};
  }
  std::string bytes() const { return peft::io::serialize_gguf(meta, tensors); }
};

std::string u64le(uint64_t v) { return std::string(reinterpret_cast<const char*>(&v), 8); }
std::string u32le(uint32_t v) { return std::string(reinterpret_cast<const char*>(&v), 4); }
std::string gstr(const std::string& s) { return u64le(s.size()) + s; }

// Header with hand-made metadata bytes: magic, version 3, counts, then `body`.
std::string raw(uint64_t n_tensors, uint64_t n_kv, const std::string& body, uint32_t version = 3) {
  return std::string("GGUF", 4) + u32le(version) + u64le(n_tensors) + u64le(n_kv) + body;
}

bool signed_type(GgufType t) {
  return t == GgufType::INT8 || t == GgufType::INT16 || t == GgufType::INT32 || t == GgufType::INT64;
}

void expect_bad(const std::string& bytes, std::initializer_list<std::string> fragments) {
  expect_throw_with<FormatError>([&] { (void)GgufFile::from_bytes(bytes, "bad.gguf"); }, fragments);
}

TEST(Gguf, WriterRoundTripsEveryValueType) {
  Image img;
  GgufValue nested;
  nested.type = GgufType::ARRAY;
  nested.elem_type = GgufType::ARRAY;
  nested.items = {GgufValue::from_i32s({1, -2}), GgufValue::from_i32s({3})};
  GgufValue u8; u8.type = GgufType::UINT8; u8.u = 200;
  GgufValue i16; i16.type = GgufType::INT16; i16.i = -30000;
  GgufValue f64; f64.type = GgufType::FLOAT64; f64.f = 1.0 / 3.0;
  GgufValue i64; i64.type = GgufType::INT64; i64.i = -(int64_t{1} << 40);
  img.meta.push_back({"x.u8", u8});
  img.meta.push_back({"x.i16", i16});
  img.meta.push_back({"x.f64", f64});
  img.meta.push_back({"x.i64", i64});
  img.meta.push_back({"x.bool", GgufValue::from_bool(true)});
  img.meta.push_back({"x.nested", nested});
  img.meta.push_back({"x.floats", GgufValue::from_f32s({0.25f, -1.5f})});
  const auto f = GgufFile::from_bytes(img.bytes(), "rt.gguf");
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.keys().size(), img.meta.size());
  EXPECT_EQ(f.keys()[0], "general.architecture");
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_uint("llama.block_count"), 2u);
  EXPECT_EQ(f.get_int("llama.block_count"), 2);
  EXPECT_EQ(f.get_float("llama.rope.freq_base"), 10000.0);
  EXPECT_EQ(f.get_uint("x.u8"), 200u);
  EXPECT_EQ(f.get_int("x.i16"), -30000);
  EXPECT_EQ(f.get_float("x.f64"), 1.0 / 3.0);
  EXPECT_EQ(f.get_int("x.i64"), -(int64_t{1} << 40));
  EXPECT_TRUE(f.get_bool("x.bool", false));
  EXPECT_EQ(f.at("x.nested").items.at(0).items.at(1).i, -2);
  EXPECT_EQ(f.get_floats("x.floats"), (std::vector<float>{0.25f, -1.5f}));
  EXPECT_EQ(f.get_strings("tokenizer.ggml.tokens"), (std::vector<std::string>{"<unk>", "a", "b"}));
  ASSERT_EQ(f.tensors().size(), 2u);
  const auto& ta = f.tensor("t.a");
  EXPECT_EQ(ta.shape(), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(ta.row_length(), 3);
  EXPECT_EQ(ta.rows(), 2);
  EXPECT_EQ(ta.offset, 0u);
  EXPECT_EQ(f.tensor("t.b").offset, 32u);  // 24 bytes padded to the default alignment
  EXPECT_EQ(f.data_offset() % 32, 0u);
  EXPECT_EQ(std::memcmp(ta.data, img.a.data(), 24), 0);
  EXPECT_EQ(std::memcmp(f.tensor("t.b").data, img.b.data(), 12), 0);
  // Typed getters name the key and both types.
  expect_throw_with<FormatError>([&] { (void)f.get_string("llama.block_count"); },
                                 {"rt.gguf", "'llama.block_count'", "STRING", "UINT32"});
  expect_throw_with<FormatError>([&] { (void)f.get_uint("x.i16"); }, {"'x.i16'", "non-negative"});
  expect_throw_with<FormatError>([&] { (void)f.get_uint("missing.key"); }, {"missing metadata key 'missing.key'"});
  expect_throw_with<FormatError>([&] { (void)f.tensor("nope"); }, {"no tensor named 'nope'"});
  EXPECT_EQ(f.get_uint("missing.key", 7), 7u);
}

TEST(Gguf, WriterHonoursAlignmentAndRejectsBadTensors) {
  Image img;
  img.meta.push_back({"general.alignment", GgufValue::from_u32(64)});
  const auto f = GgufFile::from_bytes(img.bytes(), "a64.gguf");
  EXPECT_EQ(f.alignment(), 64u);
  EXPECT_EQ(f.tensor("t.b").offset, 64u);
  EXPECT_EQ(f.data_offset() % 64, 0u);

  Image bad;
  bad.tensors[0].nbytes = 20;
  expect_throw_with<std::invalid_argument>([&] { (void)bad.bytes(); }, {"'t.a'", "needs 24 bytes, got 20"});
  Image q;
  q.tensors[0].type = GgmlType::Q8_0;  // rows of 3 are not blocks of 32
  expect_throw_with<std::invalid_argument>([&] { (void)q.bytes(); }, {"Q8_0", "blocks of 32"});
  Image dup;
  dup.tensors[1].name = "t.a";
  expect_throw_with<std::invalid_argument>([&] { (void)dup.bytes(); }, {"'t.a' given twice"});
}

TEST(Gguf, WriteIsAtomicAndReadable) {
  const std::string dir = peft::test::tmp_dir("gguf_write");
  const std::string path = dir + "/m.gguf";
  Image img;
  peft::io::write_gguf(path, img.meta, img.tensors);
  EXPECT_TRUE(peft::io::is_gguf_file(path));
  const auto f = GgufFile::open(path);
  EXPECT_EQ(f.file_size(), img.bytes().size());
  EXPECT_EQ(peft::read_file(path), img.bytes());
  // A failing write leaves the old file untouched.
  Image bad;
  bad.tensors[0].nbytes = 4;
  EXPECT_THROW(peft::io::write_gguf(path, bad.meta, bad.tensors), std::invalid_argument);
  EXPECT_EQ(peft::read_file(path), img.bytes());
  EXPECT_FALSE(peft::io::is_gguf_file(dir));
}

// gguf-py's GGUFWriter output (tools/reference/gen_gguf_reader.py): every value type, arrays,
// a non-default alignment and tensors of several ggml types, read as gguf-py's reader reads them.
TEST(GgufPython, ReadsGgufPyFileLikeGgufPyReader) {
  const auto f = GgufFile::open(fixture("gguf/reader/all_types.gguf"));
  const auto exp = nlohmann::json::parse(peft::read_file(fixture("gguf/reader/expected.json")));
  EXPECT_EQ(f.alignment(), exp["alignment"].get<uint64_t>());
  EXPECT_EQ(f.data_offset(), exp["data_offset"].get<uint64_t>());
  ASSERT_EQ(f.keys().size(), exp["keys"].size());
  for (std::size_t k = 0; k < f.keys().size(); ++k) {
    const auto& e = exp["keys"][k];
    const std::string key = e["key"];
    EXPECT_EQ(f.keys()[k], key);
    const GgufValue& v = f.at(key);
    EXPECT_EQ(static_cast<int>(v.type), e["type"].get<int>()) << key;
    const auto& val = e["value"];
    if (v.type == GgufType::STRING) EXPECT_EQ(v.s, val.get<std::string>()) << key;
    else if (v.type == GgufType::BOOL) EXPECT_EQ(v.b, val.get<bool>()) << key;
    else if (v.type == GgufType::FLOAT32 || v.type == GgufType::FLOAT64) EXPECT_EQ(v.f, val.get<double>()) << key;
    else if (v.type == GgufType::ARRAY) {
      EXPECT_EQ(static_cast<int>(v.elem_type), e["elem_type"].get<int>()) << key;
      // gguf-py's contents() flattens nested arrays: compare the leaves in order.
      std::vector<const GgufValue*> leaves;
      std::function<void(const GgufValue&)> walk = [&](const GgufValue& x) {
        if (x.type == GgufType::ARRAY) for (const auto& y : x.items) walk(y);
        else leaves.push_back(&x);
      };
      walk(v);
      ASSERT_EQ(leaves.size(), val.size()) << key;
      for (std::size_t i = 0; i < leaves.size(); ++i) {
        const auto& x = *leaves[i];
        if (x.type == GgufType::STRING) EXPECT_EQ(x.s, val[i].get<std::string>());
        else if (x.type == GgufType::FLOAT32 || x.type == GgufType::FLOAT64) EXPECT_EQ(x.f, val[i].get<double>());
        else if (x.type == GgufType::BOOL) EXPECT_EQ(x.b, val[i].get<bool>());
        else EXPECT_EQ(signed_type(x.type) ? x.i : static_cast<int64_t>(x.u), val[i].get<int64_t>()) << key;
      }
    } else if (v.is_integer()) {
      if (signed_type(v.type)) EXPECT_EQ(v.i, val.get<int64_t>()) << key;
      else EXPECT_EQ(v.u, val.get<uint64_t>()) << key;
    }
  }
  ASSERT_EQ(f.tensors().size(), exp["tensors"].size());
  for (std::size_t k = 0; k < f.tensors().size(); ++k) {
    const auto& t = f.tensors()[k];
    const auto& e = exp["tensors"][k];
    EXPECT_EQ(t.name, e["name"].get<std::string>());
    EXPECT_EQ(t.type, e["type"].get<uint32_t>()) << t.name;
    EXPECT_EQ(t.ne, e["ne"].get<std::vector<int64_t>>()) << t.name;
    EXPECT_EQ(t.offset, e["offset"].get<uint64_t>()) << t.name;
    EXPECT_EQ(t.nbytes, e["nbytes"].get<uint64_t>()) << t.name;
    uint64_t sum = 0;
    for (uint64_t i = 0; i < t.nbytes; ++i) sum += t.data[i];
    EXPECT_EQ(sum, e["byte_sum"].get<uint64_t>()) << t.name;
  }
}

// Our writer's file, re-serialised after reading, is identical (the reader keeps everything).
TEST(GgufPython, ReadThenWriteReproducesGgufPyFile) {
  const std::string path = fixture("gguf/reader/all_types.gguf");
  const auto f = GgufFile::open(path);
  Meta meta;
  for (const auto& k : f.keys()) meta.emplace_back(k, f.at(k));
  std::vector<GgufTensorBytes> ts;
  for (const auto& t : f.tensors()) ts.push_back({t.name, t.ggml_type(), t.ne, t.data, t.nbytes});
  EXPECT_EQ(peft::io::serialize_gguf(meta, ts), peft::read_file(path));
}

TEST(GgufHostile, EveryTruncationIsOneClearError) {
  const std::string good = Image().bytes();
  ASSERT_NO_THROW(GgufFile::from_bytes(good, "good.gguf"));
  // Cutting the file anywhere must fail cleanly (the last tensor's padding is optional).
  const std::size_t last_tensor_end = good.size() - 32 + 12;
  for (std::size_t n = 0; n < last_tensor_end; ++n) {
    try {
      (void)GgufFile::from_bytes(good.substr(0, n), "cut.gguf");
      ADD_FAILURE() << "a file cut to " << n << " bytes was accepted";
    } catch (const FormatError& e) {
      EXPECT_NE(std::string(e.what()).find("[gguf] cut.gguf: "), std::string::npos) << e.what();
    }
  }
}

TEST(GgufHostile, HeaderFields) {
  expect_bad("GGU", {"bad.gguf", "'GGUF'"});
  expect_bad("GGML" + std::string(20, '\0'), {"not a GGUF file", "'GGML'"});
  expect_bad(raw(0, 0, "", 1), {"version 1 is not supported"});
  expect_bad(raw(0, 0, "", 4), {"unsupported GGUF version 4"});
  expect_bad(raw(0, 0, "", 0x03000000u), {"big-endian"});
  expect_bad(raw(~0ull, 0, ""), {"tensor count", "exceeds the limit"});
  expect_bad(raw(0, ~0ull, ""), {"metadata count", "exceeds the limit"});
  expect_bad(raw(0, 1000, ""), {"metadata count 1000 cannot fit"});
  expect_bad(raw(1000, 0, ""), {"tensor count 1000 cannot fit"});
  EXPECT_NO_THROW(GgufFile::from_bytes(raw(0, 0, ""), "empty.gguf"));
  EXPECT_NO_THROW(GgufFile::from_bytes(raw(0, 0, "", 2), "v2.gguf"));
}

TEST(GgufHostile, MetadataValues) {
  const std::string k = gstr("k");
  auto kv = [&](uint32_t type, const std::string& value) { return raw(0, 1, k + u32le(type) + value); };
  expect_bad(kv(13, ""), {"key 'k'", "unknown value type 13"});
  expect_bad(kv(8, u64le(~0ull)), {"key 'k' string", "limit"});
  expect_bad(kv(8, u64le(100) + "abc"), {"key 'k' string needs 100 bytes", "truncated"});
  expect_bad(kv(9, u32le(77) + u64le(1)), {"key 'k'", "unknown array element type 77"});
  expect_bad(kv(9, u32le(4) + u64le(~0ull >> 1)), {"key 'k'", "exceeds the limit"});
  expect_bad(kv(9, u32le(4) + u64le(1000) + u32le(1)), {"key 'k'", "array of 1000 UINT32", "truncated"});
  expect_bad(kv(9, u32le(8) + u64le(500) + gstr("x")), {"key 'k'", "500 STRING"});
  expect_bad(kv(7, std::string(1, '\x02')), {"key 'k'", "BOOL value 2"});
  // Arrays of arrays beyond the nesting cap.
  std::string deep = u32le(9) + u64le(1);
  for (int d = 0; d < 6; ++d) deep += u32le(9) + u64le(1);
  expect_bad(kv(9, deep), {"key 'k'", "nested deeper"});
  // Duplicate and empty keys.
  expect_bad(raw(0, 2, k + u32le(4) + u32le(1) + k + u32le(4) + u32le(2)), {"key 'k' appears more than once"});
  expect_bad(raw(0, 1, gstr("") + u32le(4) + u32le(1)), {"empty key"});
  // The metadata budget caps what a header can make us allocate.
  peft::io::GgufLimits lim;
  lim.max_metadata_bytes = 4096;
  std::string big = u32le(8) + u64le(200);
  for (int i = 0; i < 200; ++i) big += gstr("abc");
  expect_throw_with<FormatError>([&] { (void)GgufFile::from_bytes(kv(9, big), "bad.gguf", lim); },
                                 {"key 'k'", "metadata exceeds the limit of 4096"});
}

TEST(GgufHostile, Alignment) {
  for (uint32_t a : {0u, 3u, 48u}) {
    Image img;
    img.meta.push_back({"general.alignment", GgufValue::from_u32(a)});
    // The writer refuses it; build the header by hand.
    std::string body = gstr("general.alignment") + u32le(4) + u32le(a);
    expect_bad(raw(0, 1, body), {"'general.alignment' = " + std::to_string(a), "power of two"});
  }
  expect_bad(raw(0, 1, gstr("general.alignment") + u32le(10) + u64le(32)),
             {"'general.alignment' must be UINT32", "UINT64"});
}

// Builds one tensor info by hand (no metadata): name, dims, type, offset, then data.
std::string one_tensor(const std::string& name, std::vector<uint64_t> ne, uint32_t type,
                       uint64_t offset, std::size_t data_bytes) {
  std::string info = gstr(name) + u32le(static_cast<uint32_t>(ne.size()));
  for (auto d : ne) info += u64le(d);
  info += u32le(type) + u64le(offset);
  std::string img = raw(1, 0, info);
  img.resize((img.size() + 31) / 32 * 32, '\0');
  return img + std::string(data_bytes, '\x01');
}

TEST(GgufHostile, TensorInfos) {
  EXPECT_NO_THROW(GgufFile::from_bytes(one_tensor("w", {4}, 0, 0, 16), "ok.gguf"));
  expect_bad(one_tensor("w", {}, 0, 0, 0), {"tensor 'w' has 0 dimensions"});
  expect_bad(one_tensor("w", {1, 1, 1, 1, 1}, 0, 0, 4), {"tensor 'w' has 5 dimensions"});
  expect_bad(one_tensor("w", {1ull << 40, 1ull << 40}, 0, 0, 4), {"tensor 'w'", "overflows"});
  expect_bad(one_tensor("w", {~0ull}, 0, 0, 4), {"tensor 'w'", "overflows"});
  expect_bad(one_tensor("w", {4}, 5, 0, 16), {"tensor 'w' has unknown ggml type 5"});
  expect_bad(one_tensor("w", {4}, 999, 0, 16), {"unknown ggml type 999"});
  expect_bad(one_tensor("w", {40}, 8, 0, 68), {"tensor 'w' of type Q8_0 has rows of 40", "block size 32"});
  expect_bad(one_tensor("w", {4}, 0, 32, 64), {"tensor 'w' has offset 32, expected 0"});
  expect_bad(one_tensor("w", {4}, 0, 0, 8), {"tensor 'w'", "runs past the end", "truncated"});
  expect_bad(one_tensor("w", {4}, 0, 0, 16 + 64), {"trailing bytes"});
  expect_bad(one_tensor(std::string(64, 'n'), {4}, 0, 0, 16), {"name", "limit is 63"});
  expect_bad(one_tensor("", {4}, 0, 0, 16), {"empty name"});
  // Two tensors: a duplicate name, and offsets that overlap or leave a gap.
  Image dup;
  std::string bytes = dup.bytes();
  const std::size_t p = bytes.find("t.b");
  bytes[p + 2] = 'a';
  expect_bad(bytes, {"tensor 't.a' appears more than once"});
  Image gap;
  std::string g = gap.bytes();
  const std::size_t off = g.find("t.b") + 3 + 4 + 8 + 4;  // name, n_dims, ne[0], type -> offset
  uint64_t o = 64;
  std::memcpy(&g[off], &o, 8);
  expect_bad(g, {"tensor 't.b' has offset 64, expected 32"});
  o = 16;
  std::memcpy(&g[off], &o, 8);
  expect_bad(g, {"tensor 't.b' has offset 16, expected 32"});
}

TEST(GgufHostile, FilesOnDisk) {
  const std::string dir = peft::test::tmp_dir("gguf_hostile");
  expect_throw_with<FormatError>([&] { (void)GgufFile::open(dir + "/missing.gguf"); },
                                 {"missing.gguf", "cannot open file"});
  expect_throw_with<FormatError>([&] { (void)GgufFile::open(dir); }, {"not a regular file"});
  peft::write_file_atomic(dir + "/short.gguf", std::string("GGUF\3\0\0\0", 8));
  expect_throw_with<FormatError>([&] { (void)GgufFile::open(dir + "/short.gguf"); },
                                 {"short.gguf", "24-byte header"});
  peft::write_file_atomic(dir + "/st.gguf", std::string(64, '{'));
  expect_throw_with<FormatError>([&] { (void)GgufFile::open(dir + "/st.gguf"); }, {"not a GGUF file"});
}

TEST(GgmlTypes, TableAndNames) {
  EXPECT_EQ(peft::io::ggml_traits(GgmlType::Q4_K).type_size, 144);
  EXPECT_EQ(peft::io::ggml_traits(GgmlType::Q6_K).type_size, 210);
  EXPECT_EQ(peft::io::ggml_traits(GgmlType::Q4_1).type_size, 20);
  EXPECT_EQ(peft::io::ggml_traits(GgmlType::Q2_K).type_size, 84);
  EXPECT_EQ(peft::io::ggml_traits(GgmlType::Q3_K).type_size, 110);
  EXPECT_EQ(peft::io::ggml_traits(GgmlType::Q5_K).type_size, 176);
  EXPECT_EQ(peft::io::ggml_row_bytes(GgmlType::Q8_0, 64), 68u);
  EXPECT_EQ(peft::io::parse_ggml_type("q8_0"), GgmlType::Q8_0);
  EXPECT_EQ(peft::io::parse_ggml_type("bf16"), GgmlType::BF16);
  EXPECT_FALSE(peft::io::parse_ggml_type("q9_9"));
  EXPECT_EQ(peft::io::ggml_type_name(4), "type 4");
  EXPECT_THROW(peft::io::ggml_row_bytes(GgmlType::Q4_K, 100), std::invalid_argument);
}

}  // namespace
