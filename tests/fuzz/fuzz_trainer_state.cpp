// Any byte string read as a checkpoint's trainer_state.json must either give a state a resume can
// use (every field within its bounds) or raise FormatError / ConfigError.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>

#include "peft/core/error.h"
#include "peft/train/trainer_state.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  peft::train::TrainerStateBounds b;
  b.max_steps = 200;
  b.examples = 4200;
  b.legacy_batch = 16;
  try {
    const auto s = peft::train::parse_trainer_state(std::string(reinterpret_cast<const char*>(data), size), "fuzz", b);
    if (s.global_step < 0 || s.global_step > b.max_steps) std::abort();
    if (s.epoch < 0 || s.epoch > s.global_step) std::abort();
    if (s.epoch_samples < 0 || s.epoch_samples > b.examples || s.epoch_order_batch < 1) std::abort();
    if (s.world_size < 1 || s.batch_pos < 0) std::abort();
    if (static_cast<int64_t>(s.step_losses.size()) != s.global_step) std::abort();
    for (double l : s.step_losses)
      if (std::isinf(l)) std::abort();  // finite, or NaN for a skipped step
    // What the checkpoint writer makes of it reads back the same.
    const auto r = peft::train::parse_trainer_state(peft::train::trainer_state_json(s).dump(), "fuzz", b);
    if (r.global_step != s.global_step || r.epoch != s.epoch || r.epoch_samples != s.epoch_samples ||
        r.epoch_order_batch != s.epoch_order_batch || r.batch_pos != s.batch_pos || r.world_size != s.world_size ||
        r.total_steps != s.total_steps || r.step_losses.size() != s.step_losses.size())
      std::abort();
    for (std::size_t i = 0; i < s.step_losses.size(); ++i)
      if (r.step_losses[i] != s.step_losses[i] && !(std::isnan(r.step_losses[i]) && std::isnan(s.step_losses[i])))
        std::abort();
  } catch (const peft::FormatError&) {
  } catch (const peft::ConfigError&) {
  }
  return 0;
}
