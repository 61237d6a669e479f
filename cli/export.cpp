// peft export: a PEFT LoRA / AdaLoRA adapter folder to llama.cpp's LoRA GGUF (export/gguf.h).
#include <CLI/CLI.hpp>

#include <iomanip>
#include <iostream>

#include "peft/core/file_util.h"
#include "commands.h"
#include "peft/core/error.h"
#include "peft/export/gguf.h"

namespace peft::cli {

void add_export_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "export", "Export a LoRA / AdaLoRA adapter to llama.cpp's LoRA GGUF (llama-cli --lora, llama-export-lora)");
  struct Args {
    std::string adapter, out, base, type = "f32", name;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("adapter", a->adapter, "PEFT adapter folder (adapter_config.json + adapter_model.safetensors)")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("out", a->out, "Output .gguf file")->required();
  cmd->add_option("--base", a->base, "The base model: a GGUF file or a Hugging Face folder (architecture, heads "
                                     "and tensor names come from it)")
      ->required()
      ->check(CLI::ExistingPath);
  cmd->add_option("--type", a->type, "Element type of lora_a / lora_b")->check(CLI::IsMember({"f32", "f16"}));
  cmd->add_option("--name", a->name, "general.name (default: the adapter folder's name)");
  cmd->footer(
      "llama.cpp scales every pair by adapter.lora.alpha / r. Plain LoRA is written as saved; rsLoRA,\n"
      "rank_pattern / alpha_pattern and AdaLoRA (lora_A * lora_E, masked triplets dropped) get their scaling\n"
      "folded into lora_b. DoRA, prompt-learning methods, modules_to_save, trained biases and targets\n"
      "without a llama.cpp tensor are refused; merge those instead: peft merge BASE.gguf ADAPTER OUT.gguf\n"
      "--format gguf.");
  cmd->callback([a] {
    check_output_apart("export", a->out, {a->adapter, a->base});
    check_output_file("export", a->out);  // written beside it, renamed when complete (write_file_atomic)
    exporter::GgufLoraExportOptions o;
    o.type = a->type == "f16" ? io::GgmlType::F16 : io::GgmlType::F32;
    o.name = a->name;
    const auto r = exporter::export_lora_gguf(a->adapter, a->base, a->out, o);
    int64_t folded = 0;
    for (const auto& t : r.tensors) folded += t.fold != 1.0 ? 1 : 0;
    std::cout << "wrote " << a->out << ": " << r.tensors.size() << " lora_a/lora_b pairs (" << a->type
              << "), adapter.lora.alpha " << r.alpha;
    if (folded > 0) std::cout << ", scaling folded into lora_b for " << folded;
    std::cout << "\n";
    for (const auto& s : r.skipped) std::cout << "  skipped " << s << " (rank 0: no update)\n";
  });
}

}  // namespace peft::cli
