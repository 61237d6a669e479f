#include "peft/train/plot.h"

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "peft/core/check.h"
#include "peft/core/file_util.h"

namespace peft::train {

namespace {

struct Rgb {
  uint8_t r, g, b;
};
constexpr Rgb kWhite{255, 255, 255}, kBlack{0, 0, 0}, kGrid{225, 225, 225}, kAxis{60, 60, 60};
constexpr Rgb kTrain{31, 119, 180}, kEval{255, 127, 14};

class Canvas {
 public:
  Canvas(int w, int h) : w_(w), h_(h), px_(static_cast<size_t>(w) * h * 3, 255) { unclip(); }
  int width() const { return w_; }
  int height() const { return h_; }
  const std::vector<uint8_t>& pixels() const { return px_; }

  void set(int x, int y, Rgb c) {
    if (x < clip_x0_ || y < clip_y0_ || x > clip_x1_ || y > clip_y1_) return;
    uint8_t* p = &px_[(static_cast<size_t>(y) * w_ + x) * 3];
    p[0] = c.r;
    p[1] = c.g;
    p[2] = c.b;
  }
  void fill_rect(int x0, int y0, int x1, int y1, Rgb c) {  // inclusive corners
    for (int y = y0; y <= y1; ++y)
      for (int x = x0; x <= x1; ++x) set(x, y, c);
  }
  void rect(int x0, int y0, int x1, int y1, Rgb c) {
    for (int x = x0; x <= x1; ++x) set(x, y0, c), set(x, y1, c);
    for (int y = y0; y <= y1; ++y) set(x0, y, c), set(x1, y, c);
  }
  /// Bresenham line drawn with a square brush of side `thick`.
  void line(int x0, int y0, int x1, int y1, Rgb c, int thick) {
    const int dx = std::abs(x1 - x0), sx = x0 < x1 ? 1 : -1;
    const int dy = -std::abs(y1 - y0), sy = y0 < y1 ? 1 : -1;
    int err = dx + dy;
    const int lo = -(thick - 1) / 2, hi = thick / 2;
    for (;;) {
      fill_rect(x0 + lo, y0 + lo, x0 + hi, y0 + hi, c);
      if (x0 == x1 && y0 == y1) break;
      const int e2 = 2 * err;
      if (e2 >= dy) err += dy, x0 += sx;
      if (e2 <= dx) err += dx, y0 += sy;
    }
  }
  void clip(int x0, int y0, int x1, int y1) {
    clip_x0_ = std::max(0, x0), clip_y0_ = std::max(0, y0);
    clip_x1_ = std::min(w_ - 1, x1), clip_y1_ = std::min(h_ - 1, y1);
  }
  void unclip() { clip(0, 0, w_ - 1, h_ - 1); }

 private:
  int w_, h_;
  std::vector<uint8_t> px_;
  int clip_x0_ = 0, clip_y0_ = 0, clip_x1_ = 0, clip_y1_ = 0;
};

// ---- 3x5 pixel font: digits, number punctuation, lowercase letters (upper case is drawn as
// lower case) and a few symbols for labels.
struct Glyph {
  char ch;
  uint8_t rows[5];  // 3 bits per row, MSB = left column
};
constexpr Glyph kFont[] = {
    {'0', {7, 5, 5, 5, 7}}, {'1', {2, 6, 2, 2, 7}}, {'2', {7, 1, 7, 4, 7}}, {'3', {7, 1, 7, 1, 7}},
    {'4', {5, 5, 7, 1, 1}}, {'5', {7, 4, 7, 1, 7}}, {'6', {7, 4, 7, 5, 7}}, {'7', {7, 1, 1, 1, 1}},
    {'8', {7, 5, 7, 5, 7}}, {'9', {7, 5, 7, 1, 7}}, {'.', {0, 0, 0, 0, 2}}, {'-', {0, 0, 7, 0, 0}},
    {'+', {0, 2, 7, 2, 0}}, {'_', {0, 0, 0, 0, 7}}, {'%', {5, 1, 2, 4, 5}}, {'/', {1, 1, 2, 4, 4}},
    {':', {0, 2, 0, 2, 0}}, {'(', {1, 2, 2, 2, 1}}, {')', {4, 2, 2, 2, 4}}, {',', {0, 0, 0, 2, 4}},
    {'a', {0, 3, 5, 5, 3}}, {'b', {4, 6, 5, 5, 6}}, {'c', {0, 3, 4, 4, 3}}, {'d', {1, 3, 5, 5, 3}},
    {'e', {0, 2, 7, 4, 3}}, {'f', {3, 4, 6, 4, 4}}, {'g', {0, 3, 5, 3, 6}}, {'h', {4, 6, 5, 5, 5}},
    {'i', {2, 0, 2, 2, 2}}, {'j', {1, 0, 1, 5, 2}}, {'k', {4, 5, 6, 5, 5}}, {'l', {6, 2, 2, 2, 7}},
    {'m', {0, 7, 7, 5, 5}}, {'n', {0, 6, 5, 5, 5}}, {'o', {0, 2, 5, 5, 2}}, {'p', {0, 6, 5, 6, 4}},
    {'q', {0, 3, 5, 3, 1}}, {'r', {0, 6, 5, 4, 4}}, {'s', {0, 3, 6, 1, 6}}, {'t', {2, 7, 2, 2, 3}},
    {'u', {0, 5, 5, 5, 3}}, {'v', {0, 5, 5, 5, 2}}, {'w', {0, 5, 5, 7, 7}}, {'x', {0, 5, 2, 2, 5}},
    {'y', {5, 5, 3, 1, 6}}, {'z', {7, 1, 2, 4, 7}},
};
constexpr int kScale = 2;                    // font pixel size
constexpr int kAdvance = 4 * kScale;         // glyph width + 1 column of spacing
constexpr int kGlyphH = 5 * kScale;

int text_width(const std::string& s) { return s.empty() ? 0 : static_cast<int>(s.size()) * kAdvance - kScale; }

void draw_text(Canvas& cv, int x, int y, const std::string& s, Rgb c) {  // (x, y) = top-left
  for (char ch : s) {
    if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
    for (const auto& g : kFont) {
      if (g.ch != ch) continue;
      for (int r = 0; r < 5; ++r)
        for (int col = 0; col < 3; ++col)
          if (g.rows[r] & (4 >> col))
            cv.fill_rect(x + col * kScale, y + r * kScale, x + col * kScale + kScale - 1, y + r * kScale + kScale - 1, c);
    }
    x += kAdvance;
  }
}

/// A tick label with at most 4 significant digits, in the font's alphabet.
std::string fmt_tick(double v, double step) {
  if (std::fabs(v) < step * 1e-9) v = 0;  // avoid "-0" and 1e-17
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.4g", v);
  return buf;
}

/// Axis range and tick step on a 1-2-5 grid with about `target` intervals.
struct Axis {
  double lo, hi, step;
  double map(double v, double p0, double p1) const { return p0 + (v - lo) / (hi - lo) * (p1 - p0); }
};
Axis nice_axis(double lo, double hi, int target, bool integer) {
  if (!(lo < hi)) {  // empty or single value: pad around it
    const double pad = lo == 0 ? 1.0 : std::fabs(lo) * 0.1;
    lo -= pad;
    hi += pad;
  }
  const double raw = (hi - lo) / target;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    step = m * mag;
    if (step >= raw) break;
  }
  if (integer) step = std::max(1.0, std::round(step));
  return {std::floor(lo / step) * step, std::ceil(hi / step) * step, step};
}

// ---- PNG encoding
void put_be32(std::string& out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out += static_cast<char>((v >> s) & 0xFF);
}
void put_chunk(std::string& out, const char type[5], const std::string& data) {
  put_be32(out, static_cast<uint32_t>(data.size()));
  std::string body(type, 4);
  body += data;
  out += body;
  put_be32(out, static_cast<uint32_t>(
                    ::crc32(0L, reinterpret_cast<const Bytef*>(body.data()), static_cast<uInt>(body.size()))));
}

std::string encode_png(const Canvas& cv, const std::string& title) {
  const int w = cv.width(), h = cv.height();
  std::string raw;
  raw.reserve(static_cast<size_t>(h) * (w * 3 + 1));
  for (int y = 0; y < h; ++y) {
    raw += '\0';  // filter type None
    raw.append(reinterpret_cast<const char*>(&cv.pixels()[static_cast<size_t>(y) * w * 3]), static_cast<size_t>(w) * 3);
  }
  uLongf zlen = compressBound(static_cast<uLong>(raw.size()));
  std::string z(zlen, '\0');
  const int rc = compress2(reinterpret_cast<Bytef*>(&z[0]), &zlen, reinterpret_cast<const Bytef*>(raw.data()),
                           static_cast<uLong>(raw.size()), Z_BEST_COMPRESSION);
  PEFT_CHECK(rc == Z_OK, std::runtime_error, "[train::write_loss_curve_png] zlib compress2 failed with code ", rc);
  z.resize(zlen);

  std::string png("\x89PNG\r\n\x1a\n", 8);
  std::string ihdr;
  put_be32(ihdr, static_cast<uint32_t>(w));
  put_be32(ihdr, static_cast<uint32_t>(h));
  ihdr += std::string("\x08\x02\x00\x00\x00", 5);  // 8-bit, RGB, deflate, adaptive filters, no interlace
  put_chunk(png, "IHDR", ihdr);
  if (!title.empty()) {
    const bool ascii = std::all_of(title.begin(), title.end(), [](char c) { return c != 0 && (c & 0x80) == 0; });
    if (ascii) {
      put_chunk(png, "tEXt", std::string("Title\0", 6) + title);
    } else {  // UTF-8 text needs iTXt: keyword\0 flag method lang\0 translated\0 text
      std::string t("Title\0\0\0\0\0", 10);
      for (char c : title)
        if (c != 0) t += c;
      put_chunk(png, "iTXt", t);
    }
  }
  put_chunk(png, "IDAT", z);
  put_chunk(png, "IEND", "");
  return png;
}

}  // namespace

void write_loss_curve_png(const std::string& path, const std::vector<std::pair<int64_t, double>>& train,
                          const std::vector<std::pair<int64_t, double>>& eval, const std::string& title) {
  constexpr int W = 800, H = 500;
  constexpr int kLeft = 80, kRight = 20, kTop = 20, kBottom = 40;
  const int px0 = kLeft, px1 = W - kRight, py0 = kTop, py1 = H - kBottom;  // plot area (y grows down)

  // Data ranges over finite points.
  double xlo = std::numeric_limits<double>::infinity(), xhi = -xlo, ylo = xlo, yhi = -xlo;
  for (const auto* s : {&train, &eval})
    for (const auto& [step, v] : *s) {
      if (!std::isfinite(v)) continue;
      xlo = std::min(xlo, static_cast<double>(step));
      xhi = std::max(xhi, static_cast<double>(step));
      ylo = std::min(ylo, v);
      yhi = std::max(yhi, v);
    }
  if (!std::isfinite(xlo)) xlo = 0, xhi = 1, ylo = 0, yhi = 1;  // no data: empty axes
  const Axis ax = nice_axis(xlo, xhi, 8, /*integer=*/true);
  const Axis ay = nice_axis(ylo, yhi, 6, /*integer=*/false);

  Canvas cv(W, H);
  // Grid lines, ticks and labels.
  for (int k = 0;; ++k) {
    const double v = ax.lo + k * ax.step;
    if (v > ax.hi + ax.step * 1e-9) break;
    const int x = static_cast<int>(std::lround(ax.map(v, px0, px1)));
    cv.line(x, py0, x, py1, kGrid, 1);
    cv.line(x, py1, x, py1 + 5, kAxis, 1);
    const std::string s = fmt_tick(v, ax.step);
    draw_text(cv, x - text_width(s) / 2, py1 + 9, s, kBlack);
  }
  for (int k = 0;; ++k) {
    const double v = ay.lo + k * ay.step;
    if (v > ay.hi + ay.step * 1e-9) break;
    const int y = static_cast<int>(std::lround(ay.map(v, py1, py0)));
    cv.line(px0, y, px1, y, kGrid, 1);
    cv.line(px0 - 5, y, px0, y, kAxis, 1);
    const std::string s = fmt_tick(v, ay.step);
    draw_text(cv, px0 - 9 - text_width(s), y - kGlyphH / 2, s, kBlack);
  }
  cv.rect(px0, py0, px1, py1, kAxis);

  // Series, clipped to the plot area.
  cv.clip(px0 + 1, py0 + 1, px1 - 1, py1 - 1);
  auto draw_series = [&](const std::vector<std::pair<int64_t, double>>& s, Rgb c, bool markers) {
    bool have_prev = false;
    int lx = 0, ly = 0;
    for (const auto& [step, v] : s) {
      if (!std::isfinite(v)) {
        have_prev = false;
        continue;
      }
      const int x = static_cast<int>(std::lround(ax.map(static_cast<double>(step), px0, px1)));
      const int y = static_cast<int>(std::lround(ay.map(v, py1, py0)));
      if (have_prev) cv.line(lx, ly, x, y, c, 2);
      if (markers || s.size() == 1) cv.fill_rect(x - 3, y - 3, x + 3, y + 3, c);
      lx = x, ly = y, have_prev = true;
    }
  };
  draw_series(train, kTrain, false);
  draw_series(eval, kEval, true);
  cv.unclip();

  // Legend: coloured boxes with labels, top-right inside the plot area.
  const int lw = 16 + 6 + text_width("train") + 16, lh = 2 * 18 + 10;
  const int lx0 = px1 - 10 - lw, ly0 = py0 + 10;
  cv.fill_rect(lx0, ly0, lx0 + lw, ly0 + lh, kWhite);
  cv.rect(lx0, ly0, lx0 + lw, ly0 + lh, kAxis);
  int row = 0;
  for (const auto& [label, c] : {std::pair<const char*, Rgb>{"train", kTrain}, {"eval", kEval}}) {
    const int y = ly0 + 8 + row++ * 18;
    cv.fill_rect(lx0 + 8, y, lx0 + 8 + 13, y + 13, c);
    draw_text(cv, lx0 + 8 + 13 + 6, y + 2, label, kBlack);
  }

  write_file_atomic(path, encode_png(cv, title));
}

void write_bar_chart_png(const std::string& path, const std::vector<std::string>& labels,
                         const std::vector<BarSeries>& panels, const std::string& title) {
  for (const auto& p : panels)
    PEFT_CHECK(p.values.size() == labels.size(), std::invalid_argument, "[train::write_bar_chart_png] panel '",
               p.name, "' has ", p.values.size(), " values for ", labels.size(), " labels");
  constexpr int W = 800, kRow = 22, kPanelGap = 30, kTop = 40;
  int label_w = 0;
  for (const auto& l : labels) label_w = std::max(label_w, text_width(l));
  const int px0 = 20 + label_w + 10, px1 = W - 90;
  const int panel_h = kGlyphH + 10 + static_cast<int>(labels.size()) * kRow;
  const int H = kTop + static_cast<int>(panels.size()) * (panel_h + kPanelGap);
  Canvas cv(W, std::max(H, kTop + 20));
  draw_text(cv, 20, 14, title, kBlack);
  int y0 = kTop;
  for (std::size_t p = 0; p < panels.size(); ++p) {
    const auto& panel = panels[p];
    draw_text(cv, 20, y0, panel.name, kAxis);
    double vmax = 0;
    for (double v : panel.values)
      if (std::isfinite(v)) vmax = std::max(vmax, v);
    if (vmax <= 0) vmax = 1;
    const Rgb colour = p % 2 ? kEval : kTrain;
    const int top = y0 + kGlyphH + 10;
    cv.line(px0, top - 2, px0, top + static_cast<int>(labels.size()) * kRow, kAxis, 1);
    for (std::size_t i = 0; i < labels.size(); ++i) {
      const int y = top + static_cast<int>(i) * kRow;
      draw_text(cv, px0 - 10 - text_width(labels[i]), y + (kRow - kGlyphH) / 2 - 2, labels[i], kBlack);
      const double v = panel.values[i];
      std::string shown = "n/a";
      if (std::isfinite(v)) {
        const int len = static_cast<int>(std::lround(std::max(0.0, v) / vmax * (px1 - px0)));
        if (len > 0) cv.fill_rect(px0 + 1, y + 2, px0 + len, y + kRow - 6, colour);
        char buf[32];
        std::snprintf(buf, sizeof(buf), "%.4g", v);
        shown = buf;
        draw_text(cv, px0 + len + 6, y + (kRow - kGlyphH) / 2 - 2, shown, kBlack);
      } else {
        draw_text(cv, px0 + 6, y + (kRow - kGlyphH) / 2 - 2, shown, kAxis);
      }
    }
    y0 += panel_h + kPanelGap;
  }
  write_file_atomic(path, encode_png(cv, title));
}

}  // namespace peft::train
