// trainer_state.json: one reader that types and bounds every field before a resume uses it.
// Mirrors transformers/trainer_callback.py: TrainerState.load_from_json (cls(**json.loads(text)):
// missing optional fields take their defaults, an unknown field is refused).
#include "peft/train/trainer_state.h"

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "peft/core/error.h"
#include "peft/core/file_util.h"
#include "peft/core/json_file.h"

namespace peft::train {

using nlohmann::json;

namespace {

constexpr const char* kFields[] = {"global_step", "epoch",      "batch_pos",  "epoch_samples",
                                   "epoch_order_batch", "world_size", "step_losses", "total_steps"};
constexpr const char* kFieldList =
    "global_step, epoch, step_losses, epoch_samples, epoch_order_batch, batch_pos, world_size, total_steps";

// A flat object holding one array of numbers: shallow by construction. The bytes bound a run of
// millions of steps (about 20 bytes a loss).
JsonLimits limits() {
  JsonLimits l;
  l.max_bytes = std::size_t{256} << 20;
  l.max_depth = 8;
  return l;
}

// A JSON value as the error shows it: escaped to ASCII, at most 40 characters.
std::string show(const json& v) {
  std::string s = v.dump(-1, ' ', /*ensure_ascii=*/true, json::error_handler_t::replace);
  if (s.size() > 40) s = s.substr(0, 37) + "...";
  return s;
}

std::string kind(const json& v) {
  if (v.is_number_float()) return "the number " + show(v);
  if (v.is_object()) return "an object";
  if (v.is_array()) return "an array";
  return show(v);
}

class Reader {
 public:
  Reader(const json& j, const std::string& src) : j_(j), src_(src) {}

  [[noreturn]] void fail(const std::string& field, const std::string& is, const std::string& expected,
                         bool config = false) const {
    const std::string m = "[trainer_state] " + src_ + ": field '" + field + "' is " + is + "; expected " + expected;
    if (config) throw ConfigError(m);
    throw FormatError(m);
  }

  bool has(const char* f) const { return j_.contains(f); }

  /// An integer field in [lo, hi]; below lo is a damaged file, above hi (when `hi_is_config`) does
  /// not fit the current run.
  int64_t integer(const char* f, int64_t lo, int64_t hi, const std::string& range, bool hi_is_config = false) const {
    if (!has(f)) fail(f, "missing", "an integer " + range);
    const json& v = j_.at(f);
    if (!v.is_number_integer()) fail(f, kind(v), "an integer " + range);
    if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      fail(f, show(v), "an integer " + range, hi_is_config);
    const auto x = v.get<int64_t>();
    if (x < lo) fail(f, std::to_string(x), "an integer " + range);
    if (x > hi) fail(f, std::to_string(x), "an integer " + range, hi_is_config);
    return x;
  }

 private:
  const json& j_;
  const std::string& src_;
};

std::string in(int64_t lo, int64_t hi) { return "in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]"; }

}  // namespace

TrainerState parse_trainer_state(std::string_view text, const std::string& source, const TrainerStateBounds& b) {
  const json j = parse_json(text, source, limits());
  if (!j.is_object())
    throw FormatError("[trainer_state] " + source + ": the document is " + kind(j) + "; expected an object with " +
                      kFieldList);
  for (const auto& item : j.items()) {
    bool known = false;
    for (const char* f : kFields) known = known || item.key() == f;
    if (!known)
      throw FormatError("[trainer_state] " + source + ": unknown field " + show(json(item.key())) +
                        "; expected only " + kFieldList);
  }
  const Reader r(j, source);
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  TrainerState s;
  const int64_t max_steps = std::max<int64_t>(0, b.max_steps);
  s.global_step = r.integer("global_step", 0, max_steps,
                            in(0, max_steps) + " (the run's optimizer steps, " + b.max_steps_from + ")",
                            /*hi_is_config=*/true);
  if (b.folder_step >= 0 && s.global_step != b.folder_step)
    r.fail("global_step", std::to_string(s.global_step),
           std::to_string(b.folder_step) + ", the step of the folder's name checkpoint-" + std::to_string(b.folder_step));
  // Every finished epoch held at least one optimizer step.
  s.epoch = r.integer("epoch", 0, s.global_step, in(0, s.global_step) + " (at most global_step)");
  if (r.has("total_steps"))
    s.total_steps = r.integer("total_steps", s.global_step, kMax, ">= global_step (" + std::to_string(s.global_step) + ")");
  if (r.has("world_size")) s.world_size = r.integer("world_size", 1, 1 << 20, in(1, 1 << 20));

  // The position in the epoch's order: epoch_samples examples of an order drawn with
  // epoch_order_batch; old single-process files only have batch_pos batches of legacy_batch.
  const int64_t examples = std::max<int64_t>(0, b.examples);
  const std::string past = in(0, examples) + " (the training examples)";
  if (r.has("epoch_samples") || !r.has("batch_pos")) {
    s.epoch_samples = r.integer("epoch_samples", 0, examples, past, /*hi_is_config=*/true);
    s.epoch_order_batch = r.integer("epoch_order_batch", 1, int64_t{1} << 31, in(1, int64_t{1} << 31) + " (a batch size)");
    if (r.has("batch_pos")) s.batch_pos = r.integer("batch_pos", 0, kMax, ">= 0");
  } else {
    const int64_t legacy = std::max<int64_t>(1, b.legacy_batch);
    s.batch_pos = r.integer("batch_pos", 0, examples / legacy,
                            in(0, examples / legacy) + " (batches of " + std::to_string(legacy) +
                                " within the training examples)",
                            /*hi_is_config=*/true);
    if (r.has("epoch_order_batch")) r.fail("epoch_order_batch", "given without epoch_samples", "both or neither");
    s.epoch_samples = s.batch_pos * legacy;
    s.epoch_order_batch = legacy;
  }

  const std::string losses = "an array of global_step (" + std::to_string(s.global_step) + ") losses, numbers or null";
  if (!r.has("step_losses")) r.fail("step_losses", "missing", losses);
  const json& l = j.at("step_losses");
  if (!l.is_array()) r.fail("step_losses", kind(l), losses);
  if (static_cast<int64_t>(l.size()) != s.global_step)
    r.fail("step_losses", "an array of " + std::to_string(l.size()), losses);
  s.step_losses.reserve(l.size());
  for (std::size_t i = 0; i < l.size(); ++i) {
    const json& v = l[i];
    if (v.is_null()) s.step_losses.push_back(std::nan(""));  // a skipped non-finite step
    else if (v.is_number() && std::isfinite(v.get<double>())) s.step_losses.push_back(v.get<double>());
    else r.fail("step_losses[" + std::to_string(i) + "]", kind(v), "a finite number or null");
  }
  return s;
}

TrainerState read_trainer_state(const std::string& path, TrainerStateBounds b) {
  namespace fs = std::filesystem;
  const std::string folder = fs::path(path).parent_path().filename().string();
  const std::string prefix = "checkpoint-";
  if (b.folder_step < 0 && folder.size() > prefix.size() && folder.size() <= prefix.size() + 18 &&
      folder.rfind(prefix, 0) == 0 && folder.find_first_not_of("0123456789", prefix.size()) == std::string::npos)
    b.folder_step = std::stoll(folder.substr(prefix.size()));
  return parse_trainer_state(read_file(path, limits().max_bytes), path, b);
}

json trainer_state_json(const TrainerState& s) {
  json losses = json::array();
  for (double l : s.step_losses) losses.push_back(std::isfinite(l) ? json(l) : json(nullptr));
  json j = {{"global_step", s.global_step},       {"epoch", s.epoch},
            {"batch_pos", s.batch_pos},           {"epoch_samples", s.epoch_samples},
            {"epoch_order_batch", s.epoch_order_batch}, {"world_size", s.world_size},
            {"step_losses", losses}};
  if (s.total_steps > 0) j["total_steps"] = s.total_steps;  // 0: not recorded
  return j;
}

}  // namespace peft::train
