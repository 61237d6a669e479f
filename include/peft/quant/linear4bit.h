#pragma once
// A 4-bit (NF4/FP4) base weight for the adaptable linear slot, and the model-level helpers of
// QLoRA: quantise every projection of a model, load bitsandbytes' pre-quantised checkpoints,
// prepare for k-bit training (tier 2).
//
//   peft::quant::quantize_model(*model, {QuantType::NF4, 64, true}, "float32");
//   auto pm = peft::get_peft_model(model, lora);   // LoRA attaches to the 4-bit slots unchanged
#include <ATen/core/Tensor.h>

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "peft/models/adaptable_linear.h"
#include "peft/quant/quantize.h"

namespace peft::models {
class PretrainedModel;
}

namespace peft::quant {

/// Packed 4-bit weight [out, in] + its bitsandbytes quant state. forward(x) = x · dequant(W)ᵀ in
/// the compute dtype; the input gradient is grad · dequant(W); the weight itself is frozen.
/// CPU: tiles of rows are dequantised into a small reused buffer (in parallel) and multiplied by
/// BLAS/oneDNN; other devices: plain ATen ops (dequantise, then linear).
class Linear4bitWeight : public models::QuantizedBase {
 public:
  /// compute_dtype: "float32" or "bfloat16".
  Linear4bitWeight(Quantized4 q, const std::string& compute_dtype = "float32");

  at::Tensor forward(const at::Tensor& x) override;
  at::Tensor dequantize() const override;
  int64_t nbytes() const override;
  /// Quantises `w` ([out, in], any float dtype) with the same options; returns max |w - dequant|.
  double requantize(const at::Tensor& w) override;

  const Quantized4& quantized() const { return q_; }
  at::ScalarType compute_dtype() const { return compute_; }
  /// x2: [N, in] contiguous in the compute dtype -> [N, out] (no autograd).
  at::Tensor matmul(const at::Tensor& x2) const;
  /// g2: [N, out] in the compute dtype -> [N, in] = g2 · dequant(W).
  at::Tensor matmul_t(const at::Tensor& g2) const;
  /// The device-agnostic dequantisation (ATen ops on `device`), fp32 [out, in].
  at::Tensor dequantize_aten(const c10::Device& device) const;

 private:
  void refresh();
  Quantized4 q_;
  at::ScalarType compute_;
  at::Tensor packed_;  ///< uint8 [(out*in+1)/2]
  at::Tensor scales_;  ///< fp32 per block (double quantisation resolved once)
  int64_t out_, in_;
};

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
int quantize_model(models::PretrainedModel& model, const BnbConfig& cfg,
                   const std::vector<std::string>& skip = {"lm_head"});

/// Loads `<layer>.weight` + quant-state tensors of a bitsandbytes-quantised checkpoint (as
/// transformers saves it) into the matching slots; `tensors` are the checkpoint's tensors by key.
/// Returns the keys consumed. Errors name the layer and the missing/ill-shaped tensor.
std::vector<std::string> load_prequantized(models::PretrainedModel& model,
                                           const std::map<std::string, at::Tensor>& tensors,
                                           const std::string& compute_dtype);

/// Adds bitsandbytes' serialised tensors of every 4-bit layer (`<layer>.weight` packed U8,
/// `.absmax`, `.quant_map`, `.nested_absmax`, `.nested_quant_map`, `.quant_state.bitsandbytes__<t>`)
/// to `tensors`; returns transformers' `quantization_config` for config.json (null when none).
nlohmann::json add_quantized_state(models::PretrainedModel& model, std::map<std::string, at::Tensor>& tensors);

/// Sum of the weight bytes of the model (4-bit slots count packed bytes + quant state).
int64_t weight_bytes(models::PretrainedModel& model);

/// PEFT's prepare_model_for_kbit_training: freeze everything, cast every non-4-bit floating
/// parameter to fp32, optionally turn on gradient checkpointing (input gradients are implicit
/// in our recompute, which always back-propagates through the checkpointed segment).
void prepare_model_for_kbit_training(models::PretrainedModel& model, bool use_gradient_checkpointing = true);

/// Dequantises every 4-bit slot back to a full-precision weight parameter (fp32).
void dequantize_model(models::PretrainedModel& model);

}  // namespace peft::quant
