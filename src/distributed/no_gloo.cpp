// Built when the gloo headers (libgloo-dev) were not found: data-parallel training is unavailable.
#include "peft/core/check.h"
#include "peft/distributed/collective.h"

namespace peft::distributed {

bool available() { return false; }

std::shared_ptr<Collective> init_process_group(const DistributedEnv& env, const ProcessGroupOptions&) {
  throw NotSupported("[distributed] WORLD_SIZE=" + std::to_string(env.world_size) +
                     ": this build has no data-parallel support (LibTorch c10d with Gloo; install libgloo-dev "
                     "and re-run cmake)");
}

}  // namespace peft::distributed
