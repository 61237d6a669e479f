// peft info: what a checkpoint holds.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>
#include <nlohmann/json.hpp>

#include "adapter_info.h"
#include "commands.h"
#include "peft/config/peft_config.h"
#include "peft/core/check.h"
#include "peft/core/json_file.h"
#include "peft/core/strings.h"
#include "peft/io/gguf.h"
#include "peft/io/hf_checkpoint.h"
#include "peft/io/llama2c.h"
#include "peft/io/model_path.h"
#include "peft/io/safetensors.h"
#include "peft/models/gguf_model.h"
#include "peft/models/model_config.h"
#include "peft/models/model.h"
#include "peft/peft_model.h"
#include "peft/tuners/registry.h"

namespace peft::cli {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// The first of several HF spellings of a config field (GPT-2 uses n_layer, T5 num_layers, ...).
std::string field(const json& cfg, std::initializer_list<const char*> keys, const std::string& dflt = "-") {
  for (const char* k : keys) {
    auto it = cfg.find(k);
    if (it != cfg.end() && !it->is_null()) return it->is_string() ? it->get<std::string>() : it->dump();
  }
  return dflt;
}

std::string percent(int64_t part, int64_t whole) {
  std::ostringstream os;
  os << std::fixed << std::setprecision(1) << (whole ? 100.0 * static_cast<double>(part) / static_cast<double>(whole) : 0.0) << "%";
  return os.str();
}

// A GGUF file: architecture from its metadata (as the HF config it loads as), quantisation types
// and their share, the tokenizer.
void run_gguf_info(const std::string& path, bool list_tensors) {
  const auto f = io::GgufFile::open(path);
  std::cout << "checkpoint:    " << path << " (GGUF v" << f.version() << ", " << thousands(static_cast<int64_t>(f.file_size()))
            << " bytes)\n";
  if (f.has("general.name")) std::cout << "name:          " << f.get_string("general.name") << "\n";
  const std::string arch = f.get_string("general.architecture", "-");
  const bool adapter = f.get_string("general.type", "model") == "adapter";
  json cfg;
  std::string unsupported;
  if (!adapter) {
    try {
      cfg = models::gguf_hf_config(f);
    } catch (const std::exception& e) {
      unsupported = e.what();
    }
  }
  if (adapter) {
    int64_t pairs = 0;
    for (const auto& t : f.tensors()) pairs += t.name.size() > 7 && t.name.compare(t.name.size() - 7, 7, ".lora_a") == 0;
    std::cout << "adapter:       llama.cpp " << f.get_string("adapter.type", "-") << " adapter for " << arch << ", "
              << pairs << " lora_a/lora_b pairs";
    if (f.has("adapter.lora.alpha")) std::cout << ", adapter.lora.alpha " << f.get_float("adapter.lora.alpha");
    std::cout << "\n";
  } else if (!cfg.is_null()) {
    const std::string heads = field(cfg, {"num_attention_heads"});
    std::cout << "architecture:  " << arch << " (loads as " << cfg["architectures"][0].get<std::string>() << ", model_type "
              << field(cfg, {"model_type"}) << ")\n"
              << "layers:        " << field(cfg, {"num_hidden_layers"}) << "\n"
              << "hidden size:   " << field(cfg, {"hidden_size"}) << "\n"
              << "ffn size:      " << field(cfg, {"intermediate_size"}) << "\n"
              << "query heads:   " << heads << "\n"
              << "kv heads:      " << field(cfg, {"num_key_value_heads"}, heads) << "\n"
              << "vocab size:    " << field(cfg, {"vocab_size"}) << "\n"
              << "max positions: " << field(cfg, {"max_position_embeddings"}) << "\n"
              << "rope theta:    " << field(cfg, {"rope_theta"}) << "\n"
              << "tied output:   " << field(cfg, {"tie_word_embeddings"}) << "\n";
  } else {
    std::cout << "architecture:  " << arch << " (does not load here: " << unsupported << ")\n";
  }
  std::map<std::string, std::pair<int64_t, int64_t>> per_type;  // params, bytes
  int64_t total = 0, bytes = 0;
  for (const auto& t : f.tensors()) {
    auto& e = per_type[io::ggml_type_name(t.type)];
    e.first += t.numel();
    e.second += static_cast<int64_t>(t.nbytes);
    total += t.numel();
    bytes += static_cast<int64_t>(t.nbytes);
  }
  std::cout << "tensors:       " << f.tensors().size() << "\n"
            << "parameters:    " << thousands(total) << " (" << thousands(bytes) << " bytes, "
            << std::fixed << std::setprecision(2) << (total ? 8.0 * static_cast<double>(bytes) / static_cast<double>(total) : 0.0)
            << " bits per weight)\n";
  for (const auto& [ty, e] : per_type)
    std::cout << "  " << std::left << std::setw(6) << ty << " " << std::setw(14) << thousands(e.first) << " params "
              << std::right << std::setw(6) << percent(e.first, total) << "  " << thousands(e.second) << " bytes\n";
  if (f.has("tokenizer.ggml.model")) {
    std::cout << "tokenizer:     " << f.get_string("tokenizer.ggml.model") << " (pre " << f.get_string("tokenizer.ggml.pre", "default")
              << "), " << (f.has("tokenizer.ggml.tokens") ? f.at("tokenizer.ggml.tokens").items.size() : 0) << " tokens";
    for (const auto& [k, n] : {std::pair<const char*, const char*>{"tokenizer.ggml.bos_token_id", "bos"},
                               {"tokenizer.ggml.eos_token_id", "eos"}, {"tokenizer.ggml.padding_token_id", "pad"}})
      if (f.has(k)) std::cout << ", " << n << " " << f.get_int(k);
    std::cout << (f.has("tokenizer.chat_template") ? ", chat template" : "") << "\n";
  }
  if (list_tensors) {
    std::map<std::string, std::string> hf;
    if (!cfg.is_null())
      for (const auto& t : models::gguf_tensor_map(f)) hf[t.gguf_name] = t.hf_name;
    for (const auto& t : f.tensors()) {
      std::cout << "  " << t.name << "  " << io::ggml_type_name(t.type) << " [";
      const auto sh = t.shape();
      for (std::size_t i = 0; i < sh.size(); ++i) std::cout << (i ? ", " : "") << sh[i];
      std::cout << "]";
      if (hf.count(t.name)) std::cout << "  -> " << hf[t.name];
      std::cout << "\n";
    }
  }
}

// What `peft info` describes (anything else is named with this list).
const std::vector<io::ModelPathKind> kInfoKinds = {
    io::ModelPathKind::HfFolder,          io::ModelPathKind::SafetensorsFile, io::ModelPathKind::GgufModel,
    io::ModelPathKind::GgufAdapter,       io::ModelPathKind::AdapterFolder,   io::ModelPathKind::Llama2cCheckpoint,
    io::ModelPathKind::Llama2cTokenizer};

// A llama2.c checkpoint: its header (nothing else is read) and the command that converts it.
void run_llama2c_info(const io::ModelPathInfo& what) {
  const io::Llama2cConfig& c = what.llama2c;
  std::cout << "checkpoint:    " << what.path << " (llama2.c, version " << c.version
            << (c.version == 0 ? ": legacy export, " : ": ak42 export, ") << thousands(static_cast<int64_t>(what.file_size))
            << " bytes)\n"
            << "architecture:  llama (converts to LlamaForCausalLM)\n"
            << "dim:           " << c.dim << "\n"
            << "hidden_dim:    " << c.hidden_dim << "\n"
            << "layers:        " << c.n_layers << "\n"
            << "query heads:   " << c.n_heads << "\n"
            << "kv heads:      " << c.n_kv_heads << "\n"
            << "vocab size:    " << c.vocab_size << "\n"
            << "seq_len:       " << c.seq_len << "\n"
            << "classifier:    " << (c.shared_classifier ? "shared with the token embedding" : "its own (wcls)") << "\n"
            << "parameters:    " << thousands(static_cast<int64_t>(io::llama2c_parameter_count(c))) << " (float32)\n";
  if (!what.tokenizer_beside.empty()) std::cout << "tokenizer:     " << what.tokenizer_beside << " (llama2.c, beside it)\n";
  std::cout << "convert with:  " << io::llama2c_convert_command(what) << "\n";
}

// A llama2.c tokenizer.bin, and the conversion it goes with when one checkpoint sits beside it.
void run_llama2c_tokenizer_info(const io::ModelPathInfo& what) {
  std::cout << "tokenizer:     " << what.path << " (llama2.c tokenizer.bin, " << thousands(static_cast<int64_t>(what.file_size))
            << " bytes)\n"
            << "vocab size:    " << what.tokenizer_vocab << "\n"
            << "max token len: " << what.tokenizer_max_token_length << "\n";
  const std::string parent = fs::path(what.path).parent_path().string();
  const auto folder = io::detect_model_path(parent.empty() ? "." : parent);
  std::vector<const io::ModelPathInfo*> ckpts;
  for (const auto* e : folder.candidates())
    if (e->kind == io::ModelPathKind::Llama2cCheckpoint) ckpts.push_back(e);
  if (ckpts.size() == 1) {
    io::ModelPathInfo ck = *ckpts[0];
    ck.tokenizer_beside = what.path;
    std::cout << "convert with:  " << io::llama2c_convert_command(ck) << "\n";
  } else {
    std::cout << "convert with:  peft convert CHECKPOINT.bin OUT --tokenizer " << what.path << "\n";
  }
}

void run_info(const std::string& path, bool list_tensors, const std::string& plot);

// A folder that is neither an HF model folder nor an adapter, holding model files: what each is,
// then the one model described in full (or how to describe each).
void run_folder_info(const io::ModelPathInfo& what, bool list_tensors) {
  std::cout << "folder:        " << what.path
            << " (not a Hugging Face model folder: no config.json with safetensors weights)\n";
  std::size_t width = 0;
  for (const auto& e : what.contents) width = std::max(width, fs::path(e.path).filename().string().size());
  bool first = true;
  for (const auto& e : what.contents) {
    std::cout << (first ? "holds:         " : "               ") << std::left << std::setw(static_cast<int>(width) + 2)
              << fs::path(e.path).filename().string() << std::right << e.summary() << "\n";
    first = false;
  }
  const auto models = what.candidates();
  if (models.size() == 1) {
    std::cout << "model file:    " << models[0]->path << "\n\n";
    return run_info(models[0]->path, list_tensors, "");
  }
  first = true;
  for (const auto* e : models) {
    std::cout << (first ? "describe one:  " : "               ") << "peft info " << e->path << "\n";
    first = false;
  }
}

void run_info(const std::string& path, bool list_tensors, const std::string& plot) {
  using K = io::ModelPathKind;
  const auto what = io::detect_model_path(path);
  if (what.kind == K::AdapterFolder) return run_adapter_info(path, list_tensors, plot);
  PEFT_CHECK(plot.empty(), ConfigError, "[info] --plot needs an AdaLoRA adapter folder, got ", path);
  switch (what.kind) {
    case K::GgufModel:
    case K::GgufAdapter: return run_gguf_info(path, list_tensors);
    case K::Llama2cCheckpoint: return run_llama2c_info(what);
    case K::Llama2cTokenizer: return run_llama2c_tokenizer_info(what);
    case K::Folder: return run_folder_info(what, list_tensors);
    case K::HfFolder:
    case K::SafetensorsFile: break;
    default: io::throw_model_path_error(what, kInfoKinds, "info");
  }
  const auto ck = io::HfCheckpoint::open(path);
  const json& cfg = ck.config();
  std::cout << "checkpoint:    " << path << "\n";
  if (!cfg.empty()) {
    std::string arch = "-";
    if (auto a = cfg.find("architectures"); a != cfg.end() && a->is_array() && !a->empty())
      arch = (*a)[0].is_string() ? (*a)[0].get<std::string>() : (*a)[0].dump();
    const std::string heads = field(cfg, {"num_attention_heads", "n_head", "num_heads"});
    std::cout << "architecture:  " << arch << " (model_type " << field(cfg, {"model_type"}) << ")\n"
              << "layers:        " << field(cfg, {"num_hidden_layers", "n_layer", "num_layers"}) << "\n"
              << "hidden size:   " << field(cfg, {"hidden_size", "n_embd", "d_model"}) << "\n"
              << "query heads:   " << heads << "\n"
              << "kv heads:      " << field(cfg, {"num_key_value_heads"}, heads) << "\n"
              << "vocab size:    " << field(cfg, {"vocab_size"}) << "\n"
              << "max positions: " << field(cfg, {"max_position_embeddings", "n_positions"}) << "\n";
  }
  std::map<std::string, int64_t> per_dtype;
  int64_t total = 0, bytes = 0;
  for (const auto& n : ck.tensor_names()) {
    const auto& t = ck.tensor(n);
    per_dtype[std::string(dtype_name(t.dtype))] += t.numel();
    total += t.numel();
    bytes += static_cast<int64_t>(t.nbytes());
  }
  std::cout << "shards:        " << ck.shards().size() << "\n"
            << "tensors:       " << ck.tensor_names().size() << "\n"
            << "parameters:    " << thousands(total) << " (" << thousands(bytes) << " bytes)\n";
  for (const auto& [dt, n] : per_dtype)
    std::cout << "  " << std::left << std::setw(6) << dt << " " << thousands(n) << "\n";
  if (list_tensors) {
    for (const auto& n : ck.tensor_names()) {
      const auto& t = ck.tensor(n);
      std::cout << "  " << n << "  " << dtype_name(t.dtype) << " [";
      for (std::size_t i = 0; i < t.shape.size(); ++i) std::cout << (i ? ", " : "") << t.shape[i];
      std::cout << "]\n";
    }
  }
}

// An adapter's trainable / total parameter counts as PEFT's print_trainable_parameters gives them
// right after get_peft_model (the training-time encoder for prompt-learning methods).
void adapter_info(const std::string& model_dir, const std::string& adapter) {
  auto cfg = load_peft_config(adapter);
  cfg->inference_mode = false;
  std::shared_ptr<models::PretrainedModel> model;
  if (cfg->task_type == TaskType::SeqCls || cfg->task_type == TaskType::TokenCls) {
    // The head is sized as the adapter's saved classifier (config.json may say otherwise).
    json j = read_json_file(model_dir + "/config.json");
    const auto f = io::SafetensorsFile::open(adapter + "/adapter_model.safetensors");
    auto ends = [](const std::string& s, const std::string& t) {
      return s.size() >= t.size() && s.compare(s.size() - t.size(), t.size(), t) == 0;
    };
    for (const auto& n : f.names())
      if (ends(n, ".score.weight") || ends(n, ".classifier.weight")) {
        j["num_labels"] = f.at(n).shape.at(0);
        j.erase("id2label");
        j.erase("label2id");
      }
    model = models::create_model(models::ModelConfig(j, model_dir + "/config.json"),
                                 cfg->task_type == TaskType::SeqCls ? models::TaskHead::SeqCls : models::TaskHead::TokenCls);
  } else {
    model = models::load_model(model_dir);
  }
  auto pm = get_peft_model(model, *cfg);
  std::cout << "adapter:       " << adapter << " (" << to_string(cfg->peft_type) << ", task "
            << (cfg->task_type == TaskType::None ? "-" : to_string(cfg->task_type)) << ")\n";
  pm->print_trainable_parameters();
}

}  // namespace

void add_info_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "Describe a Hugging Face model folder, a GGUF file, a .safetensors file, a PEFT "
                                         "adapter folder, a llama2.c checkpoint or tokenizer.bin, or a folder of those");
  auto path = std::make_shared<std::string>();
  auto tensors = std::make_shared<bool>(false);
  cmd->add_option("path", *path, "Model folder (config.json + safetensors), GGUF file, .safetensors file, adapter "
                                 "folder, llama2.c checkpoint or tokenizer.bin (recognised by content)")
      ->required();
  cmd->add_flag("-t,--tensors", *tensors, "List every tensor with dtype and shape");
  auto adapter = std::make_shared<std::string>();
  cmd->add_option("-a,--adapter", *adapter,
                  "Also build this adapter's config on the model and print PEFT's trainable-parameter line")
      ->check(CLI::ExistingDirectory);
  auto plot = std::make_shared<std::string>();
  cmd->add_option("--plot", *plot, "AdaLoRA adapter: write the rank per module as a PNG bar chart");
  cmd->callback([path, tensors, adapter, plot] {
    run_info(*path, *tensors, *plot);
    if (!adapter->empty()) adapter_info(*path, *adapter);
  });
}

}  // namespace peft::cli
