// Loss curves and bar charts (train/plot.h), drawn with cairo on an RGB image surface, encoded by
// cairo's PNG writer into memory and written atomically. The look follows matplotlib's defaults:
// tab10 colours, a framed plot area, light grid lines, ticks outside, a legend box placed where it
// hides the fewest points ("best").
#include "peft/train/plot.h"

#include <cairo.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iterator>
#include <memory>
#include <stdexcept>

#include "peft/core/check.h"
#include "peft/core/file_util.h"

namespace peft::train {

namespace {

struct Rgb {
  int r, g, b;
};
constexpr Rgb kTab10[] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44},  {214, 39, 40},   {148, 103, 189},
                          {140, 86, 75},  {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207}};
constexpr Rgb kTrain = kTab10[0], kEval = kTab10[1], kLr = kTab10[2];
constexpr Rgb kText{34, 34, 34}, kMuted{110, 110, 110}, kSpine{68, 68, 68}, kGrid{228, 228, 228};
constexpr const char* kFont = "DejaVu Sans";  // fontconfig falls back to another sans font
constexpr double kPi = 3.14159265358979323846;
constexpr double kTickFont = 12, kLabelFont = 13, kTitleFont = 16, kTickLen = 5;

void set_colour(cairo_t* cr, Rgb c, double alpha = 1.0) {
  cairo_set_source_rgba(cr, c.r / 255.0, c.g / 255.0, c.b / 255.0, alpha);
}

/// An RGB image surface with its context; png() checks every status and names the file.
class Canvas {
 public:
  Canvas(int w, int h, std::string path)
      : path_(std::move(path)),
        surface_(cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h), &cairo_surface_destroy),
        cr_(cairo_create(surface_.get()), &cairo_destroy) {
    check(cairo_surface_status(surface_.get()));
    check(cairo_status(cr()));
    cairo_font_options_t* fo = cairo_font_options_create();
    cairo_font_options_set_antialias(fo, CAIRO_ANTIALIAS_GRAY);
    cairo_font_options_set_hint_style(fo, CAIRO_HINT_STYLE_SLIGHT);
    cairo_font_options_set_hint_metrics(fo, CAIRO_HINT_METRICS_OFF);
    cairo_set_font_options(cr(), fo);
    cairo_font_options_destroy(fo);
    cairo_set_source_rgb(cr(), 1, 1, 1);
    cairo_paint(cr());
  }
  cairo_t* cr() const { return cr_.get(); }

  /// The PNG bytes of what was drawn.
  std::string png() {
    check(cairo_status(cr()));
    cairo_surface_flush(surface_.get());
    std::string out;
    check(cairo_surface_write_to_png_stream(surface_.get(), &Canvas::append, &out));
    return out;
  }

 private:
  static cairo_status_t append(void* closure, const unsigned char* data, unsigned int length) {
    try {
      static_cast<std::string*>(closure)->append(reinterpret_cast<const char*>(data), length);
      return CAIRO_STATUS_SUCCESS;
    } catch (...) {
      return CAIRO_STATUS_NO_MEMORY;
    }
  }
  void check(cairo_status_t st) const {
    PEFT_CHECK(st == CAIRO_STATUS_SUCCESS, std::runtime_error, "[train::plot] ", path_, ": cairo: ",
               cairo_status_to_string(st));
  }
  std::string path_;
  std::unique_ptr<cairo_surface_t, decltype(&cairo_surface_destroy)> surface_;
  std::unique_ptr<cairo_t, decltype(&cairo_destroy)> cr_;
};

// ---- text
void font(cairo_t* cr, double size, bool bold = false) {
  cairo_select_font_face(cr, kFont, CAIRO_FONT_SLANT_NORMAL, bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, size);
}
double text_width(cairo_t* cr, const std::string& s) {
  cairo_text_extents_t e;
  cairo_text_extents(cr, s.c_str(), &e);
  return e.x_advance;
}
/// The height of a digit in the current font: what "vertically centred" centres.
double cap_height(cairo_t* cr) {
  cairo_text_extents_t e;
  cairo_text_extents(cr, "0", &e);
  return e.height;
}
enum class Align { Left, Centre, Right };
/// Draws `s` with its horizontal anchor at x and its digits' vertical middle at y.
void text(cairo_t* cr, double x, double y, const std::string& s, Align a, Rgb c) {
  const double w = text_width(cr, s);
  const double x0 = a == Align::Left ? x : a == Align::Centre ? x - w / 2 : x - w;
  set_colour(cr, c);
  cairo_move_to(cr, x0, y + cap_height(cr) / 2);
  cairo_show_text(cr, s.c_str());
  cairo_new_path(cr);
}
/// Text turned 90° counter-clockwise (a y axis label), centred on (x, y).
void text_vertical(cairo_t* cr, double x, double y, const std::string& s, Rgb c) {
  cairo_save(cr);
  cairo_translate(cr, x, y);
  cairo_rotate(cr, -kPi / 2);
  text(cr, 0, 0, s, Align::Centre, c);
  cairo_restore(cr);
}
/// `s` cut with "…" to fit `max_w` pixels.
std::string fit(cairo_t* cr, std::string s, double max_w) {
  if (text_width(cr, s) <= max_w) return s;
  while (!s.empty() && text_width(cr, s + "…") > max_w) {
    s.pop_back();
    while (!s.empty() && (static_cast<unsigned char>(s.back()) & 0xC0) == 0x80) s.pop_back();  // UTF-8 tail
    if (!s.empty() && (static_cast<unsigned char>(s.back()) & 0x80)) s.pop_back();              // its lead byte
  }
  return s + "…";
}

// ---- axes
/// A value axis: the range it shows, the tick values and how they are printed (a power of ten
/// too small or large for the labels goes into the axis label instead).
struct Axis {
  double lo = 0, hi = 1;
  std::vector<double> ticks;
  int decimals = 0, exponent = 0;
  double map(double v, double p0, double p1) const { return p0 + (v - lo) / (hi - lo) * (p1 - p0); }
  std::string label(double v) const {
    double x = v / std::pow(10.0, exponent);
    if (std::fabs(x) < 0.5 * std::pow(10.0, -decimals)) x = 0;  // no "-0"
    char buf[48];
    std::snprintf(buf, sizeof(buf), "%.*f", decimals, x);
    return buf[0] == '-' ? "−" + std::string(buf + 1) : std::string(buf);  // a typographic minus
  }
  /// "×10⁻⁴" when the labels are scaled, else "".
  std::string scale_suffix() const {
    if (exponent == 0) return "";
    static const char* kSup[] = {"⁰", "¹", "²", "³", "⁴", "⁵", "⁶", "⁷", "⁸", "⁹"};
    std::string s = "×10";
    if (exponent < 0) s += "⁻";
    for (char d : std::to_string(std::abs(exponent))) s += kSup[d - '0'];
    return s;
  }
};

/// Ticks on a 1-2-2.5-5 grid, about `target` intervals over [lo, hi] (lo < hi).
Axis ticked(double lo, double hi, int target, bool integer) {
  Axis a;
  a.lo = lo, a.hi = hi;
  const double raw = (hi - lo) / target, mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = 10 * mag;
  for (double m : {1.0, 2.0, 2.5, 5.0})
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  if (integer) step = std::max(1.0, std::round(step));
  for (double k = std::ceil(lo / step - 1e-9); k * step <= hi + step * 1e-9; k += 1) a.ticks.push_back(k * step);
  const double big = std::max(std::fabs(lo), std::fabs(hi));
  if (!integer && big > 0 && (big < 1e-2 || big >= 1e5)) a.exponent = static_cast<int>(std::floor(std::log10(big)));
  const double s = step / std::pow(10.0, a.exponent);
  while (a.decimals < 8) {
    const double scaled = s * std::pow(10.0, a.decimals);
    if (std::fabs(scaled - std::round(scaled)) < 1e-6 * std::max(1.0, scaled)) break;
    ++a.decimals;
  }
  return a;
}

/// The axis for data in [lo, hi] with a `margin` fraction of padding on each side (matplotlib's
/// 5%); `from_zero` pins the lower end at 0 for non-negative data. A single value gets a
/// symmetric range around it; no data gets [0, 1].
Axis data_axis(double lo, double hi, int target, bool integer, double margin, bool from_zero) {
  if (!(lo <= hi)) lo = 0, hi = 1;  // no finite data
  if (lo == hi) {
    const double pad = integer ? 1.0 : lo == 0 ? 1.0 : std::fabs(lo) * 0.1;
    lo -= pad, hi += pad;
    if (from_zero && hi > 0) lo = std::max(lo, 0.0);
  }
  const double span = hi - lo;
  double a = lo - margin * span, b = hi + margin * span;
  if (from_zero && lo >= 0) a = 0;
  return ticked(a, b, target, integer);
}

/// Finite-value range of curves (steps and values).
struct Extent {
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  void add(const Curve& c) {
    for (const auto& [step, v] : c)
      if (std::isfinite(v)) {
        x0 = std::min(x0, static_cast<double>(step)), x1 = std::max(x1, static_cast<double>(step));
        y0 = std::min(y0, v), y1 = std::max(y1, v);
      }
  }
  bool empty() const { return !(x0 <= x1); }
};

bool has_finite(const Curve& c) {
  return std::any_of(c.begin(), c.end(), [](const auto& p) { return std::isfinite(p.second); });
}

struct Rect {
  double x0, y0, x1, y1;
  bool contains(double x, double y) const { return x >= x0 && x <= x1 && y >= y0 && y <= y1; }
};

/// One drawn series in pixel space: its polylines (split at non-finite values) and its style.
struct Drawn {
  std::string label;
  Rgb colour;
  std::vector<std::vector<std::pair<double, double>>> parts;
  double width = 2.0;
  bool dashed = false, markers = false;
};

Drawn project(const Curve& c, const Axis& ax, const Axis& ay, const Rect& area) {
  Drawn d;
  d.parts.emplace_back();
  for (const auto& [step, v] : c) {
    if (!std::isfinite(v)) {
      if (!d.parts.back().empty()) d.parts.emplace_back();
      continue;
    }
    d.parts.back().emplace_back(ax.map(static_cast<double>(step), area.x0, area.x1), ay.map(v, area.y1, area.y0));
  }
  if (d.parts.back().empty()) d.parts.pop_back();
  return d;
}

void stroke_style(cairo_t* cr, const Drawn& d) {
  set_colour(cr, d.colour);
  cairo_set_line_width(cr, d.width);
  cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
  cairo_set_line_cap(cr, CAIRO_LINE_CAP_ROUND);
  const double dash[] = {6.0, 4.0};
  cairo_set_dash(cr, dash, d.dashed ? 2 : 0, 0);
}

void draw_series(cairo_t* cr, const Drawn& d) {
  stroke_style(cr, d);
  for (const auto& part : d.parts) {
    if (part.size() == 1 && !d.markers) {  // a lone point: a dot, or it would not show
      cairo_arc(cr, part[0].first, part[0].second, d.width + 1.0, 0, 2 * kPi);
      cairo_fill(cr);
      continue;
    }
    for (std::size_t i = 0; i < part.size(); ++i)
      (i ? cairo_line_to : cairo_move_to)(cr, part[i].first, part[i].second);
    cairo_stroke(cr);
  }
  cairo_set_dash(cr, nullptr, 0, 0);
  if (!d.markers) return;
  for (const auto& part : d.parts)
    for (const auto& [x, y] : part) {
      cairo_arc(cr, x, y, 4.0, 0, 2 * kPi);
      set_colour(cr, d.colour);
      cairo_fill_preserve(cr);
      cairo_set_source_rgb(cr, 1, 1, 1);
      cairo_set_line_width(cr, 1.0);
      cairo_stroke(cr);
    }
}

/// How many points of the series (vertices and points along each segment) fall inside r.
int hidden_points(const std::vector<Drawn>& series, const Rect& r) {
  int n = 0;
  for (const auto& d : series)
    for (const auto& part : d.parts)
      for (std::size_t i = 0; i < part.size(); ++i) {
        n += r.contains(part[i].first, part[i].second) ? 4 : 0;  // vertices weigh more (markers)
        if (i == 0) continue;
        for (int k = 1; k < 8; ++k) {
          const double t = k / 8.0;
          n += r.contains(part[i - 1].first + t * (part[i].first - part[i - 1].first),
                          part[i - 1].second + t * (part[i].second - part[i - 1].second));
        }
      }
  return n;
}

/// The legend: a framed box with a line sample (and marker) per series, in the corner or edge of
/// `area` where it hides the fewest points.
void draw_legend(cairo_t* cr, const std::vector<Drawn>& series, const Rect& area) {
  if (series.empty()) return;
  font(cr, kTickFont);
  constexpr double kPad = 8, kSample = 26, kGap = 7, kRow = 19, kInset = 10;
  double tw = 0;
  for (const auto& d : series) tw = std::max(tw, text_width(cr, d.label));
  const double w = kPad + kSample + kGap + tw + kPad, h = kPad + kRow * static_cast<double>(series.size()) + kPad - 4;
  const double left = area.x0 + kInset, right = area.x1 - kInset - w, top = area.y0 + kInset, bottom = area.y1 - kInset - h;
  const double midx = (area.x0 + area.x1 - w) / 2, midy = (area.y0 + area.y1 - h) / 2;
  // matplotlib's order of preference among equally good places.
  const std::pair<double, double> places[] = {{right, top},  {left, top},    {left, bottom}, {right, bottom},
                                              {right, midy}, {left, midy},   {midx, bottom}, {midx, top}};
  std::pair<double, double> best = places[0];
  int best_n = -1;
  for (const auto& p : places) {
    const int n = hidden_points(series, {p.first, p.second, p.first + w, p.second + h});
    if (best_n < 0 || n < best_n) best_n = n, best = p;
  }
  const double x = std::round(best.first) + 0.5, y = std::round(best.second) + 0.5;
  // A rounded box, white at 90% like matplotlib's framealpha 0.8 over grid lines.
  constexpr double r = 3;
  cairo_new_sub_path(cr);
  cairo_arc(cr, x + w - r, y + r, r, -kPi / 2, 0);
  cairo_arc(cr, x + w - r, y + h - r, r, 0, kPi / 2);
  cairo_arc(cr, x + r, y + h - r, r, kPi / 2, kPi);
  cairo_arc(cr, x + r, y + r, r, kPi, 1.5 * kPi);
  cairo_close_path(cr);
  cairo_set_source_rgba(cr, 1, 1, 1, 0.9);
  cairo_fill_preserve(cr);
  cairo_set_source_rgb(cr, 0.8, 0.8, 0.8);
  cairo_set_line_width(cr, 1);
  cairo_stroke(cr);
  for (std::size_t i = 0; i < series.size(); ++i) {
    const auto& d = series[i];
    const double cy = y + kPad + kRow * (static_cast<double>(i) + 0.5) - 2;
    stroke_style(cr, d);
    cairo_move_to(cr, x + kPad, cy);
    cairo_line_to(cr, x + kPad + kSample, cy);
    cairo_stroke(cr);
    cairo_set_dash(cr, nullptr, 0, 0);
    if (d.markers) {
      Drawn m = d;
      m.parts = {{{x + kPad + kSample / 2, cy}}};
      draw_series(cr, m);
    }
    font(cr, kTickFont);
    text(cr, x + kPad + kSample + kGap, cy, d.label, Align::Left, kText);
  }
}

/// An axis-parallel line whose fixed coordinate is snapped to the pixel grid, so a 1-px line
/// covers exactly one row or column of pixels.
void axis_line(cairo_t* cr, double x0, double y0, double x1, double y1, Rgb c, double width) {
  const auto snap = [width](double v) { return std::round(v) + (static_cast<int>(width) % 2 ? 0.5 : 0); };
  if (y0 == y1) y0 = y1 = snap(y0);
  else x0 = x1 = snap(x0);
  set_colour(cr, c);
  cairo_set_line_width(cr, width);
  cairo_move_to(cr, x0, y0);
  cairo_line_to(cr, x1, y1);
  cairo_stroke(cr);
}
void hline(cairo_t* cr, double x0, double x1, double y, Rgb c, double width = 1) { axis_line(cr, x0, y, x1, y, c, width); }
void vline(cairo_t* cr, double x, double y0, double y1, Rgb c, double width = 1) { axis_line(cr, x, y0, x, y1, c, width); }

double max_label_width(cairo_t* cr, const Axis& a) {
  double w = 0;
  for (double t : a.ticks) w = std::max(w, text_width(cr, a.label(t)));
  return w;
}

/// A value with up to 4 significant digits; from 1,000 on a whole number with thousands commas.
std::string fmt_value(double v) {
  char buf[64];
  if (std::fabs(v) >= 1e3 && std::fabs(v) < 1e15) {
    std::snprintf(buf, sizeof(buf), "%.0f", std::fabs(v));
    std::string digits = buf, out;
    for (std::size_t i = 0; i < digits.size(); ++i) {
      if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
      out += digits[i];
    }
    return (v < 0 ? "−" : "") + out;
  }
  std::snprintf(buf, sizeof(buf), "%.4g", v);
  return buf[0] == '-' ? "−" + std::string(buf + 1) : std::string(buf);
}

}  // namespace

void write_loss_curve_png(const std::string& path, const LossPlot& plot) {
  constexpr int W = 900, H = 540;
  Canvas cv(W, H, path);
  cairo_t* cr = cv.cr();

  Extent loss, lr;
  loss.add(plot.train);
  loss.add(plot.eval);
  lr.add(plot.learning_rate);
  const bool with_lr = !lr.empty();
  const double xlo = std::min(loss.x0, lr.x0), xhi = std::max(loss.x1, lr.x1);
  const Axis ax = data_axis(xlo, xhi, 8, /*integer=*/true, 0.02, /*from_zero=*/false);
  const Axis ay = data_axis(loss.y0, loss.y1, 8, /*integer=*/false, 0.05, /*from_zero=*/false);
  const Axis alr = with_lr ? data_axis(lr.y0, lr.y1, 8, false, 0.05, /*from_zero=*/true) : Axis{};

  // Layout: margins sized to what they hold.
  font(cr, kTickFont);
  const double tick_h = cap_height(cr);
  const double left_ticks_w = max_label_width(cr, ay), right_ticks_w = with_lr ? max_label_width(cr, alr) : 0;
  font(cr, kLabelFont);
  const double label_h = cap_height(cr);
  constexpr double kEdge = 14, kTickGap = 4, kLabelGap = 10;
  Rect area;
  area.x0 = std::round(kEdge + label_h + kLabelGap + left_ticks_w + kTickGap + kTickLen);
  area.x1 = std::round(W - (with_lr ? kEdge + label_h + kLabelGap + right_ticks_w + kTickGap + kTickLen : 28));
  area.y0 = 52;
  area.y1 = std::round(H - (kEdge + label_h + kLabelGap + tick_h + kTickGap + kTickLen + 4));

  // Title.
  font(cr, kTitleFont, /*bold=*/true);
  text(cr, W / 2.0, 26, fit(cr, plot.title, W - 2 * kEdge), Align::Centre, kText);

  // Grid lines (left axis and x ticks), then the frame.
  for (double t : ax.ticks) vline(cr, ax.map(t, area.x0, area.x1), area.y0, area.y1, kGrid);
  for (double t : ay.ticks) hline(cr, area.x0, area.x1, ay.map(t, area.y1, area.y0), kGrid);

  // Series, clipped to the plot area: learning rate below the losses.
  std::vector<Drawn> series;
  if (has_finite(plot.train)) {
    series.push_back(project(plot.train, ax, ay, area));
    series.back().label = "train loss", series.back().colour = kTrain;
  }
  if (has_finite(plot.eval)) {
    series.push_back(project(plot.eval, ax, ay, area));
    series.back().label = "eval loss", series.back().colour = kEval, series.back().markers = true;
  }
  if (with_lr) {
    series.push_back(project(plot.learning_rate, ax, alr, area));
    series.back().label = "learning rate (right axis)", series.back().colour = kLr, series.back().dashed = true;
    series.back().width = 1.5;
  }
  cairo_save(cr);
  cairo_rectangle(cr, area.x0, area.y0, area.x1 - area.x0, area.y1 - area.y0);
  cairo_clip(cr);
  if (with_lr) draw_series(cr, series.back());
  for (std::size_t i = 0; i + (with_lr ? 1 : 0) < series.size(); ++i) draw_series(cr, series[i]);
  cairo_restore(cr);
  if (series.empty()) {
    font(cr, kLabelFont);
    text(cr, (area.x0 + area.x1) / 2, (area.y0 + area.y1) / 2, "no finite values to plot", Align::Centre, kMuted);
  }

  set_colour(cr, kSpine);
  cairo_set_line_width(cr, 1);
  cairo_rectangle(cr, area.x0 + 0.5, area.y0 + 0.5, area.x1 - area.x0 - 1, area.y1 - area.y0 - 1);
  cairo_stroke(cr);

  // Ticks and tick labels.
  font(cr, kTickFont);
  for (double t : ax.ticks) {
    const double x = ax.map(t, area.x0, area.x1);
    vline(cr, x, area.y1, area.y1 + kTickLen, kSpine);
    text(cr, x, area.y1 + kTickLen + kTickGap + tick_h / 2, ax.label(t), Align::Centre, kText);
  }
  for (double t : ay.ticks) {
    const double y = ay.map(t, area.y1, area.y0);
    hline(cr, area.x0 - kTickLen, area.x0, y, kSpine);
    text(cr, area.x0 - kTickLen - kTickGap, y, ay.label(t), Align::Right, kText);
  }
  if (with_lr)
    for (double t : alr.ticks) {
      const double y = alr.map(t, area.y1, area.y0);
      hline(cr, area.x1, area.x1 + kTickLen, y, kSpine);
      text(cr, area.x1 + kTickLen + kTickGap, y, alr.label(t), Align::Left, kLr);
    }

  // Axis labels.
  font(cr, kLabelFont);
  text(cr, (area.x0 + area.x1) / 2, H - kEdge - label_h / 2, "optimizer step", Align::Centre, kText);
  std::string yl = plot.loss_label;
  if (!ay.scale_suffix().empty()) yl += "  " + ay.scale_suffix();
  text_vertical(cr, kEdge + label_h / 2, (area.y0 + area.y1) / 2, yl, kText);
  if (with_lr) {
    std::string rl = "learning rate";
    if (!alr.scale_suffix().empty()) rl += "  " + alr.scale_suffix();
    text_vertical(cr, W - kEdge - label_h / 2, (area.y0 + area.y1) / 2, rl, kLr);
  }

  draw_legend(cr, series, area);
  write_file_atomic(path, cv.png());
}

void write_bar_chart_png(const std::string& path, const std::vector<std::string>& labels,
                         const std::vector<BarSeries>& panels, const std::string& title) {
  for (const auto& p : panels)
    PEFT_CHECK(p.values.size() == labels.size(), std::invalid_argument, "[train::write_bar_chart_png] panel '",
               p.name, "' has ", p.values.size(), " values for ", labels.size(), " labels");
  constexpr double kEdge = 16, kRow = 26, kBar = 16, kHeader = 34, kGapAfter = 22, kTitleH = 50;
  constexpr double kTickGap = 4;
  // Row labels set the left margin; the chart widens rather than cutting them.
  double label_w = 0;
  {
    Canvas probe(1, 1, path);
    font(probe.cr(), kTickFont);
    for (const auto& l : labels) label_w = std::max(label_w, text_width(probe.cr(), l));
  }
  label_w = std::ceil(label_w);
  const int W = static_cast<int>(std::max(900.0, kEdge + label_w + 10 + 480 + kEdge));
  const double rows_h = kRow * static_cast<double>(labels.size());
  const double axis_h = kTickLen + kTickGap + 12 + 10 + 13;  // ticks, their labels, the axis label
  const double panel_h = kHeader + rows_h + axis_h + kGapAfter;
  const int H = static_cast<int>(std::ceil(kTitleH + panel_h * static_cast<double>(std::max<std::size_t>(panels.size(), 1))));
  Canvas cv(W, H, path);
  cairo_t* cr = cv.cr();

  font(cr, kTitleFont, /*bold=*/true);
  text(cr, W / 2.0, 26, fit(cr, title, W - 2 * kEdge), Align::Centre, kText);
  const double x0 = std::round(kEdge + label_w + 10), x1 = W - kEdge;

  double top = kTitleH;
  for (std::size_t p = 0; p < panels.size(); ++p, top += panel_h) {
    const BarSeries& panel = panels[p];
    const Rgb colour = kTab10[p % std::size(kTab10)];
    font(cr, kLabelFont, /*bold=*/true);
    text(cr, kEdge, top + 12, fit(cr, panel.name, W - 2 * kEdge), Align::Left, kText);
    const double y0 = std::round(top + kHeader), y1 = y0 + rows_h;

    // Value axis from 0 (or the most negative value), leaving room after the longest bar for its label.
    double lo = 0, hi = 0;
    bool whole = true;  // counts (ranks) get whole-number ticks
    for (double v : panel.values)
      if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v), whole = whole && v == std::round(v);
    if (std::isfinite(panel.reference)) lo = std::min(lo, panel.reference), hi = std::max(hi, panel.reference);
    if (lo == hi) hi = 1;
    font(cr, kTickFont);
    double value_w = 0;
    for (double v : panel.values)
      if (std::isfinite(v)) value_w = std::max(value_w, text_width(cr, fmt_value(v)));
    const double room = value_w + 12, span_px = x1 - x0;
    const double bar_px = std::max(span_px * 0.5, span_px - room * (lo < 0 ? 2 : 1));
    const double per_px = (hi - lo) / bar_px;
    const double alo = lo < 0 ? lo - room * per_px : 0, ahi = hi + room * per_px;
    Axis ax = ticked(alo, ahi, 6, /*integer=*/whole && std::fabs(hi - lo) < 1e9);
    ax.ticks.erase(std::remove_if(ax.ticks.begin(), ax.ticks.end(), [&](double t) { return t > hi * 1.0000001 && t > 0; }),
                   ax.ticks.end());
    auto X = [&](double v) { return ax.map(v, x0, x1); };

    for (double t : ax.ticks) vline(cr, X(t), y0, y1, kGrid);
    for (std::size_t i = 0; i < labels.size(); ++i) {
      const double yc = y0 + kRow * (static_cast<double>(i) + 0.5);
      font(cr, kTickFont);
      text(cr, x0 - 10, yc, labels[i], Align::Right, kText);
      const double v = panel.values[i];
      if (!std::isfinite(v)) {
        text(cr, X(0) + 6, yc, "n/a", Align::Left, kMuted);
        continue;
      }
      // Whole pixels: bar lengths stay proportional to the values and edges stay sharp.
      const double a = std::round(X(std::min(0.0, v))), b = std::round(X(std::max(0.0, v)));
      set_colour(cr, colour);
      cairo_rectangle(cr, a, std::round(yc - kBar / 2), b - a, kBar);
      cairo_fill(cr);
      if (v >= 0)
        text(cr, b + 5, yc, fmt_value(v), Align::Left, kText);
      else
        text(cr, a - 5, yc, fmt_value(v), Align::Right, kText);
    }
    if (std::isfinite(panel.reference)) {
      const double xr = X(panel.reference);
      set_colour(cr, kSpine);
      cairo_set_line_width(cr, 1.25);
      const double dash[] = {5.0, 3.0};
      cairo_set_dash(cr, dash, 2, 0);
      cairo_move_to(cr, std::round(xr) + 0.5, y0 - 4);
      cairo_line_to(cr, std::round(xr) + 0.5, y1);
      cairo_stroke(cr);
      cairo_set_dash(cr, nullptr, 0, 0);
      font(cr, kTickFont);
      const std::string s = panel.reference_label.empty() ? fmt_value(panel.reference)
                                                          : panel.reference_label + " = " + fmt_value(panel.reference);
      if (std::round(xr) + 5 + text_width(cr, s) <= W - 2)
        text(cr, std::round(xr) + 5, y0 - 9, s, Align::Left, kMuted);
      else  // no room right of the line
        text(cr, std::round(xr) - 5, y0 - 9, s, Align::Right, kMuted);
    }
    // Zero line (the bars' base) and the value axis.
    vline(cr, X(0), y0, y1, kSpine);
    hline(cr, x0, x1, y1, kSpine);
    font(cr, kTickFont);
    const double tick_h = cap_height(cr);
    for (double t : ax.ticks) {
      vline(cr, X(t), y1, y1 + kTickLen, kSpine);
      text(cr, X(t), y1 + kTickLen + kTickGap + tick_h / 2, ax.label(t), Align::Centre, kText);
    }
    std::string al = panel.axis_label;
    if (!ax.scale_suffix().empty()) al += (al.empty() ? "" : "  ") + ax.scale_suffix();
    if (!al.empty()) {
      font(cr, kLabelFont);
      text(cr, (x0 + x1) / 2, y1 + kTickLen + kTickGap + tick_h + 10 + cap_height(cr) / 2, al, Align::Centre, kText);
    }
  }
  write_file_atomic(path, cv.png());
}

}  // namespace peft::train
