// peft: command-line front end. Exit codes: 0 ok, 1 runtime error, 2 usage/config error.
#include <CLI/CLI.hpp>

#include <iostream>

#include "commands.h"
#include "peft/core/error.h"
#include "peft/core/error_context.h"
#include "peft/core/runtime.h"

int main(int argc, char** argv) {
  // OpenBLAS chooses its kernels when it loads, before main; on CPUs it does not recognise it
  // falls back to generic SSE3 kernels. Start again with the right ones (runtime.h).
  peft::restart_with_suitable_blas(argv);
  CLI::App app{"peft: parameter-efficient fine-tuning of transformer models (LoRA, AdaLoRA, "
               "QLoRA, prompt methods)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "peft 0.1.0");
  bool verbose = false;
  app.add_flag("-v,--verbose", verbose, "Print more detail on errors");
  peft::cli::add_info_command(app);
  peft::cli::add_convert_command(app);
  peft::cli::add_generate_command(app);
  peft::cli::add_train_command(app);
  peft::cli::add_eval_command(app);
  peft::cli::add_merge_command(app);
  peft::cli::add_compare_command(app);
  peft::cli::add_export_command(app);
  try {
    peft::init_runtime();
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    // One line, like every other error: what was wrong and where the usage is.
    const CLI::App* sub = nullptr;
    for (const CLI::App* s : app.get_subcommands()) sub = s;
    std::cerr << "error: " << e.what() << " (see peft " << (sub ? sub->get_name() + " " : std::string()) << "--help)\n";
    return 2;
  } catch (const peft::ConfigError& e) {
    std::cerr << "error: " << peft::describe_error(e) << "\n";
    return 2;
  } catch (const std::invalid_argument& e) {
    std::cerr << "error: " << peft::describe_error(e) << "\n";
    return 2;
  } catch (const std::exception& e) {
    // LibTorch and allocator errors name nothing: describe_error adds what was being done.
    std::cerr << "error: " << peft::describe_error(e) << "\n";
    return 1;
  }
  return 0;
}
