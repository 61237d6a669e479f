#pragma once
// Shared helpers for the test executables (torch-free).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "peft/io/safetensors.h"

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

}  // namespace peft::test
