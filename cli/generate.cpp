// peft generate: text from a prompt with a causal LM folder.
#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include <iostream>

#include "commands.h"
#include "peft/core/check.h"
#include "peft/io/tokenizer.h"
#include "peft/models/generation.h"
#include "peft/models/model.h"
#include "peft/peft_model.h"

namespace peft::cli {

void add_generate_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("generate", "Generate text from a prompt with a causal language model");
  struct Args {
    std::string model, prompt = "";
    int64_t max_new_tokens = 64, top_k = 50;
    double temperature = 1.0, top_p = 1.0, repetition_penalty = 1.0;
    bool sample = false;
    uint64_t seed = 0;
    std::string dtype = "float32";
    std::string adapter;
    bool dequantize = false, print_ids = false, allow_nonfinite = false;
    std::string quant;  // --4bit
    bool double_quant = false, no_4bit = false;
    bool llamacpp = false;
    std::string llamacpp_cache_type = "f16", llamacpp_flash_attn = "on";
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("model", a->model, "Model folder (config.json, safetensors, tokenizer) or GGUF file")->required()
      ->check(CLI::ExistingPath);
  cmd->add_option("-p,--prompt", a->prompt, "Prompt text (default: empty, i.e. BOS only)");
  auto* g = cmd->add_option_group("Decoding");
  g->add_option("-n,--max-new-tokens", a->max_new_tokens, "Tokens to generate")->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  g->add_flag("--sample", a->sample, "Sample instead of greedy decoding");
  g->add_option("--temperature", a->temperature, "Sampling temperature")->capture_default_str();
  g->add_option("--top-k", a->top_k, "Keep the k most likely tokens (0 = off)")->capture_default_str();
  g->add_option("--top-p", a->top_p, "Nucleus sampling mass")->capture_default_str();
  g->add_option("--repetition-penalty", a->repetition_penalty, "Penalty for repeated tokens")
      ->capture_default_str();
  g->add_option("--seed", a->seed, "Sampling seed")->capture_default_str();
  cmd->add_option("--dtype", a->dtype, "float32 | bfloat16")->capture_default_str();
  cmd->add_option("-a,--adapter", a->adapter, "PEFT adapter folder (LoRA, prompt tuning, P-tuning, prefix tuning)")
      ->check(CLI::ExistingDirectory);
  cmd->add_flag("--dequantize", a->dequantize, "GGUF: decode quantised weights to fp32 first");
  cmd->add_flag("--allow-nonfinite-weights", a->allow_nonfinite,
                "Load a base whose weights hold NaN/inf (inf masks) with a warning instead of an error");
  auto* q = cmd->add_option_group("4-bit base (QLoRA)");
  q->add_option("--4bit", a->quant, "Quantise the base to 4 bits on load (nf4 or fp4), as QLoRA training does. "
                                    "Default: what the adapter records (its base_quantization.json)")
      ->check(CLI::IsMember({"nf4", "fp4"}));
  q->add_flag("--double-quant", a->double_quant, "With --4bit: double quantisation of the block scales");
  q->add_flag("--no-4bit", a->no_4bit, "Keep the base in full precision even if the adapter was trained on a 4-bit one");
  cmd->add_flag("--ids", a->print_ids, "Also print the prompt and generated token ids");
  auto* l = cmd->add_option_group("llama.cpp numerics (GGUF)");
  l->add_flag("--llamacpp-numerics", a->llamacpp,
              "Compute as llama.cpp's CPU backend does (quantised activations in every matmul, its rounding "
              "in norms, RoPE and attention), to reproduce its tokens");
  l->add_option("--llamacpp-cache-type", a->llamacpp_cache_type,
                "KV cache type of the llama.cpp run to reproduce (its -ctk/-ctv): f16 (its default) or f32")
      ->check(CLI::IsMember({"f16", "f32"}))->capture_default_str();
  l->add_option("--llamacpp-flash-attn", a->llamacpp_flash_attn,
                "Flash attention of the llama.cpp run to reproduce (its -fa): on (what its default auto gives "
                "on the CPU) or off")
      ->check(CLI::IsMember({"on", "off"}))->capture_default_str();
  cmd->callback([a] {
    models::LoadOptions lo;
    lo.dtype = a->dtype;
    lo.dequantize = a->dequantize;
    lo.allow_nonfinite_weights = a->allow_nonfinite;
    lo.llamacpp_numerics.enabled = a->llamacpp;
    lo.llamacpp_numerics.kv_cache_f16 = a->llamacpp_cache_type == "f16";
    lo.llamacpp_numerics.flash_attn = a->llamacpp_flash_attn == "on";
    PEFT_CHECK(!a->no_4bit || a->quant.empty(), ConfigError, "[generate] --4bit and --no-4bit contradict each other");
    PEFT_CHECK(!a->double_quant || !a->quant.empty(), ConfigError, "[generate] --double-quant needs --4bit nf4|fp4");
    apply_4bit_options(lo, a->model, a->adapter, a->quant, a->double_quant, a->no_4bit, "generate");
    auto model = models::load_model(a->model, lo);
    const auto tok = io::Tokenizer::from_pretrained(a->model);
    models::check_tokenizer_fits(*model, tok.vocab_size(), a->model);
    const auto enc = tok.encode(a->prompt);
    PEFT_CHECK(!enc.ids.empty(), ConfigError, "[generate] the prompt encodes to no tokens");
    auto gc = models::generation_config_from(model->config());
    gc.max_new_tokens = a->max_new_tokens;
    gc.do_sample = a->sample;
    gc.temperature = a->temperature;
    gc.top_k = a->top_k;
    gc.top_p = a->top_p;
    gc.repetition_penalty = a->repetition_penalty;
    gc.seed = a->seed;
    const at::Tensor ids = torch::tensor(std::vector<int64_t>(enc.ids.begin(), enc.ids.end())).unsqueeze(0);
    const at::Tensor out = (a->adapter.empty() ? models::generate(*model, ids, {}, gc)
                                               : PeftModel::from_pretrained(model, a->adapter)->generate(ids, {}, gc))[0]
                               .contiguous();
    std::vector<io::TokenId> all(out.data_ptr<int64_t>(), out.data_ptr<int64_t>() + out.numel());
    std::cout << tok.decode(all, /*skip_special_tokens=*/true) << "\n";
    if (a->print_ids) {
      std::cout << "ids:";
      for (std::size_t i = 0; i < all.size(); ++i) std::cout << (i == enc.ids.size() ? " |" : "") << " " << all[i];
      std::cout << "\n";
    }
  });
}

}  // namespace peft::cli
