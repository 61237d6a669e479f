#pragma once
// Subcommand registration for the `peft` tool: each file adds one subcommand.
namespace CLI {
class App;
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

}  // namespace peft::cli
