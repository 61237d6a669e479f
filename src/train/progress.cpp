// What a training run reports: metrics.jsonl (transformers' log_history entries, one JSON object
// per line), TensorBoard scalars, the terminal's progress bar or log lines, and loss.png.
#include <unistd.h>

#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>

#include "peft/train/event_writer.h"
#include "peft/train/plot.h"
#include "trainer_impl.h"

namespace peft::train::detail {

namespace fs = std::filesystem;
using nlohmann::json;

Progress::Progress() = default;
Progress::~Progress() = default;

void Progress::start(const TrainingArguments& args, bool main_rank, int64_t total) {
  main_rank_ = main_rank;
  logging_steps_ = args.logging_steps;
  total_ = total;
  run_name_ = args.run_name;
  if (run_name_.empty()) {  // the output folder's name
    fs::path p = fs::absolute(args.output_dir).lexically_normal();
    if (!p.has_filename()) p = p.parent_path();
    run_name_ = p.filename().string();
  }
  if (args.tensorboard && main_rank) tb_ = std::make_unique<TensorBoardWriter>((fs::path(args.output_dir) / "runs").string());
  if (main_rank) metrics_.open((fs::path(args.output_dir) / "metrics.jsonl"), std::ios::app);
  tty_ = args.progress_bar && main_rank && ::isatty(2);
  t0_ = std::chrono::steady_clock::now();
}

void Progress::log(const json& line) {
  if (!main_rank_) return;
  metrics_ << line.dump() << "\n";
  metrics_.flush();
}

void Progress::add_train_loss(int64_t step, double loss) { train_curve_.emplace_back(step, loss); }

void Progress::step(int64_t step, double loss, double logged_loss, double lr, int64_t epoch,
                    const TunerScalars& tuner, int64_t tokens_seen) {
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  const double tok_s = tokens_seen / std::max(secs, 1e-9);
  lr_curve_.emplace_back(step, lr);
  if (logging_steps_ > 0 && (step % logging_steps_ == 0 || step == total_)) {
    json line = {{"step", step}, {"loss", logged_loss}, {"learning_rate", lr}, {"epoch", epoch}, {"tokens_per_second", tok_s}};
    for (const auto& [k, v] : tuner) line[k] = v;
    log(line);
    if (tb_) {
      tb_->add_scalar("train/loss", logged_loss, step);
      tb_->add_scalar("train/learning_rate", lr, step);
      for (const auto& [k, v] : tuner) tb_->add_scalar(k, v, step);
    }
    if (!tty_ && main_rank_)
      std::cerr << "step " << step << "/" << total_ << "  loss " << std::fixed << std::setprecision(4) << logged_loss
                << "  lr " << std::scientific << std::setprecision(2) << lr << std::defaultfloat << "  "
                << (tuner.empty() ? "" : tuner.front().first + " " + std::to_string(static_cast<int64_t>(tuner.front().second)) + "  ")
                << static_cast<int64_t>(tok_s) << " tok/s\n";
  }
  if (tty_) {
    const double eta = secs / step * (total_ - step);
    const int width = 30, done = static_cast<int>(width * step / total_);
    std::cerr << "\r[" << std::string(done, '#') << std::string(width - done, '.') << "] " << step << "/" << total_
              << " loss " << std::fixed << std::setprecision(4) << loss << " lr " << std::scientific
              << std::setprecision(2) << lr << std::defaultfloat << " " << static_cast<int64_t>(tok_s)
              << " tok/s ETA " << static_cast<int64_t>(eta) << "s   " << std::flush;
  }
}

void Progress::eval(int64_t step, const EvalResult& e) {
  eval_curve_.emplace_back(step, e.loss);
  log({{"step", step}, {"eval_loss", e.loss}, {"eval_perplexity", e.perplexity}});
  if (tb_) tb_->add_scalar("eval/loss", e.loss, step);
}

void Progress::end_bar() {
  if (tty_) std::cerr << "\n";
}

void Progress::finish(const std::string& output_dir, const std::string& loss_label) {
  if (tb_) tb_->flush();
  LossPlot plot;
  plot.title = "Training loss — " + run_name_;
  plot.train = train_curve_;
  plot.eval = eval_curve_;
  plot.learning_rate = lr_curve_;
  plot.loss_label = loss_label;
  write_loss_curve_png((fs::path(output_dir) / "loss.png").string(), plot);
}

}  // namespace peft::train::detail
