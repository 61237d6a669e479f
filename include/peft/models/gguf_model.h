#pragma once
// GGUF models seen as Hugging Face ones (tier 0: torch-free; models/ because it knows architectures, quant/ for the dequantisation): config.json built from the
// `<arch>.*` metadata, the one table mapping llama.cpp tensor names to HF state-dict keys, the
// Q/K row permutation llama.cpp's converter applies, and `peft convert model.gguf OUT_DIR`.
//
//   auto f = peft::io::GgufFile::open("SmolLM2-135M-Instruct.Q4_1.gguf");
//   nlohmann::json cfg = peft::models::gguf_hf_config(f);        // what transformers would load
//   auto m = peft::models::gguf_tensor_map(f);                    // "blk.0.attn_q.weight" -> HF key
#include <cstdint>
#include <map>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

#include "peft/io/gguf.h"

namespace peft::models {

using io::GgufFile;

/// Where a GGUF tensor goes in the HF model.
struct GgufTensorTarget {
  std::string gguf_name;
  std::string hf_name;  ///< HF CausalLM state-dict key ("model.layers.0.self_attn.q_proj.weight")
  /// When > 0: the rows were permuted by llama.cpp's converter for its RoPE layout, in groups of
  /// this many heads; gguf_unpermute_rows undoes it (q: attention heads, k: key/value heads).
  int64_t permute_heads = 0;
};

/// The architectures GGUF files may name in `general.architecture` that load here.
std::vector<std::string> gguf_supported_architectures();

/// config.json for the model in `f` (model_type, sizes, heads, rope, norm epsilon, vocab, special
/// token ids, tie_word_embeddings when `output.weight` is absent). Throws NotSupported naming
/// the architecture or feature, FormatError naming the file and key for missing/invalid keys.
nlohmann::json gguf_hf_config(const GgufFile& f);

/// generation_config.json (bos/eos/pad ids) as transformers' GGUF loader derives it.
nlohmann::json gguf_generation_config(const GgufFile& f);

/// Every tensor of `f` mapped to its HF key, in file order. A tensor the architecture does not
/// use throws FormatError naming it (a file of another layout must not load silently).
std::vector<GgufTensorTarget> gguf_tensor_map(const GgufFile& f);

/// HF key -> llama.cpp tensor name for `arch` ("model.layers.3.mlp.up_proj.weight" ->
/// "blk.3.ffn_up.weight"); nullopt for keys llama.cpp has no tensor for.
std::optional<std::string> hf_to_gguf_name(const std::string& arch, const std::string& hf_name);

/// Row index map undoing the converter's permutation: HF row r comes from GGUF row
/// `result[r]`. `rows` = heads x head_dim.
std::vector<int64_t> gguf_unpermute_rows(int64_t rows, int64_t heads);

/// Copies `rows` rows of `row_bytes` bytes each (any encoding: rows are whole blocks) from `src`
/// to `dst` (no overlap), reordered between the two layouts: `to_hf` undoes the converter's Q/K
/// permutation (GGUF -> HF), otherwise applies it (HF -> GGUF).
void gguf_permute_rows(const void* src, void* dst, int64_t rows, std::size_t row_bytes, int64_t heads, bool to_hf);

/// What `peft convert` writes for a GGUF file.
struct GgufConvertOptions {
  /// Keep F16 / BF16 tensors in their dtype (true) or write everything as F32.
  bool keep_half = true;
};

/// Writes an HF folder (config.json, generation_config.json, model.safetensors, tokenizer.json,
/// tokenizer_config.json) that transformers loads with the same logits: quantised tensors are
/// dequantised to F32, Q/K rows un-permuted. The output folder is written file by file, each
/// atomically; the input is never modified.
void convert_gguf_to_hf(const std::string& gguf_path, const std::string& out_dir,
                        const GgufConvertOptions& opts = {});

}  // namespace peft::models
