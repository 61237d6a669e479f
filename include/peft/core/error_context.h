#pragma once
// What the program was doing when an exception escaped (tier 0: torch-free).
//
// An ErrorContext names one step ("loading the adapter weights from out/adapter", "training step
// 17"). When an exception unwinds through it, the step is recorded, so the command line can say
// what was being done around an error whose own message names nothing (a LibTorch or allocator
// error):
//
//   {
//     peft::ErrorContext ctx("loading optimizer state from " + path);
//     torch::load(opt, path);          // throws c10::Error "PytorchStreamReader failed ..."
//   }
//   ...
//   catch (const std::exception& e) { std::cerr << peft::describe_error(e) << "\n"; }
//   // -> "while loading optimizer state from run/checkpoint-4/optimizer.pt: PytorchStreamReader failed ..."
#include <exception>
#include <string>
#include <vector>

namespace peft {

class ErrorContext {
 public:
  explicit ErrorContext(std::string what);
  ~ErrorContext();
  ErrorContext(const ErrorContext&) = delete;
  ErrorContext& operator=(const ErrorContext&) = delete;

 private:
  std::string what_;
  int uncaught_;
};

/// The steps the last exception unwound through on this thread, outermost first; clears them.
std::vector<std::string> take_error_context();

/// One line for `e`: peft's own errors as they are (they name their file, field or value);
/// anything else (LibTorch, the allocator, the standard library) as its first line without a
/// backtrace, after "while <step>, <inner step>: " from the unwound ErrorContexts. Clears them.
/// The result is one printable line: line breaks become spaces, control characters and bytes that
/// are not UTF-8 (quoted from a binary file) become \xNN.
std::string describe_error(const std::exception& e);

}  // namespace peft
