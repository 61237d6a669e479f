// peft convert: llama2.c checkpoints and GGUF files to a Hugging Face folder.
#include <CLI/CLI.hpp>

#include <iostream>

#include "peft/core/file_util.h"
#include "peft/core/error.h"

#include "commands.h"
#include "peft/io/gguf.h"
#include "peft/io/llama2c.h"
#include "peft/io/model_path.h"
#include "peft/models/gguf_model.h"

namespace peft::cli {

void add_convert_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "convert", "Convert a llama2.c checkpoint (legacy or v1) or a GGUF file to a Hugging Face folder");
  struct Args {
    std::string model, tokenizer, out;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("model", a->model, "llama2.c checkpoint (.bin) or GGUF file (.gguf)")->required()->check(CLI::ExistingFile);
  cmd->add_option("out", a->out, "Output folder")->required();
  cmd->add_option("--tokenizer", a->tokenizer, "llama2.c tokenizer.bin to convert alongside")
      ->check(CLI::ExistingFile);
  cmd->callback([a] {
    check_output_apart("convert", a->out, {a->model, a->tokenizer});
    check_output_folder("convert", a->out, is_model_folder_file);  // before the work
    using K = io::ModelPathKind;
    const auto what = io::require_model_path(a->model, {K::GgufModel, K::Llama2cCheckpoint}, "convert");
    if (!a->tokenizer.empty()) io::require_model_path(a->tokenizer, {K::Llama2cTokenizer}, "convert");
    if (what.kind == K::GgufModel) {
      if (!a->tokenizer.empty())
        throw ConfigError("[convert] --tokenizer applies to llama2.c checkpoints; a GGUF file carries its own");
      // Written beside the output and put in place when complete (a previous output replaced whole).
      write_folder_atomic("convert", a->out, is_model_folder_file,
                          [&](const std::string& tmp) { models::convert_gguf_to_hf(a->model, tmp); });
      std::cout << "wrote " << a->out
                << " (config.json, generation_config.json, model.safetensors, tokenizer.json, tokenizer_config.json)\n";
      return;
    }
    if (a->tokenizer.empty() && !what.tokenizer_beside.empty())
      std::cerr << "note: " << what.tokenizer_beside << " beside it is a llama2.c tokenizer; add --tokenizer "
                << what.tokenizer_beside << " to convert it too\n";
    write_folder_atomic("convert", a->out, is_model_folder_file,
                        [&](const std::string& tmp) { io::convert_llama2c(a->model, a->tokenizer, tmp); });
    std::cout << "wrote " << a->out << " (config.json, generation_config.json, model.safetensors"
              << (a->tokenizer.empty() ? "" : ", tokenizer.json, tokenizer.bin") << ")\n";
  });
}

}  // namespace peft::cli
