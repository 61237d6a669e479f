// Data-parallel training: N ranks x batch b against one process with batch N*b (same data order),
// resume with another world size, a rank killed mid-run, two "hosts" in network namespaces, and
// the launcher / environment on their own. The ranks are this test binary re-run with
// --gtest_filter=DistributedChild.Rank, started by the launcher or spawned directly.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "peft/distributed/collective.h"
#include "peft/distributed/launcher.h"
#include "peft/io/tensor_bridge.h"
#include "peft/models/model.h"
#include "peft/peft_model.h"
#include "peft/train/trainer.h"
#include "peft/tuners/lora/config.h"
#if __has_include("peft/tuners/prompt_tuning/config.h")
#include "peft/tuners/prefix_tuning/config.h"
#include "peft/tuners/prompt_tuning/config.h"
#define PEFT_TEST_PROMPT_LEARNING 1
#endif
#include "test_utils.h"

extern char** environ;

namespace {

namespace fs = std::filesystem;
namespace dist = peft::distributed;

// The methods every data-parallel check runs for; a new method is one row here. The prompt-learning
// rows compile where those tuners exist (they are built on another branch).
struct MethodCase {
  const char* name;
  std::function<std::unique_ptr<peft::PeftConfig>()> config;
};
const std::vector<MethodCase>& methods() {
  static const std::vector<MethodCase> m = {
      {"lora",
       [] {
         auto c = std::make_unique<peft::LoraConfig>();
         c->task_type = peft::TaskType::CausalLM;
         c->r = 4;
         c->lora_alpha = 8;
         c->target_modules = peft::TargetSpec(std::vector<std::string>{"q_proj", "v_proj", "down_proj"});
         c->init_lora_weights = "gaussian";  // B != 0, so every adapter tensor moves from step 1
         return c;
       }},
#ifdef PEFT_TEST_PROMPT_LEARNING
      {"prompt_tuning",
       [] {
         auto c = std::make_unique<peft::PromptTuningConfig>();
         c->task_type = peft::TaskType::CausalLM;
         c->num_virtual_tokens = 4;
         return c;
       }},
      {"prefix_tuning",
       [] {
         auto c = std::make_unique<peft::PrefixTuningConfig>();
         c->task_type = peft::TaskType::CausalLM;
         c->num_virtual_tokens = 4;
         return c;
       }},
#endif
  };
  return m;
}
std::vector<std::string> method_names() {
  std::vector<std::string> v;
  for (const auto& m : methods()) v.push_back(m.name);
  return v;
}
const MethodCase& method(const std::string& name) {
  for (const auto& m : methods())
    if (name == m.name) return m;
  throw std::invalid_argument("no method case " + name);
}

peft::train::Dataset dataset() { return peft::test::tiny_causal_dataset(); }

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : fallback;
}

// One run: `method` on the tiny Llama, `batch` per rank, 10 steps; a process group from the
// environment when WORLD_SIZE > 1.
void train_run(const std::string& out, const std::string& method_name, int64_t batch, const std::string& resume,
               int64_t max_steps, int64_t save_steps, int kill_at, int64_t accumulation = 1) {
  at::manual_seed(0);
  auto base = peft::models::load_model(peft::test::fixture("models/llama_causal"));
  auto pm = peft::get_peft_model(base, *method(method_name).config());
  peft::train::TrainingArguments a;
  a.output_dir = out;
  a.learning_rate = 2e-2;
  a.warmup_steps = 2;
  a.max_steps = max_steps;
  a.per_device_train_batch_size = batch;
  a.gradient_accumulation_steps = accumulation;
  a.save_steps = save_steps;
  a.max_grad_norm = 0.5;  // clipping acts on the summed gradients
  a.weight_decay = 0.01;
  a.logging_steps = 1;
  a.progress_bar = false;
  a.tensorboard = false;
  peft::train::Trainer t(pm, a, dataset(), nullptr, 0);
  const auto env = dist::env_from_environment();
  if (env.world_size > 1) {
    dist::ProcessGroupOptions o;
    o.timeout_seconds = 30;
    t.set_collective(dist::init_process_group(env, o));
  }
  t.on_step = [&](int64_t step, double, double) {
    if (step == kill_at) ::raise(SIGKILL);
  };
  t.train(resume);
}

// The rank half of the tests below (skipped unless started by them).
TEST(DistributedChild, Rank) {
  if (std::getenv("PEFT_DIST_OUT") == nullptr) GTEST_SKIP() << "runs only as a rank started by Distributed.*";
  at::set_num_threads(1);
  const auto rank = env_or("RANK", "0");
  const int kill_at = env_or("PEFT_DIST_KILL_RANK", "-1") == rank ? std::stoi(env_or("PEFT_DIST_KILL_AT", "-1")) : -1;
  train_run(env_or("PEFT_DIST_OUT", ""), env_or("PEFT_DIST_METHOD", "lora"), std::stoll(env_or("PEFT_DIST_BATCH", "3")),
            env_or("PEFT_DIST_RESUME", ""), std::stoll(env_or("PEFT_DIST_STEPS", "10")), 0, kill_at);
}

// ------------------------------------------------------------------------------ helpers

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

std::string self_exe() { return fs::read_symlink("/proc/self/exe").string(); }

// Starts argv with extra environment entries, stdout and stderr to `log`.
pid_t spawn(std::vector<std::string> argv, const std::vector<std::string>& extra_env, const std::string& log) {
  std::vector<std::string> env_store;
  for (char** e = environ; *e; ++e) env_store.push_back(*e);
  for (const auto& e : extra_env) env_store.push_back(e);
  std::vector<char*> envp, args;
  for (auto& e : env_store) envp.push_back(e.data());
  envp.push_back(nullptr);
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  return rc == 0 ? pid : -1;
}

// waitpid with a deadline: the status, or nullopt after `seconds` (the process is then killed).
std::optional<int> wait_for(pid_t pid, double seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
  int status = 0;
  while (std::chrono::steady_clock::now() < end) {
    if (::waitpid(pid, &status, WNOHANG) == pid) return status;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
  return std::nullopt;
}

std::string read_text(const std::string& path) {
  std::ifstream f(path);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

std::vector<double> logged_losses(const std::string& out) {
  std::vector<double> v;
  std::ifstream f(out + "/metrics.jsonl");
  for (std::string line; std::getline(f, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j.contains("loss")) v.push_back(j["loss"].get<double>());
  }
  return v;
}

// Loss curve and adapter of `run` equal those of `ref` within `tol`.
void expect_same_run(const std::string& ref, const std::string& run, double tol = 1e-5) {
  const auto a = logged_losses(ref), b = logged_losses(run);
  ASSERT_EQ(a.size(), b.size());
  double loss_diff = 0, weight_diff = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_NEAR(a[i], b[i], tol) << "step " << i + 1;
    loss_diff = std::max(loss_diff, std::abs(a[i] - b[i]));
  }
  const auto wa = peft::io::load_safetensors(ref + "/adapter/adapter_model.safetensors");
  const auto wb = peft::io::load_safetensors(run + "/adapter/adapter_model.safetensors");
  ASSERT_EQ(wa.size(), wb.size());
  ASSERT_FALSE(wa.empty());
  for (const auto& [k, t] : wa) {
    ASSERT_TRUE(wb.count(k)) << k;
    const double d = (t - wb.at(k)).abs().max().item<double>();
    EXPECT_LE(d, tol) << k;
    weight_diff = std::max(weight_diff, d);
  }
  std::cerr << "max |diff| over " << a.size() << " steps: loss " << loss_diff << ", adapter " << weight_diff << "\n";
}

std::vector<std::string> child_env(const std::string& out, const std::string& method, int64_t batch,
                                   const std::string& resume = "") {
  return {"PEFT_DIST_OUT=" + out, "PEFT_DIST_METHOD=" + method, "PEFT_DIST_BATCH=" + std::to_string(batch),
          "PEFT_DIST_RESUME=" + resume, "OMP_NUM_THREADS=1", "OPENBLAS_NUM_THREADS=1"};
}

// Runs the ranks through the launcher (N local ranks), the way `peft train --nproc_per_node N` does.
int launch_ranks(int nproc, const std::vector<std::string>& env) {
  for (const auto& kv : env) {
    const auto eq = kv.find('=');
    ::setenv(kv.substr(0, eq).c_str(), kv.substr(eq + 1).c_str(), 1);
  }
  dist::LaunchOptions o;
  o.nproc_per_node = nproc;
  o.master_port = free_port();
  const int rc = dist::launch(o, {self_exe(), "--gtest_filter=DistributedChild.Rank"});
  for (const auto& kv : env) ::unsetenv(kv.substr(0, kv.find('=')).c_str());
  return rc;
}

class Distributed : public ::testing::TestWithParam<std::string> {};

// 2 ranks x 3 = 1 rank x 6 over 10 steps: two epochs of 4 global batches, the last one short (4
// examples: rank 1 gets one), padding to different lengths, clipping, weight decay. Then a
// checkpoint of the 1-rank run resumed on 2 ranks ends where the 1-rank run ended.
TEST_P(Distributed, TwoRanksEqualOneRankWithDoubleBatchAndResumeAcrossWorldSizes) {
  if (!dist::available()) GTEST_SKIP() << "built without c10d Gloo (libgloo-dev)";
  const std::string m = GetParam();
  const auto ref = peft::test::tmp_dir("dist_ref_" + m);
  train_run(ref, m, 6, "", 10, 5, -1);
  const auto two = peft::test::tmp_dir("dist_two_" + m);
  ASSERT_EQ(launch_ranks(2, child_env(two, m, 3)), 0) << "see the ranks' output above";
  expect_same_run(ref, two);
  EXPECT_EQ(logged_losses(two).size(), 10u);
  // Against 1 rank x 3 with 2 accumulation steps (same micro-batch shapes), the sums are the same
  // fp32 operations: identical up to the order Gloo adds in.
  // The ranks run one thread each (child_env), and MKL's (PyPI LibTorch) sums depend on its
  // thread count, so this run does too.
  const auto acc = peft::test::tmp_dir("dist_acc_" + m);
  const int threads = at::get_num_threads();
  at::set_num_threads(1);
  train_run(acc, m, 3, "", 10, 0, -1, 2);
  at::set_num_threads(threads);
  expect_same_run(acc, two, 1e-7);
  EXPECT_FALSE(fs::exists(two + "/checkpoint-5"));  // no save_steps in the ranks: only the final one
  EXPECT_TRUE(fs::exists(two + "/checkpoint-10/trainer_state.json"));

  // Resume the 1-rank checkpoint at step 5 with 2 ranks (same global batch): same end state.
  const auto resumed = peft::test::tmp_dir("dist_resumed_" + m);
  ASSERT_EQ(launch_ranks(2, child_env(resumed, m, 3, ref + "/checkpoint-5")), 0);
  const auto wa = peft::io::load_safetensors(ref + "/adapter/adapter_model.safetensors");
  const auto wb = peft::io::load_safetensors(resumed + "/adapter/adapter_model.safetensors");
  for (const auto& [k, t] : wa) EXPECT_LE((t - wb.at(k)).abs().max().item<double>(), 1e-5) << k;
  const auto st = nlohmann::json::parse(read_text(resumed + "/checkpoint-10/trainer_state.json"));
  EXPECT_EQ(st["world_size"], 2);
  EXPECT_EQ(st["global_step"], 10);
}

INSTANTIATE_TEST_SUITE_P(Methods, Distributed, ::testing::ValuesIn(method_names()),
                         [](const auto& info) { return info.param; });

// SIGKILL of rank 1 at step 3: rank 0 exits non-zero well within 60 s, naming rank 1, and writes
// no adapter.
TEST(DistributedFailure, KilledRankStopsTheOtherWithItsName) {
  if (!dist::available()) GTEST_SKIP() << "built without c10d Gloo (libgloo-dev)";
  const auto out = peft::test::tmp_dir("dist_kill");
  const std::string port = std::to_string(free_port());
  std::vector<pid_t> pids;
  for (int r = 0; r < 2; ++r) {
    auto env = child_env(out, "lora", 3);
    for (const std::string& kv : std::vector<std::string>{"RANK=" + std::to_string(r), "WORLD_SIZE=2",
                                                          "MASTER_ADDR=127.0.0.1", "MASTER_PORT=" + port,
                                                          "PEFT_DIST_STEPS=100000", "PEFT_DIST_KILL_RANK=1",
                                                          "PEFT_DIST_KILL_AT=3"})
      env.push_back(kv);
    pids.push_back(spawn({self_exe(), "--gtest_filter=DistributedChild.Rank"}, env, out + "/rank" + std::to_string(r) + ".log"));
    ASSERT_GT(pids.back(), 0);
  }
  const auto s1 = wait_for(pids[1], 60);
  ASSERT_TRUE(s1.has_value()) << read_text(out + "/rank1.log");
  ASSERT_TRUE(WIFSIGNALED(*s1) && WTERMSIG(*s1) == SIGKILL) << read_text(out + "/rank1.log");
  const auto t0 = std::chrono::steady_clock::now();
  const auto s0 = wait_for(pids[0], 60);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::string log0 = read_text(out + "/rank0.log");
  ASSERT_TRUE(s0.has_value()) << "rank 0 still running 60 s after rank 1 died:\n" << log0;
  EXPECT_TRUE(WIFEXITED(*s0) && WEXITSTATUS(*s0) != 0) << log0;
  EXPECT_NE(log0.find("lost rank 1"), std::string::npos) << log0;
  EXPECT_FALSE(fs::exists(out + "/adapter"));
  std::cerr << "rank 0 stopped " << secs << " s after rank 1 was killed\n";
}

// Two "hosts": network namespaces joined by a veth pair (198.18.0.0/15, the benchmarking range,
// exists only inside them), one node with one rank in each, rendezvous over the veth link.
TEST(DistributedHosts, TwoNetworkNamespacesMatchOneProcess) {
  if (!dist::available()) GTEST_SKIP() << "built without c10d Gloo (libgloo-dev)";
  if (::geteuid() != 0) GTEST_SKIP() << "network namespaces need root (ip netns)";
  const std::string tag = std::to_string(::getpid() % 100000);
  const std::string na = "peftA" + tag, nb = "peftB" + tag, va = "pva" + tag, vb = "pvb" + tag;
  auto sh = [](const std::string& cmd) { return std::system((cmd + " >/dev/null 2>&1").c_str()) == 0; };
  if (!sh("ip netns add " + na)) GTEST_SKIP() << "ip netns add failed: network namespaces are not permitted here";
  const bool made = sh("ip netns add " + nb) && sh("ip link add " + va + " type veth peer name " + vb) &&
                    sh("ip link set " + va + " netns " + na) && sh("ip link set " + vb + " netns " + nb) &&
                    sh("ip -n " + na + " addr add 198.18.7.1/30 dev " + va) &&
                    sh("ip -n " + nb + " addr add 198.18.7.2/30 dev " + vb) && sh("ip -n " + na + " link set " + va + " up") &&
                    sh("ip -n " + nb + " link set " + vb + " up") && sh("ip -n " + na + " link set lo up") &&
                    sh("ip -n " + nb + " link set lo up");
  struct Cleanup {
    std::function<void()> f;
    ~Cleanup() { f(); }
  } cleanup{[&] {
    sh("ip netns del " + na);
    sh("ip netns del " + nb);
  }};
  if (!made) GTEST_SKIP() << "could not build the veth pair between namespaces";

  const auto ref = peft::test::tmp_dir("dist_ns_ref");
  train_run(ref, "lora", 6, "", 10, 0, -1);
  const auto out = peft::test::tmp_dir("dist_ns");
  std::vector<pid_t> pids;
  for (int node = 0; node < 2; ++node) {
    auto env = child_env(out, "lora", 3);
    // Each node runs the launcher (nnodes 2, one rank per node) inside its namespace.
    env.push_back("PEFT_DIST_NODE_RANK=" + std::to_string(node));
    pids.push_back(spawn({"ip", "netns", "exec", node == 0 ? na : nb, self_exe(), "--gtest_filter=DistributedHosts.Node"},
                         env, out + "/node" + std::to_string(node) + ".log"));
    ASSERT_GT(pids.back(), 0);
  }
  for (int node = 0; node < 2; ++node) {
    const auto s = wait_for(pids[node], 120);
    const std::string log = read_text(out + "/node" + std::to_string(node) + ".log");
    ASSERT_TRUE(s.has_value()) << "node " << node << " hung:\n" << log;
    ASSERT_TRUE(WIFEXITED(*s) && WEXITSTATUS(*s) == 0) << "node " << node << ":\n" << log;
  }
  expect_same_run(ref, out);
}

// One node of the namespace test: the launcher with torchrun's multi-node options.
TEST(DistributedHosts, Node) {
  const char* node = std::getenv("PEFT_DIST_NODE_RANK");
  if (node == nullptr) GTEST_SKIP() << "runs only as a node of DistributedHosts.TwoNetworkNamespacesMatchOneProcess";
  dist::LaunchOptions o;
  o.nnodes = 2;
  o.node_rank = std::atoi(node);
  o.master_addr = "198.18.7.1";
  o.master_port = 29555;
  ::unsetenv("PEFT_DIST_NODE_RANK");
  ASSERT_EQ(dist::launch(o, {self_exe(), "--gtest_filter=DistributedChild.Rank"}), 0);
}

// ------------------------------------------------------------------------ in-process pieces

TEST(DistributedEnv, ReadsTorchrunVariablesAndNamesBadOnes) {
  ::setenv("RANK", "1", 1);
  ::setenv("WORLD_SIZE", "4", 1);
  ::setenv("MASTER_ADDR", "10.1.2.3", 1);
  ::setenv("MASTER_PORT", "1234", 1);
  const auto e = dist::env_from_environment();
  EXPECT_EQ(e.rank, 1);
  EXPECT_EQ(e.world_size, 4);
  EXPECT_EQ(e.master_addr, "10.1.2.3");
  EXPECT_EQ(e.master_port, 1234);
  ::setenv("RANK", "4", 1);
  peft::test::expect_throw_with<peft::ConfigError>([] { dist::env_from_environment(); }, {"RANK=4", "WORLD_SIZE=4"});
  ::setenv("MASTER_PORT", "http", 1);
  peft::test::expect_throw_with<peft::ConfigError>([] { dist::env_from_environment(); }, {"MASTER_PORT", "http"});
  for (const char* v : {"RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"}) ::unsetenv(v);
  dist::LaunchOptions o;
  o.nnodes = 2;
  o.node_rank = 2;
  peft::test::expect_throw_with<peft::ConfigError>([&] { o.validate(); }, {"--node_rank", "nnodes=2"});
}

TEST(DistributedLaunch, ReportsTheFailedRank) {
  // Rank 1 of `sh -c` kills itself; the launcher returns 128 + 9.
  const int rc = dist::launch({2, 1, 0, "127.0.0.1", 29500, 5},
                              {"/bin/sh", "-c", "[ \"$RANK\" = 1 ] && kill -9 $$; sleep 0.2; exit 0"});
  EXPECT_EQ(rc, 128 + SIGKILL);
}

}  // namespace
