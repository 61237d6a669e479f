#include "peft/io/hf_checkpoint.h"

#include <filesystem>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "peft/core/check.h"
#include "peft/io/model_path.h"

namespace peft::io {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const std::vector<ModelPathKind> kOpens = {ModelPathKind::HfFolder, ModelPathKind::SafetensorsFile};

}  // namespace

HfCheckpoint HfCheckpoint::open(const std::string& path) {
  HfCheckpoint c;
  c.path_ = path;
  c.config_ = std::make_shared<json>(json::object());
  // Anything else (a llama2.c or GGUF file, an adapter, ...) is named, with what to do instead.
  if (!fs::exists(path) || (fs::is_directory(path) && !fs::exists(fs::path(path) / "config.json")))
    throw_model_path_error(detect_model_path(path), kOpens, "hf_checkpoint");
  std::vector<std::string> shard_files;
  if (fs::is_directory(path)) {
    const fs::path dir(path);
    const auto cfg = dir / "config.json";
    c.config_ = std::make_shared<json>(read_json_file(cfg.string()));
    PEFT_CHECK(c.config_->is_object(), FormatError, "[hf_checkpoint] ", cfg.string(),
               ": expected a JSON object");
    const auto gen = dir / "generation_config.json";
    if (fs::exists(gen)) c.generation_config_ = std::make_shared<json>(read_json_file(gen.string()));
    const auto single = dir / "model.safetensors";
    const auto index = dir / "model.safetensors.index.json";
    if (fs::exists(index)) {
      const json idx = read_json_file(index.string());
      const auto wm = idx.find("weight_map");
      PEFT_CHECK(idx.is_object() && wm != idx.end() && wm->is_object(), FormatError,
                 "[hf_checkpoint] ", index.string(), ": missing object field 'weight_map'");
      std::map<std::string, std::vector<std::string>> by_shard;
      for (auto it = wm->begin(); it != wm->end(); ++it) {
        PEFT_CHECK(it.value().is_string(), FormatError, "[hf_checkpoint] ", index.string(),
                   ": weight_map['", it.key(), "'] is not a file name");
        const std::string f = it.value().get<std::string>();
        PEFT_CHECK(!f.empty() && f.find('/') == std::string::npos && f != "." && f != "..",
                   FormatError, "[hf_checkpoint] ", index.string(), ": weight_map['", it.key(),
                   "'] = '", f, "' is not a file name inside the folder");
        by_shard[f].push_back(it.key());
      }
      PEFT_CHECK(!by_shard.empty(), FormatError, "[hf_checkpoint] ", index.string(),
                 ": weight_map is empty");
      for (const auto& [file, names] : by_shard) {
        const auto p = (dir / file).string();
        PEFT_CHECK(fs::exists(p), FormatError, "[hf_checkpoint] ", index.string(),
                   ": shard '", file, "' (holding '", names.front(), "') does not exist");
        c.shards_.push_back(SafetensorsFile::open(p));
        for (const auto& n : names)
          PEFT_CHECK(c.shards_.back().contains(n), FormatError, "[hf_checkpoint] ", index.string(),
                     ": weight_map puts '", n, "' in '", file, "' but that shard has no such tensor");
      }
      for (const auto& shard : c.shards_)
        for (const auto& n : shard.names()) {
          auto it = wm->find(n);
          PEFT_CHECK(it != wm->end() && fs::path(shard.path()).filename() == it->get<std::string>(),
                     FormatError, "[hf_checkpoint] ", shard.path(), ": holds tensor '", n,
                     "' that the index does not list for this shard");
        }
    } else if (fs::exists(single)) {
      c.shards_.push_back(SafetensorsFile::open(single.string()));
    } else {
      const bool bin = fs::exists(dir / "pytorch_model.bin") ||
                       fs::exists(dir / "pytorch_model.bin.index.json");
      throw FormatError("[hf_checkpoint] " + path +
                        ": no model.safetensors or model.safetensors.index.json" +
                        (bin ? " (pickled pytorch_model.bin is not read: convert it to safetensors)"
                             : ""));
    }
  } else {
    try {
      c.shards_.push_back(SafetensorsFile::open(path));
    } catch (const FormatError&) {
      const auto kind = detect_model_path(path);
      if (kind.kind != ModelPathKind::SafetensorsFile) throw_model_path_error(kind, kOpens, "hf_checkpoint");
      throw;
    }
  }
  for (std::size_t s = 0; s < c.shards_.size(); ++s) {
    for (const auto& n : c.shards_[s].names()) {
      auto [it, fresh] = c.where_.emplace(n, s);
      PEFT_CHECK(fresh, FormatError, "[hf_checkpoint] ", path, ": tensor '", n,
                 "' is stored in two shards (", c.shards_[it->second].path(), " and ",
                 c.shards_[s].path(), ")");
    }
  }
  for (const auto& kv : c.where_) c.names_.push_back(kv.first);
  return c;
}

const TensorInfo& HfCheckpoint::tensor(const std::string& name) const {
  return shard_of(name).at(name);
}

const SafetensorsFile& HfCheckpoint::shard_of(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end())
    throw std::out_of_range("[hf_checkpoint] " + path_ + ": no tensor named '" + name + "'");
  return shards_[it->second];
}

}  // namespace peft::io
