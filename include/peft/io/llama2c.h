#pragma once
// llama2.c checkpoints (legacy and v1 "ak42" exports) and their conversion to a Hugging Face
// Llama folder (tier 0: torch-free).
//
//   peft::io::convert_llama2c("stories260K.bin", "tok512.bin", "out/stories260K");
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace peft::io {

/// The longest token a llama2.c tokenizer.bin may declare (its max_token_length header), in bytes.
/// Real ones hold a few dozen (Llama 2's: 27); building the merges costs the square of a token's
/// length, so a longer one is refused before it is read.
constexpr int32_t kMaxLlama2cTokenBytes = 1024;

/// The 7-int llama2.c header plus what the format version says.
struct Llama2cConfig {
  int dim = 0, hidden_dim = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, vocab_size = 0,
      seq_len = 0;
  bool shared_classifier = true;
  int version = 0;  ///< 0 = legacy export, 1 = "ak42" v1
};

/// A tensor in Hugging Face naming and layout (row-major, [out, in]).
struct NamedF32 {
  std::vector<int64_t> shape;
  std::vector<float> data;
};

struct Llama2cModel {
  Llama2cConfig config;
  /// HF LlamaForCausalLM state-dict keys; wq/wk rows permuted from llama2.c's interleaved RoPE
  /// pairs to HF's rotate-half layout. lm_head.weight only when the classifier is not shared.
  std::map<std::string, NamedF32> tensors;
};

/// Reads only the header (at most 256 bytes) and the file size, with read_llama2c's checks:
/// fields in range, head sizes consistent, the size exactly what the header implies. Cheap on
/// any file; throws FormatError naming the file and field (NotSupported for v2 exports).
Llama2cConfig read_llama2c_header(const std::string& path);

/// Parameters of the converted model (the classifier counted only when not shared).
uint64_t llama2c_parameter_count(const Llama2cConfig& c);
/// The exact file size a header implies (header, weights and, for v0, the RoPE tables).
uint64_t llama2c_file_size(const Llama2cConfig& c);

/// Reads a legacy or v1 llama2.c checkpoint; the file size must match the header exactly.
/// Throws FormatError naming the file and problem; NotSupported for quantised (v2) exports.
Llama2cModel read_llama2c(const std::string& path);

/// The HF config.json for a converted checkpoint.
std::string llama2c_hf_config_json(const Llama2cConfig& c);

/// Writes config.json, generation_config.json, model.safetensors and, when `tokenizer_bin` is
/// not empty, the tokenizer (tokenizer.bin as given, plus tokenizer.json) into `out_dir`.
void convert_llama2c(const std::string& model_bin, const std::string& tokenizer_bin,
                     const std::string& out_dir);

}  // namespace peft::io
