// Opens a Hugging Face checkpoint folder and loads one tensor into LibTorch.
//   example_load_model models/stories260K-hf model.embed_tokens.weight
#include <torch/torch.h>

#include <iostream>

#include "peft/core/runtime.h"
#include "peft/peft.h"

int main(int argc, char** argv) {
  peft::restart_with_suitable_blas(argv);  // OpenBLAS's right kernels (docs/architecture.md, Runtime)
  if (argc < 2) {
    std::cerr << "usage: " << argv[0] << " <model folder> [tensor name]\n";
    return 2;
  }
  peft::init_runtime();
  const auto ckpt = peft::io::HfCheckpoint::open(argv[1]);
  const std::string name = argc > 2 ? argv[2] : ckpt.tensor_names().front();
  const at::Tensor t = peft::io::to_tensor(ckpt, name);  // zero-copy view of the mapping
  std::cout << name << ": " << t.sizes() << " " << t.dtype() << " mean " << t.mean().item<double>()
            << "\n";
  return 0;
}
