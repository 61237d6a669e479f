// ggml block types against gguf-py (tests/fixtures/gguf/quants, written by
// tools/reference/gen_gguf_quants.py): every decoder (scalar, each SIMD target, row-parallel)
// gives gguf.quants.dequantize's float32 bits exactly, every encoder gguf.quants.quantize's bytes.
#include <gtest/gtest.h>

#include <hwy/targets.h>

#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "peft/core/error.h"
#include "peft/core/file_util.h"
#include "peft/io/gguf.h"
#include "peft/io/safetensors.h"
#include "peft/quant/ggml_quants.h"
#include "test_utils.h"

namespace pq = peft::quant;
using peft::io::GgmlType;

namespace {

using peft::test::values;

struct Case {
  std::string name;
  GgmlType type;
  int64_t rows, row_len;
  std::vector<uint8_t> bytes;
  std::vector<float> expected;
};

struct Fixture {
  peft::io::SafetensorsFile file =
      peft::io::SafetensorsFile::open(peft::test::fixture("gguf/quants/quants.safetensors"));
  nlohmann::json manifest =
      nlohmann::json::parse(peft::read_file(peft::test::fixture("gguf/quants/manifest.json")));
  std::vector<Case> dequant, quant;

  Fixture() {
    for (const auto& [name, info] : manifest["types"].items()) {
      const GgmlType t = *peft::io::parse_ggml_type(name);
      if (info.contains("rows"))
        dequant.push_back({name, t, info["rows"], info["row_len"],
                           values<uint8_t>(file, name + ".bytes"),
                           values<float>(file, name + ".expected")});
      if (info.contains("quantise")) {
        const auto& q = info["quantise"];
        const std::vector<float> in = values<float>(file, "quant." + name + ".input");
        quant.push_back({name, t, q["rows"], q["row_len"],
                         values<uint8_t>(file, "quant." + name + ".bytes"), in});
      }
    }
  }
};

const Fixture& fx() {
  static const Fixture f;
  return f;
}

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// Bit-for-bit comparison of float32 outputs; names the first differing element.
void expect_same_bits(const std::vector<float>& got, const std::vector<float>& want,
                      const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  if (std::memcmp(got.data(), want.data(), got.size() * 4) == 0) return;
  std::size_t diffs = 0, first = got.size();
  for (std::size_t i = 0; i < got.size(); ++i)
    if (bits(got[i]) != bits(want[i])) {
      ++diffs;
      if (first == got.size()) first = i;
    }
  char buf[160];
  std::snprintf(buf, sizeof buf,
                "%zu of %zu differ; first at %zu: got %a (0x%08x), want %a (0x%08x)", diffs,
                got.size(), first, got[first], bits(got[first]), want[first], bits(want[first]));
  ADD_FAILURE() << what << ": " << buf;
}

}  // namespace

TEST(GgmlQuants, FixtureCoversEveryTypeWithGgufBlockSizes) {
  std::vector<std::string> names;
  for (const auto& c : fx().dequant) {
    names.push_back(c.name);
    EXPECT_TRUE(pq::ggml_can_dequantize(c.type)) << c.name;
    EXPECT_EQ(c.bytes.size(), c.rows * peft::io::ggml_row_bytes(c.type, c.row_len)) << c.name;
    EXPECT_EQ(c.expected.size(), static_cast<std::size_t>(c.rows * c.row_len)) << c.name;
  }
  EXPECT_EQ(names.size(), 13u);
  for (const auto& c : fx().quant) EXPECT_TRUE(pq::ggml_can_quantize(c.type)) << c.name;
  EXPECT_EQ(fx().quant.size(), 8u);
  EXPECT_FALSE(pq::ggml_can_dequantize(GgmlType::IQ2_XS));
  EXPECT_FALSE(pq::ggml_can_quantize(GgmlType::Q4_K));
}

TEST(GgmlQuants, ScalarDequantizeBitExactWithGgufPy) {
  for (const auto& c : fx().dequant) {
    std::vector<float> out(c.expected.size(), -1.0f);
    pq::ggml_dequantize_reference(c.type, c.bytes.data(), out.data(), c.rows * c.row_len);
    expect_same_bits(out, c.expected, c.name + " scalar");
  }
}

// Every SIMD target compiled into the library and supported by this CPU, then the default.
TEST(GgmlQuants, SimdDequantizeBitExactOnEveryTarget) {
  std::string seen;
  for (const int64_t target : hwy::SupportedAndGeneratedTargets()) {
    SCOPED_TRACE(hwy::TargetName(target));
    seen += std::string(" ") + hwy::TargetName(target);
    hwy::SetSupportedTargetsForTest(target);
    for (const auto& c : fx().dequant) {
      std::vector<float> out(c.expected.size(), -1.0f);
      pq::ggml_dequantize(c.type, c.bytes.data(), out.data(), c.rows * c.row_len);
      expect_same_bits(out, c.expected, c.name + " on " + hwy::TargetName(target));
    }
  }
  hwy::SetSupportedTargetsForTest(0);  // back to the best target
  std::cout << "[ggml] SIMD targets:" << seen << "\n";
  EXPECT_FALSE(seen.empty());
}

// F16 / BF16 / F32 (one element per block): any length and start, so the SIMD tails are covered.
TEST(GgmlQuants, ElementTypesAnyLengthAndOffset) {
  for (const int64_t target : hwy::SupportedAndGeneratedTargets()) {
    SCOPED_TRACE(hwy::TargetName(target));
    hwy::SetSupportedTargetsForTest(target);
    for (const auto& c : fx().dequant) {
      const auto width = static_cast<int64_t>(c.bytes.size()) / (c.rows * c.row_len);
      if (c.type != GgmlType::F16 && c.type != GgmlType::BF16 && c.type != GgmlType::F32) continue;
      for (const int64_t start : {0, 1, 3})
        for (const int64_t n : {1, 7, 17, 37}) {
          std::vector<float> out(n);
          pq::ggml_dequantize(c.type, c.bytes.data() + start * width, out.data(), n);
          expect_same_bits(out, {c.expected.begin() + start, c.expected.begin() + start + n},
                           c.name + " start " + std::to_string(start) + " n " + std::to_string(n));
        }
    }
  }
  hwy::SetSupportedTargetsForTest(0);
}

// The fixture tiled 9 times (144 rows), split over 1, 2, 3 and 5 threads and the default.
TEST(GgmlQuants, RowsDequantizeThreadedBitExact) {
  constexpr int kTiles = 9;
  for (const auto& c : fx().dequant) {
    std::vector<uint8_t> src;
    std::vector<float> want;
    for (int i = 0; i < kTiles; ++i) {
      src.insert(src.end(), c.bytes.begin(), c.bytes.end());
      want.insert(want.end(), c.expected.begin(), c.expected.end());
    }
    for (const int threads : {1, 2, 3, 5, 0}) {
      std::vector<float> out(want.size(), -1.0f);
      pq::ggml_dequantize_rows(c.type, src.data(), out.data(), kTiles * c.rows, c.row_len, threads);
      expect_same_bits(out, want, c.name + " threads=" + std::to_string(threads));
    }
  }
}

TEST(GgmlQuants, QuantizeBytesIdenticalToGgufPy) {
  for (const auto& c : fx().quant) {
    const int64_t n = c.rows * c.row_len;
    ASSERT_EQ(c.bytes.size(), c.rows * peft::io::ggml_row_bytes(c.type, c.row_len)) << c.name;
    std::vector<uint8_t> out(c.bytes.size(), 0xAA);
    pq::ggml_quantize(c.type, c.expected.data(), out.data(), n);
    std::size_t diffs = 0, first = out.size();
    for (std::size_t i = 0; i < out.size(); ++i)
      if (out[i] != c.bytes[i] && diffs++ == 0) first = i;
    EXPECT_EQ(diffs, 0u) << c.name << ": first differing byte " << first << " (row "
                         << (first < out.size() ? first / (out.size() / c.rows) : 0) << ")";
  }
}

// Quantise then dequantise: the round trip of our own bytes equals the scalar decoder and is
// within half a step of the input for normal data.
TEST(GgmlQuants, QuantizeDequantizeRoundTrip) {
  std::vector<float> x(4 * 256);
  for (std::size_t i = 0; i < x.size(); ++i)
    x[i] = 0.02f * static_cast<float>((i * 7919) % 201) / 100.0f - 0.02f;
  for (const GgmlType t : {GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0,
                           GgmlType::Q5_1, GgmlType::F16, GgmlType::BF16, GgmlType::F32}) {
    const std::string name = peft::io::ggml_type_name(static_cast<uint32_t>(t));
    std::vector<uint8_t> q(peft::io::ggml_row_bytes(t, static_cast<int64_t>(x.size())));
    pq::ggml_quantize(t, x.data(), q.data(), static_cast<int64_t>(x.size()));
    std::vector<float> y(x.size()), yr(x.size());
    pq::ggml_dequantize(t, q.data(), y.data(), static_cast<int64_t>(x.size()));
    pq::ggml_dequantize_reference(t, q.data(), yr.data(), static_cast<int64_t>(x.size()));
    expect_same_bits(y, yr, name);
    const float tol = t == GgmlType::Q4_0 || t == GgmlType::Q4_1   ? 0.04f / 15 * 1.01f
                      : t == GgmlType::Q5_0 || t == GgmlType::Q5_1 ? 0.04f / 31 * 1.01f
                      : t == GgmlType::Q8_0                        ? 0.02f / 127 * 1.01f
                                                                   : 1e-4f;
    for (std::size_t i = 0; i < x.size(); ++i) ASSERT_NEAR(y[i], x[i], tol) << name << " at " << i;
  }
}

TEST(GgmlQuants, BadArgumentsNameTypeAndCount) {
  float f[512] = {};
  uint8_t b[1024] = {};
  using peft::test::expect_throw_with;
  expect_throw_with<std::invalid_argument>([&] { pq::ggml_dequantize(GgmlType::Q4_0, b, f, 33); },
                                           {"ggml_dequantize", "Q4_0", "n = 33", "block size 32"});
  expect_throw_with<std::invalid_argument>([&] { pq::ggml_dequantize(GgmlType::Q6_K, b, f, 100); },
                                           {"Q6_K", "n = 100", "block size 256"});
  expect_throw_with<std::invalid_argument>(
      [&] { pq::ggml_dequantize_rows(GgmlType::Q4_K, b, f, 2, 128); },
      {"ggml_dequantize_rows", "Q4_K", "n = 128", "block size 256"});
  expect_throw_with<std::invalid_argument>([&] { pq::ggml_quantize(GgmlType::Q8_0, f, b, 48); },
                                           {"ggml_quantize", "Q8_0", "n = 48"});
  expect_throw_with<peft::NotSupported>(
      [&] { pq::ggml_dequantize(GgmlType::IQ2_XS, b, f, 256); },
      {"ggml_dequantize", "IQ2_XS", "n = 256", "not supported", "Q6_K"});
  expect_throw_with<peft::NotSupported>(
      [&] { pq::ggml_quantize(GgmlType::Q4_K, f, b, 256); },
      {"ggml_quantize", "Q4_K", "n = 256", "not supported", "Q5_1"});
  expect_throw_with<peft::NotSupported>(
      [&] { pq::ggml_dequantize(static_cast<GgmlType>(77), b, f, 32); }, {"type 77", "n = 32"});
  // n = 0 is fine (nothing to do).
  EXPECT_NO_THROW(pq::ggml_dequantize(GgmlType::Q4_K, b, f, 0));
  EXPECT_NO_THROW(pq::ggml_dequantize_rows(GgmlType::Q8_0, b, f, 0, 32));
}
