// peft: command-line front end. Exit codes: 0 ok, 1 runtime error, 2 usage/config error.
#include <CLI/CLI.hpp>

#include <iostream>

#include "commands.h"
#include "peft/core/error.h"
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
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  } catch (const peft::ConfigError& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  } catch (const std::invalid_argument& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
