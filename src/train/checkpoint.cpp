// Training checkpoints and resume. Mirrors transformers' Trainer._save_checkpoint layout
// (checkpoint-N/ with the adapter, optimizer.pt, the RNG state and trainer_state.json).
#include <ATen/CPUGeneratorImpl.h>
#include <torch/optim/adamw.h>
#include <torch/optim/optimizer.h>
#include <torch/serialize.h>

#include <algorithm>
#include <sstream>
#include <type_traits>
#include <nlohmann/json.hpp>

#include "peft/core/file_util.h"
#include "peft/core/json_file.h"
#include "peft/core/strings.h"
#include "peft/core/check.h"
#include "peft/io/tensor_bridge.h"
#include "peft/train/trainer_state.h"
#include "peft/tuners/tuner_model.h"
#include "trainer_impl.h"

namespace peft::train::detail {

namespace fs = std::filesystem;
using nlohmann::json;

void save_active_adapter_flat(const PeftModel& model, const fs::path& dir) {
  const std::string name = model.active_adapters().front();
  fs::create_directories(dir);
  model.save_pretrained(dir.string(), {name});
  if (name == "default") return;
  for (const auto& e : fs::directory_iterator(dir / name))
    if (e.is_regular_file()) fs::rename(e.path(), dir / e.path().filename());
  fs::remove_all(dir / name);
}

namespace {

void write_rng(const std::string& path) {
  at::Tensor state = at::detail::getDefaultCPUGenerator().get_state();
  io::save_safetensors(path, {{"cpu_rng", state}});
}

std::string shape_str(const at::Tensor& t) {
  std::ostringstream o;
  o << t.sizes();
  return o.str();
}

// The step of a folder named checkpoint-N; -1 for any other name.
int64_t folder_step(const fs::path& dir) {
  const std::string n = dir.filename().string(), prefix = "checkpoint-";
  if (n.size() <= prefix.size() || n.size() > prefix.size() + 18 || n.rfind(prefix, 0) != 0 ||
      n.find_first_not_of("0123456789", prefix.size()) != std::string::npos)
    return -1;
  return std::stoll(n.substr(prefix.size()));
}

// The newest complete checkpoint beside `dir` that is older than it; "" when there is none.
std::string earlier_checkpoint(const fs::path& dir) {
  const fs::path parent = dir.has_filename() ? dir.parent_path() : dir.parent_path().parent_path();
  for (int64_t below = folder_step(dir.has_filename() ? dir : dir.parent_path()) - 1; below >= 0;) {
    const std::string c = newest_checkpoint(parent.empty() ? "." : parent.string(), below);
    if (c.empty()) return "";
    bool complete = true;
    std::error_code ec;
    for (const char* f : {"trainer_state.json", "optimizer.pt", "rng_state.safetensors"})
      complete = complete && fs::is_regular_file(fs::path(c) / f, ec) && fs::file_size(fs::path(c) / f, ec) > 0 && !ec;
    if (complete) return c;
    below = folder_step(c) - 1;
  }
  return "";
}

// A checkpoint file a resume cannot use: one line naming it, why, and where to go from here.
[[noreturn]] void damaged(const fs::path& dir, const std::string& file, const std::string& why) {
  const std::string earlier = earlier_checkpoint(dir);
  throw FormatError("[resume] " + (dir / file).string() + " " + why + ": the checkpoint " + dir.string() +
                    " is damaged; " + (earlier.empty() ? "" : "resume from " + earlier + " instead, or ") +
                    "start over without --resume");
}

// A peft error about `file` without its "[tag] file: " opening, to quote as a reason.
std::string reason(const std::exception& e, const fs::path& file) {
  std::string m = e.what();
  if (const auto at = m.find(file.string() + ": "); !m.empty() && m[0] == '[' && at != std::string::npos)
    m.erase(0, at + file.string().size() + 2);
  return m;
}

void require_file(const fs::path& dir, const std::string& file) {
  std::error_code ec;
  const auto st = fs::status(dir / file, ec);
  if (!fs::exists(st)) damaged(dir, file, "is missing");
  if (!fs::is_regular_file(st)) damaged(dir, file, "is not a file");
  if (fs::file_size(dir / file, ec) == 0) damaged(dir, file, "is empty");
}

// The optimizer's state, refused when it does not fit the run's parameters (Adam moments of the
// parameter's shape and dtype, no more steps than the run made).
void read_optimizer(const fs::path& dir, torch::optim::Optimizer& opt, int64_t global_step) {
  const std::string file = "optimizer.pt";
  require_file(dir, file);
  try {
    torch::load(opt, (dir / file).string());
  } catch (const std::exception&) {  // LibTorch's archive errors name nothing a user can act on
    damaged(dir, file, "cannot be read as this run's optimizer state (truncated, not a LibTorch archive, or "
                       "written for other trainable parameters)");
  }
  int64_t k = 0;
  for (const auto& group : opt.param_groups())
    for (const auto& p : group.params()) {
      const auto& state = opt.state();
      const auto it = state.find(optimizer_state_key<typename std::decay_t<decltype(state)>::key_type>(p));
      ++k;
      if (it == opt.state().end()) continue;  // no step touched it yet
      const auto* st = dynamic_cast<const torch::optim::AdamWParamState*>(it->second.get());
      if (st == nullptr) continue;
      for (const auto* t : {&st->exp_avg(), &st->exp_avg_sq()})
        if (!t->defined() || t->sizes() != p.sizes() || t->scalar_type() != p.scalar_type())
          damaged(dir, file,
                  "holds Adam moments of shape " + (t->defined() ? shape_str(*t) : std::string("(none)")) +
                      " for trainable parameter " + std::to_string(k) + " of shape " + shape_str(p) +
                      " (written for another adapter or model)");
      if (st->step() < 0 || st->step() > global_step)
        damaged(dir, file, "counts " + std::to_string(st->step()) + " Adam steps for trainable parameter " +
                               std::to_string(k) + " after " + std::to_string(global_step) + " optimizer steps");
    }
}

// The CPU generator's state: one uint8 vector of the size this LibTorch's generator has.
void read_rng(const fs::path& dir) {
  const std::string file = "rng_state.safetensors";
  require_file(dir, file);
  std::map<std::string, at::Tensor> t;
  try {
    t = io::load_safetensors((dir / file).string());
  } catch (const FormatError& e) {
    damaged(dir, file, "cannot be read (" + reason(e, dir / file) + ")");
  }
  at::Generator g = at::detail::getDefaultCPUGenerator();  // shares the global generator
  const at::Tensor now = g.get_state();
  const auto it = t.find("cpu_rng");
  if (it == t.end()) damaged(dir, file, "holds no tensor 'cpu_rng'");
  const at::Tensor& s = it->second;
  if (s.scalar_type() != at::kByte || s.dim() != 1 || s.numel() != now.numel())
    damaged(dir, file, "holds 'cpu_rng' as " + std::string(c10::toString(s.scalar_type())) + " " + shape_str(s) +
                           "; expected Byte [" + std::to_string(now.numel()) + "]");
  try {
    g.set_state(s.contiguous());
  } catch (const std::exception&) {
    damaged(dir, file, "holds a 'cpu_rng' state the CPU generator refuses");
  }
}

// Nothing non-finite is ever written: names the first tensors that hold NaN/inf.
void check_finite(const PeftModel& model, const std::string& what) {
  std::vector<std::string> bad;
  for (const auto& [k, t] : model.adapter_state_dict(model.active_adapters().front()))
    if (t.is_floating_point() && !at::isfinite(t).all().item<bool>()) bad.push_back(k);
  PEFT_CHECK(bad.empty(), std::runtime_error, "[train] not writing ", what, ": NaN or infinite values in ",
             join(bad, 8), " (the weights diverged; lower learning_rate)");
}

}  // namespace

void save_checkpoint(const std::string& output_dir, PeftModel& model, const torch::optim::Optimizer& opt,
                     const RunState& run) {
  const fs::path dst = fs::path(output_dir) / ("checkpoint-" + std::to_string(run.step));
  const fs::path tmp = fs::path(output_dir) / (".checkpoint-" + std::to_string(run.step) + ".tmp");
  check_finite(model, dst.string());
  fs::remove_all(tmp);
  try {
    fs::create_directories(tmp);
    save_active_adapter_flat(model, tmp);
    if (auto ts = model.training_state(); !ts.empty())
      io::save_safetensors((tmp / "tuner_state.safetensors").string(), ts);
    torch::save(opt, (tmp / "optimizer.pt").string());
    write_rng((tmp / "rng_state.safetensors").string());
    TrainerState st;
    st.global_step = run.step;
    st.epoch = run.epoch;
    st.batch_pos = run.batch_pos;
    st.epoch_samples = std::min(run.examples, run.epoch_start + run.batch_pos * run.global_batch);
    st.epoch_order_batch = run.order_batch;
    st.world_size = run.world;
    st.step_losses = run.step_losses;
    st.total_steps = run.total;
    write_json_file((tmp / "trainer_state.json").string(), trainer_state_json(st));
    replace_folder(tmp.string(), dst.string());
  } catch (...) {  // a failed write (disk full, ...) leaves no partial folder behind
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }
}

void remove_stale_temp_folders(const std::string& output_dir) {
  std::error_code ec;
  std::vector<fs::path> stale;
  for (const auto& e : fs::directory_iterator(output_dir, ec)) {
    const std::string n = e.path().filename().string(), pre = ".checkpoint-", suf = ".tmp";
    const bool checkpoint = n.size() > pre.size() + suf.size() && n.rfind(pre, 0) == 0 &&
                            n.compare(n.size() - suf.size(), suf.size(), suf) == 0 &&
                            n.find_first_not_of("0123456789", pre.size()) == n.size() - suf.size();
    if (checkpoint || n == ".adapter.tmp" || n == ".model.tmp") stale.push_back(e.path());
  }
  for (const auto& p : stale) fs::remove_all(p, ec);
}

void load_checkpoint(const std::string& dir, PeftModel& model, torch::optim::Optimizer& opt,
                     int64_t per_device_batch, RunState& run) {
  TrainerStateBounds b;
  b.max_steps = run.total;
  b.max_steps_from = run.total_from;
  b.examples = run.examples;
  b.legacy_batch = per_device_batch;  // written before data-parallel support: a single process
  const TrainerState st = read_trainer_state((fs::path(dir) / "trainer_state.json").string(), b);
  for (const char* f : {"optimizer.pt", "rng_state.safetensors"}) require_file(dir, f);  // before anything changes
  run.step = st.global_step;
  run.epoch = st.epoch;
  run.epoch_start = st.epoch_samples;
  run.order_batch = st.epoch_order_batch;
  run.step_losses = st.step_losses;
  // A tuner state (AdaLoRA: full-rank tensors and scores; its saved adapter is pruned) replaces
  // the adapter file when the checkpoint has one.
  const fs::path tuner_state = fs::path(dir) / "tuner_state.safetensors";
  if (fs::exists(tuner_state)) model.load_training_state(io::load_safetensors(tuner_state.string()));
  else model.load_adapter_weights((fs::path(dir) / model.tuner().weights_file()).string(), model.active_adapters().front());
  read_optimizer(dir, opt, run.step);
  read_rng(dir);
}

void save_final_adapter(const std::string& dst, const PeftModel& model) {
  // Written into a temp folder, then put in place, as checkpoints are.
  const fs::path tmp = fs::path(dst).parent_path() / ("." + fs::path(dst).filename().string() + ".tmp");
  check_finite(model, dst);
  fs::remove_all(tmp);
  try {
    model.save_pretrained(tmp.string(), {model.active_adapters().front()});
    replace_folder(tmp.string(), dst);
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }
}

std::string newest_checkpoint(const std::string& output_dir, int64_t max_step) {
  const std::string prefix = "checkpoint-";
  int64_t newest = -1;
  if (fs::is_directory(output_dir))
    for (const auto& e : fs::directory_iterator(output_dir)) {
      const std::string n = e.path().filename().string();
      if (!e.is_directory() || n.rfind(prefix, 0) != 0 || n.size() == prefix.size() ||
          n.find_first_not_of("0123456789", prefix.size()) != std::string::npos)
        continue;
      const int64_t k = std::stoll(n.substr(prefix.size()));
      if (k <= max_step) newest = std::max(newest, k);
    }
  return newest < 0 ? "" : (fs::path(output_dir) / (prefix + std::to_string(newest))).string();
}

}  // namespace peft::train::detail
