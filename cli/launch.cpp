// torchrun-style options of `peft train`: with --nproc_per_node N this process becomes the local
// launcher and re-runs the same command line once per rank, with RANK/WORLD_SIZE/... set.
#include <CLI/CLI.hpp>

#include <filesystem>
#include <string>

#include "launch.h"
#include "peft/distributed/launcher.h"

namespace peft::cli {

void add_launch_options(CLI::App& cmd, LaunchFlags& f) {
  const std::string g = "Data-parallel (torchrun conventions; see docs/distributed.md)";
  cmd.add_option("--nproc_per_node", f.opts.nproc_per_node, "Start N local ranks (0 = run in this process)")
      ->group(g)->check(CLI::NonNegativeNumber);
  cmd.add_option("--nnodes", f.opts.nnodes, "Number of hosts")->group(g)->capture_default_str();
  cmd.add_option("--node_rank", f.opts.node_rank, "This host's index in [0, nnodes)")->group(g)->capture_default_str();
  cmd.add_option("--master_addr", f.opts.master_addr, "Address of node 0 (hosts the rendezvous store)")
      ->group(g)->capture_default_str();
  cmd.add_option("--master_port", f.opts.master_port, "Port of the rendezvous store on node 0")
      ->group(g)->capture_default_str();
  f.opts.nproc_per_node = 0;
}

bool launch_if_asked(const LaunchFlags& f, const std::vector<std::string>& rank_args) {
  if (f.opts.nproc_per_node == 0) return false;
  std::vector<std::string> argv = {std::filesystem::read_symlink("/proc/self/exe").string()};
  argv.insert(argv.end(), rank_args.begin(), rank_args.end());
  const int rc = distributed::launch(f.opts, argv);
  if (rc != 0)
    throw std::runtime_error("[launch] a rank failed (exit code " + std::to_string(rc) + "); see its message above");
  return true;
}

}  // namespace peft::cli
