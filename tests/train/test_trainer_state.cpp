// trainer_state.json: every field typed and bounded before a resume uses it; the files peft train
// writes (tests/fuzz/corpus_trainer_state) read back.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "peft/core/error.h"
#include "peft/core/file_util.h"
#include "peft/train/trainer_state.h"
#include "test_utils.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using peft::ConfigError;
using peft::FormatError;
using peft::test::expect_throw_with;
using peft::train::parse_trainer_state;
using peft::train::TrainerStateBounds;

// A file as save_checkpoint writes it at step 4 of 10.
json good() {
  return {{"global_step", 4},        {"epoch", 1},       {"batch_pos", 2},     {"epoch_samples", 16},
          {"epoch_order_batch", 8}, {"world_size", 1},  {"total_steps", 10},
          {"step_losses", {4.5, 4.2, 3.9, 3.1}}};
}

TrainerStateBounds bounds() {
  TrainerStateBounds b;
  b.max_steps = 10;
  b.examples = 40;
  b.legacy_batch = 8;
  return b;
}

peft::train::TrainerState parse(const json& j, const TrainerStateBounds& b = bounds()) {
  return parse_trainer_state(j.dump(), "ck/trainer_state.json", b);
}

TEST(TrainerState, FilesPeftTrainWroteReadBack) {
  int n = 0;
  for (const auto& e : fs::directory_iterator(peft::test::source_path("tests/fuzz/corpus_trainer_state"))) {
    const auto st = parse_trainer_state(peft::read_file(e.path().string()), e.path().string());
    EXPECT_GT(st.global_step, 0) << e.path();
    EXPECT_EQ(static_cast<int64_t>(st.step_losses.size()), st.global_step) << e.path();
    EXPECT_GT(st.epoch_order_batch, 0) << e.path();
    ++n;
  }
  EXPECT_GE(n, 2);
}

TEST(TrainerState, RoundTripKeepsEveryFieldAndSkippedSteps) {
  peft::train::TrainerState s;
  s.global_step = 3;
  s.epoch = 0;
  s.batch_pos = 3;
  s.epoch_samples = 24;
  s.epoch_order_batch = 8;
  s.world_size = 2;
  s.total_steps = 10;
  s.step_losses = {4.0, std::nan(""), 3.5};  // a step skipped by on_nonfinite: skip
  const json j = peft::train::trainer_state_json(s);
  EXPECT_TRUE(j["step_losses"][1].is_null());
  const auto r = parse(j);
  EXPECT_EQ(r.global_step, 3);
  EXPECT_EQ(r.epoch_samples, 24);
  EXPECT_EQ(r.epoch_order_batch, 8);
  EXPECT_EQ(r.world_size, 2);
  EXPECT_EQ(r.total_steps, 10);
  ASSERT_EQ(r.step_losses.size(), 3u);
  EXPECT_EQ(r.step_losses[0], 4.0);
  EXPECT_TRUE(std::isnan(r.step_losses[1]));
}

TEST(TrainerState, GlobalStepOutsideTheRunIsRefusedWithTheRange) {
  json j = good();
  j["global_step"] = -3;
  expect_throw_with<FormatError>([&] { parse(j); },
                                 {"ck/trainer_state.json", "'global_step'", "-3", "[0, 10]", "max_steps"});
  j["global_step"] = 12;
  j["step_losses"] = std::vector<double>(12, 1.0);
  // A checkpoint of a longer run than the current config: the config does not fit it.
  expect_throw_with<ConfigError>([&] { parse(j); }, {"ck/trainer_state.json", "'global_step'", "12", "[0, 10]"});
  TrainerStateBounds b = bounds();
  b.max_steps_from = "num_train_epochs";
  expect_throw_with<ConfigError>([&] { parse(j, b); }, {"num_train_epochs"});
  j["global_step"] = json::number_unsigned_t{18446744073709551615u};
  expect_throw_with<ConfigError>([&] { parse(j); }, {"'global_step'", "18446744073709551615"});
  // The last step itself is a complete run: resuming it trains nothing more.
  j = good();
  j["global_step"] = 10;
  j["step_losses"] = std::vector<double>(10, 1.0);
  EXPECT_EQ(parse(j).global_step, 10);
}

TEST(TrainerState, EveryFieldIsTyped) {
  for (const char* f : {"global_step", "epoch", "epoch_samples", "epoch_order_batch", "world_size", "total_steps"}) {
    for (const json& bad : {json("4"), json(4.5), json(true), json(nullptr), json::array(), json::object()}) {
      json j = good();
      j[f] = bad;
      expect_throw_with<FormatError>([&] { parse(j); }, {std::string("'") + f + "'", "an integer"});
    }
  }
  json j = good();
  j["step_losses"] = "4.5";
  expect_throw_with<FormatError>([&] { parse(j); }, {"'step_losses'", "\"4.5\"", "array of global_step (4)"});
  j["step_losses"] = {4.5, "x", 3.9, 3.1};
  expect_throw_with<FormatError>([&] { parse(j); }, {"'step_losses[1]'", "\"x\"", "finite number or null"});
  j["step_losses"] = {4.5, {1}, 3.9, 3.1};
  expect_throw_with<FormatError>([&] { parse(j); }, {"'step_losses[1]'", "an array"});
}

TEST(TrainerState, FieldsMustAgree) {
  json j = good();
  j["step_losses"] = {4.5, 4.2};
  expect_throw_with<FormatError>([&] { parse(j); }, {"'step_losses'", "an array of 2", "global_step (4)"});
  j = good();
  j["epoch"] = 5;  // each finished epoch holds a step at least
  expect_throw_with<FormatError>([&] { parse(j); }, {"'epoch'", "5", "[0, 4]"});
  j = good();
  j["total_steps"] = 3;
  expect_throw_with<FormatError>([&] { parse(j); }, {"'total_steps'", "3", ">= global_step (4)"});
  j = good();
  j["epoch_order_batch"] = 0;
  expect_throw_with<FormatError>([&] { parse(j); }, {"'epoch_order_batch'", "0", "[1, "});
  j = good();
  j["epoch_samples"] = 41;  // the data set has 40 examples
  expect_throw_with<ConfigError>([&] { parse(j); }, {"'epoch_samples'", "41", "[0, 40]", "training examples"});
  j = good();
  j["world_size"] = 0;
  expect_throw_with<FormatError>([&] { parse(j); }, {"'world_size'", "0"});
}

TEST(TrainerState, MissingAndUnknownFieldsAsTransformersTreatsThem) {
  // Optional fields take their defaults.
  json j = good();
  j.erase("world_size");
  j.erase("total_steps");
  j.erase("batch_pos");
  const auto s = parse(j);
  EXPECT_EQ(s.world_size, 1);
  EXPECT_EQ(s.total_steps, 0);
  // Required ones are named.
  for (const char* f : {"global_step", "epoch", "step_losses", "epoch_order_batch"}) {
    json k = good();
    k.erase(f);
    expect_throw_with<FormatError>([&] { parse(k); }, {std::string("'") + f + "' is missing"});
  }
  // Files from before data-parallel support: batch_pos batches of the per-device batch size.
  j = good();
  j.erase("epoch_samples");
  j.erase("epoch_order_batch");
  const auto legacy = parse(j);
  EXPECT_EQ(legacy.epoch_samples, 16);
  EXPECT_EQ(legacy.epoch_order_batch, 8);
  j["batch_pos"] = 6;  // 48 examples of 40
  expect_throw_with<ConfigError>([&] { parse(j); }, {"'batch_pos'", "6", "[0, 5]"});
  j.erase("batch_pos");
  expect_throw_with<FormatError>([&] { parse(j); }, {"'epoch_samples' is missing"});
  // An unknown field is refused, as TrainerState(**json) refuses it.
  j = good();
  j["global_steps"] = 4;
  expect_throw_with<FormatError>([&] { parse(j); }, {"unknown field \"global_steps\"", "expected only global_step"});
}

TEST(TrainerState, NotAnObjectOrNotJsonNamesTheFile) {
  expect_throw_with<FormatError>([] { parse_trainer_state("[1, 2]", "ck/trainer_state.json"); },
                                 {"ck/trainer_state.json", "an array", "expected an object"});
  expect_throw_with<FormatError>([] { parse_trainer_state("{\"global_step\": 4,", "ck/trainer_state.json"); },
                                 {"ck/trainer_state.json", "not valid JSON"});
  expect_throw_with<FormatError>([] { parse_trainer_state("", "ck/trainer_state.json"); }, {"ck/trainer_state.json"});
  expect_throw_with<FormatError>(
      [] { parse_trainer_state(std::string(100, '[') + std::string(100, ']'), "ck/trainer_state.json"); },
      {"ck/trainer_state.json", "nested deeper"});
}

TEST(TrainerState, TheFolderNameIsTheStep) {
  const auto dir = peft::test::tmp_dir("trainer_state") + "/checkpoint-6";
  fs::create_directories(dir);
  peft::write_file_atomic(dir + "/trainer_state.json", good().dump());
  expect_throw_with<FormatError>([&] { peft::train::read_trainer_state(dir + "/trainer_state.json", bounds()); },
                                 {dir + "/trainer_state.json", "'global_step' is 4", "checkpoint-6"});
  fs::rename(dir, fs::path(dir).parent_path() / "checkpoint-4");
  const auto ok = fs::path(dir).parent_path() / "checkpoint-4" / "trainer_state.json";
  EXPECT_EQ(peft::train::read_trainer_state(ok.string(), bounds()).global_step, 4);
  expect_throw_with<FormatError>(
      [&] { peft::train::read_trainer_state((fs::path(dir).parent_path() / "missing.json").string()); },
      {"missing.json"});
}

}  // namespace
