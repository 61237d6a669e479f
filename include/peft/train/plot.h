#pragma once
// Loss curves and bar charts as PNG, with no plotting library (tier 0: torch-free; uses zlib).
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace peft::train {

/// Writes an 800x500 RGB PNG line chart of (step, loss) series: train in blue, eval in orange
/// (eval points also get square markers), with axes, grid lines, numeric tick labels and a legend
/// (coloured boxes labelled "train" / "eval"). Non-finite values are skipped and break the line.
/// `title` is stored in a tEXt/iTXt "Title" chunk (not drawn). The file is written atomically
/// (peft::write_file_atomic).
void write_loss_curve_png(const std::string& path, const std::vector<std::pair<int64_t, double>>& train,
                          const std::vector<std::pair<int64_t, double>>& eval, const std::string& title);

/// One panel of a bar chart: a name (drawn above it) and one value per label.
struct BarSeries {
  std::string name;
  std::vector<double> values;  ///< non-finite = "n/a"
};

/// Writes an 800-pixel-wide RGB PNG with one horizontal bar panel per series, sharing the row
/// labels (e.g. methods), each bar annotated with its value and each panel scaled to its own
/// maximum; `title` is drawn at the top. Atomic write. Throws if a series' length differs from
/// the labels'.
void write_bar_chart_png(const std::string& path, const std::vector<std::string>& labels,
                         const std::vector<BarSeries>& panels, const std::string& title);

}  // namespace peft::train
