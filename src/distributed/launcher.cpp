// The local launcher: fork/exec one process per local rank, watch them, report the first failure.
#include "peft/distributed/launcher.h"

#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <map>
#include <thread>

#include "peft/core/check.h"

extern char** environ;

namespace peft::distributed {

namespace {

volatile std::sig_atomic_t g_signal = 0;
void on_signal(int s) { g_signal = s; }

}  // namespace

void LaunchOptions::validate() const {
  auto need = [](bool ok, const char* field, const std::string& what) {
    PEFT_CHECK(ok, ConfigError, "[launch] ", field, ": ", what);
  };
  need(nproc_per_node >= 1, "--nproc_per_node", "must be >= 1, got " + std::to_string(nproc_per_node));
  need(nnodes >= 1, "--nnodes", "must be >= 1, got " + std::to_string(nnodes));
  need(node_rank >= 0 && node_rank < nnodes, "--node_rank",
       std::to_string(node_rank) + " is outside [0, nnodes=" + std::to_string(nnodes) + ")");
  need(master_port >= 1 && master_port <= 65535, "--master_port", "must be in [1, 65535], got " + std::to_string(master_port));
  need(!master_addr.empty(), "--master_addr", "must not be empty");
  need(grace_seconds >= 0, "grace_seconds", "must be >= 0");
}

int launch(const LaunchOptions& o, const std::vector<std::string>& argv) {
  o.validate();
  PEFT_CHECK(!argv.empty(), std::invalid_argument, "[launch] no program to start");
  const int world = o.nproc_per_node * o.nnodes;
  const long cores = std::max(1L, ::sysconf(_SC_NPROCESSORS_ONLN));
  const std::string threads = std::to_string(std::max(1L, cores / o.nproc_per_node));

  struct sigaction sa {};
  sa.sa_handler = on_signal;
  ::sigemptyset(&sa.sa_mask);
  struct sigaction old_int {}, old_term {};
  ::sigaction(SIGINT, &sa, &old_int);
  ::sigaction(SIGTERM, &sa, &old_term);

  std::map<pid_t, int> ranks;  // pid -> global rank
  for (int local = 0; local < o.nproc_per_node; ++local) {
    const int rank = o.node_rank * o.nproc_per_node + local;
    std::map<std::string, std::string> env;
    for (char** e = environ; *e != nullptr; ++e) {
      const std::string kv = *e;
      const auto eq = kv.find('=');
      if (eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
    env["RANK"] = std::to_string(rank);
    env["LOCAL_RANK"] = std::to_string(local);
    env["WORLD_SIZE"] = std::to_string(world);
    env["LOCAL_WORLD_SIZE"] = std::to_string(o.nproc_per_node);
    env["GROUP_RANK"] = std::to_string(o.node_rank);
    env["MASTER_ADDR"] = o.master_addr;
    env["MASTER_PORT"] = std::to_string(o.master_port);
    if (o.nproc_per_node > 1) {  // torchrun's default, so local ranks do not oversubscribe the cores
      env.emplace("OMP_NUM_THREADS", "1");
      env.emplace("OPENBLAS_NUM_THREADS", threads);
    }
    std::vector<std::string> kvs;
    for (const auto& [k, v] : env) kvs.push_back(k + "=" + v);
    std::vector<char*> envp, args;
    for (auto& s : kvs) envp.push_back(s.data());
    envp.push_back(nullptr);
    std::vector<std::string> argv_copy = argv;
    for (auto& s : argv_copy) args.push_back(s.data());
    args.push_back(nullptr);
    // fork + exec rather than posix_spawn, to ask for SIGTERM when the launcher dies (even by
    // SIGKILL): ranks never outlive it. Only async-signal-safe calls run between fork and exec.
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != parent) ::_exit(127);
      ::execve(args[0], args.data(), envp.data());
      ::_exit(127);
    }
    const int rc = pid < 0 ? errno : 0;
    if (rc != 0) {
      for (const auto& [p, r] : ranks) ::kill(p, SIGTERM);
      for (const auto& [p, r] : ranks) ::waitpid(p, nullptr, 0);
      throw std::runtime_error("[launch] could not start rank " + std::to_string(rank) + " (" + argv[0] +
                               "): " + ::strerror(rc));
    }
    ranks[pid] = rank;
  }

  int result = 0;
  bool failed = false;
  auto deadline = std::chrono::steady_clock::time_point::max();
  bool termed = false, killed = false;
  int forwarded = 0;
  while (!ranks.empty()) {
    if (g_signal != 0 && g_signal != forwarded) {
      forwarded = g_signal;
      for (const auto& [p, r] : ranks) ::kill(p, forwarded);
    }
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid > 0 && ranks.count(pid)) {
      const int rank = ranks.at(pid);
      ranks.erase(pid);
      int code = 0;
      std::string how;
      if (WIFSIGNALED(status)) {
        code = 128 + WTERMSIG(status);
        how = "was killed by signal " + std::to_string(WTERMSIG(status)) + " (" + ::strsignal(WTERMSIG(status)) + ")";
      } else if (WIFEXITED(status)) {
        code = WEXITSTATUS(status);
        how = "exited with code " + std::to_string(code) + (code == 127 ? " (could not run " + argv[0] + "?)" : "");
      }
      if (code != 0 && !failed) {
        failed = true;
        result = code;
        std::cerr << "[launch] rank " << rank << " (pid " << pid << ") " << how << "; waiting up to "
                  << o.grace_seconds << " s for the other ranks to stop\n";
        deadline = std::chrono::steady_clock::now() +
                   std::chrono::milliseconds(static_cast<int64_t>(o.grace_seconds * 1000));
      }
      continue;
    }
    const auto now = std::chrono::steady_clock::now();
    if (failed && now > deadline && !termed) {
      termed = true;
      for (const auto& [p, r] : ranks) {
        std::cerr << "[launch] stopping rank " << r << " (pid " << p << ")\n";
        ::kill(p, SIGTERM);
      }
      deadline = now + std::chrono::seconds(5);
    } else if (termed && now > deadline && !killed) {
      killed = true;
      for (const auto& [p, r] : ranks) ::kill(p, SIGKILL);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ::sigaction(SIGINT, &old_int, nullptr);
  ::sigaction(SIGTERM, &old_term, nullptr);
  if (result == 0 && forwarded != 0) result = 128 + forwarded;
  return result;
}

}  // namespace peft::distributed
