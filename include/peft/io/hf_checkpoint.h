#pragma once
// Hugging Face checkpoint folders: config.json (+ generation_config.json) and a single
// model.safetensors or a sharded model.safetensors.index.json (tier 0: torch-free).
//
//   auto ckpt = peft::io::HfCheckpoint::open("models/stories260K-hf");
//   int layers = ckpt.config()["num_hidden_layers"];
#include <map>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "peft/core/json_file.h"
#include "peft/io/safetensors.h"

namespace peft::io {

class HfCheckpoint {
 public:
  /// Opens a folder (config.json + weights) or a single .safetensors file (no config).
  /// Validates every shard and the index; throws FormatError naming the file and problem.
  static HfCheckpoint open(const std::string& path);

  const std::string& path() const { return path_; }
  /// config.json (an empty object when opening a bare .safetensors file).
  const nlohmann::json& config() const { return *config_; }
  /// generation_config.json, or nullptr when absent.
  const nlohmann::json* generation_config() const { return generation_config_.get(); }
  /// All tensor names, sorted.
  const std::vector<std::string>& tensor_names() const { return names_; }
  bool contains(const std::string& name) const { return where_.count(name) != 0; }
  /// Throws std::out_of_range naming the checkpoint and tensor when absent.
  const TensorInfo& tensor(const std::string& name) const;
  /// The shard holding `name` (keeps its mapping alive for zero-copy tensors).
  const SafetensorsFile& shard_of(const std::string& name) const;
  const std::vector<SafetensorsFile>& shards() const { return shards_; }

 private:
  std::string path_;
  std::shared_ptr<nlohmann::json> config_;
  std::shared_ptr<nlohmann::json> generation_config_;
  std::vector<SafetensorsFile> shards_;
  std::map<std::string, std::size_t> where_;
  std::vector<std::string> names_;
};

/// The JSON file helpers live in core/json_file.h; these names keep io:: callers working.
using peft::read_json_file;
using peft::write_json_file;

}  // namespace peft::io
