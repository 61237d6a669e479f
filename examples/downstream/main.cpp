// Uses only torch-free headers of an installed peft.cpp, linked against the full library.
#include <iostream>

#include "peft/core/runtime.h"
#include "peft/io/hf_checkpoint.h"

int main(int argc, char** argv) {
  const auto info = peft::init_runtime();
  std::cout << "threads " << info.intra_op_threads << ", BLAS " << info.blas_library << "\n";
  if (argc > 1) {
    const auto ck = peft::io::HfCheckpoint::open(argv[1]);
    std::cout << ck.tensor_names().size() << " tensors\n";
  }
  return 0;
}
