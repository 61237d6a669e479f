#pragma once
// Loss-curve chart as a PNG, with no plotting library (tier 0: torch-free; uses zlib).
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

/// Writes a 800x400 RGB PNG bar chart: bar i (numbered 1.. under the axis) has height values[i] on
/// a 0..y_max axis, with a dashed reference line at `reference` (skipped when < 0). Used by
/// `peft info --plot` for AdaLoRA's rank per module. Written atomically.
void write_bar_chart_png(const std::string& path, const std::vector<double>& values, double y_max, double reference,
                         const std::string& title);

}  // namespace peft::train
