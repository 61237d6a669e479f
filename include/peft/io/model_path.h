#pragma once
// What a model path holds, recognised by content (magic bytes, validated headers, exact sizes;
// never by extension), and the one error every command gives when that is not what it accepts
// (tier 0: torch-free).
//
//   const auto p = peft::io::detect_model_path("models/stories260K/stories260K.bin");
//   // p.kind == ModelPathKind::Llama2cCheckpoint, p.llama2c.dim == 64, p.tokenizer_beside ".../tok512.bin"
//   peft::io::require_model_path(path, {ModelPathKind::HfFolder, ModelPathKind::GgufModel}, "load_model");
//
// Every read is bounded: headers are read in full only up to their format's cap, folders are
// scanned one level deep over at most kMaxFolderEntries entries.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "peft/io/llama2c.h"

namespace peft::io {

enum class ModelPathKind {
  Missing,            ///< no such file or folder
  HfFolder,           ///< config.json + model.safetensors or model.safetensors.index.json
  SafetensorsFile,    ///< one .safetensors file (validated header)
  AdapterFolder,      ///< PEFT adapter folder (adapter_config.json)
  GgufModel,          ///< GGUF file whose general.type is not "adapter"
  GgufAdapter,        ///< llama.cpp LoRA adapter (GGUF, general.type "adapter")
  Llama2cCheckpoint,  ///< llama2.c export, legacy (v0) or "ak42" v1
  Llama2cTokenizer,   ///< llama2.c tokenizer.bin
  Folder,             ///< a folder of none of the kinds above holding files of those kinds
  Unknown,            ///< none of the above (`reason` says why)
};

/// "a Hugging Face model folder (config.json + safetensors)", "a GGUF model file", ...
std::string model_path_kind_name(ModelPathKind kind);

/// Folder entries examined at most (sorted by name; hidden ones skipped).
constexpr std::size_t kMaxFolderEntries = 256;

struct ModelPathInfo {
  ModelPathKind kind = ModelPathKind::Unknown;
  std::string path;
  /// Unknown / Missing: why nothing matched, e.g. "looks like a llama2.c checkpoint but: ...".
  std::string reason;
  uint64_t file_size = 0;  ///< files only

  Llama2cConfig llama2c;               ///< Llama2cCheckpoint
  /// Llama2cCheckpoint: the llama2.c tokenizer.bin in the same folder (empty when there is
  /// none, or several and none is named tokenizer.bin).
  std::string tokenizer_beside;
  int64_t tokenizer_vocab = 0;         ///< Llama2cTokenizer: entries
  int32_t tokenizer_max_token_length = 0;  ///< Llama2cTokenizer: the header field
  std::string architecture;            ///< Gguf*: general.architecture; HfFolder: model_type
  std::string adapter_type;            ///< AdapterFolder: peft_type; GgufAdapter: adapter.type
  std::string base_model;              ///< AdapterFolder: base_model_name_or_path
  std::size_t tensors = 0;             ///< SafetensorsFile
  bool sharded = false;                ///< HfFolder: model.safetensors.index.json
  /// Folder: the recognised entries directly inside (files, and adapter / HF subfolders), by name.
  std::vector<ModelPathInfo> contents;

  /// A noun phrase for messages: "a llama2.c checkpoint (v0, dim 64, 5 layers, vocab 512)".
  std::string summary() const;
  /// Folder: the entries that are models or adapters (not tokenizers).
  std::vector<const ModelPathInfo*> candidates() const;
};

/// What `path` holds. Never throws on file contents (unreadable or hostile input gives Unknown
/// with a reason); a GGUF or safetensors file is validated as its reader does.
ModelPathInfo detect_model_path(const std::string& path);

/// The command that makes a llama2.c checkpoint usable:
/// "peft convert CKPT OUT --tokenizer TOK" (the tokenizer only when one sits beside it).
std::string llama2c_convert_command(const ModelPathInfo& checkpoint);

/// One line naming the path, what it is, what `accepted` lists, and the fix:
/// "[load_model] m/stories260K.bin is a llama2.c checkpoint (v0, dim 64, 5 layers, vocab 512), not a
/// Hugging Face model folder (config.json + safetensors) or a GGUF model file; convert it first:
/// peft convert m/stories260K.bin OUT --tokenizer m/tok512.bin".
std::string model_path_error(const ModelPathInfo& info, const std::vector<ModelPathKind>& accepted,
                             const std::string& tag);

/// Throws model_path_error: FormatError for Missing / Unknown, ConfigError for a recognised kind
/// that is not accepted.
[[noreturn]] void throw_model_path_error(const ModelPathInfo& info,
                                         const std::vector<ModelPathKind>& accepted,
                                         const std::string& tag);

/// detect_model_path, throwing as throw_model_path_error does unless the kind is accepted.
ModelPathInfo require_model_path(const std::string& path, const std::vector<ModelPathKind>& accepted,
                                 const std::string& tag);

}  // namespace peft::io
