#pragma once
// Quantised bases over a whole model (tier 2): QLoRA's 4-bit quantisation of every projection,
// bitsandbytes' pre-quantised checkpoints in and out, PEFT's prepare_model_for_kbit_training.
// The weights themselves are quant/ (Linear4bitWeight); this puts them into the model's slots.
//
//   peft::models::BnbConfig b;  b.load_in_4bit = true;  b.quant_type = "nf4";
//   peft::models::quantize_model(*model, b);
//   auto pm = peft::get_peft_model(model, lora);   // LoRA attaches to the 4-bit slots unchanged
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <optional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace peft::models {

class PretrainedModel;

/// transformers' BitsAndBytesConfig, 4-bit part.
struct BnbConfig {
  bool load_in_4bit = false;
  std::string quant_type = "nf4";  ///< bnb_4bit_quant_type (transformers' default is fp4)
  bool use_double_quant = false;   ///< bnb_4bit_use_double_quant
  std::string compute_dtype = "float32";  ///< bnb_4bit_compute_dtype
  int64_t blocksize = 64;
};

/// Replaces the weight of every AdaptableLinear except `skip` (default: the output head,
/// transformers' llm_int8_skip_modules / lm_head rule) by a 4-bit one. Returns how many.
int quantize_model(PretrainedModel& model, const BnbConfig& cfg,
                   const std::vector<std::string>& skip = {"lm_head"});

/// Loads `<layer>.weight` + quant-state tensors of a bitsandbytes-quantised checkpoint (as
/// transformers saves it) into the matching slots; `tensors` are the checkpoint's tensors by key.
/// Returns the keys consumed. Errors name the layer and the missing/ill-shaped tensor.
std::vector<std::string> load_prequantized(PretrainedModel& model,
                                           const std::map<std::string, at::Tensor>& tensors,
                                           const std::string& compute_dtype);

/// Adds bitsandbytes' serialised tensors of every 4-bit layer (`<layer>.weight` packed U8,
/// `.absmax`, `.quant_map`, `.nested_absmax`, `.nested_quant_map`, `.quant_state.bitsandbytes__<t>`)
/// to `tensors`; returns transformers' `quantization_config` for config.json (null when none).
nlohmann::json add_quantized_state(PretrainedModel& model, std::map<std::string, at::Tensor>& tensors);

/// transformers' `quantization_config` (BitsAndBytesConfig.to_dict()) of the model's 4-bit
/// slots; null when it has none.
nlohmann::json quantization_config(PretrainedModel& model);
/// The 4-bit part of a BitsAndBytesConfig dict (config.json's quantization_config, or the
/// base_quantization.json written beside an adapter); FormatError naming `where` and the field
/// on a wrong type or value. transformers' defaults fill missing fields (fp4, no double quant).
BnbConfig bnb_config_from_json(const nlohmann::json& qc, const std::string& where);
/// "4-bit nf4, double quant, compute float32" (or "full precision").
std::string describe(const BnbConfig& b);
/// The file a saved adapter keeps beside adapter_config.json when its base was 4-bit: that
/// base's `quantization_config` (transformers' BitsAndBytesConfig dict), so the adapter is used
/// on the base it was trained on. PEFT ignores the file.
inline constexpr const char* kBaseQuantizationFile = "base_quantization.json";
/// The 4-bit base an adapter folder records (its base_quantization.json); nullopt when the file
/// is absent. FormatError naming the file on a malformed one.
std::optional<BnbConfig> adapter_base_quantization(const std::string& adapter_dir);
/// Sum of the weight bytes of the model (4-bit slots count packed bytes + quant state).
int64_t weight_bytes(PretrainedModel& model);

/// PEFT's prepare_model_for_kbit_training: freeze everything, cast every non-4-bit floating
/// parameter to fp32, optionally turn on gradient checkpointing (input gradients are implicit
/// in our recompute, which always back-propagates through the checkpointed segment).
void prepare_model_for_kbit_training(PretrainedModel& model, bool use_gradient_checkpointing = true);

/// Dequantises every 4-bit slot back to a full-precision weight parameter (fp32).
void dequantize_model(PretrainedModel& model);

}  // namespace peft::models
