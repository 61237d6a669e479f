#pragma once
// A merged model (PeftModel::merge_and_unload) written as a llama.cpp GGUF model (LibTorch tier:
// the weights come from the model's parameters).
//
//   auto base = peft::models::load_model("tiny_llama_f32.gguf");
//   auto merged = peft::PeftModel::from_pretrained(base, "out/adapter")->merge_and_unload(true);
//   peft::exporter::write_merged_gguf(*merged, peft::io::GgufFile::open("tiny_llama_f32.gguf"),
//                                     "merged-q8_0.gguf", peft::io::GgmlType::Q8_0);
#include <string>

#include "peft/io/gguf.h"

namespace peft::models {
class PretrainedModel;
}

namespace peft::exporter {

/// What write_merged_gguf wrote.
struct MergedGgufReport {
  int64_t tensors = 0;      ///< tensors written
  int64_t quantized = 0;    ///< matrices of them in `type` (the others: norms F32, F16 fallback)
  bool untied_output = false;  ///< output.weight added because the merge changed the tied lm_head
};

/// Writes `model` (merged, no adapters left) as a GGUF model laid out like `base`, the GGUF file it
/// was loaded from: the base's metadata in its order (tokenizer and chat template included) with
/// general.file_type set for `type`, every tensor under its llama.cpp name in the base's order, Q/K
/// rows permuted back to llama.cpp's RoPE layout, 1-D tensors (norms) in F32, matrices in `type`
/// (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1; F16 where a row is not a whole number of blocks,
/// as gguf-py does), rope_freqs copied. Block-quantised layers still in their blocks are decoded.
MergedGgufReport write_merged_gguf(models::PretrainedModel& model, const io::GgufFile& base, const std::string& path,
                                   io::GgmlType type = io::GgmlType::F32);

}  // namespace peft::exporter
