// PEFT LoRA / AdaLoRA adapters to llama.cpp's LoRA GGUF. The file layout mirrors llama.cpp's
// convert_lora_to_gguf.py (LoraModel.set_type / set_gguf_parameters / modify_tensors: lora_a and
// lora_b per base tensor, token_embd's lora_a transposed, Q/K permutation on lora_b only) and what
// src/llama-adapter.cpp accepts on load (llama_adapter_lora_init_impl: shape checks,
// llama_adapter_lora_weight::get_scale = alpha / rank with rank = lora_b's ne[0]).
#include "peft/export/gguf.h"

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "peft/core/check.h"
#include "peft/io/hf_checkpoint.h"
#include "peft/io/safetensors.h"
#include "peft/models/gguf_model.h"
#include "peft/quant/ggml_quants.h"
#include "peft/tuners/adalora/config.h"
#include "peft/tuners/lora/config.h"

namespace peft::exporter {

namespace fs = std::filesystem;

namespace {

const std::string kPrefix = "base_model.model.";

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string shape_str(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (std::size_t k = 0; k < v.size(); ++k) s += (k ? ", " : "") + std::to_string(v[k]);
  return s + "]";
}

// An adapter tensor as fp32, whatever float type it was saved in.
std::vector<float> to_floats(const io::TensorInfo& t, const std::string& file) {
  const int64_t n = t.numel();
  std::vector<float> out(static_cast<std::size_t>(n));
  if (n == 0) return out;
  switch (t.dtype) {
    case DType::F32: quant::ggml_dequantize(io::GgmlType::F32, t.data, out.data(), n); break;
    case DType::F16: quant::ggml_dequantize(io::GgmlType::F16, t.data, out.data(), n); break;
    case DType::BF16: quant::ggml_dequantize(io::GgmlType::BF16, t.data, out.data(), n); break;
    default:
      throw FormatError("[export] " + file + ": tensor '" + t.name + "' is " + std::string(dtype_name(t.dtype)) +
                        "; expected F32, F16 or BF16");
  }
  return out;
}

// The factors of one adapted module as found in adapter_model.safetensors.
struct Factors {
  const io::TensorInfo* A = nullptr;
  const io::TensorInfo* B = nullptr;
  const io::TensorInfo* E = nullptr;  // AdaLoRA
  bool embedding = false;
};

// PEFT's key suffixes (peft/utils/save_and_load.py get_peft_model_state_dict), longest first.
struct Suffix {
  const char* suffix;
  char which;  // 'A', 'B' or 'E'
  bool embedding;
  bool adalora;  // AdaLoRA saves raw parameters (no ".weight")
};
const Suffix kSuffixes[] = {
    {".lora_A.weight", 'A', false, false},    {".lora_B.weight", 'B', false, false},
    {".lora_embedding_A", 'A', true, false},  {".lora_embedding_B", 'B', true, false},
    {".lora_A", 'A', false, true},            {".lora_B", 'B', false, true},
    {".lora_E", 'E', false, true},
};

}  // namespace

uint32_t llama_file_type(io::GgmlType type) {
  // llama.h enum llama_ftype / gguf-py LlamaFileType.
  switch (type) {
    case io::GgmlType::F32: return 0;
    case io::GgmlType::F16: return 1;
    case io::GgmlType::Q4_0: return 2;
    case io::GgmlType::Q4_1: return 3;
    case io::GgmlType::Q8_0: return 7;
    case io::GgmlType::Q5_0: return 8;
    case io::GgmlType::Q5_1: return 9;
    case io::GgmlType::BF16: return 32;
    default:
      throw NotSupported("[export] no llama.cpp file type for " + io::ggml_type_name(static_cast<uint32_t>(type)));
  }
}

GgufLoraBase GgufLoraBase::open(const std::string& path) {
  GgufLoraBase b;
  b.path = path;
  if (fs::is_regular_file(path) && io::is_gguf_file(path)) {
    const auto f = io::GgufFile::open(path);
    b.arch = f.get_string("general.architecture");
    b.n_head = f.get_int(b.arch + ".attention.head_count");
    b.n_head_kv = f.get_int(b.arch + ".attention.head_count_kv", b.n_head);
    for (const auto& t : f.tensors()) b.tensors[t.name] = t.ne;
  } else {
    PEFT_CHECK(fs::is_directory(path), FormatError, "[export] ", path,
               ": expected a GGUF model file or a Hugging Face model folder as the base");
    const auto ck = io::HfCheckpoint::open(path);
    const auto& cfg = ck.config();
    // llama.cpp's converter names llama's architecture after its model_type.
    b.arch = cfg.value("model_type", std::string());
    PEFT_CHECK(models::hf_to_gguf_name(b.arch, "model.norm.weight").has_value(), NotSupported, "[export] ", path,
               ": model_type '", b.arch, "' has no llama.cpp tensor names here (supported: llama)");
    PEFT_CHECK(cfg.contains("num_attention_heads"), FormatError, "[export] ", path,
               "/config.json: key 'num_attention_heads' is missing");
    b.n_head = cfg.at("num_attention_heads").get<int64_t>();
    b.n_head_kv = cfg.value("num_key_value_heads", b.n_head);
    if (b.n_head_kv <= 0) b.n_head_kv = b.n_head;
    const bool tied = cfg.value("tie_word_embeddings", false);
    for (const auto& n : ck.tensor_names()) {
      const auto g = models::hf_to_gguf_name(b.arch, n);
      if (!g || (tied && *g == "output.weight")) continue;
      const auto& shape = ck.tensor(n).shape;
      b.tensors[*g] = std::vector<int64_t>(shape.rbegin(), shape.rend());
    }
  }
  PEFT_CHECK(b.n_head > 0 && b.n_head_kv > 0, FormatError, "[export] ", path, ": head counts must be positive (",
             b.n_head, ", ", b.n_head_kv, ")");
  return b;
}

GgufLoraExportReport export_lora_gguf(const std::string& adapter_dir, const std::string& base_path,
                                      const std::string& out_path, const GgufLoraExportOptions& opts) {
  return export_lora_gguf(adapter_dir, GgufLoraBase::open(base_path), out_path, opts);
}

GgufLoraExportReport export_lora_gguf(const std::string& adapter_dir, const GgufLoraBase& base,
                                      const std::string& out_path, const GgufLoraExportOptions& opts) {
  const std::string& dir = adapter_dir;
  PEFT_CHECK(opts.type == io::GgmlType::F32 || opts.type == io::GgmlType::F16, ConfigError, "[export] ", dir,
             ": --type ", io::ggml_type_name(static_cast<uint32_t>(opts.type)), " is not supported for LoRA "
             "tensors (f32 or f16)");
  // ---- What llama.cpp's LoRA format cannot hold: refused by config field first.
  const std::string cfg_path = (fs::path(dir) / "adapter_config.json").string();
  PEFT_CHECK(fs::exists(cfg_path), FormatError, "[export] ", dir, ": no adapter_config.json found");
  const nlohmann::json cj = io::read_json_file(cfg_path);
  PEFT_CHECK(cj.is_object() && cj.contains("peft_type") && cj["peft_type"].is_string(), FormatError, "[export] ",
             cfg_path, ": missing required string field 'peft_type'");
  const PeftType type = parse_peft_type(cj["peft_type"].get<std::string>());
  PEFT_CHECK(type == PeftType::Lora || type == PeftType::AdaLora, NotSupported, "[export] ", dir, ": peft_type ",
             to_string(type), " is not a LoRA-family method (prompt-learning methods add virtual tokens or a "
             "key/value prefix, (IA)³ rescales activations); llama.cpp LoRA files hold only low-rank weight updates "
             "(an (IA)³ adapter can be merged instead: peft merge ... --format gguf)");
  std::unique_ptr<LoraConfig> cfg_any;
  if (type == PeftType::AdaLora) cfg_any = std::make_unique<AdaLoraConfig>(AdaLoraConfig::from_json(cj, cfg_path));
  else cfg_any = std::make_unique<LoraConfig>(LoraConfig::from_json(cj, cfg_path));
  cfg_any->validate();
  const LoraConfig& cfg = *cfg_any;
  const auto* ada = dynamic_cast<const AdaLoraConfig*>(cfg_any.get());
  PEFT_CHECK(!cfg.use_dora, NotSupported, "[export] ", dir, ": use_dora = true: llama.cpp applies B·A·alpha/r "
             "only, it has no DoRA magnitude vector (merge it instead: peft merge ... --format gguf)");
  PEFT_CHECK(!cfg.lora_bias, NotSupported, "[export] ", dir, ": lora_bias = true: llama.cpp LoRA files have no "
             "lora_B bias (merge it instead: peft merge ... --format gguf)");
  PEFT_CHECK(cfg.bias == "none", NotSupported, "[export] ", dir, ": bias = '", cfg.bias, "': the adapter trains "
             "base biases, which a llama.cpp LoRA file cannot carry (merge it instead: peft merge ... --format gguf)");
  PEFT_CHECK(!cfg.modules_to_save || cfg.modules_to_save->empty(), NotSupported, "[export] ", dir,
             ": modules_to_save = [", [&] {
               std::string s;
               for (const auto& m : *cfg.modules_to_save) s += (s.empty() ? "" : ", ") + m;
               return s;
             }(), "]: fully trained modules cannot be expressed as a llama.cpp LoRA (merge it instead: peft merge ... "
             "--format gguf)");
  PEFT_CHECK(!cfg.fan_in_fan_out, NotSupported, "[export] ", dir, ": fan_in_fan_out = true, but llama.cpp's ",
             base.arch, " tensors are [out, in] (nn.Linear); the factors would be read transposed");

  // ---- The factors, by module.
  const fs::path st_path = fs::path(dir) / "adapter_model.safetensors";
  PEFT_CHECK(fs::exists(st_path), FormatError, "[export] ", dir, ": no adapter_model.safetensors",
             fs::exists(fs::path(dir) / "adapter_model.bin") ? " (adapter_model.bin, a pickle, is not read)" : "");
  const auto st = io::SafetensorsFile::open(st_path.string());
  const std::string file = st_path.string();
  std::map<std::string, Factors> modules;
  for (const auto& key : st.names()) {
    PEFT_CHECK(key.rfind(kPrefix, 0) == 0, FormatError, "[export] ", file, ": tensor '", key,
               "' does not start with '", kPrefix, "' (not a PEFT adapter file)");
    const std::string rest = key.substr(kPrefix.size());
    const io::TensorInfo& t = st.at(key);
    if (ends_with(rest, ".lora_magnitude_vector") || ends_with(rest, ".lora_magnitude_vector.weight"))
      throw NotSupported("[export] " + file + ": '" + key + "' is a DoRA magnitude vector; llama.cpp has no DoRA");
    if (ends_with(rest, ".lora_B.bias"))
      throw NotSupported("[export] " + file + ": '" + key + "' is a lora_B bias; llama.cpp LoRA files have none");
    if (ends_with(rest, ".base_layer.weight")) continue;  // save_embedding_layers' copy of the base embedding
    bool matched = false;
    for (const auto& sx : kSuffixes) {
      if ((sx.adalora && !ada) || !ends_with(rest, sx.suffix)) continue;
      Factors& f = modules[rest.substr(0, rest.size() - std::string(sx.suffix).size())];
      (sx.which == 'A' ? f.A : sx.which == 'B' ? f.B : f.E) = &t;
      f.embedding = f.embedding || sx.embedding;
      matched = true;
      break;
    }
    if (matched) continue;
    if (ends_with(rest, ".bias"))
      throw NotSupported("[export] " + file + ": '" + key + "' is a trained bias; llama.cpp LoRA files hold only "
                         "lora_a/lora_b pairs");
    throw NotSupported("[export] " + file + ": '" + key + "' is not a LoRA factor (a fully trained module?); "
                       "llama.cpp LoRA files hold only lora_a/lora_b pairs");
  }
  PEFT_CHECK(!modules.empty(), FormatError, "[export] ", file, ": no LoRA factors found");

  // ---- One lora_a/lora_b pair per module.
  const float alpha = static_cast<float>(cfg.lora_alpha);
  struct Out {
    std::string gguf;
    std::vector<int64_t> ne_a, ne_b;
    std::vector<float> a, b;
  };
  std::map<std::string, Out> outs;  // by llama.cpp name
  GgufLoraExportReport report;
  report.alpha = alpha;
  for (const auto& [module, f] : modules) {
    PEFT_CHECK(f.A && f.B && (!ada || f.E), FormatError, "[export] ", file, ": module '", module, "' lacks ",
               !f.A ? "lora_A" : !f.B ? "lora_B" : "lora_E");
    const std::string hf = module + ".weight";
    const auto g = models::hf_to_gguf_name(base.arch, hf);
    if (g && *g == "output.weight" && base.tied_output())
      throw NotSupported("[export] " + dir + ": target '" + module + "': the base " + base.path +
                         " ties its output layer to token_embd (no output.weight), so llama.cpp has no output "
                         "tensor to adapt");
    PEFT_CHECK(g && base.tensors.count(*g), NotSupported, "[export] ", dir, ": target '", module,
               "' has no llama.cpp tensor in ", base.path, g ? " (expected " + *g + ")" : std::string(""));
    if (*g == "token_embd.weight" && base.tied_output())
      throw NotSupported("[export] " + dir + ": target '" + module + "': the base " + base.path +
                         " ties output to token_embd, and llama.cpp would apply a token_embd LoRA to the output "
                         "matmul too (where its transposed lora_a does not fit)");
    PEFT_CHECK(f.A->shape.size() == 2 && f.B->shape.size() == 2, FormatError, "[export] ", file, ": module '",
               module, "': lora_A ", shape_str(f.A->shape), " and lora_B ", shape_str(f.B->shape),
               " must be matrices");
    const std::vector<int64_t>& ne = base.tensors.at(*g);
    const int64_t k = f.A->shape[0], in = f.A->shape[1], out = f.B->shape[0];
    // Embeddings: A is [r, vocab] and B [dim, r]; token_embd is ne {dim, vocab}. Linear: A [r, in],
    // B [out, r] against ne {in, out}.
    const int64_t base_in = f.embedding ? ne.at(1) : ne.at(0), base_out = f.embedding ? ne.at(0) : ne.at(1);
    PEFT_CHECK(ne.size() == 2 && f.B->shape[1] == k && in == base_in && out == base_out, FormatError, "[export] ",
               file, ": module '", module, "': lora_A ", shape_str(f.A->shape), " / lora_B ", shape_str(f.B->shape),
               " do not fit ", *g, " of ", base.path, " (ne ", shape_str(ne), "): an adapter for another base?");
    if (ada)
      PEFT_CHECK(f.E->shape == std::vector<int64_t>({k, 1}), FormatError, "[export] ", file, ": module '", module,
                 "': lora_E is ", shape_str(f.E->shape), "; expected [", k, ", 1]");
    else
      PEFT_CHECK(k == cfg.rank_for(module), FormatError, "[export] ", file, ": module '", module, "' has rank ", k,
                 " but adapter_config.json gives ", cfg.rank_for(module), " (r / rank_pattern)");

    std::vector<float> A = to_floats(*f.A, file), B = to_floats(*f.B, file);
    double scaling;
    int64_t kept = k;
    if (ada) {
      // Mirrors peft/tuners/adalora/layer.py SVDLinear.get_delta_weight: B·(A⊙E)·scaling/(ranknum+1e-5),
      // ranknum = init_r (a float tensor, so ranknum + 1e-5 is rounded to float). Triplets with E = 0 are
      // masked: dropped here.
      const std::vector<float> E = to_floats(*f.E, file);
      std::vector<int64_t> keep;
      for (int64_t i = 0; i < k; ++i)
        if (E[static_cast<std::size_t>(i)] != 0.0f) keep.push_back(i);
      kept = static_cast<int64_t>(keep.size());
      std::vector<float> A2(static_cast<std::size_t>(kept * in)), B2(static_cast<std::size_t>(out * kept));
      for (int64_t j = 0; j < kept; ++j) {
        const int64_t i = keep[static_cast<std::size_t>(j)];
        for (int64_t c = 0; c < in; ++c) A2[j * in + c] = A[i * in + c] * E[i];
        for (int64_t r = 0; r < out; ++r) B2[r * kept + j] = B[r * k + i];
      }
      A.swap(A2);
      B.swap(B2);
      const double num = cfg.lora_alpha > 0 ? cfg.lora_alpha : static_cast<double>(ada->init_r);
      scaling = num / static_cast<double>(static_cast<float>(ada->init_r) + 1e-5f);
    } else {
      scaling = cfg.scaling_for(module);
    }
    if (kept == 0) {
      report.skipped.push_back(module);
      continue;
    }
    // llama.cpp: scale = alpha ? alpha / rank : 1 (float). Where ours is another number, fold the
    // ratio into lora_b; plain LoRA (alpha / r) stays bit-identical to PEFT's file.
    const float llama_scale = alpha != 0.0f ? alpha / static_cast<float>(kept) : 1.0f;
    const double plain = alpha != 0.0f ? static_cast<double>(cfg.lora_alpha) / static_cast<double>(kept) : 1.0;
    double fold = 1.0;
    if (std::abs(scaling - plain) > 1e-12 * std::abs(plain)) {
      fold = scaling / static_cast<double>(llama_scale);
      for (float& v : B) v = static_cast<float>(static_cast<double>(v) * fold);
    }
    // Q/K rows into llama.cpp's RoPE order (convert_hf_to_gguf.py LlamaModel.permute, applied by
    // convert_lora_to_gguf.py to lora_b only): GGUF row src[r] holds HF row r.
    int64_t heads = 0;
    if (base.arch == "llama" && ends_with(*g, ".attn_q.weight")) heads = base.n_head;
    if (base.arch == "llama" && ends_with(*g, ".attn_k.weight")) heads = base.n_head_kv;
    if (heads > 0) {
      std::vector<float> P(B.size());
      models::gguf_permute_rows(B.data(), P.data(), out, static_cast<std::size_t>(kept) * sizeof(float), heads,
                                /*to_hf=*/false);
      B.swap(P);
    }
    Out o;
    o.gguf = *g;
    if (f.embedding) {
      // token_embd: lora_a is A transposed ([vocab, r], ne {r, vocab}), read with get_rows
      // (llm_graph_context::build_inp_embd).
      std::vector<float> At(A.size());
      for (int64_t i = 0; i < kept; ++i)
        for (int64_t v = 0; v < in; ++v) At[v * kept + i] = A[i * in + v];
      A.swap(At);
      o.ne_a = {kept, in};
    } else {
      o.ne_a = {in, kept};
    }
    o.ne_b = {kept, out};
    o.a = std::move(A);
    o.b = std::move(B);
    outs.emplace(*g, std::move(o));
    report.tensors.push_back({module, *g, kept, scaling, fold});
  }
  PEFT_CHECK(!outs.empty(), FormatError, "[export] ", dir, ": every module has rank 0; nothing to export");

  // ---- The file: base tensor order (blk.0 before blk.1), then lora_a, lora_b.
  std::vector<std::vector<uint8_t>> buffers;
  buffers.reserve(outs.size() * 2);
  std::vector<io::GgufTensorBytes> tensors;
  auto add = [&](const std::string& name, const std::vector<int64_t>& ne, const std::vector<float>& v) {
    std::vector<uint8_t> bytes(static_cast<std::size_t>(io::ggml_row_bytes(opts.type, static_cast<int64_t>(v.size()))));
    quant::ggml_quantize(opts.type, v.data(), bytes.data(), static_cast<int64_t>(v.size()));
    buffers.push_back(std::move(bytes));
    tensors.push_back({name, opts.type, ne, buffers.back().data(), buffers.back().size()});
  };
  std::vector<const Out*> ordered;
  for (const auto& [name, o] : outs) ordered.push_back(&o);
  // blk.N numerically, then by name, so files list layers in order.
  auto block = [](const std::string& n) -> int64_t {
    if (n.rfind("blk.", 0) != 0) return -1;
    return std::stoll(n.substr(4, n.find('.', 4) - 4));
  };
  std::stable_sort(ordered.begin(), ordered.end(), [&](const Out* x, const Out* y) {
    const int64_t bx = block(x->gguf), by = block(y->gguf);
    return bx != by ? bx < by : x->gguf < y->gguf;
  });
  for (const Out* o : ordered) {
    add(o->gguf + ".lora_a", o->ne_a, o->a);
    add(o->gguf + ".lora_b", o->ne_b, o->b);
  }
  std::string name = opts.name;
  if (name.empty()) name = fs::path(dir).lexically_normal().filename().string();
  if (name.empty() || name == ".") name = fs::absolute(dir).lexically_normal().parent_path().filename().string();
  const std::vector<std::pair<std::string, io::GgufValue>> meta = {
      {"general.architecture", io::GgufValue::from_string(base.arch)},
      {"general.type", io::GgufValue::from_string("adapter")},
      {"general.name", io::GgufValue::from_string(name)},
      {"general.file_type", io::GgufValue::from_u32(llama_file_type(opts.type))},
      {"adapter.type", io::GgufValue::from_string("lora")},
      {"adapter.lora.alpha", io::GgufValue::from_f32(alpha)},
  };
  io::write_gguf(out_path, meta, tensors);
  return report;
}

}  // namespace peft::exporter
