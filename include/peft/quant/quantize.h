#pragma once
// Blockwise 4-bit (NF4 / FP4) quantisation with optional double quantisation of the block
// constants, byte-for-byte as bitsandbytes stores it (tier 0: torch-free, pure byte math).
//
//   auto q = peft::quant::quantize_4bit(w.data(), {out, in}, {peft::quant::QuantType::NF4, 64, true});
//   std::vector<float> back(q.numel());
//   peft::quant::dequantize_4bit(q, back.data());
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace peft::quant {

enum class QuantType { NF4, FP4 };

/// "nf4" / "fp4" (bitsandbytes' quant_type strings); throws ConfigError otherwise.
QuantType parse_quant_type(const std::string& s);
std::string to_string(QuantType t);

/// The 16 code values by 4-bit index (bitsandbytes' get_4bit_type).
const std::array<float, 16>& code_4bit(QuantType t);
/// bitsandbytes' signed 8-bit dynamic map (create_dynamic_map(signed=True)), 256 sorted values.
const std::array<float, 256>& dynamic_map();

struct Quant4Options {
  QuantType quant_type = QuantType::NF4;
  int64_t blocksize = 64;     ///< 32 ... 4096, a power of two (bitsandbytes' valid sizes)
  bool double_quant = false;  ///< quantise the absmax constants (bnb "compress_statistics")
};

/// What bitsandbytes keeps beside the packed bytes (its QuantState).
struct QuantState4 {
  QuantType quant_type = QuantType::NF4;
  int64_t blocksize = 64;
  std::vector<int64_t> shape;        ///< of the original tensor
  std::string dtype = "float32";     ///< of the original tensor (bf16/fp16/fp32)
  std::vector<float> absmax;         ///< one per block; empty when nested
  // Double quantisation: absmax_b = DYN[absmax_codes[b]] * nested_absmax[b / 256] + offset.
  bool nested = false;
  std::vector<uint8_t> absmax_codes;
  std::vector<float> nested_absmax;
  int64_t nested_blocksize = 256;
  float offset = 0.0f;

  int64_t numel() const;
  int64_t num_blocks() const { return (numel() + blocksize - 1) / blocksize; }
  /// The fp32 scale of every block (absmax, or its double-quantised reconstruction).
  std::vector<float> block_scales() const;
  /// Bytes of the quantisation constants (absmax or codes + nested absmax + offset).
  int64_t state_bytes() const;
};

struct Quantized4 {
  std::vector<uint8_t> packed;  ///< (numel + 1) / 2 bytes; first element in the high nibble
  QuantState4 state;
  int64_t numel() const { return state.numel(); }
};

/// Quantises n = prod(shape) fp32 values (row-major). `offset` overrides the double-quantisation
/// offset; default: torch_mean of the absmax, the float bitsandbytes subtracts.
Quantized4 quantize_4bit(const float* w, const std::vector<int64_t>& shape, const Quant4Options& opts,
                         std::optional<float> offset = std::nullopt);
/// torch.mean of n fp32 values bit for bit: torch's CPU cascade sum with `lanes`-wide SIMD
/// accumulators (16 with AVX-512, as PyTorch 2.x picks on this CPU; 8 with AVX2), then / n.
float torch_mean(const float* x, int64_t n, int64_t lanes = 8);
/// The per-block absmax alone (what quantize_4bit computes first), for the caller's mean.
std::vector<float> block_absmax(const float* w, int64_t n, int64_t blocksize);

/// Writes numel fp32 values.
void dequantize_4bit(const Quantized4& q, float* out);

/// 8-bit blockwise quantisation with the dynamic map, byte for byte as bitsandbytes' CPU
/// quantize_blockwise: x * (1/absmax) looked up in a 65,536-bin table of nearest codes (so values
/// very close to 0 may get a code a few steps from the nearest one, as theirs do); an all-zero block
/// gives code 0. out: n codes; absmax: one per block.
void quantize_blockwise_8bit(const float* x, int64_t n, int64_t blocksize, uint8_t* out, float* absmax);
void dequantize_blockwise_8bit(const uint8_t* q, const float* absmax, int64_t n, int64_t blocksize, float* out);

/// The JSON bitsandbytes stores under `<name>.quant_state.bitsandbytes__<nf4|fp4>`.
std::string quant_state_json(const QuantState4& s);
/// Reads it back into `s` (shape, blocksize, dtype, nested fields); `where` names the tensor.
void read_quant_state_json(const std::string& json, QuantState4& s, const std::string& where);

}  // namespace peft::quant
