// Runs any example config (examples/configs/*.yaml) from C++, as `peft train` does:
//   build/examples/example_run_config examples/configs/e2e_lora.yaml model=build/models/stories260K max_steps=20
#include <iostream>

#include "peft/core/runtime.h"
#include "peft/train/run.h"

int main(int argc, char** argv) {
  peft::restart_with_suitable_blas(argv);  // OpenBLAS's right kernels (docs/architecture.md, Runtime)
  if (argc < 2) return std::cerr << "usage: " << argv[0] << " CONFIG.yaml [key=value ...]\n", 2;
  peft::init_runtime();
  const auto config = peft::train::load_run_config(argv[1], std::vector<std::string>(argv + 2, argv + argc));
  const auto result = peft::train::run_training(config);
  std::cout << "adapter: " << result.adapter_dir << "\n" << result.summary.dump(1) << "\n";
}
