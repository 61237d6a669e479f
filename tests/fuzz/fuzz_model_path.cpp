// Model path detection (io/model_path.h) as every command runs it on the path it is given: the
// content sniffing of GGUF, safetensors, llama2.c checkpoints and tokenizer.bin, adapter and HF
// folders, and the one-line error naming what was found. Input: one selector byte, then the file.
//   bit 0: the file alone (model.bin), or a folder holding it
//   bit 1: the folder also holds a llama2.c tokenizer.bin (the bundled tok512.bin)
//   bit 2: the file is the folder's adapter_config.json (else bit 3: its config.json, beside a
//          model.safetensors)
// detect_model_path never throws on file contents, and its error prints as one line.
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "fuzz_util.h"
#include "peft/core/error.h"
#include "peft/core/error_context.h"
#include "peft/io/model_path.h"

namespace fs = std::filesystem;
using peft::io::ModelPathKind;

namespace {

void reset(const std::string& dir) {
  std::error_code ec;
  fs::remove_all(dir, ec);
  fs::create_directories(dir);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const unsigned mode = data[0];
  const auto content = peft::fuzz::as_text(data + 1, size - 1);
  const std::string dir = peft::fuzz::scratch_dir() + "/models";
  reset(dir);
  std::string path = dir + "/model.bin";
  if (mode & 1) {
    const std::string name = mode & 4 ? "adapter_config.json" : mode & 8 ? "config.json" : "model.bin";
    fs::rename(peft::fuzz::write_scratch("file", content), dir + "/" + name);
    if (mode & 8) fs::rename(peft::fuzz::write_scratch("file", content), dir + "/model.safetensors");
    if (mode & 2) fs::copy_file(PEFT_SOURCE_DIR "/models/stories260K/tok512.bin", dir + "/tokenizer.bin");
    path = dir;
  } else {
    fs::rename(peft::fuzz::write_scratch("file", content), path);
  }
  const auto info = peft::io::detect_model_path(path);
  (void)info.summary();
  (void)info.candidates();
  if (info.kind == ModelPathKind::Llama2cCheckpoint) (void)peft::io::llama2c_convert_command(info);
  for (const auto& c : info.contents)
    if (c.kind == ModelPathKind::Llama2cCheckpoint) (void)peft::io::llama2c_convert_command(c);
  const std::string msg = peft::io::model_path_error(info, {ModelPathKind::HfFolder, ModelPathKind::GgufModel}, "fuzz");
  // The command line prints it as one line (describe_error), whatever bytes the file held.
  const std::string line = peft::describe_error(peft::FormatError(msg));
  if (msg.empty() || line.find_first_of("\n\r") != std::string::npos) std::abort();
  return 0;
}
