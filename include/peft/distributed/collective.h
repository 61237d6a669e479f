#pragma once
// Data-parallel training on c10d + Gloo (tier 2). The trainer sees only `Collective`: rank, world
// size, "sum these tensors over all ranks" and a barrier. `init_process_group` builds one from the
// torchrun environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), rendezvous through a TCPStore
// hosted by rank 0.
//
//   auto env = peft::distributed::env_from_environment();          // RANK=1 WORLD_SIZE=2 ...
//   auto pg = peft::distributed::init_process_group(env);          // blocks until all ranks joined
//   trainer.set_collective(pg);                                    // grads summed over ranks
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace peft::distributed {

/// A collective failed: a rank died, hung past the timeout, or the rendezvous did not complete.
/// The message names the rank(s) lost when they can be told apart.
class DistributedError : public std::runtime_error {
 public:
  explicit DistributedError(const std::string& what) : std::runtime_error(what) {}
};

/// What the trainer asks of a process group.
class Collective {
 public:
  virtual ~Collective() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  /// Sums every tensor in place over all ranks (same shapes and dtypes, same order on every rank).
  /// Tensors are packed into buckets per dtype, and the buckets' all-reduces run concurrently.
  virtual void all_reduce_sum(const std::vector<at::Tensor>& tensors) = 0;
  virtual void barrier() = 0;
};

/// torchrun's environment: RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT.
struct DistributedEnv {
  int rank = 0;
  int local_rank = 0;
  int world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
};

/// Reads the variables above; missing ones take the defaults (a single process). A malformed value
/// or a RANK outside [0, WORLD_SIZE) is a ConfigError naming the variable.
DistributedEnv env_from_environment();

struct ProcessGroupOptions {
  /// Bound on rendezvous and on every collective: a rank that hangs this long fails the others.
  double timeout_seconds = 300;
  int64_t bucket_bytes = 25 << 20;  ///< all-reduce bucket size (DDP's bucket_cap_mb = 25)
  /// Address this rank's Gloo device binds to; "" = the local address that routes to MASTER_ADDR.
  std::string local_addr;
};

/// True when this build has c10d + Gloo (the gloo headers were found at configure time).
bool available();

/// Joins the process group described by `env` (rank 0 hosts the TCPStore). Throws NotSupported in a
/// build without Gloo and DistributedError when the rendezvous times out.
std::shared_ptr<Collective> init_process_group(const DistributedEnv& env, const ProcessGroupOptions& opts = {});

}  // namespace peft::distributed
