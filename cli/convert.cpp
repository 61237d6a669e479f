// peft convert: llama2.c checkpoints to a Hugging Face Llama folder.
#include <CLI/CLI.hpp>

#include <iostream>

#include "commands.h"
#include "peft/io/llama2c.h"

namespace peft::cli {

void add_convert_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "convert", "Convert a llama2.c checkpoint (legacy or v1) to a Hugging Face Llama folder");
  struct Args {
    std::string model, tokenizer, out;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("model", a->model, "llama2.c checkpoint (.bin)")->required()->check(CLI::ExistingFile);
  cmd->add_option("out", a->out, "Output folder")->required();
  cmd->add_option("--tokenizer", a->tokenizer, "llama2.c tokenizer.bin to convert alongside")
      ->check(CLI::ExistingFile);
  cmd->callback([a] {
    io::convert_llama2c(a->model, a->tokenizer, a->out);
    std::cout << "wrote " << a->out << " (config.json, generation_config.json, model.safetensors"
              << (a->tokenizer.empty() ? "" : ", tokenizer.json, tokenizer.bin") << ")\n";
  });
}

}  // namespace peft::cli
