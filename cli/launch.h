#pragma once
// torchrun-style launcher options for `peft train` (cli/launch.cpp).
#include <string>
#include <vector>

#include "peft/distributed/launcher.h"

namespace CLI {
class App;
}

namespace peft::cli {

struct LaunchFlags {
  distributed::LaunchOptions opts;
};

/// --nproc_per_node, --nnodes, --node_rank, --master_addr, --master_port.
void add_launch_options(CLI::App& cmd, LaunchFlags& f);

/// With --nproc_per_node N > 0: runs `peft <rank_args>` as N local ranks, waits, and returns true
/// (throws when a rank failed). Otherwise returns false and the caller runs in this process.
bool launch_if_asked(const LaunchFlags& f, const std::vector<std::string>& rank_args);

}  // namespace peft::cli
