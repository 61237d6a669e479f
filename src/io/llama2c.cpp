// llama2.c formats: karpathy/llama2.c export.py (legacy_export, version1_export) and run.c.
#include "peft/io/llama2c.h"

#include <cstring>
#include <climits>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "peft/core/check.h"
#include "peft/core/file_util.h"
#include "peft/core/json_file.h"
#include "peft/io/safetensors.h"
#include "peft/io/tokenizer.h"

namespace peft::io {

namespace fs = std::filesystem;

namespace {

constexpr uint32_t kMagicV1 = 0x616b3432;  // "ak42"

int32_t rd_i32(const char* b, std::size_t off) {
  int32_t v;
  std::memcpy(&v, b + off, 4);
  return v;
}

class Cursor {
 public:
  Cursor(const std::string& bytes, std::size_t off, std::string path)
      : b_(bytes), off_(off), path_(std::move(path)) {}
  std::vector<float> take(std::size_t n, const char* what) {
    PEFT_CHECK(off_ + n * 4 <= b_.size(), FormatError, "[llama2c] ", path_,
               ": file ends inside tensor '", what, "'");
    std::vector<float> v(n);
    std::memcpy(v.data(), b_.data() + off_, n * 4);
    off_ += n * 4;
    return v;
  }
  void skip(std::size_t n) { off_ += n * 4; }
  std::size_t offset() const { return off_; }

 private:
  const std::string& b_;
  std::size_t off_;
  std::string path_;
};

// llama2.c rotates interleaved pairs (2i, 2i+1); HF rotates halves (i, i + hd/2). Same row
// permutation as transformers' convert_llama_weights_to_hf.py `permute`.
std::vector<float> permute_rope(const std::vector<float>& w, int heads, int rows, int cols) {
  std::vector<float> out(w.size());
  const int hd = rows / heads, half = hd / 2;
  for (int h = 0; h < heads; ++h)
    for (int i = 0; i < half; ++i)
      for (int j = 0; j < 2; ++j) {
        const std::size_t src = static_cast<std::size_t>(h * hd + 2 * i + j) * cols;
        const std::size_t dst = static_cast<std::size_t>(h * hd + j * half + i) * cols;
        std::memcpy(&out[dst], &w[src], sizeof(float) * cols);
      }
  return out;
}

// Parses and checks the header at the start of `b` (n bytes; 256 suffice) of a file of
// `file_size` bytes: fields in range, head sizes consistent, the size exactly as implied.
Llama2cConfig parse_header(const char* b, std::size_t n, uint64_t file_size, const std::string& path) {
  Llama2cConfig c;
  PEFT_CHECK(file_size >= 28 && n >= 28, FormatError, "[llama2c] ", path, ": ", file_size,
             " bytes is too short for a llama2.c header (28 bytes)");
  std::size_t hdr = 0;
  uint32_t magic;
  std::memcpy(&magic, b, 4);
  if (magic == kMagicV1) {
    PEFT_CHECK(file_size >= 256 && n >= 256, FormatError, "[llama2c] ", path, ": v1 header is truncated");
    const int version = rd_i32(b, 4);
    PEFT_CHECK(version != 2, NotSupported, "[llama2c] ", path,
               ": version 2 (int8 quantised) exports are not supported; export version 1");
    PEFT_CHECK(version == 1, FormatError, "[llama2c] ", path, ": unknown export version ", version);
    c.version = 1;
    hdr = 8;
  }
  c.dim = rd_i32(b, hdr + 0);
  c.hidden_dim = rd_i32(b, hdr + 4);
  c.n_layers = rd_i32(b, hdr + 8);
  c.n_heads = rd_i32(b, hdr + 12);
  c.n_kv_heads = rd_i32(b, hdr + 16);
  c.vocab_size = rd_i32(b, hdr + 20);
  c.seq_len = rd_i32(b, hdr + 24);
  if (c.version == 1) {
    c.shared_classifier = b[hdr + 28] != 0;
  } else {
    c.shared_classifier = c.vocab_size > 0;
    // A negative vocab_size marks an unshared classifier (INT_MIN stays out of range below).
    if (c.vocab_size < 0 && c.vocab_size != INT32_MIN) c.vocab_size = -c.vocab_size;
  }
  auto sane = [&](int v, const char* name, int hi) {
    PEFT_CHECK(v > 0 && v <= hi, FormatError, "[llama2c] ", path, ": header field ", name, " = ", v,
               " is out of range (1..", hi, "); not a llama2.c checkpoint?");
  };
  sane(c.dim, "dim", 1 << 16);
  sane(c.hidden_dim, "hidden_dim", 1 << 18);
  sane(c.n_layers, "n_layers", 1024);
  sane(c.n_heads, "n_heads", 1024);
  sane(c.n_kv_heads, "n_kv_heads", 1024);
  sane(c.vocab_size, "vocab_size", 1 << 22);
  sane(c.seq_len, "seq_len", 1 << 22);
  PEFT_CHECK(c.dim % c.n_heads == 0 && (c.dim / c.n_heads) % 2 == 0, FormatError, "[llama2c] ",
             path, ": dim ", c.dim, " is not an even head size times n_heads ", c.n_heads);
  PEFT_CHECK(c.n_heads % c.n_kv_heads == 0, FormatError, "[llama2c] ", path, ": n_heads ",
             c.n_heads, " is not a multiple of n_kv_heads ", c.n_kv_heads);
  const uint64_t expected = llama2c_file_size(c);
  PEFT_CHECK(file_size == expected, FormatError, "[llama2c] ", path, ": file is ", file_size,
             " bytes but the header (dim ", c.dim, ", hidden ", c.hidden_dim, ", layers ",
             c.n_layers, ", heads ", c.n_heads, "/", c.n_kv_heads, ", vocab ", c.vocab_size,
             ", seq ", c.seq_len, ") implies ", expected);
  return c;
}

}  // namespace

uint64_t llama2c_parameter_count(const Llama2cConfig& c) {
  // Every range is capped by parse_header, so none of these products overflows.
  const uint64_t D = c.dim, H = c.hidden_dim, L = c.n_layers, V = c.vocab_size;
  const uint64_t kvd = D / c.n_heads * c.n_kv_heads;
  const uint64_t per_layer = 2 * D + D * D + 2 * kvd * D + D * D + 3 * H * D;
  return V * D + L * per_layer + D + (c.shared_classifier ? 0 : V * D);
}

uint64_t llama2c_file_size(const Llama2cConfig& c) {
  uint64_t size = (c.version == 1 ? 256 : 28) + 4 * llama2c_parameter_count(c);
  if (c.version == 0) size += 4ull * c.seq_len * (c.dim / c.n_heads);  // freq_cis_real + imag
  return size;
}

Llama2cConfig read_llama2c_header(const std::string& path) {
  std::error_code ec;
  PEFT_CHECK(fs::is_regular_file(path, ec), FormatError, "[llama2c] ", path, ": not a regular file");
  const uint64_t size = fs::file_size(path, ec);
  PEFT_CHECK(!ec, FormatError, "[llama2c] ", path, ": cannot read its size: ", ec.message());
  std::ifstream in(path, std::ios::binary);
  PEFT_CHECK(in.good(), FormatError, "[llama2c] ", path, ": cannot open file");
  char b[256] = {};
  in.read(b, sizeof b);
  return parse_header(b, static_cast<std::size_t>(in.gcount()), size, path);
}

Llama2cModel read_llama2c(const std::string& path) {
  const std::string b = read_file(path);
  Llama2cModel m;
  m.config = parse_header(b.data(), b.size(), b.size(), path);
  const Llama2cConfig& c = m.config;
  const std::size_t data_off = c.version == 1 ? 256 : 28;
  const std::size_t D = c.dim, H = c.hidden_dim, L = c.n_layers, V = c.vocab_size;
  const std::size_t hd = D / c.n_heads, kvd = hd * c.n_kv_heads;

  Cursor cur(b, data_off, path);
  std::vector<float> tok, rms_att, rms_ffn, rms_final, wq, wk, wv, wo, w1, w2, w3, wcls;
  if (c.version == 1) {
    rms_att = cur.take(L * D, "rms_att");
    rms_ffn = cur.take(L * D, "rms_ffn");
    rms_final = cur.take(D, "rms_final");
    tok = cur.take(V * D, "tok_embeddings");
  } else {
    tok = cur.take(V * D, "tok_embeddings");
    rms_att = cur.take(L * D, "rms_att");
  }
  wq = cur.take(L * D * D, "wq");
  wk = cur.take(L * kvd * D, "wk");
  wv = cur.take(L * kvd * D, "wv");
  wo = cur.take(L * D * D, "wo");
  if (c.version == 0) rms_ffn = cur.take(L * D, "rms_ffn");
  w1 = cur.take(L * H * D, "w1");
  w2 = cur.take(L * D * H, "w2");
  w3 = cur.take(L * H * D, "w3");
  if (c.version == 0) {
    rms_final = cur.take(D, "rms_final");
    cur.skip(c.seq_len * hd);  // precomputed RoPE tables: recomputed from rope_theta
  }
  if (!c.shared_classifier) wcls = cur.take(V * D, "wcls");

  auto put = [&](const std::string& name, std::vector<int64_t> shape, std::vector<float> data) {
    m.tensors[name] = NamedF32{std::move(shape), std::move(data)};
  };
  auto slice = [](const std::vector<float>& all, std::size_t l, std::size_t n) {
    return std::vector<float>(all.begin() + l * n, all.begin() + (l + 1) * n);
  };
  const int64_t d = D, h = H, kv = kvd, v = V;
  put("model.embed_tokens.weight", {v, d}, tok);
  put("model.norm.weight", {d}, rms_final);
  if (!c.shared_classifier) put("lm_head.weight", {v, d}, wcls);
  for (std::size_t l = 0; l < L; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    put(p + "input_layernorm.weight", {d}, slice(rms_att, l, D));
    put(p + "post_attention_layernorm.weight", {d}, slice(rms_ffn, l, D));
    put(p + "self_attn.q_proj.weight", {d, d}, permute_rope(slice(wq, l, D * D), c.n_heads, d, d));
    put(p + "self_attn.k_proj.weight", {kv, d},
        permute_rope(slice(wk, l, kvd * D), c.n_kv_heads, kv, d));
    put(p + "self_attn.v_proj.weight", {kv, d}, slice(wv, l, kvd * D));
    put(p + "self_attn.o_proj.weight", {d, d}, slice(wo, l, D * D));
    put(p + "mlp.gate_proj.weight", {h, d}, slice(w1, l, H * D));
    put(p + "mlp.down_proj.weight", {d, h}, slice(w2, l, D * H));
    put(p + "mlp.up_proj.weight", {h, d}, slice(w3, l, H * D));
  }
  return m;
}

std::string llama2c_hf_config_json(const Llama2cConfig& c) {
  nlohmann::json j = {
      {"architectures", {"LlamaForCausalLM"}},
      {"model_type", "llama"},
      {"hidden_size", c.dim},
      {"intermediate_size", c.hidden_dim},
      {"num_hidden_layers", c.n_layers},
      {"num_attention_heads", c.n_heads},
      {"num_key_value_heads", c.n_kv_heads},
      {"head_dim", c.dim / c.n_heads},
      {"vocab_size", c.vocab_size},
      {"max_position_embeddings", c.seq_len},
      {"rms_norm_eps", 1e-5},
      {"rope_theta", 10000.0},
      {"hidden_act", "silu"},
      {"attention_bias", false},
      {"attention_dropout", 0.0},
      {"mlp_bias", false},
      {"initializer_range", 0.02},
      {"tie_word_embeddings", c.shared_classifier},
      {"bos_token_id", 1},
      {"eos_token_id", 2},
      {"torch_dtype", "float32"},
  };
  return j.dump(2) + "\n";
}

void convert_llama2c(const std::string& model_bin, const std::string& tokenizer_bin,
                     const std::string& out_dir) {
  const Llama2cModel m = read_llama2c(model_bin);
  if (!tokenizer_bin.empty()) {  // checked before anything is written
    const std::size_t n = llama2c_tokenizer_entries(tokenizer_bin);
    PEFT_CHECK(static_cast<int64_t>(n) == static_cast<int64_t>(m.config.vocab_size), FormatError, "[convert_llama2c] ",
               tokenizer_bin, " has ", n, " entries but ", model_bin, " has vocab_size ", m.config.vocab_size,
               ": a tokenizer of another model, or a truncated file (llama2.c reads exactly vocab_size entries)");
  }
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  PEFT_CHECK(!ec, std::runtime_error, "[convert_llama2c] cannot create '", out_dir, "': ",
             ec.message());
  std::map<std::string, TensorBytes> tensors;
  for (const auto& [name, t] : m.tensors)
    tensors[name] = TensorBytes{DType::F32, t.shape, t.data.data(), t.data.size() * sizeof(float)};
  const fs::path out(out_dir);
  write_safetensors((out / "model.safetensors").string(), tensors, {{"format", "pt"}});
  write_file_atomic((out / "config.json").string(), llama2c_hf_config_json(m.config));
  write_json_file((out / "generation_config.json").string(),
                  {{"bos_token_id", 1}, {"eos_token_id", 2}});
  if (!tokenizer_bin.empty()) {
    write_file_atomic((out / "tokenizer.bin").string(), read_file(tokenizer_bin));
    write_llama2c_tokenizer_json(tokenizer_bin, (out / "tokenizer.json").string());
    write_json_file((out / "tokenizer_config.json").string(),
                    {{"bos_token", "<s>"}, {"eos_token", "</s>"}, {"unk_token", "<unk>"}, {"add_bos_token", true},
                     {"add_eos_token", false}, {"model_max_length", m.config.seq_len}});
  }
}

}  // namespace peft::io
