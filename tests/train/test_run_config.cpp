// Run configs (train/run_config): run keys, the method's own PEFT keys parsed by its registry row,
// the qlora / p_tuning_v2 variants, and the errors a user sees.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "peft/core/error.h"
#include "peft/train/run_config.h"
#include "peft/tuners/adalora/config.h"
#include "peft/tuners/lora/config.h"
#include "peft/tuners/prefix_tuning/config.h"
#include "peft/tuners/prompt_tuning/config.h"
#include "peft/tuners/registry.h"

namespace {

namespace fs = std::filesystem;
using peft::train::load_run_config;

std::string yaml_file(const std::string& name, const std::string& text) {
  const fs::path p = fs::path(PEFT_TEST_OUTPUT_DIR) / "run_config" / name;
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
  return p.string();
}

std::string error_of(const std::string& path, const std::vector<std::string>& overrides) {
  try {
    load_run_config(path, overrides);
  } catch (const peft::ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(RunConfig, MethodKeysGoToTheMethodsOwnParser) {
  const auto p = yaml_file("lora.yaml",
                           "model: m\nmethod: lora\nr: 4\nlora_alpha: 12\ntarget_modules: [q_proj, v_proj]\n"
                           "init_lora_weights: gaussian\nnum_virtual_tokens: 7\nlearning_rate: 0.001\n");
  const auto c = load_run_config(p, {"lora_dropout=0.05"});
  const auto& l = dynamic_cast<const peft::LoraConfig&>(*c.peft);
  EXPECT_EQ(l.peft_type, peft::PeftType::Lora);
  EXPECT_EQ(l.task_type, peft::TaskType::CausalLM);
  EXPECT_EQ(l.r, 4);
  EXPECT_DOUBLE_EQ(l.lora_alpha, 12);
  EXPECT_DOUBLE_EQ(l.lora_dropout, 0.05);
  EXPECT_EQ(l.init_lora_weights, "gaussian");
  ASSERT_TRUE(l.target_modules.is_list());
  EXPECT_EQ(l.target_modules.list(), (std::vector<std::string>{"q_proj", "v_proj"}));
  EXPECT_DOUBLE_EQ(c.args.learning_rate, 0.001);
  // The same file runs another method: its keys apply, the LoRA ones are left to LoRA.
  const auto pt = load_run_config(p, {"method=prompt_tuning", "task=seq_cls"});
  const auto& t = dynamic_cast<const peft::PromptTuningConfig&>(*pt.peft);
  EXPECT_EQ(t.num_virtual_tokens, 7);
  EXPECT_EQ(t.task_type, peft::TaskType::SeqCls);
}

TEST(RunConfig, VariantsAndRunDerivedDefaults) {
  const auto p = yaml_file("variants.yaml", "model: m\nmax_steps: 30\nnum_virtual_tokens: 5\n");
  const auto q = load_run_config(p, {"method=qlora"});
  EXPECT_TRUE(q.load_in_4bit);
  const auto& ql = dynamic_cast<const peft::LoraConfig&>(*q.peft);
  ASSERT_TRUE(ql.target_modules.is_regex());
  EXPECT_EQ(ql.target_modules.regex(), "all-linear");
  const auto v2 = load_run_config(p, {"method=p_tuning_v2"});
  const auto& pf = dynamic_cast<const peft::PrefixTuningConfig&>(*v2.peft);
  EXPECT_EQ(pf.peft_type, peft::PeftType::PrefixTuning);
  EXPECT_DOUBLE_EQ(pf.prefix_dropout, 0.1);
  EXPECT_DOUBLE_EQ(dynamic_cast<const peft::PrefixTuningConfig&>(
                       *load_run_config(p, {"method=p_tuning_v2", "prefix_dropout=0.2"}).peft).prefix_dropout, 0.2);
  const auto ada = load_run_config(p, {"method=adalora", "init_r=6", "target_r=2"});
  const auto& a = dynamic_cast<const peft::AdaLoraConfig&>(*ada.peft);
  EXPECT_EQ(a.total_step, 30);  // total_step follows max_steps
  EXPECT_EQ(a.init_r, 6);
}

TEST(RunConfig, EveryRegisteredMethodIsARunMethod) {
  const auto methods = peft::train::run_methods();
  for (const auto& row : peft::tuner_rows())
    EXPECT_NE(std::find(methods.begin(), methods.end(), row.name), methods.end()) << row.name;
}

TEST(RunConfig, ErrorsNameTheKey) {
  const auto p = yaml_file("errors.yaml", "model: m\nmax_steps: 10\n");
  EXPECT_NE(error_of(p, {"learning_rat=0.1"}).find("unknown key 'learning_rat'"), std::string::npos);
  EXPECT_NE(error_of(p, {"method=lorra"}).find("'lorra' is not one of lora"), std::string::npos);
  EXPECT_NE(error_of(p, {"r=eight"}).find("'r'"), std::string::npos);
  EXPECT_NE(error_of(p, {"learning_rate=fast"}).find("key 'learning_rate': expected a number"), std::string::npos);
  EXPECT_NE(error_of(p, {"bias=some"}).find("bias"), std::string::npos);  // LoraConfig's own validation
  EXPECT_NE(error_of(p, {"task=regression"}).find("key 'task'"), std::string::npos);
  EXPECT_NE(error_of(yaml_file("no_model.yaml", "r: 4\n"), {}).find("key 'model'"), std::string::npos);
  EXPECT_NE(error_of(p, {"method=adalora", "max_steps=-1"}).find("total_step"), std::string::npos);
}

// Hostile YAML found by tests/fuzz/fuzz_yaml_config: each is one ConfigError naming the key or
// the line, where before a byte that is not UTF-8 reached nlohmann's dump (type_error 316 when
// the adapter config is written), a list used as a key escaped as yaml-cpp's "bad conversion",
// aliases repeating a list ten times per level hung the reader expanding 10^8 values, and an
// alias inside its own anchor recursed until the stack overflowed.
TEST(RunConfig, HostileYamlIsOneErrorNamingTheKey) {
  EXPECT_NE(error_of(yaml_file("latin1.yaml", "model: m\ntarget_modules: caf\xe9\n"), {})
                .find("not valid UTF-8 at line 2"),
            std::string::npos);
  EXPECT_NE(error_of(yaml_file("list_key.yaml", "model: m\n[a, b]: 1\n"), {}).find("a key must be a name, got a list"),
            std::string::npos);
  std::string bomb = "model: m\ntarget_modules:\n  - &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n";
  for (char c = 'b'; c <= 'h'; ++c) {
    const std::string prev = std::string(1, static_cast<char>(c - 1));
    bomb += std::string("  - &") + c + " [*" + prev;
    for (int i = 1; i < 10; ++i) bomb += ", *" + prev;
    bomb += "]\n";
  }
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_NE(error_of(yaml_file("bomb.yaml", bomb), {}).find("key 'target_modules': more than"), std::string::npos);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  EXPECT_NE(error_of(yaml_file("self_alias.yaml", "model: m\ntarget_modules: &a [q_proj, *a]\n"), {})
                .find("key 'target_modules': nested deeper than"),
            std::string::npos);
  EXPECT_NE(error_of(yaml_file("task_list.yaml", "model: m\ntask: seq_cls\ntasks:\n  - name: a\n    train_file: [x, y]\n"),
                     {})
                .find("key 'train_file' takes one value, got a list"),
            std::string::npos);
}

TEST(RunConfig, RelativePathsInAFileAreRelativeToItsFolder) {
  const fs::path dir = fs::path(PEFT_TEST_OUTPUT_DIR) / "run_config" / "rel";
  fs::create_directories(dir / "data");
  std::ofstream(dir / "data" / "t.csv") << "text\nx\n";
  const auto p = yaml_file("rel/run.yaml",
                           "model: ../models/m\ntrain_file: data/t.csv\neval_file: /abs/dev.csv\noutput_dir: out\n"
                           "task: seq_cls\ntasks:\n  - {name: a, train_file: data/a.csv}\n");
  const auto c = load_run_config(p);
  EXPECT_EQ(fs::path(c.model), (dir / ".." / "models" / "m").lexically_normal());
  EXPECT_EQ(fs::path(c.train_file), dir / "data" / "t.csv");
  EXPECT_EQ(c.eval_file, "/abs/dev.csv");  // absolute paths are kept
  EXPECT_EQ(fs::path(c.args.output_dir), dir / "out");
  EXPECT_EQ(fs::path(peft::train::task_config(c, c.tasks.at(0)).train_file), dir / "data" / "a.csv");
  // Overrides are relative to the working directory, as typed.
  const auto o = load_run_config(p, {"train_file=data/other.csv", "output_dir=runs/x"});
  EXPECT_EQ(o.train_file, "data/other.csv");
  EXPECT_EQ(o.args.output_dir, "runs/x");
}

TEST(RunConfig, AConfigWrittenForTheWorkingDirectorySaysHowToFixIt) {
  // The file names a path that exists from the working directory but not from its own folder.
  const fs::path cwd_file = fs::current_path() / "run_config_cwd_data.csv";
  std::ofstream(cwd_file) << "text\nx\n";
  const auto p = yaml_file("sub/cwd.yaml", "model: m\ntrain_file: run_config_cwd_data.csv\n");
  const std::string e = error_of(p, {});
  EXPECT_NE(e.find("key 'train_file'"), std::string::npos) << e;
  EXPECT_NE(e.find("relative to its folder"), std::string::npos) << e;
  EXPECT_NE(e.find("train_file=run_config_cwd_data.csv on the command line"), std::string::npos) << e;
  // The suggested spelling for the file works.
  const auto at = e.find("write train_file: ");
  ASSERT_NE(at, std::string::npos) << e;
  const std::string fixed = e.substr(at + 18, e.find(' ', at + 18) - at - 18);
  const auto c = load_run_config(yaml_file("sub/cwd_fixed.yaml", "model: m\ntrain_file: " + fixed + "\n"));
  EXPECT_TRUE(fs::equivalent(c.train_file, cwd_file)) << c.train_file;
  fs::remove(cwd_file);
}

TEST(RunConfig, EveryExampleConfigLoads) {
  // Every key of every example config is known and valid (the compare section aside).
  int n = 0;
  for (const auto& e : fs::directory_iterator(fs::path(PEFT_SOURCE_DIR) / "examples" / "configs")) {
    const std::string name = e.path().filename().string();
    if (name.rfind("compare_", 0) == 0) continue;
    SCOPED_TRACE(name);
    const auto c = load_run_config(e.path().string());
    ASSERT_NE(c.peft, nullptr);
    // Its data files are found from any working directory (the repository's own ones; the
    // ../shared data sets are outside it).
    std::vector<std::string> files = {c.train_file, c.eval_file};
    for (const auto& t : c.tasks) {
      const auto tc = peft::train::task_config(c, t);
      files.insert(files.end(), {tc.train_file, tc.eval_file});
    }
    for (const auto& f : files)
      if (!f.empty() && f.find("shared") == std::string::npos)
        EXPECT_TRUE(fs::exists(f)) << f << " (relative paths in a config are relative to its folder)";
    const auto& row = peft::tuner_row(c.peft->peft_type);
    EXPECT_TRUE(c.method == row.name || c.method == "qlora" || c.method == "p_tuning_v2") << c.method;
    ++n;
  }
  EXPECT_GE(n, 15);
}

}  // namespace
