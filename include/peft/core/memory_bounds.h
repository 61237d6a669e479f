#pragma once
// Bounds on what a file may make the program allocate (tier 0: torch-free). Sizes read from
// config.json, adapter_config.json or a GGUF header are checked here before anything is built, so
// an absurd value is one error naming it instead of a hang, an OOM kill or a raw allocator error.
//
//   peft::check_fits_in_memory("[lora] adapter 'default'", bytes, "r=1000000000 on 7 modules");
#include <cstdint>
#include <string>

namespace peft {

/// Physical memory of this machine in bytes (sysconf); 0 when unknown.
uint64_t physical_memory_bytes();

/// "1.5 GiB", "312 MiB", "4.0 KiB", "17 bytes".
std::string format_bytes(double bytes);

/// Throws ConfigError "<what> needs at least <bytes> (<because>); this machine has <RAM> of
/// memory" when `bytes` exceeds the machine's physical memory (never when that is unknown).
/// `bytes` is a double so products of hostile sizes cannot wrap.
void check_fits_in_memory(const std::string& what, double bytes, const std::string& because);

}  // namespace peft
