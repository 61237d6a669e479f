#pragma once
// Subcommand registration for the `peft` tool: each file adds one subcommand.
#include <string>

namespace CLI {
class App;
}
namespace peft::models {
struct LoadOptions;
}

namespace peft::cli {

void add_info_command(CLI::App& app);
void add_convert_command(CLI::App& app);
void add_generate_command(CLI::App& app);
void add_train_command(CLI::App& app);
void add_eval_command(CLI::App& app);
void add_merge_command(CLI::App& app);
void add_compare_command(CLI::App& app);
void add_export_command(CLI::App& app);

/// The base's 4-bit loading for a command that applies `adapter` to `model`: --4bit TYPE
/// (`quant`, with `double_quant`) when given; otherwise what the adapter records beside it
/// (base_quantization.json), unless `no_4bit`; says on stderr which it uses and why.
void apply_4bit_options(models::LoadOptions& lo, const std::string& model, const std::string& adapter,
                        const std::string& quant, bool double_quant, bool no_4bit, const std::string& command);

}  // namespace peft::cli
