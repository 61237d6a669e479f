#pragma once
// Exporting adapters to llama.cpp (tier 0: torch-free): a saved PEFT LoRA / AdaLoRA adapter folder
// (adapter_config.json + adapter_model.safetensors) to llama.cpp's LoRA GGUF, which `llama-cli
// --lora`, `llama-server` and `llama-export-lora` load.
//
//   peft::exporter::export_lora_gguf("out/adapter", "tiny_llama_f32.gguf", "adapter.gguf");
//
// The file holds general.type = "adapter", adapter.type = "lora", adapter.lora.alpha and the
// base's general.architecture, and for every adapted base tensor `<llama.cpp name>.lora_a`
// ([r, in], ggml ne = {in, r}) and `.lora_b` ([out, r], Q/K rows in llama.cpp's RoPE order).
// llama.cpp scales each pair by alpha / r (r = its own rank); where our scaling differs (rsLoRA,
// rank_pattern / alpha_pattern, AdaLoRA) the difference is folded into lora_b, so llama.cpp
// computes exactly our update. What llama.cpp cannot represent is refused with one line naming
// the adapter, the field or module, and why.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "peft/io/gguf.h"

namespace peft::exporter {

/// What a LoRA GGUF needs to know about its base: the architecture, the head counts of the Q/K
/// permutation, and the llama.cpp tensors (name -> ggml ne).
struct GgufLoraBase {
  std::string path;
  std::string arch;          ///< general.architecture ("llama")
  int64_t n_head = 0;        ///< attention heads (attn_q rows)
  int64_t n_head_kv = 0;     ///< key/value heads (attn_k rows)
  std::map<std::string, std::vector<int64_t>> tensors;  ///< llama.cpp name -> ne (innermost first)

  /// From a GGUF model file, or from a Hugging Face folder (config.json + safetensors) whose tensors
  /// are named as llama.cpp's converter would name them.
  static GgufLoraBase open(const std::string& path);
  /// True when the output layer is tied to token_embd (no output.weight).
  bool tied_output() const { return tensors.count("output.weight") == 0; }
};

struct GgufLoraExportOptions {
  /// Element type of lora_a / lora_b: F32 (default) or F16.
  io::GgmlType type = io::GgmlType::F32;
  /// general.name; default: the adapter folder's name.
  std::string name;
};

/// One exported pair.
struct GgufLoraExportedTensor {
  std::string module;     ///< PEFT module name ("model.layers.0.self_attn.q_proj")
  std::string gguf_name;  ///< base tensor ("blk.0.attn_q.weight")
  int64_t rank = 0;       ///< rank written (AdaLoRA: kept triplets)
  double scaling = 0;     ///< our scaling of B·A for this module
  double fold = 1;        ///< factor folded into lora_b (1 when llama.cpp's alpha / r is ours)
};

struct GgufLoraExportReport {
  float alpha = 0;  ///< adapter.lora.alpha written
  std::vector<GgufLoraExportedTensor> tensors;
  std::vector<std::string> skipped;  ///< modules left out (AdaLoRA rank 0: no update)
};

/// Writes `out_path` from the adapter folder `adapter_dir` for `base`. Throws NotSupported for
/// adapters llama.cpp cannot represent (DoRA, prompt learning, modules_to_save, bias != none,
/// lora_bias, fan_in_fan_out, targets without a llama.cpp tensor, an embedding target on a base whose
/// output is tied to it), FormatError for adapter files that do not fit the base.
GgufLoraExportReport export_lora_gguf(const std::string& adapter_dir, const GgufLoraBase& base,
                                      const std::string& out_path, const GgufLoraExportOptions& opts = {});
GgufLoraExportReport export_lora_gguf(const std::string& adapter_dir, const std::string& base_path,
                                      const std::string& out_path, const GgufLoraExportOptions& opts = {});

/// llama.cpp's `general.file_type` (LLAMA_FTYPE_*) for a file whose projections are `type`
/// (ALL_F32 0, MOSTLY_F16 1, Q4_0 2, Q4_1 3, Q8_0 7, Q5_0 8, Q5_1 9, BF16 32).
uint32_t llama_file_type(io::GgmlType type);

}  // namespace peft::exporter
