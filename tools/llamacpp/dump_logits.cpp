// dump_logits: llama.cpp's logits for given token ids, or its greedy continuation of a prompt.
// Developer tooling for checking peft.cpp's GGUF loader and GGUF LoRA export against llama.cpp
// (see tools/llamacpp/README.md); never part of the project build.
//
//   dump_logits -m MODEL.gguf [--lora FILE [--lora-scale S]] --tokens 1,403,407 -o out.npy
//   dump_logits -m MODEL.gguf --tokens-file ids.txt -o out.npy      (one sequence per line)
//   dump_logits -m MODEL.gguf --prompt "Once upon a time" --greedy 32   (prints JSON)
//
// Logits mode evaluates each sequence in one llama_decode call (positions 0..T-1, every position
// an output; --stepwise: one call per token, as generation does) in a fresh KV cache and writes
// float32 .npy of shape [T, n_vocab] (one sequence) or [n_seq, T, n_vocab] (sequences of equal
// length). By default the KV cache is F32 and flash attention off, so an F32 model's logits carry
// only matmul rounding (llama.cpp's default F16 cache adds ~1e-3); --cache-type f16 and
// --flash-attn auto are llama.cpp's own defaults (what llama-simple and llama-cli run with).
// --dump-tensors DIR writes every tensor of the graph as DIR/<decode call>_<node>_<name>.npy
// (float32; node = evaluation order within the call).
#include <llama.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

struct Args {
  std::string model, lora, out, tokens, tokens_file, prompt;
  float lora_scale = 1.0f;
  int greedy = 0;
  int threads = 0;
  bool verbose = false;
  bool stepwise = false;
  std::string cache_type = "f32", flash_attn = "off", dump_dir;
};

[[noreturn]] void usage(const char* msg) {
  std::fprintf(stderr,
               "error: %s\nusage: dump_logits -m MODEL.gguf [--lora FILE] [--lora-scale S]\n"
               "         (--tokens 1,2,3 | --tokens-file FILE) -o OUT.npy\n"
               "       dump_logits -m MODEL.gguf [--lora FILE] --prompt TEXT --greedy N\n"
               "       [--cache-type f32|f16] [--flash-attn off|on|auto] [--stepwise]\n"
               "       [--dump-tensors DIR] [-t THREADS] [-v]\n",
               msg);
  std::exit(2);
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) usage(("missing value after " + k).c_str());
      return argv[++i];
    };
    if (k == "-m" || k == "--model") a.model = val();
    else if (k == "--lora") a.lora = val();
    else if (k == "--lora-scale") a.lora_scale = std::stof(val());
    else if (k == "-o" || k == "--out") a.out = val();
    else if (k == "--tokens") a.tokens = val();
    else if (k == "--tokens-file") a.tokens_file = val();
    else if (k == "-p" || k == "--prompt") a.prompt = val();
    else if (k == "--greedy") a.greedy = std::stoi(val());
    else if (k == "-t" || k == "--threads") a.threads = std::stoi(val());
    else if (k == "-v" || k == "--verbose") a.verbose = true;
    else if (k == "--stepwise") a.stepwise = true;
    else if (k == "--cache-type") a.cache_type = val();
    else if (k == "--flash-attn") a.flash_attn = val();
    else if (k == "--dump-tensors") a.dump_dir = val();
    else usage(("unknown argument " + k).c_str());
  }
  if (a.model.empty()) usage("-m MODEL.gguf is required");
  const bool logits_mode = !a.tokens.empty() || !a.tokens_file.empty();
  if (logits_mode == (a.greedy > 0)) usage("give either --tokens/--tokens-file with -o, or --prompt with --greedy");
  if (logits_mode && a.out.empty()) usage("-o OUT.npy is required with --tokens/--tokens-file");
  if (a.cache_type != "f32" && a.cache_type != "f16") usage("--cache-type must be f32 or f16");
  if (a.flash_attn != "off" && a.flash_attn != "on" && a.flash_attn != "auto")
    usage("--flash-attn must be off, on or auto");
  return a;
}

std::vector<llama_token> parse_ids(const std::string& line) {
  std::vector<llama_token> ids;
  std::string cur;
  std::stringstream ss(line);
  while (std::getline(ss, cur, ',')) {
    std::stringstream ws(cur);
    std::string w;
    while (ws >> w) ids.push_back(static_cast<llama_token>(std::stol(w)));
  }
  return ids;
}

// .npy v1.0, little-endian float32, C order.
void write_npy(const std::string& path, const std::vector<size_t>& shape, const std::vector<float>& data) {
  std::string dims;
  for (size_t d : shape) dims += std::to_string(d) + ", ";
  if (shape.size() > 1) dims.resize(dims.size() - 2);
  else dims.resize(dims.size() - 1);
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  const size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::ofstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("[dump_logits] " + path + ": cannot open for writing");
  const uint16_t hlen = static_cast<uint16_t>(header.size());
  f.write("\x93NUMPY\x01\x00", 8);
  f.write(reinterpret_cast<const char*>(&hlen), 2);
  f.write(header.data(), header.size());
  f.write(reinterpret_cast<const char*>(data.data()), data.size() * sizeof(float));
}

ggml_type g_cache_type = GGML_TYPE_F32;
llama_flash_attn_type g_flash_attn = LLAMA_FLASH_ATTN_TYPE_DISABLED;

void quiet_log(ggml_log_level level, const char* text, void* user) {
  const bool verbose = *static_cast<bool*>(user);
  if (verbose || level >= GGML_LOG_LEVEL_WARN) std::fputs(text, stderr);
}

// --dump-tensors: every graph tensor, as float32 .npy named <decode call>_<node>_<tensor name>.
struct TensorDump {
  std::string dir;
  int call = 0;
  int node = 0;
};

bool dump_tensor(ggml_tensor* t, bool ask, void* user) {
  auto* d = static_cast<TensorDump*>(user);
  if (ask) return true;  // observe every tensor
  if (t->type != GGML_TYPE_F32 && t->type != GGML_TYPE_F16) return true;
  const int64_t n = ggml_nelements(t);
  std::vector<float> v(static_cast<size_t>(n));
  if (ggml_is_contiguous(t)) {
    std::vector<uint8_t> raw(ggml_nbytes(t));
    ggml_backend_tensor_get(t, raw.data(), 0, raw.size());
    if (t->type == GGML_TYPE_F32) std::memcpy(v.data(), raw.data(), raw.size());
    else
      for (int64_t i = 0; i < n; ++i) v[i] = ggml_fp16_to_fp32(reinterpret_cast<const ggml_fp16_t*>(raw.data())[i]);
  } else {
    return true;  // views with gaps (KV cache slices) are skipped
  }
  std::vector<size_t> shape;
  for (int i = GGML_MAX_DIMS - 1; i >= 0; --i)
    if (t->ne[i] > 1 || !shape.empty() || i == 0) shape.push_back(static_cast<size_t>(t->ne[i]));
  std::string name = t->name;
  for (char& c : name)
    if (c == '/' || c == ' ' || c == '(' || c == ')') c = '_';
  char seq[16];
  std::snprintf(seq, sizeof seq, "%04d", d->node++);
  write_npy(d->dir + "/" + std::to_string(d->call) + "_" + seq + "_" + name + ".npy", shape, v);
  return true;
}

TensorDump* g_dump = nullptr;

llama_context* make_context(llama_model* model, llama_adapter_lora* lora, float scale, int n_ctx,
                            int n_batch, int threads) {
  llama_context_params cp = llama_context_default_params();
  cp.n_ctx = static_cast<uint32_t>(n_ctx);
  cp.n_batch = static_cast<uint32_t>(n_batch);
  cp.n_ubatch = static_cast<uint32_t>(n_batch);  // one ubatch: the whole sequence at once
  cp.n_seq_max = 1;
  // F32 by default: llama.cpp's default F16 cache rounds K/V.
  cp.type_k = cp.type_v = g_cache_type;
  cp.flash_attn_type = g_flash_attn;
  if (g_dump) {
    cp.cb_eval = dump_tensor;
    cp.cb_eval_user_data = g_dump;
  }
  cp.n_threads = cp.n_threads_batch = threads;
  cp.no_perf = true;
  llama_context* ctx = llama_init_from_model(model, cp);
  if (!ctx) throw std::runtime_error("[dump_logits] cannot create a llama_context");
  if (lora && llama_set_adapters_lora(ctx, &lora, 1, &scale) != 0)
    throw std::runtime_error("[dump_logits] llama_set_adapters_lora failed");
  return ctx;
}

// Decodes ids[0..n) at positions pos0.. with the last (or every) position as output.
void decode(llama_context* ctx, const llama_token* ids, int n, int pos0, bool all_outputs) {
  llama_batch b = llama_batch_init(n, 0, 1);
  for (int i = 0; i < n; ++i) {
    b.token[i] = ids[i];
    b.pos[i] = pos0 + i;
    b.n_seq_id[i] = 1;
    b.seq_id[i][0] = 0;
    b.logits[i] = (all_outputs || i == n - 1) ? 1 : 0;
  }
  b.n_tokens = n;
  const int rc = llama_decode(ctx, b);
  if (g_dump) {
    ++g_dump->call;
    g_dump->node = 0;
  }
  llama_batch_free(b);
  if (rc != 0) throw std::runtime_error("[dump_logits] llama_decode returned " + std::to_string(rc));
}

std::string json_escape(const std::string& s) {
  std::string o;
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') o += '\\', o += static_cast<char>(c);
    else if (c == '\n') o += "\\n";
    else if (c == '\t') o += "\\t";
    else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      o += buf;
    } else o += static_cast<char>(c);
  }
  return o;
}

std::string ids_json(const std::vector<llama_token>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

int run(const Args& a) {
  bool verbose = a.verbose;
  llama_log_set(quiet_log, &verbose);
  g_cache_type = a.cache_type == "f16" ? GGML_TYPE_F16 : GGML_TYPE_F32;
  g_flash_attn = a.flash_attn == "on"     ? LLAMA_FLASH_ATTN_TYPE_ENABLED
                 : a.flash_attn == "auto" ? LLAMA_FLASH_ATTN_TYPE_AUTO
                                          : LLAMA_FLASH_ATTN_TYPE_DISABLED;
  TensorDump dump;
  if (!a.dump_dir.empty()) {
    dump.dir = a.dump_dir;
    g_dump = &dump;
  }
  llama_backend_init();
  llama_model_params mp = llama_model_default_params();
  mp.n_gpu_layers = 0;
  if (!a.verbose) mp.progress_callback = [](float, void*) { return true; };  // no loading dots
  llama_model* model = llama_model_load_from_file(a.model.c_str(), mp);
  if (!model) throw std::runtime_error("[dump_logits] " + a.model + ": llama.cpp cannot load the model");
  llama_adapter_lora* lora = nullptr;
  if (!a.lora.empty()) {
    lora = llama_adapter_lora_init(model, a.lora.c_str());
    if (!lora) throw std::runtime_error("[dump_logits] " + a.lora + ": llama.cpp cannot load the LoRA adapter");
  }
  const llama_vocab* vocab = llama_model_get_vocab(model);
  const int n_vocab = llama_vocab_n_tokens(vocab);
  const int threads = a.threads > 0 ? a.threads : std::max(1u, std::thread::hardware_concurrency());

  if (a.greedy > 0) {
    // Tokenised as llama-simple does (add_special and parse_special both true).
    const int n = -llama_tokenize(vocab, a.prompt.c_str(), static_cast<int32_t>(a.prompt.size()), nullptr, 0, true,
                                  true);
    std::vector<llama_token> prompt(n);
    if (llama_tokenize(vocab, a.prompt.c_str(), static_cast<int32_t>(a.prompt.size()), prompt.data(), n, true,
                       true) < 0)
      throw std::runtime_error("[dump_logits] cannot tokenize the prompt");
    llama_context* ctx = make_context(model, lora, a.lora_scale, n + a.greedy, std::max(n, 1), threads);
    std::vector<llama_token> gen;
    std::vector<float> margins;  // top-1 minus top-2 logit per step: how close a tie was
    bool eog = false;
    decode(ctx, prompt.data(), n, 0, false);
    for (int step = 0; step < a.greedy; ++step) {
      const float* lg = llama_get_logits_ith(ctx, -1);
      const llama_token next = static_cast<llama_token>(std::max_element(lg, lg + n_vocab) - lg);
      float second = -INFINITY;
      for (int v = 0; v < n_vocab; ++v)
        if (v != next) second = std::max(second, lg[v]);
      margins.push_back(lg[next] - second);
      if (llama_vocab_is_eog(vocab, next)) {  // llama-simple stops here without printing it
        eog = true;
        break;
      }
      gen.push_back(next);
      if (step + 1 < a.greedy) decode(ctx, &next, 1, n + step, false);
    }
    std::string text;
    for (llama_token t : gen) {
      char buf[256];
      const int k = llama_token_to_piece(vocab, t, buf, sizeof buf, 0, true);
      if (k > 0) text.append(buf, k);
    }
    std::string m = "[";
    for (size_t i = 0; i < margins.size(); ++i) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%s%.4g", i ? ", " : "", margins[i]);
      m += buf;
    }
    m += "]";
    std::printf("{\"prompt\": \"%s\", \"prompt_ids\": %s, \"generated_ids\": %s, \"stopped_at_eog\": %s, "
                "\"margins\": %s, \"text\": \"%s\"}\n",
                json_escape(a.prompt).c_str(), ids_json(prompt).c_str(), ids_json(gen).c_str(),
                eog ? "true" : "false", m.c_str(), json_escape(text).c_str());
    llama_free(ctx);
  } else {
    std::vector<std::vector<llama_token>> seqs;
    if (!a.tokens.empty()) seqs.push_back(parse_ids(a.tokens));
    if (!a.tokens_file.empty()) {
      std::ifstream f(a.tokens_file);
      if (!f) throw std::runtime_error("[dump_logits] " + a.tokens_file + ": cannot open");
      for (std::string line; std::getline(f, line);)
        if (line.find_first_not_of(" \t\r") != std::string::npos) seqs.push_back(parse_ids(line));
    }
    const size_t T = seqs.at(0).size();
    for (const auto& s : seqs) {
      if (s.size() != T || T == 0)
        throw std::runtime_error("[dump_logits] sequences must be non-empty and of equal length");
      for (llama_token t : s)
        if (t < 0 || t >= n_vocab)
          throw std::runtime_error("[dump_logits] token id " + std::to_string(t) + " outside [0, " +
                                   std::to_string(n_vocab) + ")");
    }
    std::vector<float> out;
    out.reserve(seqs.size() * T * n_vocab);
    for (const auto& s : seqs) {
      // A fresh context per sequence: nothing of the previous one can leak into the cache.
      llama_context* ctx = make_context(model, lora, a.lora_scale, static_cast<int>(T), static_cast<int>(T),
                                        threads);
      if (a.stepwise) {
        for (size_t i = 0; i < T; ++i) {
          decode(ctx, &s[i], 1, static_cast<int>(i), true);
          const float* lg = llama_get_logits_ith(ctx, 0);
          if (!lg) throw std::runtime_error("[dump_logits] no logits for position " + std::to_string(i));
          out.insert(out.end(), lg, lg + n_vocab);
        }
      } else {
        decode(ctx, s.data(), static_cast<int>(T), 0, true);
        for (size_t i = 0; i < T; ++i) {
          const float* lg = llama_get_logits_ith(ctx, static_cast<int32_t>(i));
          if (!lg) throw std::runtime_error("[dump_logits] no logits for position " + std::to_string(i));
          out.insert(out.end(), lg, lg + n_vocab);
        }
      }
      llama_free(ctx);
    }
    std::vector<size_t> shape = {T, static_cast<size_t>(n_vocab)};
    if (seqs.size() > 1) shape.insert(shape.begin(), seqs.size());
    write_npy(a.out, shape, out);
    std::fprintf(stderr, "dump_logits: wrote %s (%zu x %zu x %d)\n", a.out.c_str(), seqs.size(), T, n_vocab);
  }
  if (lora) llama_adapter_lora_free(lora);
  llama_model_free(model);
  llama_backend_free();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(parse(argc, argv));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
