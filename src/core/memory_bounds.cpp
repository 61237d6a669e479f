#include "peft/core/memory_bounds.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>

#include "peft/core/error.h"

namespace peft {

uint64_t physical_memory_bytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page <= 0) return 0;
  return static_cast<uint64_t>(pages) * static_cast<uint64_t>(page);
}

std::string format_bytes(double b) {
  char buf[64];
  if (!std::isfinite(b) || b >= 1e30) return "an unbounded number of bytes";
  if (b >= 1024.0 * 1024 * 1024 * 1024 * 1024)
    std::snprintf(buf, sizeof buf, "%.1f PiB", b / (1024.0 * 1024 * 1024 * 1024 * 1024));
  else if (b >= 1024.0 * 1024 * 1024 * 1024) std::snprintf(buf, sizeof buf, "%.1f TiB", b / (1024.0 * 1024 * 1024 * 1024));
  else if (b >= 1024.0 * 1024 * 1024) std::snprintf(buf, sizeof buf, "%.1f GiB", b / (1024.0 * 1024 * 1024));
  else if (b >= 1024.0 * 1024) std::snprintf(buf, sizeof buf, "%.0f MiB", b / (1024.0 * 1024));
  else if (b >= 1024.0) std::snprintf(buf, sizeof buf, "%.1f KiB", b / 1024.0);
  else std::snprintf(buf, sizeof buf, "%.0f bytes", b);
  return buf;
}

void check_fits_in_memory(const std::string& what, double bytes, const std::string& because) {
  const uint64_t ram = physical_memory_bytes();
  if (std::isfinite(bytes) && (ram == 0 || bytes <= static_cast<double>(ram))) return;
  throw ConfigError(what + " needs at least " + format_bytes(bytes) + " (" + because + "); this machine has " +
                    format_bytes(static_cast<double>(ram)) + " of memory");
}

}  // namespace peft
