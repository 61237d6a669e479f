// Mirrors transformers' AutoModel* dispatch (model_type -> class) and the missing/unexpected key
// accounting of PreTrainedModel.from_pretrained.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/nn/module.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <iostream>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>

#include "peft/core/check.h"
#include "peft/core/error_context.h"
#include "peft/models/model_size.h"
#include "peft/core/strings.h"
#include "peft/core/json_file.h"
#include "peft/io/hf_checkpoint.h"
#include "peft/io/model_path.h"
#include "peft/io/tensor_bridge.h"
#include "peft/models/adaptable_linear.h"
#include "peft/models/architectures.h"
#include "peft/models/blocks.h"
#include "peft/models/model.h"
#include "peft/io/gguf.h"
#include "peft/models/gguf_model.h"
#include "peft/models/quantized_model.h"
#include "peft/quant/ggml_cpu.h"
#include "peft/quant/ggml_linear.h"
#include "peft/quant/ggml_quants.h"

namespace peft::models {

namespace {

using Factory = std::shared_ptr<PretrainedModel> (*)(const ModelConfig&, TaskHead);

struct ArchitectureRow {
  const char* model_type;
  Factory make;
};

// The one table of supported architectures.
const ArchitectureRow kArchitectures[] = {
    {"llama", make_llama},
    {"qwen2", make_qwen2},
    {"qwen3", make_qwen3},
    {"mistral", make_mistral},
    {"gpt2", make_gpt2},
    {"bert", make_bert},
    {"roberta", make_roberta},
    {"xlm-roberta", make_roberta},
    {"distilbert", make_distilbert},
    {"t5", make_t5},
    {"gemma", make_gemma},
    {"gemma2", make_gemma},
    {"gemma3_text", make_gemma},
    {"gemma3", make_gemma3_multimodal},
    {"phi3", make_phi3},
};

std::string shape_str(at::IntArrayRef s) {
  std::ostringstream os;
  os << s;
  return os.str();
}

c10::optional<at::ScalarType> parse_load_dtype(const std::string& d) {
  if (d == "auto") return c10::nullopt;
  if (d == "float32" || d == "fp32") return at::kFloat;
  if (d == "bfloat16" || d == "bf16") return at::kBFloat16;
  if (d == "float16" || d == "fp16") {
    // LibTorch 1.13 has no float16 matrix product on the CPU (2.x has): try the operations a
    // forward pass needs once, rather than fail in the middle of one with a kernel name.
    static const std::string unsupported = [] {
      try {
        const at::Tensor x = at::ones({2, 4}, at::kHalf);
        const at::Tensor y = at::softmax(at::mm(x, x.t()), -1);
        (void)at::silu(at::layer_norm(y, {2}) * y.pow(2).mean(-1, true));
        (void)at::gelu(at::embedding(x, at::zeros({1}, at::kLong)));
        return std::string();
      } catch (const std::exception& e) {
        const std::string m = e.what();
        return m.substr(0, m.find('\n'));
      }
    }();
    PEFT_CHECK(unsupported.empty(), ConfigError, "[load_model] dtype float16: this LibTorch build cannot compute in "
               "float16 on the CPU (", unsupported, "); use bfloat16 or float32");
    return at::kHalf;
  }
  throw ConfigError("[load_model] dtype '" + d + "' is not one of float32, bfloat16, float16, auto");
}

}  // namespace

TaskHead head_from_architectures(const ModelConfig& cfg) {
  const auto& j = cfg.json();
  auto it = j.find("architectures");
  if (it == j.end() || !it->is_array() || it->empty() || !(*it)[0].is_string()) return TaskHead::Base;
  const std::string a = (*it)[0].get<std::string>();
  auto ends = [&](const std::string& s) {
    return a.size() >= s.size() && a.compare(a.size() - s.size(), s.size(), s) == 0;
  };
  if (ends("ForCausalLM") || ends("LMHeadModel")) return TaskHead::CausalLM;
  if (ends("ForSequenceClassification")) return TaskHead::SeqCls;
  if (ends("ForTokenClassification")) return TaskHead::TokenCls;
  if (ends("ForConditionalGeneration")) return TaskHead::Seq2SeqLM;
  return TaskHead::Base;
}

std::string architecture_name(const ModelConfig& cfg, TaskHead head) {
  const auto& j = cfg.json();
  std::string a;
  if (auto it = j.find("architectures"); it != j.end() && it->is_array() && !it->empty() && (*it)[0].is_string())
    a = (*it)[0].get<std::string>();
  if (!a.empty() && head_from_architectures(cfg) == head) return a;
  static const char* const kSuffixes[] = {"ForConditionalGeneration", "ForSequenceClassification",
                                          "ForTokenClassification", "ForCausalLM", "LMHeadModel", "Model"};
  std::string stem = a;
  for (const char* s : kSuffixes) {
    const std::string suf = s;
    if (stem.size() > suf.size() && stem.compare(stem.size() - suf.size(), suf.size(), suf) == 0) {
      stem.resize(stem.size() - suf.size());
      break;
    }
  }
  if (stem.empty()) stem = cfg.model_type();
  const bool gpt2 = cfg.model_type() == "gpt2";
  switch (head) {
    case TaskHead::CausalLM: return stem + (gpt2 ? "LMHeadModel" : "ForCausalLM");
    case TaskHead::SeqCls: return stem + "ForSequenceClassification";
    case TaskHead::TokenCls: return stem + "ForTokenClassification";
    case TaskHead::Seq2SeqLM: return stem + "ForConditionalGeneration";
    case TaskHead::Base: return stem + "Model";
  }
  return stem + "Model";
}

PretrainedModel::ForwardStart PretrainedModel::start_forward(const ModelInputs& in, const char* model,
                                                            int64_t hidden_size, int64_t num_layers) {
  PEFT_CHECK(in.input_ids.defined() != in.inputs_embeds.defined(), std::invalid_argument, "[", model,
             "] give exactly one of input_ids and inputs_embeds");
  if (in.input_ids.defined()) check_shape(in.input_ids, {-1, -1}, model, "input_ids");
  ForwardStart s;
  s.hidden = in.inputs_embeds.defined() ? in.inputs_embeds : embed(in.input_ids);
  check_shape(s.hidden, {-1, -1, hidden_size}, model, "inputs_embeds");
  s.batch = s.hidden.size(0);
  s.length = s.hidden.size(1);
  s.past = in.cache ? in.cache->length() : 0;
  PEFT_CHECK(in.prefix_kv.empty() || static_cast<int64_t>(in.prefix_kv.size()) == num_layers, std::invalid_argument,
             "[", model, "] prefix_kv has ", in.prefix_kv.size(), " layers; the model has ", num_layers);
  s.prefix = in.prefix_kv.empty() ? 0 : in.prefix_kv[0].key.size(2);
  return s;
}

void PretrainedModel::set_llamacpp_numerics(const LlamaCppNumerics& n, const LlamaCppNumericsWeights&) {
  PEFT_CHECK(!n.enabled, NotSupported, "[llamacpp_numerics] ", config().model_type(),
             " models do not run with llama.cpp's arithmetic (llama only)");
}

std::shared_ptr<PretrainedModel> create_model(const ModelConfig& cfg, TaskHead head) {
  const std::string mt = cfg.model_type();
  std::string known;
  for (const auto& row : kArchitectures) {
    if (mt == row.model_type) return row.make(cfg, head);
    known += std::string(known.empty() ? "" : ", ") + row.model_type;
  }
  throw NotSupported("[load_model] " + cfg.source() + ": model_type '" + mt +
                     "' is not supported (supported: " + known + ")");
}

namespace {

// Tensors by HF key, from an HF checkpoint folder or a GGUF file.
struct WeightSource {
  std::string path;
  std::string model_type;
  std::vector<std::string> keys;
  std::function<at::Tensor(const std::string&)> get;
  bool contains(const std::string& k) const { return std::binary_search(keys.begin(), keys.end(), k); }
};

WeightSource hf_source(const std::string& path) {
  auto ck = std::make_shared<io::HfCheckpoint>(io::HfCheckpoint::open(path));
  WeightSource s;
  s.path = path;
  s.model_type = ck->config().value("model_type", std::string("model"));
  s.keys = ck->tensor_names();
  s.get = [ck](const std::string& k) { return io::to_tensor(*ck, k); };
  return s;
}

std::vector<std::string> load_weights_except(PretrainedModel& model, const WeightSource& ck, const std::string& dtype,
                                             const std::set<std::string>& consumed, bool allow_nonfinite);

// The checkpoint key that serves a model key: the same name, or the same name with the base
// prefix added (base model from a task checkpoint) or removed (task model from a base one).
std::string find_key(const PretrainedModel& model, const WeightSource& ck, const std::string& name) {
  const std::string prefix = model.base_model_prefix() + ".";
  const bool is_base = model.head() == TaskHead::Base;
  if (ck.contains(name)) return name;
  if (is_base && ck.contains(prefix + name)) return prefix + name;
  if (!is_base && name.rfind(prefix, 0) == 0 && ck.contains(name.substr(prefix.size())))
    return name.substr(prefix.size());
  return "";
}

}  // namespace

void load_weights(PretrainedModel& model, const std::string& path, const std::string& dtype, bool allow_nonfinite) {
  load_weights_except(model, hf_source(path), dtype, {}, allow_nonfinite);
}

namespace {
// `consumed`: checkpoint keys already loaded elsewhere (4-bit or GGUF block-quantised layers).
// Returns the task-head parameters the checkpoint did not have (left at their initial values).
std::vector<std::string> load_weights_except(PretrainedModel& model, const WeightSource& ck, const std::string& dtype,
                                             const std::set<std::string>& consumed, bool allow_nonfinite) {
  const std::string& path = ck.path;
  const auto want = parse_load_dtype(dtype);
  const std::string prefix = model.base_model_prefix() + ".";
  const bool is_base = model.head() == TaskHead::Base;

  std::set<std::string> used;
  std::vector<std::string> missing_base, missing_head, mismatched, nonfinite;
  std::set<std::string> aliases;
  for (const auto& [alias, src] : model.tied_weights()) aliases.insert(alias);

  auto starts = [](const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; };
  // Models whose task head sits beside the base modules (T5: encoder/decoder/lm_head at the top)
  // have no base prefix: every missing tensor is then an error.
  bool prefixed = false;
  for (const auto& p : model.named_parameters(true)) prefixed = prefixed || starts(p.key(), prefix);
  auto in_base = [&](const std::string& name) { return is_base || !prefixed || starts(name, prefix); };

  torch::NoGradGuard ng;
  auto load_one = [&](const std::string& name, at::Tensor& dst) {
    const std::string key = find_key(model, ck, name);
    if (key.empty() || consumed.count(key)) {
      if (!key.empty()) return;
      if (aliases.count(name)) return;
      (in_base(name) ? missing_base : missing_head).push_back(name);
      return;
    }
    used.insert(key);
    const at::Tensor src = ck.get(key);
    if (src.sizes() != dst.sizes()) {
      mismatched.push_back("'" + key + "': checkpoint " + shape_str(src.sizes()) + " vs model " +
                           shape_str(dst.sizes()));
      return;
    }
    if (dst.is_floating_point() && !src.is_floating_point()) {  // integers would be converted silently
      mismatched.push_back("'" + key + "': checkpoint " +
                           (src.scalar_type() == at::kBool ? std::string("bool")
                                                           : (at::isSignedType(src.scalar_type()) ? "int" : "uint") +
                                                                 std::to_string(src.element_size() * 8)) +
                           " values vs a floating-point model weight");
      return;
    }
    if (want && dst.is_floating_point() && dst.scalar_type() != *want) dst.set_data(dst.to(*want));
    if (!want && dst.is_floating_point() && dst.scalar_type() != src.scalar_type())
      dst.set_data(dst.to(src.scalar_type()));
    dst.copy_(src);
    // After the copy: a value too large for the load dtype (float16) becomes inf here too.
    if (const int64_t bad = io::count_nonfinite(dst))
      nonfinite.push_back("'" + key + "' (" + std::to_string(bad) + " of " + std::to_string(dst.numel()) + ")");
  };
  for (auto& p : model.named_parameters(/*recurse=*/true)) load_one(p.key(), p.value());
  for (auto& b : model.named_buffers(/*recurse=*/true)) load_one(b.key(), b.value());
  if (want) model.to(*want);

  std::set<std::string> top_level;
  for (const auto& c : model.named_children()) top_level.insert(c.key());
  for (const auto& p : model.named_parameters(/*recurse=*/false)) top_level.insert(p.key());
  std::vector<std::string> unexpected_base, unexpected_other;
  std::vector<std::regex> ignored;
  for (const auto& r : model.ignored_checkpoint_keys()) ignored.emplace_back(r);
  for (const auto& key : ck.keys) {
    if (used.count(key) || consumed.count(key)) continue;
    bool skip = false;
    for (const auto& r : ignored) skip = skip || std::regex_match(key, r);
    if (skip) continue;
    // A key inside one of our modules (the base model or our head) means config and weights
    // disagree; keys of other heads (e.g. a pretraining head) are only reported.
    const std::string head = key.substr(0, key.find('.'));
    const bool base_key = starts(key, prefix) || top_level.count(head) != 0;
    (base_key ? unexpected_base : unexpected_other).push_back(key);
  }

  const std::string e = listings({listing("shape mismatches", mismatched, 3),
                                   listing("missing from the checkpoint", missing_base, 3),
                                   listing("in the checkpoint but not in the model", unexpected_base, 3)});
  PEFT_CHECK(e.empty(), FormatError, "[load_model] ", path, ": the weights do not fit the ", ck.model_type,
             " built from ", model.config().source(), " (", describe_sizes(model.config()), "):", e);
  if (!nonfinite.empty()) {
    PEFT_CHECK(allow_nonfinite, FormatError, "[load_model] ", path, ": NaN or infinite values in ", nonfinite.size(),
               " weight tensor(s): ", join(nonfinite, 3), "; a damaged or diverged checkpoint? (a model whose "
               "weights hold inf masks on purpose loads with allow_nonfinite_weights: true / --allow-nonfinite-weights)");
    std::cerr << "warning: " << path << ": NaN or infinite values in " << join(nonfinite, 3)
              << " (allowed by allow_nonfinite_weights)\n";
  }
  if (!missing_head.empty()) {
    std::cerr << "warning: " << path << ": newly initialised (not in the checkpoint):";
    for (const auto& n : missing_head) std::cerr << " " << n;
    std::cerr << "\n";
  }
  if (!unexpected_other.empty()) {
    std::cerr << "warning: " << path << ": " << unexpected_other.size()
              << " checkpoint tensors not used by this task head (e.g. " << unexpected_other.front() << ")\n";
  }
  return missing_head;
}
}  // namespace

namespace {

// GGUF tensor bytes with the converter's Q/K row permutation undone (rows are whole blocks).
std::vector<uint8_t> gguf_rows_in_hf_order(const io::GgufTensorInfo& t, int64_t permute_heads) {
  if (permute_heads <= 0) return std::vector<uint8_t>(t.data, t.data + t.nbytes);
  std::vector<uint8_t> out(t.nbytes);
  gguf_permute_rows(t.data, out.data(), t.rows(), static_cast<std::size_t>(t.nbytes / static_cast<uint64_t>(t.rows())),
                    permute_heads, /*to_hf=*/true);
  return out;
}

bool is_block_type(io::GgmlType t) {
  return t != io::GgmlType::F32 && t != io::GgmlType::F16 && t != io::GgmlType::BF16;
}

// A GGUF file as a weight source (dense fp32 / f16 / bf16 tensors by HF key).
WeightSource gguf_source(std::shared_ptr<const io::GgufFile> f, const std::vector<GgufTensorTarget>& targets) {
  WeightSource s;
  s.path = f->path();
  s.model_type = f->get_string("general.architecture");
  auto by_key = std::make_shared<std::map<std::string, GgufTensorTarget>>();
  for (const auto& t : targets) {
    s.keys.push_back(t.hf_name);
    (*by_key)[t.hf_name] = t;
  }
  std::sort(s.keys.begin(), s.keys.end());
  s.get = [f, by_key](const std::string& key) {
    const GgufTensorTarget& tg = by_key->at(key);
    const io::GgufTensorInfo& t = f->tensor(tg.gguf_name);
    const auto type = t.ggml_type();
    PEFT_CHECK(quant::ggml_can_dequantize(type), NotSupported, "[load_model] ", f->path(), ": tensor '", t.name,
               "' is ", io::ggml_type_name(t.type), ", which cannot be decoded here (supported: F32, F16, BF16, "
               "Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K)");
    std::vector<uint8_t> permuted;
    if (tg.permute_heads > 0) permuted = gguf_rows_in_hf_order(t, tg.permute_heads);
    const uint8_t* bytes = permuted.empty() ? t.data : permuted.data();
    if (type == io::GgmlType::F16 || type == io::GgmlType::BF16)
      return at::from_blob(const_cast<uint8_t*>(bytes), t.shape(), type == io::GgmlType::F16 ? at::kHalf : at::kBFloat16)
          .clone();
    at::Tensor out = at::empty(t.shape(), at::kFloat);
    quant::ggml_dequantize_rows(type, bytes, out.data_ptr<float>(), t.rows(), t.row_length(),
                                std::max(1, at::get_num_threads()));
    return out;
  };
  return s;
}

}  // namespace

namespace {

// What load_model reads.
const std::vector<io::ModelPathKind> kLoadableKinds = {io::ModelPathKind::HfFolder, io::ModelPathKind::GgufModel};

}  // namespace

void check_tokenizer_fits(const PretrainedModel& model, std::size_t tokenizer_size, const std::string& tokenizer_source) {
  const ModelConfig& cfg = model.config();
  const int64_t vocab = cfg.get_int("vocab_size", -1);
  PEFT_CHECK(vocab < 0 || static_cast<int64_t>(tokenizer_size) <= vocab, ConfigError, "[load_model] the tokenizer of ",
             tokenizer_source, " has ", tokenizer_size, " tokens but ", cfg.source(), " has vocab_size ", vocab,
             ": ids from ", vocab, " up have no embedding row. Use the model's own tokenizer (or a model whose "
             "embedding was resized for this one)");
}

std::shared_ptr<PretrainedModel> load_gguf_model(const std::string& path, const LoadOptions& opts) {
  ErrorContext ctx("loading the model " + path);
  PEFT_CHECK(!opts.load_in_4bit, ConfigError, "[load_model] ", path,
             ": load_in_4bit applies to Hugging Face checkpoints; a GGUF base keeps its own quantisation "
             "(or use dequantize: true)");
  const bool llamacpp = opts.llamacpp_numerics.enabled;
  PEFT_CHECK(!llamacpp || !opts.dequantize, ConfigError, "[load_model] ", path,
             ": llamacpp_numerics computes on the GGUF's own encodings; it cannot be combined with dequantize");
  auto f = std::make_shared<const io::GgufFile>(io::GgufFile::open(path));
  if (f->get_string("general.type", "model") == "adapter")
    io::throw_model_path_error(io::detect_model_path(path), kLoadableKinds, "load_model");
  const ModelConfig cfg(gguf_hf_config(*f), path);
  // The sizes the metadata claims against the tensor data the file holds, before anything is built.
  check_model_size(cfg, 0.0, static_cast<double>(f->file_size()));
  // Weights the file provides are never initialised: block-quantised ones are then never touched,
  // so peak memory stays near the file size (transformers' no_init_weights).
  std::shared_ptr<PretrainedModel> model;
  {
    NoInitWeights no_init;
    model = create_model(cfg, opts.head ? *opts.head : TaskHead::CausalLM);
  }
  const auto targets = gguf_tensor_map(*f);
  const WeightSource src = gguf_source(f, targets);
  std::map<std::string, const GgufTensorTarget*> by_key;
  for (const auto& t : targets) by_key[t.hf_name] = &t;
  // Block-quantised projections stay in their blocks behind the slot (QLoRA-style); with
  // llamacpp_numerics every projection does (F32 and F16 too), as llama.cpp multiplies them.
  std::set<std::string> consumed;
  auto numerics_type = [&](const io::GgufTensorInfo& t) {
    PEFT_CHECK(quant::ggml_cpu::can_mul_mat(t.ggml_type()), NotSupported, "[load_model] ", path, ": tensor '", t.name,
               "' is ", io::ggml_type_name(t.type), ", whose llama.cpp matmul llamacpp_numerics does not reproduce "
               "(supported: F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K)");
  };
  if (!opts.dequantize) {
    for (const auto& item : model->named_modules("", /*include_self=*/false)) {
      auto* slot = dynamic_cast<AdaptableLinearImpl*>(item.value().get());
      if (!slot || slot->fan_in_fan_out()) continue;
      const std::string key = find_key(*model, src, item.key() + ".weight");
      if (key.empty()) continue;
      const auto& tg = *by_key.at(key);
      const io::GgufTensorInfo& t = f->tensor(tg.gguf_name);
      if (llamacpp) numerics_type(t);
      else if (!is_block_type(t.ggml_type()) || !quant::ggml_can_dequantize(t.ggml_type())) continue;
      PEFT_CHECK(t.ne.size() == 2 && t.ne[0] == slot->in_features() && t.ne[1] == slot->out_features(), FormatError,
                 "[load_model] ", path, ": tensor '", t.name, "' is ", shape_str(t.shape()), " but ", item.key(), " is [",
                 slot->out_features(), ", ", slot->in_features(), "]");
      auto w = std::make_shared<quant::GgmlLinearWeight>(t.ggml_type(), gguf_rows_in_hf_order(t, tg.permute_heads),
                                                         slot->out_features(), slot->in_features());
      w->set_llamacpp_numerics(llamacpp);
      slot->set_quantized(w);
      consumed.insert(key);
    }
  }
  const auto missing = load_weights_except(*model, src, opts.dtype == "auto" ? "float32" : opts.dtype, consumed,
                                           opts.allow_nonfinite_weights);
  if (!missing.empty()) {  // a new task head: the initialisation create_model would have given it
    torch::NoGradGuard ng;
    std::set<std::string> m(missing.begin(), missing.end());
    for (auto& p : model->named_parameters(true))
      if (m.count(p.key()) && p.key().size() > 7 && p.key().compare(p.key().size() - 7, 7, ".weight") == 0)
        p.value().normal_(0.0, 0.02);
  }
  if (llamacpp) {
    LlamaCppNumericsWeights w;
    if (model->head() == TaskHead::CausalLM && cfg.get_bool("tie_word_embeddings", false)) {
      const io::GgufTensorInfo& t = f->tensor("token_embd.weight");
      numerics_type(t);
      auto out = std::make_shared<quant::GgmlLinearWeight>(t.ggml_type(), std::vector<uint8_t>(t.data, t.data + t.nbytes),
                                                           t.ne[1], t.ne[0]);
      out->set_llamacpp_numerics(true);
      w.tied_output = out;
    }
    if (f->has_tensor("rope_freqs.weight")) {
      const io::GgufTensorInfo& t = f->tensor("rope_freqs.weight");
      w.rope_freq_factors.resize(static_cast<std::size_t>(t.nbytes / 4));
      std::memcpy(w.rope_freq_factors.data(), t.data, t.nbytes);
    }
    model->set_llamacpp_numerics(opts.llamacpp_numerics, w);
  }
  model->eval();
  return model;
}

std::shared_ptr<PretrainedModel> load_model(const std::string& path, const LoadOptions& opts) {
  namespace fs = std::filesystem;
  ErrorContext ctx("loading the model " + path);
  if (fs::is_regular_file(path) && io::is_gguf_file(path)) return load_gguf_model(path, opts);
  // A llama2.c checkpoint, an adapter, a folder holding model files, ...: one line naming it and the fix.
  if (!fs::is_directory(path) || !fs::exists(fs::path(path) / "config.json"))
    io::throw_model_path_error(io::detect_model_path(path), kLoadableKinds, "load_model");
  const std::string cfg_path = (fs::path(path) / "config.json").string();
  nlohmann::json cj = read_json_file(cfg_path);
  const TaskHead head = opts.head ? *opts.head : head_from_architectures(ModelConfig(cj, cfg_path));
  const bool classifier = head == TaskHead::SeqCls || head == TaskHead::TokenCls;
  if (classifier) {
    // A head sized for the task's labels (transformers: num_labels=... re-initialises it), and the
    // padding id decoder-only classifiers pool with (model.config.pad_token_id = tokenizer's).
    const int64_t have = cj.contains("id2label") ? static_cast<int64_t>(cj["id2label"].size()) : cj.value("num_labels", 2);
    if (opts.num_labels > 0 && have != opts.num_labels) {
      std::cerr << "note: " << cfg_path << " has " << have << " labels; the data has " << opts.num_labels << "\n";
      cj["num_labels"] = opts.num_labels;
      cj.erase("id2label");
      cj.erase("label2id");
    }
    if (opts.pad_token_id >= 0 && (!cj.contains("pad_token_id") || cj["pad_token_id"].is_null()))
      cj["pad_token_id"] = opts.pad_token_id;
  }
  const ModelConfig cfg(cj, cfg_path);
  {  // The sizes config.json claims against the weights beside it and this machine's memory.
    double weight_bytes = 0;
    bool any = false;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(path, ec)) {
      const std::string n = e.path().filename().string();
      if (n.size() > 12 && n.compare(n.size() - 12, 12, ".safetensors") == 0 && e.is_regular_file(ec)) {
        weight_bytes += static_cast<double>(e.file_size(ec));
        any = true;
      }
    }
    check_model_size(cfg, opts.dtype == "bfloat16" ? 2.0 : 4.0, any ? weight_bytes : -1.0);
  }
  auto model = create_model(cfg, head);
  // A checkpoint bitsandbytes quantised (transformers' save of a load_in_4bit model).
  const auto& j = cfg.json();
  const auto qc = j.find("quantization_config");
  const bool prequantized = qc != j.end() && qc->is_object() && qc->value("quant_method", std::string()) == "bitsandbytes";
  if (prequantized) {
    PEFT_CHECK(qc->value("load_in_4bit", false), NotSupported, "[load_model] ", path,
               ": only 4-bit bitsandbytes checkpoints are supported (load_in_8bit is not)");
    const auto ck = io::HfCheckpoint::open(path);
    std::map<std::string, at::Tensor> qt;
    for (const auto& key : ck.tensor_names())
      if (key.find(".weight") != std::string::npos) qt[key] = io::to_tensor(ck, key);
    const std::string compute = qc->value("bnb_4bit_compute_dtype", opts.bnb_4bit_compute_dtype);
    const auto used = load_prequantized(*model, qt, compute == "float32" || compute == "bfloat16" ? compute : "float32");
    load_weights_except(*model, hf_source(path), opts.dtype, std::set<std::string>(used.begin(), used.end()),
                        opts.allow_nonfinite_weights);
  } else {
    load_weights(*model, path, opts.dtype, opts.allow_nonfinite_weights);
    if (opts.load_in_4bit) {
      BnbConfig b;
      b.load_in_4bit = true;
      b.quant_type = opts.bnb_4bit_quant_type;
      b.use_double_quant = opts.bnb_4bit_use_double_quant;
      b.compute_dtype = opts.bnb_4bit_compute_dtype;
      // The classification head stays in full precision, as transformers keeps it.
      if (classifier) quantize_model(*model, b, {"lm_head", "score", "classifier"});
      else quantize_model(*model, b);
    }
  }
  model->eval();
  return model;
}

at::Tensor last_token_index(const at::Tensor& input_ids, const at::Tensor& attention_mask,
                            int64_t pad_token_id) {
  // transformers: the rightmost token that is not padding (works for left and right padding).
  const int64_t T = input_ids.size(1);
  at::Tensor not_pad = pad_token_id >= 0 ? input_ids.ne(pad_token_id).to(at::kLong)
                                         : at::ones_like(input_ids, at::kLong);
  at::Tensor idx = at::arange(T, input_ids.options().dtype(at::kLong));
  return (idx * not_pad).argmax(-1);
}

}  // namespace peft::models

namespace peft::models {

void save_pretrained(PretrainedModel& model, const std::string& dir) {
  namespace fs = std::filesystem;
  fs::create_directories(dir);
  std::map<std::string, at::Tensor> tensors;
  for (const auto& p : model.named_parameters(true)) {
    PEFT_CHECK(p.key().find("lora_") == std::string::npos, std::invalid_argument,
               "[save_pretrained] the model still carries adapter weights (", p.key(),
               "); call merge_and_unload() or unload() first");
    tensors[p.key()] = p.value().detach().contiguous();
  }
  for (const auto& b : model.named_buffers(true)) tensors[b.key()] = b.value().detach().contiguous();
  // 4-bit layers: bitsandbytes' serialised form, and transformers' quantization_config.
  const nlohmann::json qc = add_quantized_state(model, tensors);
  io::save_safetensors((fs::path(dir) / "model.safetensors").string(), tensors, {{"format", "pt"}});
  nlohmann::json cfg = model.config().json();
  cfg["architectures"] = {architecture_name(model.config(), model.head())};
  if (!qc.is_null()) cfg["quantization_config"] = qc;
  write_json_file((fs::path(dir) / "config.json").string(), cfg);
}

}  // namespace peft::models
