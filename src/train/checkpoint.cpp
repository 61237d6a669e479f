// Training checkpoints and resume. Mirrors transformers' Trainer._save_checkpoint layout
// (checkpoint-N/ with the adapter, optimizer.pt, the RNG state and trainer_state.json).
#include <ATen/CPUGeneratorImpl.h>
#include <torch/optim/optimizer.h>
#include <torch/serialize.h>

#include <algorithm>
#include <nlohmann/json.hpp>

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

void read_rng(const std::string& path) {
  auto t = io::load_safetensors(path);
  at::Generator g = at::detail::getDefaultCPUGenerator();  // shares the global generator
  g.set_state(t.at("cpu_rng"));
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
  fs::remove_all(dst);
  fs::rename(tmp, dst);
}

void load_checkpoint(const std::string& dir, PeftModel& model, torch::optim::Optimizer& opt,
                     int64_t per_device_batch, RunState& run) {
  TrainerStateBounds b;
  b.max_steps = run.total;
  b.max_steps_from = run.total_from;
  b.examples = run.examples;
  b.legacy_batch = per_device_batch;  // written before data-parallel support: a single process
  const TrainerState st = read_trainer_state((fs::path(dir) / "trainer_state.json").string(), b);
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
  torch::load(opt, (fs::path(dir) / "optimizer.pt").string());
  read_rng((fs::path(dir) / "rng_state.safetensors").string());
}

void save_final_adapter(const std::string& dst, const PeftModel& model) {
  // Written into a temp folder, then renamed, as checkpoints are.
  const fs::path tmp = fs::path(dst).parent_path() / ("." + fs::path(dst).filename().string() + ".tmp");
  check_finite(model, dst);
  fs::remove_all(tmp);
  model.save_pretrained(tmp.string(), {model.active_adapters().front()});
  fs::remove_all(dst);
  fs::rename(tmp, dst);
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
