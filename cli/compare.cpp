// peft compare: trains several PEFT methods on one task with the same data and training
// arguments, each in its own `peft train` process (so peak memory is per method), and writes one
// summary table (Markdown) and one chart (PNG): method, trainable parameters and %, peak RSS,
// training tokens/s and the final eval metrics.
#include <CLI/CLI.hpp>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "commands.h"
#include "peft/core/check.h"
#include "peft/core/file_util.h"
#include "peft/core/json_file.h"
#include "peft/core/yaml_bounds.h"
#include "peft/core/runtime.h"
#include "peft/train/plot.h"
#include "peft/train/run_config.h"
#include "peft/core/strings.h"

namespace peft::cli {

namespace {

namespace fs = std::filesystem;

// Placement variants of prefix tuning (the Prefix-Tuning paper's ablations), for a "prompt
// placement" table: `--methods prefix_tuning,prefix_infix,prefix_embedding`. Each runs
// `method=prefix_tuning` with the prefix_tuning settings plus its prefix_placement. Not in the
// default method list.
const std::map<std::string, std::string> kPlacementVariants = {
    {"prefix_infix", "prefix_placement=infix"}, {"prefix_embedding", "prefix_placement=embedding"}};

bool known_method(const std::string& m) {
  const auto all = train::run_methods();
  return std::find(all.begin(), all.end(), m) != all.end() || kPlacementVariants.count(m);
}

// Settings each method gets unless the config's `compare: {<method>: {...}}` says otherwise:
// the usual starting points (PEFT's examples) for a small model.
const std::map<std::string, std::vector<std::string>>& method_defaults() {
  static const std::map<std::string, std::vector<std::string>> d = {
      {"prompt_tuning", {"num_virtual_tokens=20", "learning_rate=0.03"}},
      {"p_tuning", {"num_virtual_tokens=20", "encoder_hidden_size=128", "learning_rate=0.01"}},
      {"prefix_tuning", {"num_virtual_tokens=20", "prefix_projection=true", "encoder_hidden_size=128",
                         "learning_rate=0.01"}},
      {"p_tuning_v2", {"num_virtual_tokens=20", "learning_rate=0.01"}},
  };
  return d;
}

struct Outcome {
  std::string method;
  int exit_code = -1;
  double peak_rss_mb = NAN;
  nlohmann::json results;  ///< results.json of the run (empty when it failed)
  std::string error;       ///< last line of the log when it failed
};

std::string last_line(const std::string& path) {
  std::ifstream f(path);
  std::string line, last;
  while (std::getline(f, line))
    if (!line.empty()) last = line;
  return last;
}

// Runs `peft train` in a child process with its output in `log`; returns the exit code and the
// child's peak resident set.
Outcome run_child(const std::string& method, const std::vector<std::string>& args, const std::string& log) {
  Outcome o;
  o.method = method;
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::cout.flush();
  const pid_t pid = fork();
  PEFT_CHECK(pid >= 0, std::runtime_error, "[compare] fork failed: ", std::strerror(errno));
  if (pid == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
    execv("/proc/self/exe", argv.data());
    std::perror("execv /proc/self/exe");
    _exit(127);
  }
  int status = 0;
  rusage ru{};
  PEFT_CHECK(wait4(pid, &status, 0, &ru) == pid, std::runtime_error, "[compare] wait4 failed: ", std::strerror(errno));
  o.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  o.peak_rss_mb = static_cast<double>(ru.ru_maxrss) / 1024.0;
  return o;
}

// A finished run's results.json into `o`, with the run's own high-water mark (ru_maxrss would
// include this process's image, forked before exec); false when there is none.
bool read_results(const fs::path& dir, Outcome& o) {
  const fs::path res = dir / "results.json";
  if (!fs::exists(res)) return false;
  o.results = read_json_file(res.string());
  o.peak_rss_mb = o.results.value("peak_rss_mb", o.peak_rss_mb);
  return true;
}

std::string fmt(double v, int prec) {
  if (!std::isfinite(v)) return "n/a";
  std::ostringstream s;
  s << std::fixed << std::setprecision(prec) << v;
  return s.str();
}

double metric(const nlohmann::json& r, const char* group, const std::string& key) {
  if (!r.is_object() || !r.contains(group) || !r[group].contains(key)) return NAN;
  return r[group][key].get<double>();
}

// compare.png's value axis for a metric: its unit or range and which way is better. `task` is
// the runs' task (the eval loss of a language-model task is a mean token cross-entropy).
std::string metric_axis(const std::string& name, const std::string& task) {
  const std::string base = name.substr(0, name.find('/'));  // accuracy/<task> of multi-task runs
  if (base == "eval_loss")
    return task == "seq_cls" ? "eval loss per example (lower is better)"
                             : "cross-entropy, nats per token (lower is better)";
  if (base == "bleu") return "BLEU, 0–100 (higher is better)";
  if (base == "rouge_l") return "ROUGE-L F, 0–100 (higher is better)";
  if (base == "mse") return "mean squared error (lower is better)";
  if (base == "pearson" || base == "spearman") return "correlation, −1–1 (higher is better)";
  if (base == "accuracy" || base == "subset_accuracy" || base == "f1" || base == "macro_f1" || base == "micro_f1" ||
      base == "precision" || base == "recall")
    return "fraction, 0–1 (higher is better)";
  return name;
}

void run_compare(const std::string& cfg_path, std::vector<std::string> methods, std::string out,
                 const std::vector<std::string>& overrides, bool report_only) {
  PEFT_CHECK(fs::exists(cfg_path), ConfigError, "[config] ", cfg_path, ": no such file");
  const std::string text = read_yaml_text(cfg_path);
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw ConfigError("[config] " + cfg_path + ": not valid YAML: " + e.what());
  }
  PEFT_CHECK(root.IsMap(), ConfigError, "[config] ", cfg_path, ": expected a mapping of key: value");
  // The `compare` section: methods, output folder and per-method settings; the rest is a train config.
  YAML::Node cmp = root["compare"];
  std::map<std::string, std::vector<std::string>> per_method = method_defaults();
  if (cmp) {
    PEFT_CHECK(cmp.IsMap(), ConfigError, "[config] ", cfg_path, ": key 'compare' must be a mapping");
    for (const auto& kv : cmp) {
      const std::string k = kv.first.as<std::string>();
      if (k == "methods") {
        PEFT_CHECK(kv.second.IsSequence(), ConfigError, "[config] ", cfg_path, ": compare.methods must be a list");
        if (methods.empty()) methods = kv.second.as<std::vector<std::string>>();
      } else if (k == "output_dir") {
        if (out.empty()) out = kv.second.as<std::string>();
      } else if (known_method(k)) {
        PEFT_CHECK(kv.second.IsMap(), ConfigError, "[config] ", cfg_path, ": compare.", k,
                   " must be a mapping of train keys");
        auto& v = per_method[k];
        for (const auto& s : kv.second) {
          YAML::Emitter e;
          e << YAML::Flow << s.second;
          v.push_back(s.first.as<std::string>() + "=" + e.c_str());
        }
      } else {
        std::string valid = "methods, output_dir";
        for (const auto& m : train::run_methods()) valid += ", " + m;
        for (const auto& [m, extra] : kPlacementVariants) valid += ", " + m;
        throw ConfigError("[config] " + cfg_path + ": unknown key 'compare." + k + "' (valid: " + valid + ")");
      }
    }
    root.remove("compare");
  }
  if (methods.empty()) methods = train::run_methods();
  for (const auto& m : methods)
    PEFT_CHECK(known_method(m), ConfigError, "[compare] unknown method '", m, "' (valid: ", join(train::run_methods(), 99),
               ", and the prefix placements prefix_infix, prefix_embedding)");
  if (out.empty()) out = "compare";
  fs::create_directories(out);
  const std::string base_cfg = (fs::path(out) / "train_config.yaml").string();
  {
    YAML::Emitter e;
    e << root;
    write_file_atomic(base_cfg, std::string(e.c_str()) + "\n");
  }

  const std::string machine = cpu_model_name(), load0 = load_average();
  std::vector<Outcome> rows;
  for (const auto& m : methods) {
    const fs::path dir = fs::path(out) / m;
    if (report_only) {  // the table and chart from the runs already in `out`
      Outcome o;
      o.method = m;
      o.exit_code = 0;
      if (!read_results(dir, o)) o.error = "no " + (dir / "results.json").string();
      rows.push_back(std::move(o));
      continue;
    }
    fs::remove_all(dir);
    fs::create_directories(dir);
    const auto variant = kPlacementVariants.find(m);
    const std::string method = variant == kPlacementVariants.end() ? m : "prefix_tuning";
    std::vector<std::string> args = {"peft", "train", base_cfg, "method=" + method, "output_dir=" + dir.string()};
    if (variant != kPlacementVariants.end() && per_method.count(method))
      for (const auto& kv : per_method.at(method)) args.push_back(kv);
    if (variant != kPlacementVariants.end()) args.push_back(variant->second);
    if (per_method.count(m))
      for (const auto& kv : per_method.at(m)) args.push_back(kv);
    for (const auto& o : overrides) args.push_back(o);
    std::cout << "[compare] " << m << ": peft train ... (log: " << (dir / "train.log").string() << ")" << std::endl;
    Outcome o = run_child(m, args, (dir / "train.log").string());
    if (o.exit_code != 0 || !read_results(dir, o)) {
      o.error = last_line((dir / "train.log").string());
      if (o.error.empty()) o.error = "exit code " + std::to_string(o.exit_code);
    }
    std::cout << "[compare] " << m << ": "
              << (o.error.empty() ? "done, peak RSS " + fmt(o.peak_rss_mb, 0) + " MB" : "FAILED: " + o.error) << std::endl;
    rows.push_back(std::move(o));
  }

  // Metric columns: every metric any run reported, eval_loss first.
  std::vector<std::string> metric_names;
  for (const auto& r : rows)
    if (r.results.contains("metrics"))
      for (const auto& kv : r.results["metrics"].items())
        if (std::find(metric_names.begin(), metric_names.end(), kv.key()) == metric_names.end())
          metric_names.push_back(kv.key());
  std::stable_sort(metric_names.begin(), metric_names.end(),
                   [](const std::string& a, const std::string& b) { return a == "eval_loss" && b != "eval_loss"; });

  std::ostringstream md;
  md << "| method | trainable params | trainable % | peak RSS (MB) | train tokens/s | tokens/CPU-s";
  for (const auto& n : metric_names) md << " | " << n << " (before → after)";
  md << " |\n|---|---:|---:|---:|---:";
  for (std::size_t i = 0; i < metric_names.size(); ++i) md << "|---:";
  md << "|\n";
  std::vector<std::string> labels;
  std::string task;
  for (const auto& r : rows)
    if (task.empty() && r.results.is_object()) task = r.results.value("task", std::string());
  std::vector<train::BarSeries> panels = {
      {"Trainable parameters", {}, "% of all parameters"},
      {"Peak memory", {}, "peak resident set size, MB"},
      {"Training speed", {}, "training tokens/s (optimizer steps, wall clock)"}};
  for (const auto& n : metric_names) panels.push_back({n + " after training", {}, metric_axis(n, task)});
  for (const auto& r : rows) {
    labels.push_back(r.method);
    if (!r.error.empty()) {
      md << "| " << r.method << " | failed: " << r.error << " |" << std::string(4 + metric_names.size(), '|') << "\n";
      for (auto& p : panels) p.values.push_back(NAN);
      continue;
    }
    const double trainable = r.results.value("trainable_params", 0.0), all = r.results.value("all_params", 0.0);
    const double pct = all > 0 ? 100.0 * trainable / all : NAN;
    const double tps = r.results.value("train_tokens_per_second", NAN);
    const double cps = r.results.value("train_tokens_per_cpu_second", NAN);
    md << "| " << r.method << " | " << static_cast<int64_t>(trainable) << " | " << fmt(pct, 4) << " | "
       << fmt(r.peak_rss_mb, 0) << " | " << fmt(tps, 0) << " | " << fmt(cps, 0);
    panels[0].values.push_back(pct);
    panels[1].values.push_back(r.peak_rss_mb);
    panels[2].values.push_back(tps);
    for (std::size_t i = 0; i < metric_names.size(); ++i) {
      const double before = metric(r.results, "metrics_before", metric_names[i]);
      const double after = metric(r.results, "metrics", metric_names[i]);
      md << " | " << (std::isfinite(before) ? fmt(before, 4) + " → " : "") << fmt(after, 4);
      panels[3 + i].values.push_back(after);
    }
    md << " |\n";
  }
  const std::string table = md.str();
  // Where and how loaded: each run records its CPU and the load average when it ended.
  std::string machine_line = "Machine: " + machine + ", " + std::to_string(std::thread::hardware_concurrency()) +
                             " logical CPUs; load average (1/5/15 min) at the end of each run:";
  for (const auto& r : rows)
    machine_line += " " + r.method + " " + (r.results.is_object() ? r.results.value("load_average", std::string("n/a")) : "n/a") + ";";
  if (!report_only) machine_line += " before the first: " + load0 + ".";
  write_file_atomic((fs::path(out) / "compare.md").string(),
                    "# peft compare\n\nConfig: `" + cfg_path + "` (as run: `" + base_cfg + "`). One `peft train` "
                    "process per method; peak RSS is the process's maximum resident set; tokens/s counts "
                    "non-padding training tokens over the optimizer-step time (wall clock), tokens/CPU-s over "
                    "the CPU time of all the process's threads in those steps.\n\n" + machine_line + "\n\n" + table);
  train::write_bar_chart_png((fs::path(out) / "compare.png").string(), labels, panels, "peft compare: " + cfg_path);
  std::cout << "\n" << table << "\ntable: " << (fs::path(out) / "compare.md").string()
            << "\nchart: " << (fs::path(out) / "compare.png").string() << "\n";
  for (const auto& r : rows)
    PEFT_CHECK(report_only || r.error.empty(), std::runtime_error, "[compare] method '", r.method, "' failed: ", r.error,
               " (see ", (fs::path(out) / r.method / "train.log").string(), ")");
}

}  // namespace

void add_compare_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "compare", "Train several PEFT methods on the same task and data; write a summary table and chart");
  struct A {
    std::string config, methods, out;
    std::vector<std::string> overrides;
    bool report_only = false;
  };
  auto a = std::make_shared<A>();
  cmd->add_option("config", a->config,
                  "A peft train YAML config; an optional `compare:` section holds `methods: [...]`, "
                  "`output_dir:` and per-method settings, e.g. `prompt_tuning: {num_virtual_tokens: 10}`")
      ->required();
  cmd->add_option("overrides", a->overrides, "key=value overrides applied to every method, e.g. max_steps=50");
  cmd->add_option("--methods", a->methods,
                  "Comma-separated subset of lora,adalora,qlora,prefix_tuning,p_tuning,prompt_tuning,p_tuning_v2");
  cmd->add_option("--out", a->out, "Output folder (default: compare.output_dir, else ./compare)");
  cmd->add_flag("--report-only", a->report_only,
                "Train nothing: rewrite the table and chart from the methods' results.json already in the output "
                "folder (e.g. after running methods one at a time with --methods)");
  cmd->callback([a] {
    std::vector<std::string> methods;
    std::stringstream ss(a->methods);
    for (std::string m; std::getline(ss, m, ',');)
      if (!m.empty()) methods.push_back(m);
    run_compare(a->config, methods, a->out, a->overrides, a->report_only);
  });
}

}  // namespace peft::cli
