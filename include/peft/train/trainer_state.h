#pragma once
// A checkpoint's trainer_state.json (tier 0: torch-free): where the run stood when the checkpoint
// was written. Mirrors transformers' TrainerState.save_to_json / load_from_json (global_step,
// epoch; every field typed; an unknown field refused as the dataclass refuses it), with the
// position in the epoch's example order that an exact resume needs.
//
//   TrainerStateBounds b;
//   b.max_steps = 200;       // the run's optimizer steps (max_steps or num_train_epochs)
//   b.examples = 4200;       // training examples
//   TrainerState st = read_trainer_state("out/checkpoint-100/trainer_state.json", b);
#include <nlohmann/json_fwd.hpp>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

namespace peft::train {

/// The fields of trainer_state.json. Required: global_step, epoch, step_losses, and either
/// epoch_samples + epoch_order_batch or (files from before data-parallel support) batch_pos.
/// Optional: world_size, total_steps (what the run that wrote it had).
struct TrainerState {
  int64_t global_step = 0;  ///< optimizer steps done
  int64_t epoch = 0;        ///< the epoch being trained (0-based)
  /// The epoch's batches start after epoch_samples examples of an order drawn with
  /// epoch_order_batch (a global batch size). Files from before data-parallel support have
  /// neither; they are derived from batch_pos (TrainerStateBounds::legacy_batch).
  int64_t epoch_samples = 0;
  int64_t epoch_order_batch = 0;
  int64_t batch_pos = 0;             ///< batches of the epoch done since epoch_samples
  int64_t world_size = 1;            ///< processes of the run that wrote it
  int64_t total_steps = 0;           ///< optimizer steps of the run that wrote it (0: not recorded)
  std::vector<double> step_losses;   ///< one per step; NaN (null in the file) for a skipped step
};

/// What the current run allows a checkpoint to hold.
struct TrainerStateBounds {
  int64_t max_steps = std::numeric_limits<int64_t>::max();  ///< the run's optimizer steps
  std::string max_steps_from = "max_steps";                 ///< the config key that set it
  int64_t examples = std::numeric_limits<int64_t>::max();   ///< training examples
  int64_t legacy_batch = 1;  ///< the batch of batch_pos in a file without epoch_samples
  /// Checkpoint folders are named checkpoint-<global_step>; -1: no name to match.
  int64_t folder_step = -1;
};

/// Parses and validates the text of a trainer_state.json (bounded by parse_json). Throws
/// FormatError naming `source`, the field, the value and what was expected for a wrongly typed,
/// missing, unknown or inconsistent field (a negative step, step_losses of another length than
/// global_step, an epoch past the step count); ConfigError when the file does not fit the current
/// run (global_step past `b.max_steps`, a position past `b.examples`).
TrainerState parse_trainer_state(std::string_view text, const std::string& source, const TrainerStateBounds& b = {});

/// read_file + parse_trainer_state; when the file's folder is named checkpoint-N, global_step must
/// be N.
TrainerState read_trainer_state(const std::string& path, TrainerStateBounds b = {});

/// The JSON save_checkpoint writes (a NaN loss becomes null: JSON has no NaN).
nlohmann::json trainer_state_json(const TrainerState& s);

}  // namespace peft::train
