#pragma once
// Loss curves and bar charts as PNG, drawn with cairo (tier 0: torch-free). Text uses cairo's
// toy API with DejaVu Sans (any sans font fontconfig finds otherwise), anti-aliased.
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

namespace peft::train {

/// (step, value) points of one curve; non-finite values are skipped and break the line.
using Curve = std::vector<std::pair<int64_t, double>>;

/// What write_loss_curve_png draws.
struct LossPlot {
  std::string title;  ///< drawn centred at the top, e.g. "Training loss — lora on stories260K"
  Curve train;        ///< blue line
  Curve eval;         ///< orange line with round markers
  Curve learning_rate;  ///< green dashed line on a second y axis at the right (none when empty)
  std::string loss_label = "loss (cross-entropy, nats per token)";  ///< the left y axis
};

/// Writes a 900x540 RGB PNG line chart: the title, the loss series against "optimizer step" on the
/// left y axis (grid lines, ticks on a 1-2-2.5-5 grid), the learning rate on the right y axis
/// (from 0; a power of ten too small or large for the ticks goes into the axis label as
/// "×10⁻⁴"), and a legend in the corner where it hides the fewest points. Empty, one-point and
/// flat series give a valid chart. The file is written atomically (peft::write_file_atomic);
/// a cairo error throws std::runtime_error naming the file.
void write_loss_curve_png(const std::string& path, const LossPlot& plot);

/// One panel of a bar chart: a name (drawn above it), one value per label and the x axis' label.
struct BarSeries {
  std::string name;
  std::vector<double> values;  ///< non-finite = "n/a"
  std::string axis_label{};    ///< the value axis, with its unit ("tokens/s", "MB"); empty = none
  /// A dashed vertical line at this value (e.g. a target), labelled reference_label; NaN = none.
  double reference = std::numeric_limits<double>::quiet_NaN();
  std::string reference_label{};
};

/// Writes a PNG 900 pixels wide (wider for long labels) with one horizontal bar panel per series,
/// sharing the row labels (e.g. methods): each bar annotated with its value, each panel with its
/// own value axis from 0 (ticks, grid lines, axis_label) and bar colour (matplotlib's tab10 in
/// order: blue, orange, green, ...). `title` is drawn at the top. Atomic write; a cairo error
/// throws std::runtime_error naming the file. Throws std::invalid_argument if a series' length
/// differs from the labels'.
void write_bar_chart_png(const std::string& path, const std::vector<std::string>& labels,
                         const std::vector<BarSeries>& panels, const std::string& title);

}  // namespace peft::train
