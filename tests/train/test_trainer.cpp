// The Trainer against a Python PEFT + torch AdamW loop (tests/fixtures/train/trajectory,
// tools/reference/gen_train.py), and exact resume after SIGKILL.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <nlohmann/json.hpp>
#include <random>

#include "../../src/train/trainer_impl.h"
#include "golden.h"
#include "peft/core/file_util.h"
#include "peft/io/tensor_bridge.h"
#include "peft/models/model.h"
#include "peft/peft_model.h"
#include "peft/train/trainer.h"
#include "peft/tuners/full/config.h"
#include "peft/tuners/registry.h"
#include "peft/tuners/lora/config.h"

extern char** environ;

namespace {

namespace fs = std::filesystem;
using peft::test::close;

struct Setup {
  std::shared_ptr<peft::PeftModel> pm;
  peft::train::Dataset data;
  peft::train::TrainingArguments args;
};

/// The data and TrainingArguments of a trajectory fixture (`case_name` under train/).
Setup trajectory_run(const std::string& case_name, const std::string& out) {
  const auto g = peft::test::load_case("train/" + case_name);
  Setup s;
  for (const auto& seq : g.meta["sequences"]) {
    peft::train::Example e;
    e.input_ids = seq.get<std::vector<int64_t>>();
    e.labels = e.input_ids;
    s.data.examples.push_back(e);
  }
  s.args.output_dir = out;
  s.args.learning_rate = g.meta["learning_rate"];
  s.args.warmup_steps = g.meta["warmup_steps"];
  s.args.max_steps = g.meta["steps"];
  s.args.per_device_train_batch_size = g.meta["batch_size"];
  s.args.max_grad_norm = g.meta["max_grad_norm"];
  s.args.weight_decay = g.meta["weight_decay"];
  s.args.lr_scheduler_type = g.meta["lr_scheduler_type"];
  s.args.shuffle = false;
  s.args.logging_steps = 1;
  s.args.progress_bar = false;
  return s;
}

Setup setup(const std::string& out) {
  Setup s = trajectory_run("trajectory", out);
  auto base = peft::models::load_model(peft::test::fixture("models/llama_causal"));
  s.pm = peft::PeftModel::from_pretrained(base, peft::test::load_case("train/trajectory").dir + "/init", "default",
                                          /*is_trainable=*/true);
  return s;
}

TEST(Trainer, TrajectoryMatchesPeftAndTorchAdamW) {
  const auto g = peft::test::load_case("train/trajectory");
  auto s = setup(peft::test::tmp_dir("trajectory"));
  peft::train::Trainer t(s.pm, s.args, s.data, nullptr, 0);
  const auto r = t.train();
  ASSERT_EQ(r.step_losses.size(), 10u);
  EXPECT_TRUE(close(torch::tensor(r.step_losses, at::kDouble), g["losses"], g.atol));
  int n = 0;
  for (const auto& p : s.pm->base_model().named_parameters()) {
    if (p.key().find("lora_") == std::string::npos) continue;
    EXPECT_TRUE(close(p.value(), g["final." + p.key()], g.atol)) << p.key();
    ++n;
  }
  EXPECT_EQ(n, 8);
  EXPECT_TRUE(fs::exists(s.args.output_dir + "/adapter/adapter_model.safetensors"));
  EXPECT_TRUE(fs::exists(s.args.output_dir + "/metrics.jsonl"));
  EXPECT_TRUE(fs::exists(s.args.output_dir + "/loss.png"));
}

// The logged "loss" is transformers' Trainer's: tr_loss summed over the steps since the previous
// log, divided by their number (trainer.py, _maybe_log_save_evaluate), here checked against the
// Python step losses of the trajectory fixture with logging_steps 4 over 10 steps (logs at 4, 8, 10).
TEST(Trainer, LoggedLossIsTheMeanSinceTheLastLog) {
  const auto g = peft::test::load_case("train/trajectory");
  auto s = setup(peft::test::tmp_dir("logged_loss"));
  s.args.logging_steps = 4;
  peft::train::Trainer t(s.pm, s.args, s.data, nullptr, 0);
  t.train();
  const at::Tensor py = g["losses"].to(at::kDouble);
  std::vector<std::pair<int64_t, double>> logged;
  std::ifstream f(s.args.output_dir + "/metrics.jsonl");
  for (std::string line; std::getline(f, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j.contains("loss")) logged.emplace_back(j["step"].get<int64_t>(), j["loss"].get<double>());
  }
  ASSERT_EQ(logged.size(), 3u);
  const std::vector<std::pair<int64_t, int64_t>> windows = {{0, 4}, {4, 8}, {8, 10}};
  double worst = 0;
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(logged[i].first, windows[i].second);
    const double want = py.slice(0, windows[i].first, windows[i].second).mean().item<double>();
    worst = std::max(worst, std::abs(logged[i].second - want));
    EXPECT_NEAR(logged[i].second, want, g.atol) << "step " << logged[i].first;
  }
  RecordProperty("max_abs_diff", std::to_string(worst));
  EXPECT_DOUBLE_EQ(peft::train::logged_train_loss({1, 2, 3, 4, 5}, 5, 2), 5.0);
  EXPECT_DOUBLE_EQ(peft::train::logged_train_loss({1, 2, 3, 4, 5}, 4, 2), 3.5);
  EXPECT_DOUBLE_EQ(peft::train::logged_train_loss({1, 2, 3}, 3, 0), 3.0);
}

// Sentence pairs end to end: examples with BERT's pair layout ([CLS] a [SEP] b [SEP], type ids 0
// then 1) are collated, turned into model inputs and scored by the trainer's eval loss, which
// follows the data's problem type; logits and loss equal transformers' on the same pairs for
// single-label classification, regression (num_labels 1, MSE) and multi-label (float multi-hot,
// BCE) heads (tests/fixtures/models/bert_seqcls*, tools/reference/gen_models_bert.py).
TEST(Trainer, SentencePairsReachBertWithEveryProblemType) {
  namespace pt = peft::train;
  for (const char* name : {"models/bert_seqcls", "models/bert_seqcls_regression", "models/bert_seqcls_multilabel"}) {
    SCOPED_TRACE(name);
    const auto c = peft::test::load_case(name);
    const std::string problem = c.meta["problem_type"];
    const at::Tensor ids = c["input_ids"], types = c["token_type_ids"], mask = c["attention_mask"], y = c["labels"];
    pt::Dataset d;
    if (problem == "regression") d.label_names = {pt::kRegressionLabel};
    else d.label_names = {"a", "b", "c"};
    d.multi_label = problem == "multi_label_classification";
    for (int64_t r = 0; r < ids.size(0); ++r) {
      const int64_t n = mask[r].sum().item<int64_t>();
      pt::Example e;
      for (int64_t t = 0; t < n; ++t) {
        e.input_ids.push_back(ids[r][t].item<int64_t>());
        e.token_type_ids.push_back(types[r][t].item<int64_t>());
      }
      if (problem == "regression") e.label_value = y[r].item<double>();
      else if (d.multi_label) {
        for (int64_t k = 0; k < 3; ++k)
          if (y[r][k].item<double>() > 0.5) e.label_set.push_back(k);
      } else e.label = y[r].item<int64_t>();
      d.examples.push_back(e);
    }
    EXPECT_EQ(pt::problem_type(d), problem);
    const pt::Batch b = pt::collate(d, {0, 1}, 0);
    const auto in = pt::to_model_inputs(b, pt::TaskFormat::SeqCls);
    EXPECT_TRUE(torch::equal(in.token_type_ids, types));
    EXPECT_TRUE(torch::equal(in.input_ids, ids));
    EXPECT_TRUE(close(in.labels.to(at::kFloat), y.to(at::kFloat), 0.0));
    peft::LoraConfig lc;
    lc.target_modules = std::vector<std::string>{"query", "value"};  // B = 0: the base model's outputs
    auto pm = peft::get_peft_model(peft::models::load_model(c.dir), lc);
    pm->base_model().eval();
    torch::NoGradGuard ng;
    auto no_labels = in;
    no_labels.labels = at::Tensor();
    EXPECT_TRUE(close(pm->forward(no_labels).logits, c["logits"], c.atol));
    const auto sum = pt::eval_loss_sum(*pm, d, 0, 2);
    EXPECT_EQ(sum.tokens, 2);
    EXPECT_TRUE(close(torch::tensor({sum.total / 2.0}, at::kDouble).to(at::kFloat), c["loss"], c.atol));
  }
}

TEST(Trainer, LrSchedules) {
  using peft::train::lr_lambda;
  EXPECT_DOUBLE_EQ(lr_lambda("linear", 0, 2, 10), 0.0);
  EXPECT_DOUBLE_EQ(lr_lambda("linear", 1, 2, 10), 0.5);
  EXPECT_DOUBLE_EQ(lr_lambda("linear", 2, 2, 10), 1.0);
  EXPECT_DOUBLE_EQ(lr_lambda("linear", 6, 2, 10), 0.5);
  EXPECT_NEAR(lr_lambda("cosine", 6, 2, 10), 0.5, 1e-12);
  EXPECT_DOUBLE_EQ(lr_lambda("constant_with_warmup", 1, 2, 10), 0.5);
  EXPECT_DOUBLE_EQ(lr_lambda("constant", 0, 2, 10), 1.0);
  peft::train::TrainingArguments a;
  a.lr_scheduler_type = "exponential";
  peft::test::expect_throw_with<peft::ConfigError>([&] { a.validate(); }, {"lr_scheduler_type", "exponential"});
}

// The child half of the kill test: trains with checkpoints every 2 steps and SIGKILLs itself
// after step PEFT_TRAIN_KILL_AT (only when run by KillAndResume below).
TEST(TrainerChild, RunUntilKilled) {
  const char* dir = std::getenv("PEFT_TRAIN_CHILD_DIR");
  if (dir == nullptr) GTEST_SKIP() << "runs only as the child of Trainer.KillAndResume";
  const int kill_at = std::atoi(std::getenv("PEFT_TRAIN_KILL_AT"));
  auto s = setup(dir);
  s.args.save_steps = 2;
  peft::train::Trainer t(s.pm, s.args, s.data, nullptr, 0);
  t.on_step = [&](int64_t step, double, double) {
    if (step == kill_at) ::raise(SIGKILL);
  };
  t.train();
}

TEST(Trainer, KillAndResumeIsByteIdentical) {
  // Uninterrupted reference run.
  const auto ref_dir = peft::test::tmp_dir("resume_ref");
  {
    auto s = setup(ref_dir);
    s.args.save_steps = 2;
    peft::train::Trainer t(s.pm, s.args, s.data, nullptr, 0);
    t.train();
  }
  // A child process killed with SIGKILL at a random step, then resumed here.
  std::random_device rd;
  const int kill_at = 3 + static_cast<int>(rd() % 6);  // 3..8: at least one checkpoint exists
  const auto dir = peft::test::tmp_dir("resume_killed");
  const std::string env_dir = "PEFT_TRAIN_CHILD_DIR=" + dir, env_kill = "PEFT_TRAIN_KILL_AT=" + std::to_string(kill_at);
  std::vector<char*> envp;
  for (char** e = environ; *e; ++e) envp.push_back(*e);
  envp.push_back(const_cast<char*>(env_dir.c_str()));
  envp.push_back(const_cast<char*>(env_kill.c_str()));
  envp.push_back(nullptr);
  std::string self = fs::read_symlink("/proc/self/exe").string(), filter = "--gtest_filter=TrainerChild.RunUntilKilled";
  char* argv[] = {self.data(), filter.data(), nullptr};
  pid_t pid = 0;
  ASSERT_EQ(posix_spawn(&pid, self.c_str(), nullptr, nullptr, argv, envp.data()), 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "child was not killed (status " << status << ")";
  // The newest complete checkpoint; temp folders of an interrupted save are ignored.
  int64_t best = -1;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    if (n.rfind("checkpoint-", 0) == 0) best = std::max<int64_t>(best, std::stoll(n.substr(11)));
  }
  ASSERT_GE(best, 2) << "killed at step " << kill_at;
  {
    auto s = setup(dir);
    s.args.save_steps = 2;
    peft::train::Trainer t(s.pm, s.args, s.data, nullptr, 0);
    const auto r = t.train(dir + "/checkpoint-" + std::to_string(best));
    EXPECT_EQ(r.global_step, 10);
  }
  for (const auto& e : fs::directory_iterator(dir))  // the killed run's temp folders are gone
    EXPECT_NE(e.path().filename().string().rfind(".checkpoint-", 0), 0u) << e.path();
  EXPECT_EQ(peft::read_file(dir + "/adapter/adapter_model.safetensors"),
            peft::read_file(ref_dir + "/adapter/adapter_model.safetensors"))
      << "killed at step " << kill_at << ", resumed from checkpoint-" << best;
  std::cout << "killed at step " << kill_at << ", resumed from checkpoint-" << best << ": adapter byte-identical\n";
}

// A resume from a checkpoint whose optimizer or RNG file is missing, truncated, garbage or of the
// wrong shape stops with one line naming the file, saying the checkpoint is damaged and which
// earlier checkpoint to resume from (none before checkpoint-2: start over).
TEST(Trainer, DamagedCheckpointFilesAreNamedWithWhereToResume) {
  const auto run = peft::test::tmp_dir("damaged_run");
  {
    auto s = setup(run);
    s.args.save_steps = 2;
    peft::train::Trainer t(s.pm, s.args, s.data, nullptr, 0);
    t.train();
  }
  ASSERT_TRUE(fs::exists(run + "/checkpoint-4/optimizer.pt"));
  const std::string opt = peft::read_file(run + "/checkpoint-4/optimizer.pt");
  const std::string rng = peft::read_file(run + "/checkpoint-4/rng_state.safetensors");
  struct Case {
    const char* name;
    const char* checkpoint;
    const char* file;
    std::function<void(const std::string&)> damage;  // gets the file's path
    const char* why;
  };
  const std::vector<Case> cases = {
      {"opt_garbage", "checkpoint-4", "optimizer.pt",
       [](const std::string& p) { peft::write_file_atomic(p, "not an archive"); }, "cannot be read as this run's optimizer state"},
      {"opt_truncated", "checkpoint-4", "optimizer.pt",
       [&](const std::string& p) { peft::write_file_atomic(p, opt.substr(0, opt.size() / 2)); }, "cannot be read as"},
      {"opt_missing", "checkpoint-4", "optimizer.pt", [](const std::string& p) { fs::remove(p); }, "is missing"},
      {"opt_empty", "checkpoint-4", "optimizer.pt", [](const std::string& p) { peft::write_file_atomic(p, ""); }, "is empty"},
      {"rng_truncated", "checkpoint-4", "rng_state.safetensors",
       [&](const std::string& p) { peft::write_file_atomic(p, rng.substr(0, 40)); }, "cannot be read ("},
      {"rng_garbage", "checkpoint-4", "rng_state.safetensors",
       [](const std::string& p) { peft::write_file_atomic(p, std::string(64, 'x')); }, "cannot be read ("},
      {"rng_missing", "checkpoint-4", "rng_state.safetensors", [](const std::string& p) { fs::remove(p); }, "is missing"},
      {"rng_float", "checkpoint-4", "rng_state.safetensors",
       [](const std::string& p) { peft::io::save_safetensors(p, {{"cpu_rng", torch::zeros({10})}}); },
       "holds 'cpu_rng' as Float [10]; expected Byte ["},
      {"rng_short", "checkpoint-4", "rng_state.safetensors",
       [](const std::string& p) { peft::io::save_safetensors(p, {{"cpu_rng", torch::zeros({7}, torch::kByte)}}); },
       "holds 'cpu_rng' as Byte [7]; expected Byte ["},
      {"rng_other_key", "checkpoint-4", "rng_state.safetensors",
       [](const std::string& p) { peft::io::save_safetensors(p, {{"cuda_rng", torch::zeros({7}, torch::kByte)}}); },
       "holds no tensor 'cpu_rng'"},
      {"first_opt_missing", "checkpoint-2", "optimizer.pt", [](const std::string& p) { fs::remove(p); }, "is missing"},
  };
  for (const auto& c : cases) {
    const auto dir = peft::test::tmp_dir(std::string("damaged_") + c.name);
    fs::copy(run, dir, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
    const std::string ck = dir + "/" + c.checkpoint, file = ck + "/" + c.file;
    c.damage(file);
    auto s = setup(dir);
    peft::train::Trainer t(s.pm, s.args, s.data, nullptr, 0);
    const bool first = std::string(c.checkpoint) == "checkpoint-2";
    try {
      t.train(ck);
      ADD_FAILURE() << c.name << ": the damaged checkpoint was resumed";
    } catch (const peft::FormatError& e) {
      const std::string m = e.what();
      for (const std::string& want : {"[resume] " + file + " " + c.why, "the checkpoint " + ck + " is damaged",
                                      first ? std::string("; start over without --resume")
                                            : "resume from " + dir + "/checkpoint-2 instead"})
        EXPECT_NE(m.find(want), std::string::npos) << c.name << ": '" << m << "' lacks '" << want << "'";
      EXPECT_EQ(m.find('\n'), std::string::npos) << c.name << ": " << m;
      EXPECT_EQ(m.find("PytorchStreamReader"), std::string::npos) << c.name << ": " << m;
    }
  }
  // Moments of other shapes (an optimizer of other parameters, in as many of them): both shapes named.
  {
    const auto dir = peft::test::tmp_dir("damaged_other_rank");
    fs::copy(run, dir, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
    auto s = setup(dir);
    std::vector<at::Tensor> small;
    for (const auto& [n, p] : s.pm->named_trainable_parameters())
      small.push_back(torch::zeros({p.size(0) + 1}).requires_grad_());
    torch::optim::AdamW other(small);
    for (auto& p : small) p.mutable_grad() = torch::ones_like(p);
    other.step();
    torch::save(other, dir + "/checkpoint-4/optimizer.pt");
    peft::train::Trainer t(s.pm, s.args, s.data, nullptr, 0);
    peft::test::expect_throw_with<peft::FormatError>([&] { t.train(dir + "/checkpoint-4"); },
                                                     {"optimizer.pt holds Adam moments of shape [", "for trainable "
                                                      "parameter 1 of shape [", "is damaged"});
  }
  // A checkpoint of a longer run than the config: the step and the allowed range are named.
  {
    auto s = setup(run);
    s.args.max_steps = 6;
    peft::train::Trainer t(s.pm, s.args, s.data, nullptr, 0);
    peft::test::expect_throw_with<peft::ConfigError>(
        [&] { t.train(run + "/checkpoint-8"); },
        {run + "/checkpoint-8/trainer_state.json", "'global_step' is 8", "[0, 6]", "max_steps"});
  }
}

// While it lives, a write past `bytes` fails with EFBIG: a full disk, which root meets too.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    ::getrlimit(RLIMIT_FSIZE, &old_);
    old_handler_ = ::signal(SIGXFSZ, SIG_IGN);  // the write fails instead of the signal killing us
    rlimit r = old_;
    r.rlim_cur = bytes;
    ::setrlimit(RLIMIT_FSIZE, &r);
  }
  ~FileSizeLimit() {
    ::setrlimit(RLIMIT_FSIZE, &old_);
    ::signal(SIGXFSZ, old_handler_);
  }

 private:
  rlimit old_{};
  void (*old_handler_)(int) = nullptr;
};

std::vector<std::string> temp_entries(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string()[0] == '.') out.push_back(e.path().filename().string());
  return out;
}

// A checkpoint write that fails (the disk full at step 4) leaves no .checkpoint-4.tmp folder and
// no checkpoint-4; checkpoint-2 stays whole, and a resume from it finishes the run.
TEST(Trainer, AFailedCheckpointWriteLeavesNoTempFolder) {
  const auto dir = peft::test::tmp_dir("failed_checkpoint");
  {
    auto s = setup(dir);
    s.args.save_steps = 2;
    peft::train::Trainer t(s.pm, s.args, s.data, nullptr, 0);
    std::optional<FileSizeLimit> full;
    t.on_step = [&](int64_t step, double, double) {
      if (step == 4) full.emplace(16);  // after step 4's training, before its checkpoint
    };
    try {
      t.train();
      full.reset();
      FAIL() << "the checkpoint write did not fail";
    } catch (const std::exception& e) {
      full.reset();
      std::cout << "failed as expected: " << e.what() << "\n";
    }
  }
  EXPECT_EQ(temp_entries(dir), std::vector<std::string>{});
  EXPECT_FALSE(fs::exists(dir + "/checkpoint-4"));
  for (const char* f : {"adapter_model.safetensors", "optimizer.pt", "rng_state.safetensors", "trainer_state.json"})
    EXPECT_TRUE(fs::exists(dir + "/checkpoint-2/" + f)) << f;
  auto s = setup(dir);
  s.args.save_steps = 2;
  peft::train::Trainer t(s.pm, s.args, s.data, nullptr, 0);
  EXPECT_EQ(t.train(dir + "/checkpoint-2").global_step, 10);
  EXPECT_TRUE(fs::exists(dir + "/checkpoint-10/trainer_state.json"));
  EXPECT_EQ(temp_entries(dir), std::vector<std::string>{});
}

// A run (or a resume) first removes the temp folders a killed run left in its output_dir, by
// their exact names, and nothing that merely resembles them.
TEST(Trainer, TempFoldersOfAKilledRunAreRemovedAtTheStart) {
  const auto dir = peft::test::tmp_dir("stale_temp");
  const std::vector<std::string> stale = {".checkpoint-6.tmp", ".checkpoint-12.tmp", ".adapter.tmp", ".model.tmp"};
  const std::vector<std::string> kept = {".checkpoint-6.tmp.keep", ".checkpoint-.tmp", ".checkpoint-x.tmp",
                                         "checkpoint-6.tmp",       ".checkpoint-6.tmpx", ".adapter.tmp2",
                                         ".checkpoint-6",          "notes.tmp"};
  for (const auto& n : stale) {
    fs::create_directories(dir + "/" + n + "/sub");
    peft::write_file_atomic(dir + "/" + n + "/sub/optimizer.pt", "partial");
  }
  for (const auto& n : kept) fs::create_directories(dir + "/" + n);
  auto s = setup(dir);
  s.args.max_steps = 2;
  peft::train::Trainer t(s.pm, s.args, s.data, nullptr, 0);
  t.train();
  for (const auto& n : stale) EXPECT_FALSE(fs::exists(dir + "/" + n)) << n;
  for (const auto& n : kept) EXPECT_TRUE(fs::exists(dir + "/" + n)) << n;
  EXPECT_TRUE(fs::exists(dir + "/checkpoint-2/trainer_state.json"));
}

// A NaN in the base weights after step 2 (checkpoint-2 saved) makes step 3's loss NaN: the run
// stops there with the step and the intact checkpoint named, and writes no adapter; with
// on_nonfinite: skip the weights stay those of step 2 and the run ends normally.
void poison_base_after(peft::PeftModel& pm, int64_t at_step, peft::train::Trainer& t) {
  t.on_step = [&pm, at_step](int64_t step, double, double) {
    if (step != at_step) return;
    torch::NoGradGuard ng;
    for (auto& item : pm.base_model().named_parameters(true))
      if (item.key().find("embed_tokens") != std::string::npos)
        item.value().view(-1)[0] = std::numeric_limits<float>::quiet_NaN();
  };
}

TEST(Trainer, NonFiniteLossStopsAndKeepsTheLastCheckpoint) {
  const auto dir = peft::test::tmp_dir("nonfinite_stop");
  auto s = setup(dir);
  s.args.save_steps = 2;
  // Row 0 of the embedding is poisoned below; every sequence starts with token 0.
  for (auto& e : s.data.examples) e.input_ids[0] = 0, e.labels[0] = 0;
  peft::train::Trainer t(s.pm, s.args, s.data, nullptr, 0);
  poison_base_after(*s.pm, 2, t);
  try {
    t.train();
    FAIL() << "a NaN loss did not stop the run";
  } catch (const std::runtime_error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("step 3: the training loss is nan"), std::string::npos) << m;
    EXPECT_NE(m.find("checkpoint-2, is intact"), std::string::npos) << m;
    EXPECT_NE(m.find("on_nonfinite: skip"), std::string::npos) << m;
  }
  EXPECT_TRUE(fs::exists(dir + "/checkpoint-2/adapter_model.safetensors"));
  EXPECT_FALSE(fs::exists(dir + "/adapter")) << "an adapter was written after a NaN loss";
  EXPECT_FALSE(fs::exists(dir + "/checkpoint-4"));
  const auto saved = peft::io::load_safetensors(dir + "/checkpoint-2/adapter_model.safetensors");
  for (const auto& [k, v] : saved) EXPECT_TRUE(at::isfinite(v).all().item<bool>()) << k;
}

TEST(Trainer, NonFiniteStepsAreSkippedWhenAsked) {
  const auto dir = peft::test::tmp_dir("nonfinite_skip");
  auto s = setup(dir);
  s.args.save_steps = 2;
  s.args.on_nonfinite = "skip";
  for (auto& e : s.data.examples) e.input_ids[0] = 0, e.labels[0] = 0;
  peft::train::Trainer t(s.pm, s.args, s.data, nullptr, 0);
  poison_base_after(*s.pm, 2, t);
  const auto r = t.train();
  EXPECT_EQ(r.global_step, 10);
  EXPECT_EQ(r.skipped_steps, 8);
  EXPECT_TRUE(std::isfinite(r.train_loss));
  // No update after step 2: the final adapter holds checkpoint-2's weights.
  EXPECT_EQ(peft::read_file(dir + "/adapter/adapter_model.safetensors"),
            peft::read_file(dir + "/checkpoint-2/adapter_model.safetensors"));
  s.args.on_nonfinite = "retry";
  EXPECT_THROW(s.args.validate(), peft::ConfigError);
}

TEST(Trainer, AnAdapterWithNaNWeightsIsRefusedByName) {
  const auto dir = peft::test::tmp_dir("nan_adapter");
  const std::string src = peft::test::load_case("train/trajectory").dir + "/init";
  fs::copy_file(src + "/adapter_config.json", dir + "/adapter_config.json", fs::copy_options::overwrite_existing);
  auto w = peft::io::load_safetensors(src + "/adapter_model.safetensors");
  ASSERT_FALSE(w.empty());
  const std::string bad = w.rbegin()->first;
  w[bad] = w[bad].clone();
  w[bad].view(-1)[1] = std::numeric_limits<float>::infinity();
  peft::io::save_safetensors(dir + "/adapter_model.safetensors", w);
  auto base = peft::models::load_model(peft::test::fixture("models/llama_causal"));
  try {
    peft::PeftModel::from_pretrained(base, dir);
    FAIL() << "an adapter holding inf was loaded";
  } catch (const peft::FormatError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("'" + bad + "' (1 of "), std::string::npos) << m;
    EXPECT_NE(m.find("NaN or infinite"), std::string::npos) << m;
  }
}

}  // namespace

namespace {

// The trainer runs every task head: classification, token classification and seq2seq batches
// reach the right loss, and repeated steps on one batch lower it.
TEST(Trainer, EveryTaskHeadTrains) {
  struct Row {
    const char* model;
    peft::TaskType task;
  };
  for (const Row& r : {Row{"models/bert_seqcls", peft::TaskType::SeqCls}, Row{"models/llama_tokcls", peft::TaskType::TokenCls},
                       Row{"models/t5_seq2seq", peft::TaskType::Seq2SeqLM}, Row{"models/gpt2_causal", peft::TaskType::CausalLM}}) {
    auto base = peft::models::load_model(peft::test::fixture(r.model));
    peft::LoraConfig cfg;
    cfg.task_type = r.task;
    cfg.r = 4;
    auto pm = peft::get_peft_model(base, cfg);
    peft::train::Dataset d;
    for (int i = 0; i < 4; ++i) {
      peft::train::Example e;
      for (int j = 0; j < 6 + i; ++j) e.input_ids.push_back(3 + (5 * i + 7 * j) % 50);
      if (r.task == peft::TaskType::SeqCls) e.label = i % 3;
      if (r.task == peft::TaskType::TokenCls)
        for (std::size_t j = 0; j < e.input_ids.size(); ++j) e.labels.push_back(j == 0 ? -100 : (i + j) % 5);
      if (r.task == peft::TaskType::CausalLM) e.labels = e.input_ids;
      if (r.task == peft::TaskType::Seq2SeqLM) {
        e.labels = {5, 9, 13, 1};
        e.decoder_input_ids = {0, 5, 9, 13};
      }
      d.examples.push_back(e);
    }
    peft::train::TrainingArguments a;
    a.output_dir = peft::test::tmp_dir(std::string("task_") + peft::to_string(r.task));
    a.per_device_train_batch_size = 4;
    a.max_steps = 8;
    a.learning_rate = 2e-2;
    a.shuffle = false;
    a.progress_bar = false;
    a.logging_steps = 0;
    a.tensorboard = false;
    peft::train::Trainer t(pm, a, d, &d, 0);
    const auto res = t.train();
    ASSERT_EQ(res.step_losses.size(), 8u) << r.model;
    for (double l : res.step_losses) EXPECT_TRUE(std::isfinite(l)) << r.model;
    EXPECT_LT(res.step_losses.back(), res.step_losses.front()) << r.model;
    ASSERT_TRUE(res.eval_loss.has_value());
    EXPECT_TRUE(fs::exists(a.output_dir + "/adapter/adapter_model.safetensors")) << r.model;
  }
}

TEST(Trainer, Bf16AutocastFollowsFp32ForEveryMethod) {
  // bf16 autocast with fp32 master weights: the same run in fp32 and in bf16 from the same
  // initialisation gives losses within bf16 rounding at every step (1.5% and 0.02), trains where
  // fp32 trains, leaves the frozen base untouched in fp32 and keeps an fp32 adapter.
  const std::vector<std::pair<const char*, const char*>> methods = {
      {"lora", R"({"r": 4, "target_modules": "all-linear"})"}, {"adalora", R"({"init_r": 6, "target_r": 3, "total_step": 6})"},
      {"ia3", "{}"}, {"prefix_tuning", R"({"num_virtual_tokens": 4})"},
      {"prompt_tuning", R"({"num_virtual_tokens": 4})"}, {"p_tuning", R"({"num_virtual_tokens": 4})"},
      {"qlora", R"({"r": 4, "target_modules": "all-linear"})"}};  // LoRA on an NF4 base (bf16 products)
  for (const char* model : {"models/gpt2_causal", "models/llama_causal"}) {
    for (const auto& [method, fields] : methods) {
      SCOPED_TRACE(std::string(model) + " " + method);
      const bool qlora = std::string(method) == "qlora";
      const auto& row = peft::tuner_row(qlora ? "lora" : method);
      nlohmann::json j = nlohmann::json::parse(fields);
      j["peft_type"] = peft::to_string(row.type);
      j["task_type"] = "CAUSAL_LM";
      const auto cfg = row.parse(j, method);
      peft::train::Dataset d;
      for (int i = 0; i < 8; ++i) {
        peft::train::Example e;
        for (int k = 0; k < 12; ++k) e.input_ids.push_back(3 + (5 * i + 7 * k) % 60);
        e.labels = e.input_ids;
        d.examples.push_back(e);
      }
      std::vector<std::vector<double>> losses;
      for (const bool bf16 : {false, true}) {
        peft::models::LoadOptions lo;
        lo.load_in_4bit = qlora;
        lo.bnb_4bit_quant_type = "nf4";
        auto base = peft::models::load_model(peft::test::fixture(model), lo);
        const at::Tensor before = base->word_embeddings().clone();
        torch::manual_seed(5);
        auto pm = peft::get_peft_model(base, *cfg);
        peft::train::TrainingArguments a;
        a.output_dir = peft::test::tmp_dir(std::string("bf16_") + method + (bf16 ? "_bf16" : "_fp32"));
        a.per_device_train_batch_size = 4;
        a.max_steps = 6;
        a.learning_rate = 5e-3;
        a.shuffle = false;
        a.progress_bar = false;
        a.logging_steps = 0;
        a.tensorboard = false;
        a.bf16 = bf16;
        peft::train::Trainer t(pm, a, d, nullptr, 0);
        losses.push_back(t.train().step_losses);
        EXPECT_EQ(base->word_embeddings().scalar_type(), at::kFloat);
        EXPECT_TRUE(base->word_embeddings().equal(before)) << "the frozen base changed";
        for (const auto& [k, v] : pm->adapter_state_dict("default"))
          if (v.is_floating_point()) EXPECT_EQ(v.scalar_type(), at::kFloat) << k;
      }
      ASSERT_EQ(losses[0].size(), 6u);
      ASSERT_EQ(losses[1].size(), 6u);
      for (std::size_t k = 0; k < 6; ++k) {
        EXPECT_TRUE(std::isfinite(losses[1][k])) << "step " << k;
        EXPECT_NEAR(losses[1][k], losses[0][k], 0.02 + 0.015 * losses[0][k]) << "step " << k;
      }
      // It trains where fp32 trains.
      if (losses[0].back() < losses[0].front() - 0.05) EXPECT_LT(losses[1].back(), losses[1].front());
    }
  }
}

}  // namespace

namespace {

// method full: the trainer on every parameter of models/llama_causal (train/trajectory_full).
Setup full_setup(const std::string& out) {
  Setup s = trajectory_run("trajectory_full", out);
  peft::FullConfig cfg;
  cfg.task_type = peft::TaskType::CausalLM;
  s.pm = peft::get_peft_model(peft::models::load_model(peft::test::fixture("models/llama_causal")), cfg);
  return s;
}

}  // namespace

TEST(Trainer, FullFineTuningMatchesTorchAdamWWithTrainersDecayGroups) {
  const auto g = peft::test::load_case("train/trajectory_full");
  auto s = full_setup(peft::test::tmp_dir("trajectory_full"));
  const auto [trainable, all] = s.pm->get_nb_trainable_parameters();
  EXPECT_EQ(trainable, all);
  peft::train::Trainer t(s.pm, s.args, s.data, nullptr, 0);
  const auto r = t.train();
  ASSERT_EQ(r.step_losses.size(), 10u);
  EXPECT_TRUE(close(torch::tensor(r.step_losses, at::kDouble), g["losses"], g.atol));
  int n = 0;
  for (const auto& p : s.pm->base_model().named_parameters()) {
    EXPECT_TRUE(close(p.value(), g["final." + p.key()], g.atol)) << p.key();
    ++n;
  }
  EXPECT_EQ(n, 21);
  // The result is a model folder: loaded as a model it gives the trained model's logits.
  EXPECT_EQ(r.adapter_dir, s.args.output_dir + "/model");
  EXPECT_FALSE(fs::exists(r.adapter_dir + "/adapter_config.json"));
  auto reloaded = peft::models::load_model(r.adapter_dir);
  torch::NoGradGuard ng;
  peft::models::ModelInputs in;
  in.input_ids = torch::tensor({{5, 17, 33, 9, 41}});
  s.pm->base_model().eval();
  EXPECT_TRUE(close(reloaded->forward(in).logits, s.pm->forward(in).logits, 1e-6));
  peft::test::expect_throw_with<peft::FormatError>([&] { peft::load_peft_config(r.adapter_dir); },
                                                   {"model folder", "use it as the model"});
  peft::test::expect_throw_with<peft::NotSupported>([&] { auto guard = s.pm->disable_adapter(); (void)guard; }, {"no adapter to disable"});
}

TEST(Trainer, FullFineTuningResumesExactly) {
  const std::string dir = peft::test::tmp_dir("full_resume");
  auto a = full_setup(dir + "/a");
  a.args.save_steps = 4;
  peft::train::Trainer ta(a.pm, a.args, a.data, nullptr, 0);
  const auto ra = ta.train();
  ASSERT_TRUE(fs::exists(dir + "/a/checkpoint-4/model.safetensors"));
  auto b = full_setup(dir + "/b");
  peft::train::Trainer tb(b.pm, b.args, b.data, nullptr, 0);
  const auto rb = tb.train(dir + "/a/checkpoint-4");
  EXPECT_EQ(ra.step_losses, rb.step_losses);
  for (const auto& p : b.pm->base_model().named_parameters())
    EXPECT_TRUE(at::equal(p.value(), a.pm->base_model().named_parameters()[p.key()])) << p.key();
}

TEST(Trainer, FullFineTuningRefusesAQuantisedBase) {
  peft::models::LoadOptions o;
  o.load_in_4bit = true;
  auto base = peft::models::load_model(peft::test::fixture("models/llama_causal"), o);
  peft::FullConfig cfg;
  peft::test::expect_throw_with<peft::NotSupported>([&] { peft::get_peft_model(base, cfg); },
                                                    {"quantised", "no gradient"});
}

// The fused AdamW step against LibTorch's AdamW on the same parameters and gradients: two groups
// (with and without weight decay), a parameter large enough to be split over threads, one without
// a gradient at some steps; and the fused gradient clipping against clip_grad_norm_, clipping and
// not. The state is LibTorch's: the fused optimizer's saved state loads into a plain AdamW.
TEST(Trainer, FusedAdamWAndClippingFollowLibTorch) {
  torch::manual_seed(3);
  const std::vector<std::vector<int64_t>> shapes = {{5, 7}, {300001}, {3}, {16, 8}};
  std::vector<at::Tensor> ours, theirs;
  for (const auto& s : shapes) {
    at::Tensor p = torch::randn(s);
    ours.push_back(p.clone().requires_grad_(true));
    theirs.push_back(p.clone().requires_grad_(true));
  }
  auto opts = torch::optim::AdamWOptions(3e-3).betas({0.9, 0.98}).eps(1e-6).weight_decay(0.05);
  auto groups = [&](std::vector<at::Tensor>& ps) {
    std::vector<torch::optim::OptimizerParamGroup> g;
    g.emplace_back(std::vector<at::Tensor>{ps[0], ps[1]}, std::make_unique<torch::optim::AdamWOptions>(opts));
    auto nd = std::make_unique<torch::optim::AdamWOptions>(opts);
    nd->weight_decay(0.0);
    g.emplace_back(std::vector<at::Tensor>{ps[2], ps[3]}, std::move(nd));
    return g;
  };
  auto fused = peft::train::detail::make_fused_adamw(groups(ours), opts);
  torch::optim::AdamW plain(groups(theirs), opts);
  for (int step = 0; step < 6; ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    for (std::size_t i = 0; i < ours.size(); ++i) {
      if (step == 2 && i == 3) continue;  // no gradient: the parameter is left alone
      at::Tensor g = torch::randn(ours[i].sizes()) * (step + 1);
      ours[i].mutable_grad() = g.clone();
      theirs[i].mutable_grad() = g.clone();
    }
    const double max_norm = step % 2 == 0 ? 1.0 : 1e9;  // clipped, then not
    double exact = 0;  // in fp64: the fused norm is the fp32 rounding of it, LibTorch's sums in fp32
    for (const auto& p : ours)
      if (p.grad().defined()) exact += p.grad().to(at::kDouble).pow(2).sum().item<double>();
    exact = std::sqrt(exact);
    const double n1 = peft::train::detail::clip_grad_norm(ours, max_norm);
    const double n2 = torch::nn::utils::clip_grad_norm_(theirs, max_norm);
    EXPECT_NEAR(n1, exact, 1e-7 * exact);
    EXPECT_NEAR(n1, n2, 1e-5 * n2);
    for (std::size_t i = 0; i < ours.size(); ++i)
      if (ours[i].grad().defined())
        EXPECT_TRUE(close(ours[i].grad(), theirs[i].grad(), 1e-5 * theirs[i].grad().abs().max().item<double>())) << i;
    const auto version = ours[0]._version();
    fused->step();
    plain.step();
    EXPECT_GT(ours[0]._version(), version);  // an in-place update, as autograd must see it
    for (std::size_t i = 0; i < ours.size(); ++i) {
      EXPECT_TRUE(close(ours[i], theirs[i], 2e-6)) << i;
      ours[i].mutable_grad() = at::Tensor();
      theirs[i].mutable_grad() = at::Tensor();
    }
  }
  // The parameters moved: the comparison above is not between two no-ops.
  torch::manual_seed(3);
  EXPECT_GT((ours[0] - torch::randn({5, 7})).abs().max().item<float>(), 1e-3f);
  // The state round-trips through LibTorch's serialisation into a plain AdamW.
  const std::string f = peft::test::tmp_dir("fused_adamw") + "/optimizer.pt";
  torch::save(*fused, f);
  torch::optim::AdamW reloaded(groups(theirs), opts);
  torch::load(reloaded, f);
  std::vector<int64_t> steps;
  for (const auto& [k, st] : reloaded.state()) {
    (void)k;
    steps.push_back(static_cast<const torch::optim::AdamWParamState&>(*st).step());
  }
  std::sort(steps.begin(), steps.end());
  EXPECT_EQ(steps, (std::vector<int64_t>{5, 6, 6, 6}));  // one parameter had no gradient once
}
