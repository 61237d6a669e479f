// Loads a model (a GGUF file or an HF folder, with an optional PEFT adapter), runs one prompt and
// writes its logits, the numbers to set beside llama.cpp's (tools/llamacpp/compare_logits.py) or
// transformers'. --llamacpp-numerics computes as llama.cpp's CPU backend with its defaults (F16 KV
// cache, flash attention); --llamacpp-numerics=f32 as dump_logits runs (F32 cache, no flash attention).
//   example_gguf_logits SmolLM2-135M-Instruct.Q4_1.gguf "The capital of France is" out.safetensors [ADAPTER]
//                       [--llamacpp-numerics[=f32]]
#include <torch/torch.h>

#include <iostream>
#include <string>
#include <vector>

#include "peft/core/runtime.h"
#include "peft/peft.h"

int main(int argc, char** argv) {
  peft::restart_with_suitable_blas(argv);  // OpenBLAS's right kernels (docs/architecture.md, Runtime)
  peft::models::LoadOptions opts;
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--llamacpp-numerics" || a == "--llamacpp-numerics=f32") {
      opts.llamacpp_numerics.enabled = true;
      opts.llamacpp_numerics.kv_cache_f16 = opts.llamacpp_numerics.flash_attn = a == "--llamacpp-numerics";
    } else {
      args.push_back(argv[i]);
    }
  }
  argc = static_cast<int>(args.size());
  argv = args.data();
  if (argc < 4) {
    std::cerr << "usage: " << argv[0]
              << " <model.gguf | model folder> <prompt> <out.safetensors> [adapter folder] [--llamacpp-numerics[=f32]]\n";
    return 2;
  }
  try {
    peft::init_runtime();
    auto base = peft::models::load_model(argv[1], opts);  // GGUF: quantised weights stay in their blocks
    const auto tok = peft::io::Tokenizer::from_pretrained(argv[1]);
    const auto enc = tok.encode(argv[2]);
    const at::Tensor ids = torch::tensor(std::vector<int64_t>(enc.ids.begin(), enc.ids.end())).unsqueeze(0);
    peft::models::ModelInputs in;
    in.input_ids = ids;
    torch::NoGradGuard no_grad;
    const at::Tensor logits = argc > 4 ? peft::PeftModel::from_pretrained(base, argv[4])->forward(in).logits
                                       : base->forward(in).logits;
    peft::io::save_safetensors(argv[3], {{"logits", logits[0].contiguous()}, {"input_ids", ids[0].contiguous()}});
    std::cout << "wrote " << argv[3] << ": " << ids.size(1) << " tokens x " << logits.size(-1) << " logits\n";
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
