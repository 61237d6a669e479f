#pragma once
// Shared helpers for the test executables (torch-free).
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <filesystem>
#include <string>
#include <vector>

#include "peft/io/safetensors.h"
#include "peft/train/data.h"

namespace peft::test {

/// tests/fixtures/<rel>
inline std::string fixture(const std::string& rel) { return std::string(PEFT_FIXTURES_DIR) + "/" + rel; }

/// The repository root.
inline std::string source_path(const std::string& rel) { return std::string(PEFT_SOURCE_DIR) + "/" + rel; }

/// A fresh, empty temporary folder for one test.
inline std::string tmp_dir(const std::string& name) {
  auto d = std::filesystem::temp_directory_path() / ("peft_test_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d.string();
}

/// The elements of a safetensors tensor as T (the file's own element type).
template <typename T>
std::vector<T> values(const peft::io::SafetensorsFile& f, const std::string& key) {
  const auto& t = f.at(key);
  std::vector<T> v(t.nbytes() / sizeof(T));
  std::memcpy(v.data(), t.data, t.nbytes());
  return v;
}

/// Runs `fn`, expects it to throw `Exc`, and checks that what() contains every fragment.
template <typename Exc, typename Fn>
void expect_throw_with(Fn&& fn, std::initializer_list<std::string> fragments) {
  try {
    fn();
    ADD_FAILURE() << "expected an exception, none was thrown";
  } catch (const Exc& e) {
    const std::string what = e.what();
    for (const auto& f : fragments)
      EXPECT_NE(what.find(f), std::string::npos) << "message '" << what << "' lacks '" << f << "'";
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type: " << e.what();
  }
}

/// 22 causal-LM examples of 4..15 tokens (ids 3..62, first label -100), the same every run: a
/// batch of 6 and two of 3 pad differently.
inline peft::train::Dataset tiny_causal_dataset() {
  peft::train::Dataset d;
  std::mt19937_64 rng(7);
  for (int i = 0; i < 22; ++i) {
    peft::train::Example e;
    const int len = 4 + static_cast<int>(rng() % 12);
    for (int t = 0; t < len; ++t) e.input_ids.push_back(3 + static_cast<int64_t>(rng() % 60));
    e.labels = e.input_ids;
    e.labels[0] = -100;
    d.examples.push_back(e);
  }
  return d;
}

}  // namespace peft::test
