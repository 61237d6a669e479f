#pragma once
// peft info on a PEFT adapter folder (adapter_config.json + adapter_model.safetensors).
#include <string>

namespace peft::cli {

/// Method, task, targets and tensor totals; for AdaLoRA the kept rank of every module (a table
/// with a bar per module) against init_r and the target budget.
void run_adapter_info(const std::string& path, bool list_tensors, const std::string& plot = "");

}  // namespace peft::cli
