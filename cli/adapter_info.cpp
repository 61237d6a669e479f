// peft info on an adapter folder. For AdaLoRA the ranks come from the file itself (lora_E's
// length per module, 0 allowed) and are checked against the config's rank_pattern.
#include "adapter_info.h"

#include <algorithm>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <map>

#include "peft/core/check.h"
#include "peft/core/strings.h"
#include "peft/io/safetensors.h"
#include "peft/train/plot.h"
#include "peft/tuners/adalora/config.h"
#include "peft/tuners/registry.h"

namespace peft::cli {

namespace fs = std::filesystem;

namespace {

void adalora_table(const AdaLoraConfig& cfg, const io::SafetensorsFile& f, const std::string& file,
                   const std::string& plot) {
  // module -> rank held in the file (lora_E is [k, 1]).
  const std::string prefix = "base_model.model.", suffix = ".lora_E";
  std::map<std::string, int64_t> ranks;
  for (const auto& n : f.names())
    if (n.size() > suffix.size() && n.compare(n.size() - suffix.size(), suffix.size(), suffix) == 0) {
      std::string mod = n.substr(0, n.size() - suffix.size());
      if (mod.rfind(prefix, 0) == 0) mod = mod.substr(prefix.size());
      ranks[mod] = f.at(n).shape.empty() ? 0 : f.at(n).shape[0];
    }
  if (ranks.empty()) {
    std::cout << "ranks:         no lora_E tensors in " << file << "\n";
    return;
  }
  std::size_t width = 6;
  int64_t total = 0;
  for (const auto& [m, k] : ranks) {
    width = std::max(width, m.size());
    total += k;
    PEFT_CHECK(k == cfg.kept_rank(m), FormatError, "[info] ", file, ": ", m, " has rank ", k,
               " but rank_pattern keeps ", cfg.kept_rank(m));
  }
  std::cout << "init_r:        " << cfg.init_r << " (ranknum; scale lora_alpha / init_r = "
            << cfg.lora_alpha / static_cast<double>(std::max<int64_t>(1, cfg.init_r)) << ")\n"
            << "target_r:      " << cfg.target_r << "\n"
            << "schedule:      tinit " << cfg.tinit << ", tfinal " << cfg.tfinal << ", deltaT " << cfg.deltaT
            << ", total_step " << (cfg.total_step ? std::to_string(*cfg.total_step) : "-") << "\n"
            << "rank_pattern:  " << (cfg.adalora_rank_pattern ? "set (pruned ranks)" : "none (not trained with the allocator)")
            << "\n"
            << "budget:        " << total << " of " << cfg.init_r * static_cast<int64_t>(ranks.size())
            << " triplets kept (target " << cfg.target_r * static_cast<int64_t>(ranks.size()) << ")\n\n";
  std::cout << "   # " << std::left << std::setw(static_cast<int>(width)) << "module" << "  rank\n";
  int idx = 0;
  for (const auto& [m, k] : ranks)
    std::cout << std::right << std::setw(4) << ++idx << " " << std::left << std::setw(static_cast<int>(width)) << m
              << "  " << std::right << std::setw(4) << k << "  "
              << std::string(static_cast<std::size_t>(k), '#')
              << std::string(static_cast<std::size_t>(std::max<int64_t>(0, cfg.init_r - k)), '.') << "\n";
  if (!plot.empty()) {
    // One bar per module, in table order, labelled with its number and name; a dashed line at target_r.
    std::vector<std::string> labels;
    train::BarSeries bars{"Rank per module (init_r " + std::to_string(cfg.init_r) + ", target_r " +
                              std::to_string(cfg.target_r) + ", " + std::to_string(total) + " triplets kept)",
                          {},
                          "rank (singular-value triplets kept)",
                          static_cast<double>(cfg.target_r),
                          "target_r"};
    int n = 0;
    for (const auto& [m, k] : ranks) {
      labels.push_back(std::to_string(++n) + "  " + m);
      bars.values.push_back(static_cast<double>(k));
    }
    train::write_bar_chart_png(plot, labels, {bars}, "AdaLoRA rank per module: " + file);
    std::cout << "\nchart:         " << plot << " (bars in table order)\n";
  }
}

}  // namespace

void run_adapter_info(const std::string& path, bool list_tensors, const std::string& plot) {
  const auto cfg = load_peft_config(path);
  const std::string file = (fs::path(path) / "adapter_model.safetensors").string();
  PEFT_CHECK(fs::exists(file), FormatError, "[info] ", path, ": adapter_config.json but no adapter_model.safetensors");
  const auto f = io::SafetensorsFile::open(file);
  int64_t params = 0;
  for (const auto& n : f.names()) params += f.at(n).numel();
  std::cout << "adapter:       " << path << "\n"
            << "peft_type:     " << to_string(cfg->peft_type) << "\n"
            << "task_type:     " << (cfg->task_type == TaskType::None ? "-" : to_string(cfg->task_type)) << "\n"
            << "base model:    " << (cfg->base_model_name_or_path.empty() ? "-" : cfg->base_model_name_or_path) << "\n"
            << "tensors:       " << f.names().size() << "\n"
            << "parameters:    " << thousands(params) << "\n";
  if (const auto* ada = dynamic_cast<const AdaLoraConfig*>(cfg.get())) adalora_table(*ada, f, file, plot);
  else PEFT_CHECK(plot.empty(), ConfigError, "[info] --plot draws AdaLoRA ranks; ", path, " is ", to_string(cfg->peft_type));
  if (list_tensors) {
    for (const auto& n : f.names()) {
      const auto& t = f.at(n);
      std::cout << "  " << n << " [";
      for (std::size_t i = 0; i < t.shape.size(); ++i) std::cout << (i ? ", " : "") << t.shape[i];
      std::cout << "]\n";
    }
  }
}

}  // namespace peft::cli
