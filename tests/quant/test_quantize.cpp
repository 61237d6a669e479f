// Blockwise 4-bit quantisation against bitsandbytes 0.50.2 (tests/fixtures/qlora/quant, written
// by tools/reference/gen_qlora.py): packed bytes, absmax, double-quantisation state and
// dequantised values must be identical, on random, edge-case and real stories260K weights.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>

#include "peft/core/error.h"
#include "peft/core/file_util.h"
#include "peft/io/safetensors.h"
#include "peft/quant/quantize.h"
#include "test_utils.h"

namespace pq = peft::quant;

namespace {

using peft::test::values;

struct Fixture {
  peft::io::SafetensorsFile file = peft::io::SafetensorsFile::open(peft::test::fixture("qlora/quant/expected.safetensors"));
  nlohmann::json cases = nlohmann::json::parse(peft::read_file(peft::test::fixture("qlora/quant/case.json")))["cases"];
};

const Fixture& fx() {
  static const Fixture f;
  return f;
}

}  // namespace

TEST(Quant4, CodeBooksMatchBitsandbytes) {
  const auto& f = fx().file;
  EXPECT_EQ(values<float>(f, "random_nf4.quant_map"),
            std::vector<float>(pq::code_4bit(pq::QuantType::NF4).begin(), pq::code_4bit(pq::QuantType::NF4).end()));
  EXPECT_EQ(values<float>(f, "random_fp4.quant_map"),
            std::vector<float>(pq::code_4bit(pq::QuantType::FP4).begin(), pq::code_4bit(pq::QuantType::FP4).end()));
  EXPECT_EQ(values<float>(f, "random_nf4_dq.nested_quant_map"),
            std::vector<float>(pq::dynamic_map().begin(), pq::dynamic_map().end()));
}

TEST(Quant4, BytesAbsmaxAndDoubleQuantIdenticalToBitsandbytes) {
  const auto& f = fx().file;
  int checked = 0, codes = 0;
  for (const auto& c : fx().cases) {
    const std::string name = c["name"];
    SCOPED_TRACE(name);
    const auto w = values<float>(f, "input." + c["input"].get<std::string>());
    pq::Quant4Options o;
    o.quant_type = pq::parse_quant_type(c["quant_type"]);
    o.blocksize = c["blocksize"];
    o.double_quant = c["double_quant"];
    const auto shape = c["shape"].get<std::vector<int64_t>>();
    // The mean bitsandbytes subtracts is torch's; the C++ default (double accumulation) must agree.
    pq::Quantized4 q = pq::quantize_4bit(w.data(), shape, o);
    EXPECT_EQ(q.packed, values<uint8_t>(f, name + ".packed"));
    if (o.double_quant) {
      EXPECT_EQ(q.state.offset, values<float>(f, name + ".offset")[0]);
      EXPECT_EQ(q.state.nested_absmax, values<float>(f, name + ".nested_absmax"));
      const auto want = values<uint8_t>(f, name + ".absmax_codes");
      EXPECT_EQ(q.state.absmax_codes, want);
      codes += static_cast<int>(want.size());
    } else {
      EXPECT_EQ(q.state.absmax, values<float>(f, name + ".absmax"));
    }
    const auto qs = values<uint8_t>(f, name + ".quant_state");
    EXPECT_EQ(pq::quant_state_json(q.state), std::string(qs.begin(), qs.end()));
    if (f.contains(name + ".dequant")) {
      std::vector<float> back(static_cast<std::size_t>(q.numel()));
      pq::dequantize_4bit(q, back.data());
      EXPECT_EQ(back, values<float>(f, name + ".dequant"));
    }
    ++checked;
  }
  EXPECT_GE(checked, 19);
  EXPECT_GE(codes, 1000);
  std::cout << "double-quantised constants compared: " << codes << "\n";
}

// bitsandbytes' 8-bit quantiser alone (tests/fixtures/qlora/blockwise8): normal and heavy-tailed
// values (where its lookup table does not give the nearest code), values a float step either side
// of the table's bin edges, an all-zero block and a tail block.
TEST(Quant8, BlockwiseIdenticalToBitsandbytes) {
  const auto f = peft::io::SafetensorsFile::open(peft::test::fixture("qlora/blockwise8/expected.safetensors"));
  const auto x = values<float>(f, "input");
  const auto want_codes = values<uint8_t>(f, "codes");
  const auto want_absmax = values<float>(f, "absmax");
  EXPECT_EQ(values<float>(f, "code"), std::vector<float>(pq::dynamic_map().begin(), pq::dynamic_map().end()));
  ASSERT_EQ(want_codes.size(), x.size());
  ASSERT_EQ(want_absmax.size(), (x.size() + 255) / 256);
  std::vector<uint8_t> codes(x.size());
  std::vector<float> absmax(want_absmax.size());
  pq::quantize_blockwise_8bit(x.data(), static_cast<int64_t>(x.size()), 256, codes.data(), absmax.data());
  EXPECT_EQ(absmax, want_absmax);
  std::size_t differ = 0, not_nearest = 0;
  const auto& dyn = pq::dynamic_map();
  for (std::size_t i = 0; i < x.size(); ++i) {
    differ += codes[i] != want_codes[i];
    if (absmax[i / 256] == 0.0f) continue;
    const float v = x[i] * (1.0f / absmax[i / 256]);
    float best = 1e9f;
    for (float c : dyn) best = std::min(best, std::fabs(v - c));
    not_nearest += std::fabs(v - dyn[codes[i]]) > best;
  }
  EXPECT_EQ(differ, 0u);
  // The fixture must exercise the table's departures from the nearest code, or it proves little.
  EXPECT_GT(not_nearest, 0u);
  std::cout << x.size() << " values, " << differ << " codes differ from bitsandbytes; " << not_nearest
            << " of theirs (and ours) are not the nearest code\n";
}

TEST(Quant4, QuantStateJsonRoundTrip) {
  const auto qs = values<uint8_t>(fx().file, "big_nf4_dq.quant_state");
  pq::QuantState4 s;
  pq::read_quant_state_json(std::string(qs.begin(), qs.end()), s, "big");
  EXPECT_TRUE(s.nested);
  EXPECT_EQ(s.blocksize, 64);
  EXPECT_EQ(s.shape, (std::vector<int64_t>{129, 128}));
  EXPECT_EQ(pq::quant_state_json(s), std::string(qs.begin(), qs.end()));
}

TEST(Quant4, BadInputIsRejected) {
  std::vector<float> w(64, 1.0f);
  pq::Quant4Options o;
  o.blocksize = 48;
  EXPECT_THROW(pq::quantize_4bit(w.data(), {64}, o), peft::ConfigError);
  EXPECT_THROW(pq::parse_quant_type("int4"), peft::ConfigError);
  pq::QuantState4 s;
  EXPECT_THROW(pq::read_quant_state_json("{\"quant_type\": \"nf4\"}", s, "x.weight"), peft::FormatError);
  EXPECT_THROW(pq::read_quant_state_json("not json", s, "x.weight"), peft::FormatError);
  pq::Quantized4 q = pq::quantize_4bit(w.data(), {64}, {});
  q.packed.pop_back();
  std::vector<float> out(64);
  EXPECT_THROW(pq::dequantize_4bit(q, out.data()), peft::FormatError);
}
