// safetensors reader and writer: Python-written fixtures bit for bit, writer layout, and hostile
// files (each must raise FormatError naming the file and the problem).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "peft/core/error.h"
#include "peft/core/file_util.h"
#include "peft/io/safetensors.h"
#include "test_utils.h"

namespace {

using nlohmann::json;
using peft::FormatError;
using peft::io::SafetensorsFile;
using peft::test::fixture;

std::vector<uint64_t> bits_of(const peft::io::TensorInfo& t) {
  const std::size_t w = peft::dtype_size(t.dtype);
  std::vector<uint64_t> out;
  for (std::size_t i = 0; i < t.nbytes(); i += w) {
    uint64_t v = 0;
    std::memcpy(&v, t.data + i, w);  // little-endian host
    out.push_back(v);
  }
  return out;
}

json expected() { return json::parse(peft::read_file(fixture("safetensors/expected.json"))); }

TEST(SafetensorsPython, EveryFixtureReadsBitExactly) {
  const json exp = expected();
  int checked = 0;
  for (auto f = exp.begin(); f != exp.end(); ++f) {
    const auto file = SafetensorsFile::open(fixture("safetensors/" + f.key()));
    for (auto t = f.value().begin(); t != f.value().end(); ++t) {
      if (t.key() == "__metadata__") {
        for (auto m = t.value().begin(); m != t.value().end(); ++m)
          EXPECT_EQ(file.metadata().at(m.key()), m.value().get<std::string>());
        continue;
      }
      const auto& info = file.at(t.key());
      EXPECT_EQ(std::string(peft::dtype_name(info.dtype)), t.value()["dtype"].get<std::string>());
      EXPECT_EQ(info.shape, t.value()["shape"].get<std::vector<int64_t>>()) << t.key();
      EXPECT_EQ(bits_of(info), t.value()["bits"].get<std::vector<uint64_t>>()) << f.key() << ":" << t.key();
      ++checked;
    }
    EXPECT_EQ(file.size(), f.value().size() - f.value().count("__metadata__"));
  }
  EXPECT_GE(checked, 80);
}

// Writes every dtype from the fixture's bit patterns. tools/reference/verify_safetensors.py
// reads the result with Python safetensors.
TEST(SafetensorsPython, WriteEveryDtypeForPython) {
  const json exp = expected()["all_dtypes.safetensors"];
  std::map<std::string, std::vector<uint8_t>> store;
  std::map<std::string, peft::io::TensorBytes> tensors;
  std::map<std::string, std::string> meta;
  for (auto t = exp.begin(); t != exp.end(); ++t) {
    if (t.key() == "__metadata__") {
      meta = t.value().get<std::map<std::string, std::string>>();
      continue;
    }
    const auto dt = *peft::parse_dtype(t.value()["dtype"].get<std::string>());
    const std::size_t w = peft::dtype_size(dt);
    auto& buf = store[t.key()];
    for (uint64_t b : t.value()["bits"].get<std::vector<uint64_t>>())
      for (std::size_t i = 0; i < w; ++i) buf.push_back(static_cast<uint8_t>(b >> (8 * i)));
    tensors[t.key()] = {dt, t.value()["shape"].get<std::vector<int64_t>>(), buf.data(), buf.size()};
  }
  const std::string out = std::string(PEFT_TEST_OUTPUT_DIR) + "/cpp_all_dtypes.safetensors";
  peft::io::write_safetensors(out, tensors, meta);

  const auto back = SafetensorsFile::open(out);
  for (const auto& [name, t] : tensors) {
    const auto& info = back.at(name);
    EXPECT_EQ(info.dtype, t.dtype);
    EXPECT_EQ(info.shape, t.shape);
    ASSERT_EQ(info.nbytes(), t.nbytes);
    EXPECT_EQ(0, std::memcmp(info.data, t.data, t.nbytes)) << name;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(info.data) % peft::dtype_size(info.dtype), 0u)
        << name << " is not naturally aligned";
  }
  EXPECT_EQ(back.metadata(), meta);
  // The header is padded to 8 bytes and its keys are sorted.
  const std::string raw = peft::read_file(out);
  uint64_t n = 0;
  std::memcpy(&n, raw.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  const json h = json::parse(raw.substr(8, n));
  std::string prev;
  for (auto it = h.begin(); it != h.end(); ++it) {
    EXPECT_LT(prev, it.key());
    prev = it.key();
  }
}

TEST(Safetensors, WriterIsAtomicAndRejectsBadInput) {
  const std::string dir = peft::test::tmp_dir("st_writer");
  const std::string path = dir + "/a.safetensors";
  float v[2] = {1.f, 2.f};
  peft::io::write_safetensors(path, {{"x", {peft::DType::F32, {2}, v, 8}}});
  // A mismatched tensor fails before anything is written: the old file survives intact.
  EXPECT_THROW(peft::io::write_safetensors(path, {{"x", {peft::DType::F32, {3}, v, 8}}}),
               std::invalid_argument);
  EXPECT_EQ(SafetensorsFile::open(path).at("x").shape, std::vector<int64_t>{2});
  int files = 0;
  for (auto& e : std::filesystem::directory_iterator(dir)) files += e.is_regular_file();
  EXPECT_EQ(files, 1) << "a temp file was left behind";
}

// ---------------------------------------------------------------- hostile files

std::string image(const std::string& header, const std::string& data, int64_t len_override = -1) {
  std::string out(8, '\0');
  const uint64_t n = len_override >= 0 ? static_cast<uint64_t>(len_override) : header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + data;
}

const std::string k8(8, '\1');
const std::string k16(16, '\1');

struct Hostile {
  const char* name;
  std::string bytes;
  const char* fragment;  // key phrase the message must contain
};

std::vector<Hostile> hostile_cases() {
  const std::string ok_entry = R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  return {
      {"empty_file", "", "8-byte header length"},
      {"seven_bytes", std::string(7, '\0'), "8-byte header length"},
      {"huge_header_length", image("{}", "", int64_t(1) << 40), "exceeds the limit"},
      {"header_past_eof", image("{}", "", 5000), "runs past the end of the file"},
      {"zero_header_length", image("", ""), "does not start with '{'"},
      {"header_not_object", image("[1,2]", ""), "does not start with '{'"},
      {"invalid_json", image("{\"a\":", ""), "not valid JSON"},
      {"invalid_utf8", image("{\"\xff\xfe\":{}}", ""), "not valid JSON"},
      {"trailing_garbage_in_header", image("{} x", ""), "not valid JSON"},
      {"entry_not_object", image(R"({"a":5})", ""), "entry is not an object"},
      {"unknown_dtype", image(R"({"a":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}})", k16), "unknown dtype 'F128'"},
      {"dtype_not_string", image(R"({"a":{"dtype":4,"shape":[2],"data_offsets":[0,8]}})", k8), "'dtype'"},
      {"missing_dtype", image(R"({"a":{"shape":[2],"data_offsets":[0,8]}})", k8), "'dtype'"},
      {"missing_shape", image(R"({"a":{"dtype":"F32","data_offsets":[0,8]}})", k8), "'shape'"},
      {"shape_not_array", image(R"({"a":{"dtype":"F32","shape":2,"data_offsets":[0,8]}})", k8), "'shape'"},
      {"negative_dim", image(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", k8), "non-negative"},
      {"fractional_dim", image(R"({"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}})", k8), "non-negative"},
      {"missing_offsets", image(R"({"a":{"dtype":"F32","shape":[2]}})", k8), "data_offsets"},
      {"three_offsets", image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4,8]}})", k8), "data_offsets"},
      {"negative_offset", image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}})", k8), "non-negative"},
      {"reversed_offsets", image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", k8), "end before"},
      {"offset_past_data", image(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", k8), "run past the data section"},
      {"offset_overflow", image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[18446744073709551608,18446744073709551615]}})", k8), "run past the data section"},
      {"size_mismatch", image(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", k8), "needs 3 x 4 bytes"},
      {"shape_overflow", image(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}})", k8), "overflows"},
      {"size_overflow", image(R"({"a":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,8]}})", k8), "needs"},
      {"overlap", image("{" + ok_entry + R"(,"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", std::string(12, '\1')), "overlaps"},
      {"gap", image("{" + ok_entry + R"(,"b":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}})", k16), "gap in the data section"},
      {"trailing_bytes", image("{" + ok_entry + "}", k16), "trailing bytes or truncated"},
      {"truncated_data", image(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", k8), "run past the data section"},
      {"duplicate_names", image("{" + ok_entry + "," + ok_entry + "}", k8), "appears more than once"},
      {"metadata_not_object", image("{\"__metadata__\":[1]," + ok_entry + "}", k8), "__metadata__"},
      {"metadata_value_not_string", image("{\"__metadata__\":{\"k\":1}," + ok_entry + "}", k8), "__metadata__ value for 'k'"},
      {"empty_tensors_trailing", image("{}", k8), "trailing bytes"},
  };
}

class SafetensorsHostile : public ::testing::TestWithParam<Hostile> {};

TEST_P(SafetensorsHostile, RaisesFormatErrorNamingFileAndProblem) {
  const Hostile& c = GetParam();
  const std::string label = std::string("hostile_") + c.name + ".safetensors";
  peft::test::expect_throw_with<FormatError>([&] { SafetensorsFile::from_bytes(c.bytes, label); },
                                             {label, c.fragment});
  // Same through the file path (mmap) route.
  const std::string path = peft::test::tmp_dir("hostile") + "/" + label;
  std::ofstream(path, std::ios::binary) << c.bytes;
  peft::test::expect_throw_with<FormatError>([&] { SafetensorsFile::open(path); }, {path});
}

INSTANTIATE_TEST_SUITE_P(Cases, SafetensorsHostile, ::testing::ValuesIn(hostile_cases()),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(Safetensors, MissingFileAndFolderAreFormatErrors) {
  peft::test::expect_throw_with<FormatError>(
      [] { SafetensorsFile::open("/nonexistent/x.safetensors"); }, {"/nonexistent/x.safetensors", "cannot open"});
  const std::string d = peft::test::tmp_dir("st_dir");
  peft::test::expect_throw_with<FormatError>([&] { SafetensorsFile::open(d); }, {d});
}

TEST(Safetensors, MissingTensorNamesFileAndTensor) {
  const auto f = SafetensorsFile::open(fixture("safetensors/dtype_F32.safetensors"));
  peft::test::expect_throw_with<std::out_of_range>([&] { f.at("nope"); }, {"dtype_F32.safetensors", "'nope'"});
}

TEST(Safetensors, EmptyHeaderAndZeroSizedTensorsAreValid) {
  EXPECT_EQ(SafetensorsFile::from_bytes(image("{}", "")).size(), 0u);
  const auto f = SafetensorsFile::from_bytes(
      image(R"({"z":{"dtype":"BF16","shape":[0,3],"data_offsets":[0,0]},"s":{"dtype":"I64","shape":[],"data_offsets":[0,8]}}  )", k8));
  EXPECT_EQ(f.at("z").numel(), 0);
  EXPECT_EQ(f.at("s").numel(), 1);
}

}  // namespace
