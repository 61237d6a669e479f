// GGUF models as Hugging Face ones. The key and tensor-name facts mirror llama.cpp's converter
// (convert_hf_to_gguf.py / conversion/llama.py: LlamaModel.set_gguf_parameters, permute,
// gguf-py tensor_mapping.py) read in reverse, and transformers' GGUF loader
// (integrations/ggml.py GGUF_CONFIG_MAPPING) for the config keys.
#include "peft/models/gguf_model.h"

#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>

#include "peft/core/check.h"
#include "peft/core/json_file.h"
#include "peft/io/safetensors.h"
#include "peft/io/tokenizer.h"
#include "peft/quant/ggml_quants.h"

namespace peft::models {

using nlohmann::json;

namespace {

// One tensor-name rule; "#" stands for the block index.
struct NameRule {
  const char* gguf;
  const char* hf;
  int permute;  ///< 0: none, 1: query rows (attention heads), 2: key rows (key/value heads)
};

// llama.cpp names (gguf-py constants.py MODEL_TENSOR / TENSOR_NAMES) -> HF LlamaForCausalLM keys.
const NameRule kLlamaNames[] = {
    {"token_embd.weight", "model.embed_tokens.weight", 0},
    {"output_norm.weight", "model.norm.weight", 0},
    {"output.weight", "lm_head.weight", 0},
    {"blk.#.attn_norm.weight", "model.layers.#.input_layernorm.weight", 0},
    {"blk.#.ffn_norm.weight", "model.layers.#.post_attention_layernorm.weight", 0},
    {"blk.#.attn_q.weight", "model.layers.#.self_attn.q_proj.weight", 1},
    {"blk.#.attn_q.bias", "model.layers.#.self_attn.q_proj.bias", 1},
    {"blk.#.attn_k.weight", "model.layers.#.self_attn.k_proj.weight", 2},
    {"blk.#.attn_k.bias", "model.layers.#.self_attn.k_proj.bias", 2},
    {"blk.#.attn_v.weight", "model.layers.#.self_attn.v_proj.weight", 0},
    {"blk.#.attn_v.bias", "model.layers.#.self_attn.v_proj.bias", 0},
    {"blk.#.attn_output.weight", "model.layers.#.self_attn.o_proj.weight", 0},
    {"blk.#.attn_output.bias", "model.layers.#.self_attn.o_proj.bias", 0},
    {"blk.#.ffn_gate.weight", "model.layers.#.mlp.gate_proj.weight", 0},
    {"blk.#.ffn_gate.bias", "model.layers.#.mlp.gate_proj.bias", 0},
    {"blk.#.ffn_up.weight", "model.layers.#.mlp.up_proj.weight", 0},
    {"blk.#.ffn_up.bias", "model.layers.#.mlp.up_proj.bias", 0},
    {"blk.#.ffn_down.weight", "model.layers.#.mlp.down_proj.weight", 0},
    {"blk.#.ffn_down.bias", "model.layers.#.mlp.down_proj.bias", 0},
};

// Qwen2 / Qwen3: llama.cpp's converter keeps HF's q/k row order for them (no rotary permutation;
// transformers' GGUF loader un-permutes Llama's only); q/k/v biases.
const NameRule kQwen2Names[] = {
    {"token_embd.weight", "model.embed_tokens.weight", 0},
    {"output_norm.weight", "model.norm.weight", 0},
    {"output.weight", "lm_head.weight", 0},
    {"blk.#.attn_norm.weight", "model.layers.#.input_layernorm.weight", 0},
    {"blk.#.ffn_norm.weight", "model.layers.#.post_attention_layernorm.weight", 0},
    {"blk.#.attn_q.weight", "model.layers.#.self_attn.q_proj.weight", 0},
    {"blk.#.attn_q.bias", "model.layers.#.self_attn.q_proj.bias", 0},
    {"blk.#.attn_k.weight", "model.layers.#.self_attn.k_proj.weight", 0},
    {"blk.#.attn_k.bias", "model.layers.#.self_attn.k_proj.bias", 0},
    {"blk.#.attn_v.weight", "model.layers.#.self_attn.v_proj.weight", 0},
    {"blk.#.attn_v.bias", "model.layers.#.self_attn.v_proj.bias", 0},
    {"blk.#.attn_output.weight", "model.layers.#.self_attn.o_proj.weight", 0},
    {"blk.#.ffn_gate.weight", "model.layers.#.mlp.gate_proj.weight", 0},
    {"blk.#.ffn_up.weight", "model.layers.#.mlp.up_proj.weight", 0},
    {"blk.#.ffn_down.weight", "model.layers.#.mlp.down_proj.weight", 0},
};
// Qwen3: Qwen2's names plus these.
const NameRule kQwen3Extra[] = {
    {"blk.#.attn_output.bias", "model.layers.#.self_attn.o_proj.bias", 0},  // attention_bias
    {"blk.#.attn_q_norm.weight", "model.layers.#.self_attn.q_norm.weight", 0},
    {"blk.#.attn_k_norm.weight", "model.layers.#.self_attn.k_norm.weight", 0},
};

// The one table of GGUF architectures: general.architecture -> HF model_type and class, names.
struct ArchRow {
  const char* arch;
  const char* model_type;
  const char* hf_class;
  const NameRule* names;
  std::size_t n_names;
  const NameRule* extra = nullptr;  ///< more rules (an architecture that adds to another's names)
  std::size_t n_extra = 0;
  std::vector<const NameRule*> rules() const {
    std::vector<const NameRule*> r;
    for (std::size_t k = 0; k < n_names; ++k) r.push_back(&names[k]);
    for (std::size_t k = 0; k < n_extra; ++k) r.push_back(&extra[k]);
    return r;
  }
};

const ArchRow kArchs[] = {
    {"llama", "llama", "LlamaForCausalLM", kLlamaNames, std::size(kLlamaNames)},
    {"qwen2", "qwen2", "Qwen2ForCausalLM", kQwen2Names, std::size(kQwen2Names)},
    {"qwen3", "qwen3", "Qwen3ForCausalLM", kQwen2Names, std::size(kQwen2Names), kQwen3Extra, std::size(kQwen3Extra)},
};

const ArchRow& arch_row(const GgufFile& f) {
  const std::string arch = f.get_string("general.architecture");
  for (const auto& r : kArchs)
    if (arch == r.arch) return r;
  std::string known;
  for (const auto& r : kArchs) known += std::string(known.empty() ? "" : ", ") + r.arch;
  throw NotSupported("[gguf] " + f.path() + ": general.architecture '" + arch +
                     "' is not supported (supported: " + known + ")");
}

// Rule text with '#' replaced by a block index, as a regex capturing it.
std::regex rule_regex(const char* pattern) {
  std::string r;
  for (const char* p = pattern; *p; ++p) {
    if (*p == '#') r += "([0-9]+)";
    else if (*p == '.') r += "\\.";
    else r += *p;
  }
  return std::regex(r);
}

std::string fill(const char* pattern, const std::string& n) {
  std::string s;
  for (const char* p = pattern; *p; ++p) s += *p == '#' ? n : std::string(1, *p);
  return s;
}

// A positive integer key of the architecture (`llama.block_count`).
int64_t positive(const GgufFile& f, const std::string& key) {
  const int64_t v = f.get_int(key);
  PEFT_CHECK(v > 0, FormatError, "[gguf] ", f.path(), ": key '", key, "' must be positive, got ", v);
  return v;
}

// A FLOAT32 metadata value as the shortest decimal that rounds to the same float (1e-05, not
// 9.99999975e-06): what the HF config held before conversion.
double f32_decimal(double v) {
  const float f = static_cast<float>(v);
  char buf[32];
  for (int digits = 1; digits <= 9; ++digits) {
    std::snprintf(buf, sizeof buf, "%.*g", digits, static_cast<double>(f));
    if (std::strtof(buf, nullptr) == f) return std::strtod(buf, nullptr);
  }
  return v;
}

double float_key(const GgufFile& f, const std::string& key, double dflt) {
  if (!f.has(key)) return dflt;
  const double v = f.get_float(key);
  return f.at(key).type == io::GgufType::FLOAT32 ? f32_decimal(v) : v;
}

// Llama 3.x files carry rope_freqs.weight: per-frequency divisors llama.cpp applies to the rotary
// frequencies, which the converter computed from the HF config's llama3 rope parameters
// (conversion/llama.py: generate_extra_tensors). transformers' llama3 rule depends on
// (original_max_position, low, high) only through their ratios, so low_freq_factor is taken as 1
// (every Llama 3 config), the rest fitted to the medium band and the result checked against every
// factor.
json llama3_rope_from_factors(const GgufFile& f, double theta, int64_t head_dim) {
  const auto& t = f.tensor("rope_freqs.weight");
  PEFT_CHECK(t.type == static_cast<uint32_t>(io::GgmlType::F32) && t.ne.size() == 1 && t.ne[0] == head_dim / 2,
             FormatError, "[gguf] ", f.path(), ": rope_freqs.weight must be F32 [", head_dim / 2, "]");
  std::vector<float> fac(static_cast<std::size_t>(head_dim / 2));
  std::memcpy(fac.data(), t.data, fac.size() * sizeof(float));
  const double factor = fac.back();
  std::vector<double> wl(fac.size());
  for (std::size_t i = 0; i < fac.size(); ++i)
    wl[i] = 2 * M_PI / std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(head_dim));
  // The converter's factors for given parameters.
  auto factors_for = [&](double L, double lo, double hi) {
    std::vector<double> r;
    for (double w : wl) {
      if (w < L / hi) r.push_back(1.0);
      else if (w > L / lo) r.push_back(factor);
      else {
        const double sm = (L / w - lo) / (hi - lo);
        r.push_back(1.0 / ((1 - sm) / factor + sm));
      }
    }
    return r;
  };
  auto fits = [&](double L, double lo, double hi) {
    const auto r = factors_for(L, lo, hi);
    for (std::size_t i = 0; i < r.size(); ++i)
      if (std::abs(r[i] - fac[i]) > 1e-4 * std::max(1.0, std::abs(r[i]))) return false;
    return true;
  };
  std::vector<std::pair<double, double>> medium;  // (1 / wavelength, smooth)
  for (std::size_t i = 0; i < fac.size(); ++i)
    if (std::abs(fac[i] - 1) > 1e-6 && std::abs(fac[i] - factor) > 1e-6 * factor)
      medium.emplace_back(1 / wl[i], (1 / fac[i] - 1 / factor) / (1 - 1 / factor));
  std::vector<std::array<double, 3>> candidates = {{8192, 1, 4}};  // Meta's values
  if (medium.size() >= 2) {
    // smooth = L/(hi-1) * (1/wl) - 1/(hi-1): a least-squares line through the medium band.
    double sx = 0, sy = 0, sxx = 0, sxy = 0;
    const double n = static_cast<double>(medium.size());
    for (const auto& [x, y] : medium) sx += x, sy += y, sxx += x * x, sxy += x * y;
    const double A = (n * sxy - sx * sy) / (n * sxx - sx * sx), B = (sy - A * sx) / n;
    if (B < 0) {
      const double hi = 1 - 1 / B;
      const double round_hi = std::round(hi * 1000) / 1000;  // the config's value, before fp32 noise
      candidates.push_back({std::round(A * (round_hi - 1)), 1, round_hi});
      candidates.push_back({std::round(A * (hi - 1)), 1, hi});
    }
  } else if (medium.size() == 1) {
    candidates.push_back({std::round((3 * medium[0].second + 1) / medium[0].first), 1, 4});
  }
  for (const auto& [L, lo, hi] : candidates)
    if (factor > 1 && fits(L, lo, hi))
      return {{"rope_type", "llama3"}, {"factor", f32_decimal(factor)}, {"low_freq_factor", lo},
              {"high_freq_factor", f32_decimal(hi)}, {"original_max_position_embeddings", static_cast<int64_t>(L)}};
  throw NotSupported("[gguf] " + f.path() +
                     ": rope_freqs.weight does not follow the llama3 rope rule; these frequency factors are not supported");
}

}  // namespace

std::vector<std::string> gguf_supported_architectures() {
  std::vector<std::string> v;
  for (const auto& r : kArchs) v.push_back(r.arch);
  return v;
}

json gguf_hf_config(const GgufFile& f) {
  const ArchRow& row = arch_row(f);
  const std::string a = std::string(row.arch) + ".";
  json c = json::object();
  c["architectures"] = json::array({row.hf_class});
  c["model_type"] = row.model_type;
  const int64_t hidden = positive(f, a + "embedding_length");
  const int64_t heads = positive(f, a + "attention.head_count");
  PEFT_CHECK(f.at(a + "attention.head_count").type != io::GgufType::ARRAY, NotSupported, "[gguf] ", f.path(),
             ": per-layer head counts (", a, "attention.head_count is an array) are not supported");
  const int64_t kv_heads = f.has(a + "attention.head_count_kv") ? positive(f, a + "attention.head_count_kv") : heads;
  c["hidden_size"] = hidden;
  c["intermediate_size"] = positive(f, a + "feed_forward_length");
  c["num_hidden_layers"] = positive(f, a + "block_count");
  c["num_attention_heads"] = heads;
  c["num_key_value_heads"] = kv_heads;
  c["max_position_embeddings"] = f.has(a + "context_length") ? positive(f, a + "context_length") : int64_t{2048};
  c["rms_norm_eps"] = float_key(f, a + "attention.layer_norm_rms_epsilon", 1e-6);
  c["rope_theta"] = float_key(f, a + "rope.freq_base", 10000.0);
  const int64_t head_dim = f.has(a + "attention.key_length") ? positive(f, a + "attention.key_length") : hidden / heads;
  if (f.has(a + "attention.value_length"))
    PEFT_CHECK(positive(f, a + "attention.value_length") == head_dim, NotSupported, "[gguf] ", f.path(), ": ", a,
               "attention.value_length differs from the key length; not supported");
  // Qwen3's config reads a missing head_dim as 128: always written for the non-Llama rows.
  if (head_dim * heads != hidden || f.has(a + "attention.key_length") || std::string(row.arch) != "llama")
    c["head_dim"] = head_dim;
  if (f.has(a + "rope.dimension_count"))
    PEFT_CHECK(positive(f, a + "rope.dimension_count") == head_dim, NotSupported, "[gguf] ", f.path(), ": ", a,
               "rope.dimension_count = ", f.get_int(a + "rope.dimension_count"),
               " (partial rotary embeddings) differs from the head size ", head_dim, "; not supported");
  const std::string scaling = f.get_string(a + "rope.scaling.type", "none");
  if (scaling == "linear") {
    c["rope_scaling"] = {{"rope_type", "linear"}, {"factor", float_key(f, a + "rope.scaling.factor", 1.0)}};
  } else {
    PEFT_CHECK(scaling == "none", NotSupported, "[gguf] ", f.path(), ": ", a, "rope.scaling.type '", scaling,
               "' is not supported (none, linear)");
  }
  if (f.has_tensor("rope_freqs.weight")) {
    PEFT_CHECK(scaling == "none", NotSupported, "[gguf] ", f.path(), ": rope_freqs.weight together with ", a,
               "rope.scaling.type '", scaling, "' is not supported");
    c["rope_scaling"] = llama3_rope_from_factors(f, c["rope_theta"].get<double>(), head_dim);
  }
  // Sizes the tensors fix: the vocabulary from the embedding table.
  const auto& emb = f.tensor("token_embd.weight");
  PEFT_CHECK(emb.ne.size() == 2 && emb.ne[0] == hidden, FormatError, "[gguf] ", f.path(),
             ": token_embd.weight must be [", hidden, ", vocab] in ggml order");
  c["vocab_size"] = emb.ne[1];
  if (f.has(a + "vocab_size"))
    PEFT_CHECK(f.get_int(a + "vocab_size") == emb.ne[1], FormatError, "[gguf] ", f.path(), ": ", a, "vocab_size = ",
               f.get_int(a + "vocab_size"), " but token_embd.weight has ", emb.ne[1], " rows");
  c["tie_word_embeddings"] = !f.has_tensor("output.weight");
  c["attention_bias"] = f.has_tensor("blk.0.attn_q.bias");
  c["mlp_bias"] = f.has_tensor("blk.0.ffn_up.bias");
  c["hidden_act"] = "silu";
  for (const auto& [key, hf] : {std::pair<const char*, const char*>{"tokenizer.ggml.bos_token_id", "bos_token_id"},
                                {"tokenizer.ggml.eos_token_id", "eos_token_id"},
                                {"tokenizer.ggml.padding_token_id", "pad_token_id"}}) {
    if (!f.has(key)) continue;
    const int64_t id = f.get_int(key);
    PEFT_CHECK(id >= 0 && id < emb.ne[1], FormatError, "[gguf] ", f.path(), ": ", key, " = ", id,
               " is outside the vocabulary of ", emb.ne[1]);
    c[hf] = id;
  }
  c["torch_dtype"] = "float32";
  if (f.has("general.name")) c["_name_or_path"] = f.get_string("general.name");
  return c;
}

namespace {
// generation_config.json's special ids, from the config gguf_hf_config built.
json generation_from(const json& c) {
  json g = json::object();
  for (const char* k : {"bos_token_id", "eos_token_id", "pad_token_id"})
    if (c.contains(k)) g[k] = c[k];
  return g;
}
}  // namespace

json gguf_generation_config(const GgufFile& f) { return generation_from(gguf_hf_config(f)); }

std::vector<GgufTensorTarget> gguf_tensor_map(const GgufFile& f) {
  const ArchRow& row = arch_row(f);
  const std::string a = std::string(row.arch) + ".";
  const int64_t heads = f.get_int(a + "attention.head_count");
  const int64_t kv_heads = f.has(a + "attention.head_count_kv") ? f.get_int(a + "attention.head_count_kv") : heads;
  const int64_t blocks = f.get_int(a + "block_count");
  std::vector<std::pair<std::regex, const NameRule*>> rules;
  for (const NameRule* r : row.rules()) rules.emplace_back(rule_regex(r->gguf), r);
  std::vector<GgufTensorTarget> out;
  std::vector<std::string> unknown;
  for (const auto& t : f.tensors()) {
    if (t.name == "rope_freqs.weight") continue;  // folded into the config (see gguf_hf_config)
    bool found = false;
    for (const auto& [re, rule] : rules) {
      std::smatch m;
      if (!std::regex_match(t.name, m, re)) continue;
      const std::string n = m.size() > 1 ? m[1].str() : "";
      PEFT_CHECK(n.empty() || std::stoll(n) < blocks, FormatError, "[gguf] ", f.path(), ": tensor '", t.name,
                 "' names block ", n, " but ", a, "block_count is ", blocks);
      GgufTensorTarget g{t.name, fill(rule->hf, n), rule->permute == 1 ? heads : rule->permute == 2 ? kv_heads : 0};
      out.push_back(std::move(g));
      found = true;
      break;
    }
    if (!found) unknown.push_back(t.name);
  }
  if (!unknown.empty()) {
    std::string list;
    for (std::size_t k = 0; k < unknown.size() && k < 8; ++k) list += (k ? ", " : "") + unknown[k];
    if (unknown.size() > 8) list += ", ... (" + std::to_string(unknown.size()) + " in all)";
    throw FormatError("[gguf] " + f.path() + ": tensors not used by the " + row.arch + " architecture: " + list);
  }
  return out;
}

std::optional<std::string> hf_to_gguf_name(const std::string& arch, const std::string& hf_name) {
  for (const auto& r : kArchs) {
    if (arch != r.arch) continue;
    for (const NameRule* rule : r.rules()) {
      std::smatch m;
      if (std::regex_match(hf_name, m, rule_regex(rule->hf))) return fill(rule->gguf, m.size() > 1 ? m[1].str() : "");
    }
  }
  return std::nullopt;
}

std::vector<int64_t> gguf_unpermute_rows(int64_t rows, int64_t heads) {
  PEFT_CHECK(heads > 0 && rows % (2 * heads) == 0, FormatError, "[gguf] cannot undo the rotary row permutation of ",
             rows, " rows in ", heads, " heads (rows must be a multiple of 2 x heads)");
  // The converter wrote HF row (h, i, j) (head h, half i, pair j) at (h, j, i).
  const int64_t half = rows / heads / 2;
  std::vector<int64_t> src(static_cast<std::size_t>(rows));
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t i = 0; i < 2; ++i)
      for (int64_t j = 0; j < half; ++j) src[static_cast<std::size_t>(h * 2 * half + i * half + j)] = h * 2 * half + j * 2 + i;
  return src;
}

void gguf_permute_rows(const void* src, void* dst, int64_t rows, std::size_t row_bytes, int64_t heads, bool to_hf) {
  const auto order = gguf_unpermute_rows(rows, heads);
  const auto* s = static_cast<const uint8_t*>(src);
  auto* d = static_cast<uint8_t*>(dst);
  for (int64_t r = 0; r < rows; ++r) {
    const std::size_t hf = static_cast<std::size_t>(r) * row_bytes, gg = static_cast<std::size_t>(order[r]) * row_bytes;
    std::memcpy(d + (to_hf ? hf : gg), s + (to_hf ? gg : hf), row_bytes);
  }
}

void convert_gguf_to_hf(const std::string& gguf_path, const std::string& out_dir, const GgufConvertOptions& opts) {
  namespace fs = std::filesystem;
  const auto f = io::GgufFile::open(gguf_path);
  const json config = gguf_hf_config(f);
  const auto targets = gguf_tensor_map(f);
  // Buffers own the converted bytes until the safetensors file is written.
  std::vector<std::vector<uint8_t>> buffers;
  std::map<std::string, io::TensorBytes> tensors;
  for (const auto& tg : targets) {
    const auto& t = f.tensor(tg.gguf_name);
    const io::GgmlType type = t.ggml_type();
    const bool half = opts.keep_half && (type == io::GgmlType::F16 || type == io::GgmlType::BF16);
    PEFT_CHECK(half || quant::ggml_can_dequantize(type), NotSupported, "[gguf] ", gguf_path, ": tensor '", t.name,
               "' is ", io::ggml_type_name(t.type), ", which cannot be dequantised here");
    const int64_t rows = t.rows(), cols = t.row_length();
    const std::size_t esize = half ? 2 : 4;
    // Rows are whole blocks, so the permutation is undone on the stored bytes, before decoding.
    std::vector<uint8_t> rows_hf;
    const uint8_t* in = t.data;
    if (tg.permute_heads > 0) {
      rows_hf.resize(t.nbytes);
      gguf_permute_rows(t.data, rows_hf.data(), rows, static_cast<std::size_t>(t.nbytes / static_cast<uint64_t>(rows)),
                        tg.permute_heads, /*to_hf=*/true);
      in = rows_hf.data();
    }
    std::vector<uint8_t> out(static_cast<std::size_t>(rows * cols) * esize);
    if (half) std::memcpy(out.data(), in, out.size());
    else quant::ggml_dequantize_rows(type, in, reinterpret_cast<float*>(out.data()), rows, cols);
    io::TensorBytes tb;
    tb.dtype = half ? (type == io::GgmlType::F16 ? DType::F16 : DType::BF16) : DType::F32;
    tb.shape = t.shape();
    buffers.push_back(std::move(out));
    tb.data = buffers.back().data();
    tb.nbytes = buffers.back().size();
    tensors.emplace(tg.hf_name, tb);
  }
  fs::create_directories(out_dir);
  io::write_safetensors((fs::path(out_dir) / "model.safetensors").string(), tensors, {{"format", "pt"}});
  write_json_file((fs::path(out_dir) / "config.json").string(), config);
  write_json_file((fs::path(out_dir) / "generation_config.json").string(), generation_from(config));
  if (f.has("tokenizer.ggml.model")) io::write_gguf_tokenizer(f, out_dir);
}

}  // namespace peft::models
