// The 4-bit base options shared by the commands that apply an adapter (generate, merge): given
// on the command line, or what the adapter records about the base it was trained on.
#include <filesystem>
#include <iostream>

#include "commands.h"
#include "peft/core/check.h"
#include "peft/io/gguf.h"
#include "peft/models/model.h"
#include "peft/models/quantized_model.h"

namespace peft::cli {

void apply_4bit_options(models::LoadOptions& lo, const std::string& model, const std::string& adapter,
                        const std::string& quant, bool double_quant, bool no_4bit, const std::string& command) {
  namespace fs = std::filesystem;
  const bool gguf = fs::is_regular_file(model) && io::is_gguf_file(model);
  if (!quant.empty()) {
    PEFT_CHECK(!gguf, ConfigError, "[", command, "] --4bit: ", model,
               " is a GGUF file, which keeps its own quantisation");
    lo.load_in_4bit = true;
    lo.bnb_4bit_quant_type = quant;
    lo.bnb_4bit_use_double_quant = double_quant;
    if (const auto rec = adapter.empty() ? std::nullopt : models::adapter_base_quantization(adapter);
        rec && (rec->quant_type != quant || rec->use_double_quant != double_quant))
      std::cerr << "warning: " << adapter << " was trained on a " << models::describe(*rec) << " base ("
                << models::kBaseQuantizationFile << "); --4bit asks for " << quant
                << (double_quant ? ", double quant" : "") << "\n";
    return;
  }
  if (adapter.empty() || gguf) return;
  const auto rec = models::adapter_base_quantization(adapter);
  if (!rec) return;
  if (no_4bit) {
    std::cerr << "note: full-precision base (--no-4bit); " << adapter << " was trained on a "
              << models::describe(*rec) << " base\n";
    return;
  }
  lo.load_in_4bit = true;
  lo.bnb_4bit_quant_type = rec->quant_type;
  lo.bnb_4bit_use_double_quant = rec->use_double_quant;
  lo.bnb_4bit_compute_dtype = rec->compute_dtype;
  std::cerr << "note: " << models::describe(*rec) << " base, as the adapter was trained ("
            << (fs::path(adapter) / models::kBaseQuantizationFile).string() << "); --no-4bit for the full-precision base\n";
}

}  // namespace peft::cli
