// config.json (+ generation_config.json, + model.safetensors.index.json) as a Hugging Face folder
// reads them: HfCheckpoint::open, then the ModelConfig view every architecture parses through
// (each field read as every type) and the size bounds checked before a model is built. Input:
// config.json, optionally followed by NUL + generation_config.json and NUL + the index.
// Any input must give a checkpoint or ConfigError / FormatError.
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "fuzz_util.h"
#include "peft/core/error.h"
#include "peft/io/hf_checkpoint.h"
#include "peft/io/safetensors.h"
#include "peft/models/model_config.h"
#include "peft/models/model_size.h"

namespace fs = std::filesystem;
using peft::models::ModelConfig;

namespace {

/// A folder with a one-tensor model.safetensors; config.json and the others are rewritten per input.
const std::string& folder() {
  static const std::string dir = [] {
    const std::string d = peft::fuzz::scratch_dir() + "/model";
    fs::create_directories(d);
    const float w[4] = {1, 2, 3, 4};
    peft::io::write_safetensors(d + "/model.safetensors",
                                {{"model.embed_tokens.weight", {peft::DType::F32, {2, 2}, w, sizeof(w)}}});
    return d;
  }();
  return dir;
}

void put(const std::string& name, const std::string_view* text) {
  const std::string path = folder() + "/" + name;
  if (text) {
    const std::string tmp = peft::fuzz::write_scratch("model.tmp", *text);
    fs::rename(tmp, path);
  } else {
    std::error_code ec;
    fs::remove(path, ec);
  }
}

/// Every field as each type: the getters either return or throw ConfigError.
void read_every_field(const ModelConfig& cfg) {
  for (auto it = cfg.json().begin(); it != cfg.json().end(); ++it) {
    const std::string& k = it.key();
    if (!cfg.has(k)) continue;
    auto attempt = [](auto&& f) {
      try {
        f();
      } catch (const peft::ConfigError&) {
      }
    };
    attempt([&] { (void)cfg.get_int(k); });
    attempt([&] { (void)cfg.get_double(k); });
    attempt([&] { (void)cfg.get_bool(k, false); });
    attempt([&] { (void)cfg.get_string(k, ""); });
    attempt([&] { (void)cfg.get_positive(k); });
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto parts = peft::fuzz::split_nul(peft::fuzz::as_text(data, size));
  put("config.json", &parts[0]);
  put("generation_config.json", parts.size() > 1 ? &parts[1] : nullptr);
  put("model.safetensors.index.json", parts.size() > 2 ? &parts[2] : nullptr);
  try {
    const auto ckpt = peft::io::HfCheckpoint::open(folder());
    if (!ckpt.config().is_object()) std::abort();
    const ModelConfig cfg(ckpt.config(), "config.json");
    (void)cfg.model_type();
    read_every_field(cfg);
    if (const auto* gen = ckpt.generation_config(); gen && gen->is_object())
      read_every_field(ModelConfig(*gen, "generation_config.json"));
    const double params = peft::models::min_parameter_count(cfg);
    if (!(params >= 0)) std::abort();
    (void)peft::models::describe_sizes(cfg);
    peft::models::check_model_size(cfg, 4.0, 16.0);
  } catch (const peft::ConfigError&) {
  } catch (const peft::FormatError&) {
  }
  return 0;
}
