// Whole-folder outputs: written beside their place, put there only when complete, an existing
// output replaced in one step, nothing left behind by a failure.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <stdexcept>

#include "peft/core/error.h"
#include "peft/core/file_util.h"
#include "test_utils.h"

namespace {

namespace fs = std::filesystem;
using peft::test::expect_throw_with;

std::vector<std::string> entries(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

TEST(WriteFolder, ReplaceFolderSwapsTheWholeFolder) {
  const auto root = peft::test::tmp_dir("replace_folder");
  fs::create_directories(root + "/new");
  peft::write_file_atomic(root + "/new/b.json", "new");
  peft::replace_folder(root + "/new", root + "/out");  // no output yet: a rename
  EXPECT_EQ(entries(root), std::vector<std::string>{"out"});
  fs::create_directories(root + "/new2");
  peft::write_file_atomic(root + "/new2/c.json", "newer");
  peft::replace_folder(root + "/new2", root + "/out");  // the old output goes, b.json with it
  EXPECT_EQ(entries(root), std::vector<std::string>{"out"});
  EXPECT_EQ(entries(root + "/out"), std::vector<std::string>{"c.json"});
  EXPECT_THROW(peft::replace_folder(root + "/missing", root + "/out"), std::runtime_error);
  EXPECT_EQ(entries(root + "/out"), std::vector<std::string>{"c.json"});
}

TEST(WriteFolder, AFailureLeavesNoTempFolderAndTheOldOutput) {
  const auto root = peft::test::tmp_dir("write_folder_fail");
  const std::string out = root + "/merged";
  peft::write_folder_atomic("merge", out, peft::is_model_folder_file, [](const std::string& tmp) {
    peft::write_file_atomic(tmp + "/config.json", "{\"v\": 1}");
  });
  EXPECT_EQ(entries(root), std::vector<std::string>{"merged"});
  std::string seen;
  EXPECT_THROW(peft::write_folder_atomic("merge", out, peft::is_model_folder_file,
                                         [&](const std::string& tmp) {
                                           seen = tmp;
                                           peft::write_file_atomic(tmp + "/model.safetensors", "half");
                                           throw std::runtime_error("disk full");
                                         }),
               std::runtime_error);
  EXPECT_EQ(fs::path(seen).filename().string(), ".merged.tmp-" + std::to_string(::getpid()));
  EXPECT_EQ(entries(root), std::vector<std::string>{"merged"});
  EXPECT_EQ(entries(out), std::vector<std::string>{"config.json"});
  EXPECT_EQ(peft::read_file(out + "/config.json"), "{\"v\": 1}");
  // Complete: the previous output is replaced as a whole (its config.json is gone).
  peft::write_folder_atomic("merge", out + "/", peft::is_model_folder_file, [](const std::string& tmp) {
    peft::write_file_atomic(tmp + "/model.safetensors", "weights");
  });
  EXPECT_EQ(entries(root), std::vector<std::string>{"merged"});
  EXPECT_EQ(entries(out), std::vector<std::string>{"model.safetensors"});
}

TEST(WriteFolder, AFolderHoldingOtherThingsIsNotReplaced) {
  const auto root = peft::test::tmp_dir("write_folder_foreign");
  const std::string out = root + "/out";
  fs::create_directories(out + "/sub");
  peft::write_file_atomic(out + "/config.json", "{}");
  bool ran = false;
  auto body = [&](const std::string&) { ran = true; };
  expect_throw_with<peft::ConfigError>([&] { peft::write_folder_atomic("convert", out, peft::is_model_folder_file, body); },
                                       {"[convert] output " + out, "holds sub", "replaced as a whole"});
  fs::remove(out + "/sub");
  peft::write_file_atomic(out + "/notes.txt", "mine");
  expect_throw_with<peft::ConfigError>([&] { peft::write_folder_atomic("convert", out, peft::is_model_folder_file, body); },
                                       {"holds notes.txt", "remove " + out + " first"});
  EXPECT_FALSE(ran);
  EXPECT_EQ(entries(out), (std::vector<std::string>{"config.json", "notes.txt"}));
  peft::write_file_atomic(root + "/file", "x");
  expect_throw_with<peft::ConfigError>([&] { peft::write_folder_atomic("merge", root + "/file", peft::is_model_folder_file, body); },
                                       {root + "/file is a file"});
  // The current folder, or one holding it.
  const fs::path cwd = fs::current_path();
  fs::current_path(out);
  fs::remove(out + "/notes.txt");
  expect_throw_with<peft::ConfigError>([&] { peft::write_folder_atomic("merge", ".", peft::is_model_folder_file, body); },
                                       {"output . is the current folder or holds it"});
  fs::current_path(cwd);
  EXPECT_FALSE(ran);
  EXPECT_EQ(entries(out), std::vector<std::string>{"config.json"});
}

TEST(WriteFolder, TempFoldersOfEndedProcessesAreRemoved) {
  const auto root = peft::test::tmp_dir("write_folder_stale");
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ASSERT_GT(child, 0);
  ASSERT_EQ(::waitpid(child, nullptr, 0), child);  // a pid that no longer runs
  const std::string dead = ".out.tmp-" + std::to_string(child);
  for (const std::string n : {dead, std::string(".out.tmp-1"), std::string(".out.tmp-x"), std::string(".other.tmp-") +
                                                                                             std::to_string(child)})
    fs::create_directories(root + "/" + n + "/sub");
  peft::write_folder_atomic("convert", root + "/out", peft::is_model_folder_file,
                            [](const std::string& tmp) { peft::write_file_atomic(tmp + "/config.json", "{}"); });
  EXPECT_FALSE(fs::exists(root + "/" + dead));
  for (const std::string n : {std::string(".out.tmp-1"), std::string(".out.tmp-x"), ".other.tmp-" + std::to_string(child)})
    EXPECT_TRUE(fs::exists(root + "/" + n)) << n;  // a running process's, or not such a name
}

TEST(WriteFolder, ModelFolderFiles) {
  for (const char* f : {"config.json", "model.safetensors", "model-00001-of-00002.safetensors",
                        "model.safetensors.index.json", "tokenizer.json", "tokenizer.bin", "tokenizer.model",
                        "generation_config.json", ".model.safetensors.tmp.Ab12Cd"})
    EXPECT_TRUE(peft::is_model_folder_file(f)) << f;
  for (const char* f : {"notes.txt", "adapter_config.json", "model.bin", ".notes.txt.tmp.Ab12Cd", ".config.json.tmp.x",
                        "optimizer.pt", ""})
    EXPECT_FALSE(peft::is_model_folder_file(f)) << f;
}

}  // namespace
