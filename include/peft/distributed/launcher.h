#pragma once
// The local launcher of data-parallel runs (tier 0: torch-free, POSIX). Follows torchrun's
// conventions: one process per local rank with RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE,
// GROUP_RANK, MASTER_ADDR and MASTER_PORT in its environment; rank 0 (node 0) hosts the store.
//
//   peft::distributed::LaunchOptions o;  o.nproc_per_node = 2;
//   return peft::distributed::launch(o, {"/proc/self/exe", "train", "cfg.yaml"});
#include <string>
#include <vector>

namespace peft::distributed {

struct LaunchOptions {
  int nproc_per_node = 1;
  int nnodes = 1;
  int node_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  /// After one rank fails, how long the others get to stop on their own (they notice through their
  /// next collective and name the lost rank) before they are sent SIGTERM, then SIGKILL.
  double grace_seconds = 30;

  /// ConfigError naming the field on impossible values (node_rank outside [0, nnodes), ...).
  void validate() const;
};

/// Starts `nproc_per_node` copies of `argv` (argv[0] is the program path) and waits for all of them.
/// Returns 0 when every rank exits 0; otherwise reports the first failure on stderr ("rank 1 (pid
/// 1234) was killed by signal 9") and returns its exit code (128 + signal for a signal). SIGINT and
/// SIGTERM sent to the launcher are passed on to the ranks. With nproc_per_node > 1, ranks get
/// OMP_NUM_THREADS=1 (as torchrun does) and OPENBLAS_NUM_THREADS=cores/nproc_per_node unless set.
/// Ranks get SIGTERM if the launcher itself dies (PR_SET_PDEATHSIG).
int launch(const LaunchOptions& opts, const std::vector<std::string>& argv);

}  // namespace peft::distributed
