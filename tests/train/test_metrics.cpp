// Metrics against the Python references (tests/fixtures/metrics/metrics.json from
// tools/reference/gen_metrics.py), plus the TensorBoard event writer and the PNG plots.
#include <cairo.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "peft/core/file_util.h"
#include "peft/train/event_writer.h"
#include "peft/train/metrics.h"
#include "peft/train/plot.h"

#include "test_utils.h"

namespace {

namespace fs = std::filesystem;
namespace pt = peft::train;
using nlohmann::json;

const json& fixture() {
  static const json j = json::parse(peft::read_file(peft::test::fixture("metrics/metrics.json")));
  return j;
}

::testing::AssertionResult rel_close(double actual, double expected, double rtol) {
  if (actual == expected || std::fabs(actual - expected) <= rtol * std::fabs(expected))
    return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "actual " << actual << " vs expected " << expected << " (rel diff "
                                       << std::fabs(actual - expected) / std::fabs(expected) << ", rtol " << rtol
                                       << ")";
}

// ------------------------------------------------------------------ golden values

TEST(Metrics, Tokenize13aMatchesSacrebleu) {
  const auto& cases = fixture().at("tokenize_13a");
  ASSERT_GT(cases.size(), 100u);
  for (const auto& c : cases)
    EXPECT_EQ(pt::detail::tokenize_13a(c.at("in").get<std::string>()), c.at("out").get<std::string>())
        << "input: " << c.at("in").get<std::string>();
}

TEST(Metrics, TokenizeRougeMatchesRougeScore) {
  for (const auto& c : fixture().at("tokenize_rouge"))
    EXPECT_EQ(pt::detail::tokenize_rouge(c.at("in").get<std::string>()), c.at("out").get<std::vector<std::string>>())
        << "input: " << c.at("in").get<std::string>();
}

TEST(Metrics, CorpusBleuAndRougeLMatchReference) {
  const auto& cases = fixture().at("text");
  ASSERT_GE(cases.size(), 20u);
  for (const auto& c : cases) {
    SCOPED_TRACE(c.at("name").get<std::string>());
    const auto hyps = c.at("hyps").get<std::vector<std::string>>();
    const auto refs = c.at("refs").get<std::vector<std::vector<std::string>>>();
    EXPECT_TRUE(rel_close(pt::corpus_bleu(hyps, refs), c.at("bleu").get<double>(), 1e-6));
    EXPECT_TRUE(rel_close(pt::rouge_l(hyps, refs), c.at("rouge_l").get<double>(), 1e-6));
  }
  // The main E2E case really is 50 real examples with variable reference counts.
  const auto& e2e = cases.at(0);
  EXPECT_EQ(e2e.at("name"), "e2e_ref_as_hyp");
  EXPECT_EQ(e2e.at("hyps").size(), 50u);
}

TEST(Metrics, EntityF1MatchesSeqeval) {
  for (const auto& c : fixture().at("entity_f1")) {
    SCOPED_TRACE(c.at("name").get<std::string>());
    const auto gold = c.at("gold").get<std::vector<std::vector<std::string>>>();
    const auto pred = c.at("pred").get<std::vector<std::vector<std::string>>>();
    const pt::EntityScores s = pt::entity_f1(gold, pred);
    EXPECT_EQ(s.n_gold, c.at("n_gold").get<int64_t>());
    EXPECT_EQ(s.n_pred, c.at("n_pred").get<int64_t>());
    EXPECT_EQ(s.n_correct, c.at("n_correct").get<int64_t>());
    EXPECT_TRUE(rel_close(s.precision, c.at("precision").get<double>(), 1e-9));
    EXPECT_TRUE(rel_close(s.recall, c.at("recall").get<double>(), 1e-9));
    EXPECT_TRUE(rel_close(s.f1, c.at("f1").get<double>(), 1e-9));
  }
}

TEST(Metrics, AccuracyAndMacroF1MatchSklearn) {
  for (const auto& c : fixture().at("labels")) {
    SCOPED_TRACE(c.at("name").get<std::string>());
    const auto gold = c.at("gold").get<std::vector<int64_t>>();
    const auto pred = c.at("pred").get<std::vector<int64_t>>();
    EXPECT_TRUE(rel_close(pt::accuracy(pred, gold), c.at("accuracy").get<double>(), 1e-9));
    EXPECT_TRUE(rel_close(pt::macro_f1(pred, gold), c.at("macro_f1").get<double>(), 1e-9));
  }
}

TEST(Metrics, BinaryF1MatchesSklearn) {
  for (const auto& c : fixture().at("binary_f1")) {
    SCOPED_TRACE(c.at("name").get<std::string>());
    const auto gold = c.at("gold").get<std::vector<int64_t>>();
    const auto pred = c.at("pred").get<std::vector<int64_t>>();
    EXPECT_TRUE(rel_close(pt::binary_f1(pred, gold), c.at("f1").get<double>(), 1e-12));
  }
}

TEST(Metrics, RegressionMatchesSklearnAndScipy) {
  const auto& cases = fixture().at("regression");
  ASSERT_GE(cases.size(), 4u);
  for (const auto& c : cases) {
    SCOPED_TRACE(c.at("name").get<std::string>());
    const auto gold = c.at("gold").get<std::vector<double>>();
    const auto pred = c.at("pred").get<std::vector<double>>();
    EXPECT_TRUE(rel_close(pt::mean_squared_error(pred, gold), c.at("mse").get<double>(), 1e-12));
    EXPECT_TRUE(rel_close(pt::pearson(pred, gold), c.at("pearson").get<double>(), 1e-12));
    EXPECT_TRUE(rel_close(pt::spearman(pred, gold), c.at("spearman").get<double>(), 1e-12));
  }
  EXPECT_TRUE(std::isnan(pt::pearson({1, 1, 1}, {1, 2, 3})));  // scipy: constant input -> nan
}

TEST(Metrics, MultiLabelMatchesSklearn) {
  for (const auto& c : fixture().at("multi_label")) {
    SCOPED_TRACE(c.at("name").get<std::string>());
    const auto gold = c.at("gold").get<std::vector<std::vector<int64_t>>>();
    const auto pred = c.at("pred").get<std::vector<std::vector<int64_t>>>();
    const pt::MultiLabelScores s = pt::multi_label_scores(pred, gold);
    EXPECT_TRUE(rel_close(s.micro_f1, c.at("micro_f1").get<double>(), 1e-12));
    EXPECT_TRUE(rel_close(s.macro_f1, c.at("macro_f1").get<double>(), 1e-12));
    EXPECT_TRUE(rel_close(s.subset_accuracy, c.at("subset_accuracy").get<double>(), 1e-12));
  }
  peft::test::expect_throw_with<std::invalid_argument>([] { pt::multi_label_scores({{1, 0}}, {{1}}); },
                                                       {"[train::multi_label_scores]", "row 0"});
}

TEST(Metrics, Perplexity) {
  for (const auto& c : fixture().at("perplexity"))
    EXPECT_TRUE(rel_close(pt::perplexity(c.at("loss").get<double>()), c.at("expected").get<double>(), 1e-12));
  EXPECT_TRUE(std::isinf(pt::perplexity(1000.0)));
}

TEST(Metrics, LengthMismatchNamesBothSizes) {
  using peft::test::expect_throw_with;
  expect_throw_with<std::invalid_argument>([] { pt::accuracy({1, 2, 3}, {1, 2}); },
                                           {"[train::accuracy]", "pred has 3", "gold has 2"});
  expect_throw_with<std::invalid_argument>([] { pt::macro_f1({1}, {1, 2, 3, 4}); },
                                           {"[train::macro_f1]", "pred has 1", "gold has 4"});
  expect_throw_with<std::invalid_argument>([] { pt::corpus_bleu({"a", "b"}, {{"a"}}); },
                                           {"[train::corpus_bleu]", "hyps has 2", "refs_per_hyp has 1"});
  expect_throw_with<std::invalid_argument>([] { pt::rouge_l({"a"}, {{"a"}, {"b"}, {"c"}}); },
                                           {"[train::rouge_l]", "hyps has 1", "refs_per_hyp has 3"});
  expect_throw_with<std::invalid_argument>([] { pt::entity_f1({{"O"}}, {}); },
                                           {"[train::entity_f1]", "gold has 1", "pred has 0"});
  expect_throw_with<std::invalid_argument>([] { pt::entity_f1({{"O", "B-PER"}}, {{"O"}}); },
                                           {"[train::entity_f1]", "sentence 0", "2 gold", "1 predicted"});
  expect_throw_with<std::invalid_argument>([] { pt::corpus_bleu({"a"}, {{}}); }, {"hypothesis 0 has no references"});
  EXPECT_THROW(pt::accuracy({}, {}), std::invalid_argument);
}

// ------------------------------------------------------------------ TensorBoard event file

// Independent bit-at-a-time CRC-32C, so the table version in the library is checked against it.
uint32_t crc32c_bitwise(const std::string& s) {
  uint32_t crc = 0xFFFFFFFFu;
  for (unsigned char b : s) {
    crc ^= b;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
  }
  return ~crc;
}
uint32_t masked(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

template <typename T>
T read_le(const std::string& s, size_t off) {
  T v;
  std::memcpy(&v, s.data() + off, sizeof(T));
  return v;
}

struct Field {
  uint32_t number, wire;
  uint64_t varint = 0;  // wire 0, and the raw bits of wire 1 / 5
  std::string bytes;    // wire 2
};

std::vector<Field> parse_proto(const std::string& s) {
  std::vector<Field> out;
  size_t i = 0;
  auto varint = [&] {
    uint64_t v = 0;
    for (int shift = 0;; shift += 7) {
      if (i >= s.size()) throw std::runtime_error("truncated varint");
      const auto b = static_cast<unsigned char>(s[i++]);
      v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if (!(b & 0x80)) return v;
    }
  };
  while (i < s.size()) {
    const uint64_t key = varint();
    Field f{static_cast<uint32_t>(key >> 3), static_cast<uint32_t>(key & 7)};
    if (f.wire == 0) {
      f.varint = varint();
    } else if (f.wire == 1) {
      f.varint = read_le<uint64_t>(s, i);
      i += 8;
    } else if (f.wire == 5) {
      f.varint = read_le<uint32_t>(s, i);
      i += 4;
    } else if (f.wire == 2) {
      const uint64_t n = varint();
      f.bytes = s.substr(i, n);
      i += n;
    } else {
      throw std::runtime_error("unexpected wire type");
    }
    out.push_back(f);
  }
  if (i != s.size()) throw std::runtime_error("overrun");
  return out;
}

struct ParsedEvent {
  double wall_time = 0;
  int64_t step = 0;
  std::string file_version, tag;
  float value = std::numeric_limits<float>::quiet_NaN();
};

std::vector<ParsedEvent> read_event_file(const std::string& path) {
  const std::string data = peft::read_file(path);
  std::vector<ParsedEvent> events;
  size_t off = 0;
  while (off < data.size()) {
    EXPECT_LE(off + 12, data.size());
    const auto len = read_le<uint64_t>(data, off);
    EXPECT_EQ(read_le<uint32_t>(data, off + 8), masked(crc32c_bitwise(data.substr(off, 8)))) << "length CRC";
    EXPECT_LE(off + 12 + len + 4, data.size());
    const std::string body = data.substr(off + 12, len);
    EXPECT_EQ(read_le<uint32_t>(data, off + 12 + len), masked(crc32c_bitwise(body))) << "data CRC";
    off += 12 + len + 4;
    ParsedEvent ev;
    for (const auto& f : parse_proto(body)) {
      if (f.number == 1 && f.wire == 1) std::memcpy(&ev.wall_time, &f.varint, 8);
      else if (f.number == 2 && f.wire == 0) ev.step = static_cast<int64_t>(f.varint);
      else if (f.number == 3 && f.wire == 2) ev.file_version = f.bytes;
      else if (f.number == 5 && f.wire == 2) {
        for (const auto& v : parse_proto(f.bytes)) {  // Summary
          EXPECT_EQ(v.number, 1u);
          for (const auto& x : parse_proto(v.bytes)) {  // Summary.Value
            if (x.number == 1) ev.tag = x.bytes;
            if (x.number == 2 && x.wire == 5) {
              const auto bits = static_cast<uint32_t>(x.varint);
              std::memcpy(&ev.value, &bits, 4);
            }
          }
        }
      } else {
        ADD_FAILURE() << "unexpected Event field " << f.number << " wire " << f.wire;
      }
    }
    events.push_back(ev);
  }
  return events;
}

TEST(EventWriter, Crc32cKnownValue) {
  EXPECT_EQ(pt::crc32c("123456789", 9), 0xE3069283u);
  EXPECT_EQ(pt::crc32c("", 0), 0u);
  const std::string s = "The quick brown fox jumps over the lazy dog";
  EXPECT_EQ(pt::crc32c(s.data(), s.size()), crc32c_bitwise(s));
  EXPECT_EQ(pt::masked_crc32c(s.data(), s.size()), masked(crc32c_bitwise(s)));
}

TEST(EventWriter, WritesParsableTfRecordEvents) {
  // A fixed folder in the build tree, so tools/reference/verify_tensorboard.py can read it after the run.
  const std::string dir = std::string(PEFT_TEST_OUTPUT_DIR) + "/tb_event_writer_test";
  fs::remove_all(dir);
  std::string path;
  {
    pt::TensorBoardWriter w(dir);
    path = w.path();
    EXPECT_EQ(fs::path(path).parent_path(), fs::path(dir));
    EXPECT_EQ(fs::path(path).filename().string().rfind("events.out.tfevents.", 0), 0u);
    for (int64_t step = 0; step < 5; ++step) {
      w.add_scalar("train/loss", 2.5 / (step + 1), step * 10, 1700000000.0 + step);
      if (step % 2 == 0) w.add_scalar("eval/loss", 3.0 - 0.25 * step, step * 10, 1700000000.5 + step);
    }
    w.add_scalar("train/learning_rate", 3e-4, 40);  // wall_time = now
    w.add_scalar("misc/negative_step", -1.5, -7, 1700000100.0);
    w.flush();
    EXPECT_GT(fs::file_size(path), 0u);
  }
  const auto events = read_event_file(path);
  ASSERT_EQ(events.size(), 1u + 5 + 3 + 2);
  EXPECT_EQ(events[0].file_version, "brain.Event:2");
  EXPECT_GT(events[0].wall_time, 1.6e9);
  EXPECT_EQ(events[1].tag, "train/loss");
  EXPECT_EQ(events[1].step, 0);
  EXPECT_EQ(events[1].value, 2.5f);
  EXPECT_EQ(events[1].wall_time, 1700000000.0);
  EXPECT_EQ(events[2].tag, "eval/loss");
  EXPECT_EQ(events[2].value, 3.0f);
  EXPECT_EQ(events[2].wall_time, 1700000000.5);
  EXPECT_EQ(events[3].tag, "train/loss");
  EXPECT_EQ(events[3].step, 10);
  EXPECT_EQ(events[3].value, static_cast<float>(2.5 / 2));
  EXPECT_EQ(events[9].tag, "train/learning_rate");
  EXPECT_EQ(events[9].value, 3e-4f);
  EXPECT_GT(events[9].wall_time, 1.6e9);
  EXPECT_EQ(events[10].step, -7);
  EXPECT_EQ(events[10].value, -1.5f);
}

TEST(EventWriter, TwoWritersInOneFolderUseDistinctFiles) {
  const auto dir = peft::test::tmp_dir("tb_two");
  pt::TensorBoardWriter a(dir), b(dir);
  EXPECT_NE(a.path(), b.path());
}

// ------------------------------------------------------------------ PNG

uint32_t crc32_bitwise(const std::string& s) {
  uint32_t crc = 0xFFFFFFFFu;
  for (unsigned char b : s) {
    crc ^= b;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}
uint32_t be32(const std::string& s, size_t off) {
  return (uint32_t(uint8_t(s[off])) << 24) | (uint32_t(uint8_t(s[off + 1])) << 16) |
         (uint32_t(uint8_t(s[off + 2])) << 8) | uint32_t(uint8_t(s[off + 3]));
}

// The file's chunk structure: signature, CRCs, IHDR (size, 8-bit RGB, no interlace), IDAT, IEND.
void check_png(const std::string& path, uint32_t width, uint32_t height) {
  const std::string png = peft::read_file(path);
  ASSERT_GE(png.size(), 8u);
  ASSERT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  std::vector<std::string> types;
  size_t off = 8;
  while (off < png.size()) {
    ASSERT_LE(off + 12, png.size());
    const uint32_t len = be32(png, off);
    ASSERT_LE(off + 12 + len, png.size());
    const std::string type = png.substr(off + 4, 4);
    const std::string data = png.substr(off + 8, len);
    EXPECT_EQ(be32(png, off + 8 + len), crc32_bitwise(type + data)) << "CRC of chunk " << type;
    if (type == "IHDR") {
      ASSERT_EQ(len, 13u);
      EXPECT_EQ(be32(data, 0), width);
      EXPECT_EQ(be32(data, 4), height);
      EXPECT_EQ(data.substr(8, 2), std::string("\x08\x02", 2)) << "8-bit RGB";
      EXPECT_EQ(data[12], '\0') << "not interlaced";
    }
    if (type == "IEND") EXPECT_EQ(len, 0u);
    types.push_back(type);
    off += 12 + len;
  }
  ASSERT_GE(types.size(), 3u);
  EXPECT_EQ(types.front(), "IHDR");
  EXPECT_EQ(types.back(), "IEND");
  EXPECT_GE(std::count(types.begin(), types.end(), "IDAT"), 1);
}

struct Rgb {
  int r, g, b;
};
constexpr Rgb kBlue{31, 119, 180}, kOrange{255, 127, 14}, kGreen{44, 160, 44};

// A PNG decoded by cairo (an independent reader of what libpng wrote).
struct Image {
  int w = 0, h = 0;
  std::vector<uint32_t> px;  // 0x00RRGGBB
  Rgb at(int x, int y) const {
    const uint32_t p = px[static_cast<size_t>(y) * w + x];
    return {int(p >> 16 & 255), int(p >> 8 & 255), int(p & 255)};
  }
  /// Pixels within `tol` per channel of `c` in the box [x0, x1) x [y0, y1).
  int count(Rgb c, int tol, int x0 = 0, int y0 = 0, int x1 = -1, int y1 = -1) const {
    if (x1 < 0) x1 = w;
    if (y1 < 0) y1 = h;
    int n = 0;
    for (int y = y0; y < y1; ++y)
      for (int x = x0; x < x1; ++x) {
        const Rgb p = at(x, y);
        n += std::abs(p.r - c.r) <= tol && std::abs(p.g - c.g) <= tol && std::abs(p.b - c.b) <= tol;
      }
    return n;
  }
  /// Dark pixels (text, spines) in the box.
  int dark(int x0, int y0, int x1, int y1) const {
    int n = 0;
    for (int y = y0; y < y1; ++y)
      for (int x = x0; x < x1; ++x) {
        const Rgb p = at(x, y);
        n += p.r + p.g + p.b < 3 * 110;
      }
    return n;
  }
};
Image decode_png(const std::string& path) {
  cairo_surface_t* s = cairo_image_surface_create_from_png(path.c_str());
  Image im;
  if (cairo_surface_status(s) == CAIRO_STATUS_SUCCESS) {
    cairo_surface_flush(s);
    im.w = cairo_image_surface_get_width(s), im.h = cairo_image_surface_get_height(s);
    const int stride = cairo_image_surface_get_stride(s);
    const unsigned char* data = cairo_image_surface_get_data(s);
    im.px.resize(static_cast<size_t>(im.w) * im.h);
    for (int y = 0; y < im.h; ++y)
      std::memcpy(&im.px[static_cast<size_t>(y) * im.w], data + static_cast<size_t>(y) * stride, im.w * 4u);
    for (auto& p : im.px) p &= 0xFFFFFFu;
  }
  EXPECT_EQ(cairo_surface_status(s), CAIRO_STATUS_SUCCESS) << path;
  cairo_surface_destroy(s);
  return im;
}

pt::LossPlot decaying_run(bool with_lr) {
  pt::LossPlot p;
  p.title = "Training loss — lora on gpt2";
  for (int64_t s = 1; s <= 500; ++s) p.train.push_back({s, 3.0 * std::exp(-s / 150.0) + 0.4 + 0.05 * std::sin(s)});
  for (int64_t s = 100; s <= 500; s += 100) p.eval.push_back({s, 3.1 * std::exp(-s / 160.0) + 0.5});
  p.train[7].second = std::numeric_limits<double>::quiet_NaN();  // skipped, breaks the line
  if (with_lr)
    for (int64_t s = 1; s <= 500; ++s) p.learning_rate.push_back({s, s <= 25 ? 4e-3 * s / 25 : 4e-3 * (500 - s) / 475});
  return p;
}

TEST(Plot, LossCurveDrawsTitleAxesSeriesAndLegend) {
  const auto dir = peft::test::tmp_dir("plot");
  const std::string path = dir + "/loss.png";
  pt::write_loss_curve_png(path, decaying_run(/*with_lr=*/true));
  check_png(path, 900, 540);
  // Atomic write: nothing but the PNG is left in the folder.
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator{}), 1);
  fs::copy_file(path, std::string(PEFT_TEST_OUTPUT_DIR) + "/loss_curve_example.png",
                fs::copy_options::overwrite_existing);  // for a human look

  const Image im = decode_png(path);
  ASSERT_EQ(im.w, 900);
  ASSERT_EQ(im.h, 540);
  // The title: dark text in the top band, centred.
  EXPECT_GT(im.dark(300, 0, 600, 44), 150);
  EXPECT_EQ(im.dark(0, 0, 120, 44), 0);
  // The three series inside the plot area, none above it (the title band).
  EXPECT_GT(im.count(kBlue, 12, 60, 44, 840, 500), 500) << "train loss";
  EXPECT_GT(im.count(kOrange, 12, 60, 44, 840, 500), 150) << "eval loss markers";
  EXPECT_GT(im.count(kGreen, 12, 60, 44, 840, 500), 200) << "learning rate";
  EXPECT_EQ(im.count(kBlue, 40, 0, 0, 900, 40), 0);
  // The right axis: green tick labels and axis label right of the plot area.
  EXPECT_GT(im.count(kGreen, 40, 840, 44, 900, 540), 100);
  // The left axis label and tick labels, the x tick labels and axis label.
  EXPECT_GT(im.dark(0, 100, 70, 480), 200);
  EXPECT_GT(im.dark(100, 505, 800, 540), 200);

  // Without a learning rate: no green anywhere and no right axis.
  pt::write_loss_curve_png(dir + "/no_lr.png", decaying_run(/*with_lr=*/false));
  const Image plain = decode_png(dir + "/no_lr.png");
  EXPECT_EQ(plain.count(kGreen, 40), 0);
  EXPECT_EQ(plain.dark(880, 44, 900, 540), 0);
  EXPECT_GT(plain.count(kBlue, 12, 60, 44, 880, 500), 500);
}

TEST(Plot, LossCurveDegenerateInputsGiveValidPictures) {
  const auto dir = peft::test::tmp_dir("plot_degenerate");
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  struct Case {
    std::string name;
    pt::LossPlot plot;
    int blue_min;
  };
  std::vector<Case> cases;
  cases.push_back({"empty", {}, 0});
  pt::LossPlot one;
  one.title = "one point";
  one.train = {{3, 1.25}};
  cases.push_back({"one", one, 10});
  pt::LossPlot flat;
  flat.title = "flat";
  flat.train = {{0, 2.0}, {10, 2.0}};
  flat.eval = {{10, -1e6}};
  flat.learning_rate = {{0, 1e-3}, {10, 1e-3}};
  cases.push_back({"flat", flat, 200});
  pt::LossPlot bad;
  bad.title = "nothing finite";
  bad.train = {{1, nan}, {2, inf}};
  bad.learning_rate = {{1, 0.0}, {2, 0.0}};
  cases.push_back({"nonfinite", bad, 0});
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string path = dir + "/" + c.name + ".png";
    pt::write_loss_curve_png(path, c.plot);
    check_png(path, 900, 540);
    const Image im = decode_png(path);
    ASSERT_EQ(im.w, 900);
    EXPECT_GT(im.dark(0, 44, 900, 540), 500) << "axes and labels";
    EXPECT_GE(im.count(kBlue, 12, 60, 44, 880, 500), c.blue_min);
    if (c.blue_min == 0) EXPECT_EQ(im.count(kBlue, 12), 0);
  }
}

TEST(Plot, BarChartBarsAreProportional) {
  const auto dir = peft::test::tmp_dir("plot_bars");
  const std::string path = dir + "/bars.png";
  const std::vector<std::string> labels = {"lora", "prompt_tuning", "p_tuning_v2"};
  std::vector<pt::BarSeries> panels = {{"eval loss", {1.0, 2.0, std::nan("")}, "cross-entropy, nats per token"},
                                       {"tokens/s", {300.0, 150.0, 75.0}, "tokens/s"},
                                       {"rank", {3.0, 0.0, 6.0}, "rank", 4.0, "target_r"}};
  pt::write_bar_chart_png(path, labels, panels, "Compare (E2E)");
  const Image im = decode_png(path);
  check_png(path, static_cast<uint32_t>(im.w), static_cast<uint32_t>(im.h));
  EXPECT_EQ(im.w, 900);
  // The length of each bar of a colour: the most pixels of exactly that colour in one row (bars
  // are pixel-aligned; the dashed reference line crosses some rows) over each run of rows.
  auto runs = [&](Rgb c) {
    std::vector<int> out;
    bool in_bar = false;
    for (int y = 0; y < im.h; ++y) {
      const int n = im.count(c, 0, 0, y, im.w, y + 1);
      if (n > 0 && !in_bar) out.push_back(0);
      if (n > 0) out.back() = std::max(out.back(), n);
      in_bar = n > 0;
    }
    return out;
  };
  const auto blue = runs(kBlue), orange = runs(kOrange), green = runs(kGreen);
  // Panel 1: bars 1 and 2 (the n/a row has none), lengths in ratio 1:2.
  ASSERT_EQ(blue.size(), 2u);
  EXPECT_NEAR(static_cast<double>(blue[0]) / blue[1], 0.5, 0.01);
  // Panel 2: three bars, 4:2:1.
  ASSERT_EQ(orange.size(), 3u);
  EXPECT_NEAR(static_cast<double>(orange[1]) / orange[0], 0.5, 0.01);
  EXPECT_NEAR(static_cast<double>(orange[2]) / orange[0], 0.25, 0.01);
  // Panel 3: a zero-length bar draws nothing; 3:6 for the others.
  ASSERT_EQ(green.size(), 2u);
  EXPECT_NEAR(static_cast<double>(green[0]) / green[1], 0.5, 0.01);
  // Title at the top; the longest bar of a panel leaves room for its value label: nothing reaches
  // the right margin.
  EXPECT_GT(im.dark(300, 0, 600, 44), 150);
  EXPECT_EQ(im.dark(im.w - 12, 44, im.w, im.h), 0);
  fs::copy_file(path, std::string(PEFT_TEST_OUTPUT_DIR) + "/bar_chart_example.png", fs::copy_options::overwrite_existing);

  // The reference line (dashed, labelled) adds dark pixels to the last panel only.
  panels[2].reference = std::nan("");
  pt::write_bar_chart_png(dir + "/no_ref.png", labels, panels, "Compare (E2E)");
  const Image no_ref = decode_png(dir + "/no_ref.png");
  ASSERT_EQ(no_ref.h, im.h);
  const int panel3 = im.h * 2 / 3;
  EXPECT_EQ(im.dark(0, 0, im.w, panel3), no_ref.dark(0, 0, im.w, panel3));
  EXPECT_GT(im.dark(0, panel3, im.w, im.h), no_ref.dark(0, panel3, im.w, im.h) + 40);

  // One panel fewer, a shorter picture.
  pt::write_bar_chart_png(dir + "/two.png", labels, {{"a", {1, 2, 3}}, {"b", {1, 2, 3}}}, "two");
  EXPECT_LT(decode_png(dir + "/two.png").h, im.h);
  EXPECT_THROW(pt::write_bar_chart_png(dir + "/bad.png", labels, {{"x", {1.0}}}, ""), std::invalid_argument);
}

TEST(Plot, CairoErrorsNameTheFile) {
  // 2,000 rows do not fit a cairo surface (at most 32,767 pixels high).
  const auto dir = peft::test::tmp_dir("plot_too_big");
  const std::vector<std::string> labels(2000, "row");
  const std::string path = dir + "/huge.png";
  peft::test::expect_throw_with<std::runtime_error>(
      [&] { pt::write_bar_chart_png(path, labels, {{"x", std::vector<double>(2000, 1.0)}}, "too big"); },
      {"[train::plot]", path, "cairo"});
  EXPECT_FALSE(fs::exists(path));
}

}  // namespace
