// The torchrun environment and the parts of the process-group API that do not need Gloo.
#include <cstdlib>
#include <string>

#include "peft/core/check.h"
#include "peft/distributed/collective.h"

namespace peft::distributed {

namespace {

int env_int(const char* name, int fallback, int lo, int hi) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  PEFT_CHECK(*end == '\0' && x >= lo && x <= hi, ConfigError, "[distributed] environment variable ", name, "='", v,
             "': expected an integer in [", lo, ", ", hi, "]");
  return static_cast<int>(x);
}

}  // namespace

DistributedEnv env_from_environment() {
  DistributedEnv e;
  e.world_size = env_int("WORLD_SIZE", 1, 1, 1 << 16);
  e.rank = env_int("RANK", 0, 0, 1 << 16);
  e.local_rank = env_int("LOCAL_RANK", e.rank, 0, 1 << 16);
  e.master_port = env_int("MASTER_PORT", 29500, 1, 65535);
  if (const char* a = std::getenv("MASTER_ADDR"); a != nullptr && *a != '\0') e.master_addr = a;
  PEFT_CHECK(e.rank < e.world_size, ConfigError, "[distributed] RANK=", e.rank, " is outside [0, WORLD_SIZE=",
             e.world_size, ")");
  return e;
}

}  // namespace peft::distributed
