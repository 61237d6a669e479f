// A merged model as a llama.cpp GGUF model laid out like its GGUF base. Tensor types follow
// llama.cpp's converter (conversion/base.py ModelBase.prepare_tensors: 1-D tensors and norms F32,
// other weights in the file type, F16 when a row is not a whole number of blocks), names and the
// Q/K permutation are the inverse of models/gguf_model.cpp's reading.
#include "peft/export/gguf_merge.h"

#include <ATen/ATen.h>

#include <map>

#include "peft/core/check.h"
#include "peft/export/gguf.h"
#include "peft/models/adaptable_linear.h"
#include "peft/models/gguf_model.h"
#include "peft/models/model.h"
#include "peft/quant/ggml_quants.h"

namespace peft::exporter {

MergedGgufReport write_merged_gguf(models::PretrainedModel& model, const io::GgufFile& base, const std::string& path,
                                   io::GgmlType type) {
  PEFT_CHECK(quant::ggml_can_quantize(type), ConfigError, "[merge] ", path, ": type ",
             io::ggml_type_name(static_cast<uint32_t>(type)),
             " cannot be written here (f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1)");
  const uint32_t file_type = llama_file_type(type);
  // The model's weights by HF key, as fp32 [rows, cols] on the CPU.
  std::map<std::string, at::Tensor> weights;
  for (const auto& p : model.named_parameters(true)) {
    PEFT_CHECK(p.key().find("lora_") == std::string::npos, std::invalid_argument, "[merge] ", path,
               ": the model still carries adapter weights (", p.key(), "); call merge_and_unload() first");
    weights[p.key()] = p.value();
  }
  for (const auto& b : model.named_buffers(true)) weights[b.key()] = b.value();
  for (const auto& m : model.named_modules("", /*include_self=*/false))
    if (auto* l = dynamic_cast<models::AdaptableLinearImpl*>(m.value().get()); l && l->quantized())
      weights[m.key() + ".weight"] = l->quantized()->dequantize();

  const auto targets = models::gguf_tensor_map(base);
  std::map<std::string, const models::GgufTensorTarget*> by_gguf;
  for (const auto& t : targets) by_gguf[t.gguf_name] = &t;

  MergedGgufReport report;
  std::vector<std::vector<uint8_t>> buffers;
  std::vector<io::GgufTensorBytes> tensors;
  buffers.reserve(base.tensors().size() + 1);
  auto encode = [&](const std::string& name, const at::Tensor& w_in, int64_t permute_heads) {
    at::Tensor w = w_in.detach().to(at::kCPU, at::kFloat).contiguous();
    const std::vector<int64_t> shape(w.sizes().begin(), w.sizes().end());
    const int64_t cols = shape.empty() ? 1 : shape.back();
    const int64_t rows = cols == 0 ? 0 : w.numel() / cols;
    if (permute_heads > 0) {  // back into llama.cpp's RoPE row order
      at::Tensor p = at::empty_like(w);
      models::gguf_permute_rows(w.data_ptr<float>(), p.data_ptr<float>(), rows,
                                static_cast<std::size_t>(cols) * sizeof(float), permute_heads, /*to_hf=*/false);
      w = p;
    }
    io::GgmlType t = io::GgmlType::F32;
    if (shape.size() >= 2 && !(name.size() >= 12 && name.compare(name.size() - 12, 12, "_norm.weight") == 0)) {
      t = type;
      if (cols % io::ggml_traits(t).block_size != 0) t = io::GgmlType::F16;
    }
    std::vector<uint8_t> bytes(static_cast<std::size_t>(io::ggml_row_bytes(t, cols) * static_cast<uint64_t>(rows)));
    const float* src = w.data_ptr<float>();
    const uint64_t row_bytes = io::ggml_row_bytes(t, cols);
    for (int64_t r = 0; r < rows; ++r)
      quant::ggml_quantize(t, src + r * cols, bytes.data() + static_cast<uint64_t>(r) * row_bytes, cols);
    buffers.push_back(std::move(bytes));
    tensors.push_back({name, t, std::vector<int64_t>(shape.rbegin(), shape.rend()), buffers.back().data(),
                       buffers.back().size()});
    if (shape.size() >= 2 && t == type) ++report.quantized;
  };

  for (const auto& t : base.tensors()) {
    if (t.name == "rope_freqs.weight") {  // llama3 RoPE factors: not a model parameter, copied
      tensors.push_back({t.name, t.ggml_type(), t.ne, t.data, t.nbytes});
      continue;
    }
    const auto* tg = by_gguf.at(t.name);
    auto it = weights.find(tg->hf_name);
    PEFT_CHECK(it != weights.end(), FormatError, "[merge] ", path, ": the model has no '", tg->hf_name,
               "' for the base tensor ", t.name);
    PEFT_CHECK(it->second.numel() == t.numel(), FormatError, "[merge] ", path, ": '", tg->hf_name, "' has ",
               it->second.numel(), " elements but the base tensor ", t.name, " has ", t.numel());
    encode(t.name, it->second, tg->permute_heads);
  }
  // A tied base whose merged lm_head now differs from the embedding (an lm_head adapter): write it.
  if (!base.has_tensor("output.weight") && base.has_tensor("token_embd.weight")) {
    auto lm = weights.find("lm_head.weight");
    auto emb = weights.find(by_gguf.at("token_embd.weight")->hf_name);
    if (lm != weights.end() && emb != weights.end() && !lm->second.is_same(emb->second) &&
        !at::equal(lm->second.to(at::kFloat), emb->second.to(at::kFloat))) {
      encode("output.weight", lm->second, 0);
      report.untied_output = true;
    }
  }
  report.tensors = static_cast<int64_t>(tensors.size());

  // The base's metadata in its order (tokenizer, chat template); general.file_type in place.
  std::vector<std::pair<std::string, io::GgufValue>> meta;
  bool has_ft = false, has_qv = false;
  for (const auto& k : base.keys()) {
    has_qv = has_qv || k == "general.quantization_version";
    if (k == "general.file_type") {
      meta.emplace_back(k, io::GgufValue::from_u32(file_type));
      has_ft = true;
    } else {
      meta.emplace_back(k, base.at(k));
    }
  }
  if (!has_ft) meta.emplace_back("general.file_type", io::GgufValue::from_u32(file_type));
  if (!has_qv) meta.emplace_back("general.quantization_version", io::GgufValue::from_u32(2));
  io::write_gguf(path, meta, tensors);
  return report;
}

}  // namespace peft::exporter
