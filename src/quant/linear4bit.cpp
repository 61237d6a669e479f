// The 4-bit linear base and QLoRA model helpers. Mirrors bitsandbytes/nn/modules.py (Linear4bit
// .forward: cast to compute dtype, x·dequant(W)ᵀ + b, cast back), autograd/_functions.py
// (MatMul4Bit.backward: grad_x = grad · dequant(W), no weight gradient), transformers'
// quantizer_bnb_4bit (which modules are quantised, pre-quantised state-dict keys) and
// peft/utils/other.py: prepare_model_for_kbit_training.
#include "peft/quant/linear4bit.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/autograd.h>

#include <cmath>
#include <cstring>
#include <type_traits>

#include "frozen_linear.h"
#include "gemv4.h"
#include "peft/core/check.h"
#include "peft/models/model.h"

namespace peft::quant {

namespace {

at::ScalarType parse_compute(const std::string& d) {
  if (d == "float32" || d == "fp32") return at::kFloat;
  if (d == "bfloat16" || d == "bf16") return at::kBFloat16;
  throw ConfigError("[Linear4bit] compute dtype '" + d + "' is not one of float32, bfloat16");
}

// Each byte's two codes (high nibble first), so a row is dequantised a byte at a time.
struct PairLut {
  float v[256][2];
  explicit PairLut(QuantType t) {
    const auto& c = code_4bit(t);
    for (int b = 0; b < 256; ++b) {
      v[b][0] = c[b >> 4];
      v[b][1] = c[b & 15];
    }
  }
};

const PairLut& pair_lut(QuantType t) {
  static const PairLut nf4(QuantType::NF4), fp4(QuantType::FP4);
  return t == QuantType::NF4 ? nf4 : fp4;
}

// Dequantises rows [r0, r1) of an [out, in] weight into dst ([r1 - r0, in], row-major):
// w = code * scale in fp32 (bitsandbytes' value), stored as T.
template <typename T>
void dequant_rows(const uint8_t* packed, const float* scales, QuantType t, int64_t bs, int64_t in, int64_t r0,
                  int64_t r1, T* dst) {
  if constexpr (std::is_same_v<T, float>) {
    if (gemv_4bit_supported(in, bs)) {  // the SIMD kernel (same values)
      at::parallel_for(r0, r1, std::max<int64_t>(1, 16384 / std::max<int64_t>(in, 1)), [&](int64_t a, int64_t b) {
        dequant_4bit_rows(packed, scales, code_4bit(t).data(), bs, in, a, b, dst + (a - r0) * in);
      });
      return;
    }
  }
  const auto& lut = pair_lut(t).v;
  const auto& code = code_4bit(t);
  at::parallel_for(r0, r1, std::max<int64_t>(1, 16384 / std::max<int64_t>(in, 1)), [&](int64_t a, int64_t b) {
    for (int64_t r = a; r < b; ++r) {
      T* out = dst + (r - r0) * in;
      const int64_t base = r * in;
      int64_t k = 0;
      while (k < in) {
        const int64_t i = base + k;
        const int64_t blk = i / bs;
        const int64_t seg_end = std::min(in, (blk + 1) * bs - base);
        const float s = scales[blk];
        if ((i & 1) == 0) {
          int64_t kk = k;
          for (; kk + 1 < seg_end; kk += 2) {
            const uint8_t byte = packed[(base + kk) >> 1];
            out[kk] = static_cast<T>(lut[byte][0] * s);
            out[kk + 1] = static_cast<T>(lut[byte][1] * s);
          }
          k = kk;
        }
        for (; k < seg_end; ++k) {  // odd start or a single trailing element
          const int64_t j = base + k;
          const uint8_t byte = packed[j >> 1];
          out[k] = static_cast<T>(code[(j & 1) ? (byte & 15) : (byte >> 4)] * s);
        }
      }
    }
  });
}

// Rows [r0, r1) dequantised into `tile` in its dtype (fp32 or bf16 compute).
void dequant_tile(const at::Tensor& packed, const at::Tensor& scales, QuantType t, int64_t bs, int64_t in, int64_t r0,
                  int64_t r1, at::Tensor& tile) {
  if (tile.scalar_type() == at::kFloat)
    dequant_rows<float>(packed.data_ptr<uint8_t>(), scales.data_ptr<float>(), t, bs, in, r0, r1, tile.data_ptr<float>());
  else
    dequant_rows<c10::BFloat16>(packed.data_ptr<uint8_t>(), scales.data_ptr<float>(), t, bs, in, r0, r1,
                                tile.data_ptr<c10::BFloat16>());
}

}  // namespace

Linear4bitWeight::Linear4bitWeight(Quantized4 q, const std::string& compute_dtype)
    : q_(std::move(q)), compute_(parse_compute(compute_dtype)) {
  PEFT_CHECK(q_.state.shape.size() == 2, std::invalid_argument, "[Linear4bit] expected a 2-D weight, got ",
             q_.state.shape.size(), " dimensions");
  out_ = q_.state.shape[0];
  in_ = q_.state.shape[1];
  refresh();
}

void Linear4bitWeight::refresh() {
  PEFT_CHECK(static_cast<int64_t>(q_.packed.size()) == (q_.numel() + 1) / 2, FormatError, "[Linear4bit] ",
             q_.packed.size(), " packed bytes for a ", out_, "x", in_, " weight, expected ", (q_.numel() + 1) / 2);
  const std::vector<float> sc = q_.state.block_scales();
  PEFT_CHECK(static_cast<int64_t>(sc.size()) == q_.state.num_blocks(), FormatError, "[Linear4bit] ", sc.size(),
             " block constants for ", q_.state.num_blocks(), " blocks");
  packed_ = at::from_blob(q_.packed.data(), {static_cast<int64_t>(q_.packed.size())}, at::kByte);
  scales_ = at::empty({static_cast<int64_t>(sc.size())}, at::kFloat);
  std::memcpy(scales_.data_ptr<float>(), sc.data(), sc.size() * sizeof(float));
}

at::Tensor Linear4bitWeight::dequantize() const {
  at::Tensor w = at::empty({out_, in_}, at::kFloat);
  dequant_rows<float>(packed_.data_ptr<uint8_t>(), scales_.data_ptr<float>(), q_.state.quant_type,
                      q_.state.blocksize, in_, 0, out_, w.data_ptr<float>());
  return w;
}

int64_t Linear4bitWeight::nbytes() const {
  return static_cast<int64_t>(q_.packed.size()) + q_.state.state_bytes();
}

double Linear4bitWeight::requantize(const at::Tensor& w_in) {
  PEFT_CHECK(w_in.dim() == 2 && w_in.size(0) == out_ && w_in.size(1) == in_, std::invalid_argument,
             "[Linear4bit] requantize: expected [", out_, ", ", in_, "], got ", w_in.sizes());
  at::Tensor w = w_in.detach().to(at::kFloat).contiguous().cpu();
  Quant4Options o{q_.state.quant_type, q_.state.blocksize, q_.state.nested};
  const std::string dtype = q_.state.dtype;
  q_ = quantize_4bit(w.data_ptr<float>(), {out_, in_}, o);
  q_.state.dtype = dtype;
  refresh();
  return (dequantize() - w).abs().max().item<double>();
}

at::Tensor Linear4bitWeight::matmul(const at::Tensor& x2) const {
  const int64_t N = x2.size(0);
  if (N <= 4 && gemv_4bit_supported(in_, q_.state.blocksize)) {
    // Few rows (decoding): the fused SIMD GEMV reads the packed weight directly (accumulating in
    // fp32 whatever the compute dtype; a bf16 result is rounded once at the end).
    const at::Tensor xf = x2.scalar_type() == at::kFloat ? x2 : x2.to(at::kFloat).contiguous();
    at::Tensor y = at::empty({N, out_}, xf.options());
    const auto& code = code_4bit(q_.state.quant_type);
    for (int64_t i = 0; i < N; ++i) {
      const float* xi = xf.data_ptr<float>() + i * in_;
      float* yi = y.data_ptr<float>() + i * out_;
      at::parallel_for(0, out_, 64, [&](int64_t a, int64_t b) {
        gemv_4bit(packed_.data_ptr<uint8_t>(), scales_.data_ptr<float>(), code.data(), q_.state.blocksize, in_, a, b,
                  xi, yi);
      });
    }
    return compute_ == at::kFloat ? y : y.to(compute_);
  }
  return detail::tiled_matmul(out_, in_, x2, [&](int64_t r0, int64_t r1, at::Tensor& tile) {
    dequant_tile(packed_, scales_, q_.state.quant_type, q_.state.blocksize, in_, r0, r1, tile);
  });
}

at::Tensor Linear4bitWeight::matmul_t(const at::Tensor& g2) const {
  return detail::tiled_matmul_t(out_, in_, g2, [&](int64_t r0, int64_t r1, at::Tensor& tile) {
    dequant_tile(packed_, scales_, q_.state.quant_type, q_.state.blocksize, in_, r0, r1, tile);
  });
}

at::Tensor Linear4bitWeight::dequantize_aten(const c10::Device& device) const {
  const at::Tensor p = packed_.to(device);
  const at::Tensor hi = at::bitwise_right_shift(p, 4).to(at::kLong), lo = p.bitwise_and(15).to(at::kLong);
  const at::Tensor idx = at::stack({hi, lo}, 1).flatten().narrow(0, 0, out_ * in_);
  const auto& c = code_4bit(q_.state.quant_type);
  const at::Tensor code =
      at::tensor(std::vector<float>(c.begin(), c.end()), at::TensorOptions().dtype(at::kFloat)).to(device);
  const int64_t padded = scales_.numel() * q_.state.blocksize;
  const at::Tensor sc = scales_.to(device).repeat_interleave(q_.state.blocksize).narrow(0, 0, std::min(padded, out_ * in_));
  return (code.index_select(0, idx) * sc).view({out_, in_});
}

at::Tensor Linear4bitWeight::forward(const at::Tensor& x) {
  if (!x.device().is_cpu()) {
    // Device-agnostic path: dequantise with ATen ops on x's device, then a plain linear.
    const at::Tensor w = dequantize_aten(x.device()).to(compute_);
    return at::linear(x.to(compute_), w).to(x.scalar_type());
  }
  return detail::FrozenLinearFn<Linear4bitWeight>::apply(x, reinterpret_cast<int64_t>(this));
}

// ---------------------------------------------------------------- model helpers

namespace {

template <typename F>
void for_each_linear(models::PretrainedModel& model, F f) {
  for (const auto& item : model.named_modules("", /*include_self=*/false))
    if (auto* l = dynamic_cast<models::AdaptableLinearImpl*>(item.value().get())) f(item.key(), *l);
}

bool skipped(const std::string& name, const std::vector<std::string>& skip) {
  for (const auto& s : skip) {
    if (name == s) return true;
    if (name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0 &&
        name[name.size() - s.size() - 1] == '.')
      return true;
  }
  return false;
}

}  // namespace

int quantize_model(models::PretrainedModel& model, const BnbConfig& cfg, const std::vector<std::string>& skip) {
  Quant4Options o{parse_quant_type(cfg.quant_type), cfg.blocksize, cfg.use_double_quant};
  parse_compute(cfg.compute_dtype);
  int n = 0;
  torch::NoGradGuard ng;
  for_each_linear(model, [&](const std::string& name, models::AdaptableLinearImpl& l) {
    if (skipped(name, skip) || l.quantized()) return;
    const at::Tensor w = l.weight_out_in().detach();
    const std::string dtype = w.scalar_type() == at::kBFloat16 ? "bfloat16"
                              : w.scalar_type() == at::kHalf   ? "float16"
                                                               : "float32";
    at::Tensor wf = w.to(at::kFloat).contiguous().cpu();
    Quantized4 q = quantize_4bit(wf.data_ptr<float>(), {l.out_features(), l.in_features()}, o);
    q.state.dtype = dtype;
    l.set_quantized(std::make_shared<Linear4bitWeight>(std::move(q), cfg.compute_dtype));
    ++n;
  });
  return n;
}

std::vector<std::string> load_prequantized(models::PretrainedModel& model,
                                           const std::map<std::string, at::Tensor>& tensors,
                                           const std::string& compute_dtype) {
  std::vector<std::string> used;
  const std::string prefix = model.base_model_prefix() + ".";
  auto find = [&](const std::string& key) -> const at::Tensor* {
    auto it = tensors.find(key);
    return it == tensors.end() ? nullptr : &it->second;
  };
  for_each_linear(model, [&](const std::string& name, models::AdaptableLinearImpl& l) {
    std::string w = name + ".weight";
    if (!find(w + ".absmax") && find(prefix + w + ".absmax")) w = prefix + w;
    if (!find(w + ".absmax")) return;  // not quantised in this checkpoint (e.g. lm_head)
    std::string qs_key;
    for (const char* t : {"nf4", "fp4"})
      if (find(w + ".quant_state.bitsandbytes__" + t)) qs_key = w + ".quant_state.bitsandbytes__" + t;
    PEFT_CHECK(!qs_key.empty(), FormatError, "[load_model] ", w, ": has absmax but no quant_state.bitsandbytes__nf4/fp4");
    PEFT_CHECK(find(w) != nullptr, FormatError, "[load_model] ", w, ": quant state without the packed weight");
    auto bytes = [&](const at::Tensor& t) {
      at::Tensor c = t.contiguous().cpu();
      const auto* p = static_cast<const uint8_t*>(c.data_ptr());
      return std::vector<uint8_t>(p, p + c.numel() * c.element_size());
    };
    auto floats = [&](const std::string& k) {
      const at::Tensor* t = find(k);
      PEFT_CHECK(t != nullptr, FormatError, "[load_model] ", w, ": missing ", k);
      PEFT_CHECK(t->scalar_type() == at::kFloat, FormatError, "[load_model] ", k, ": expected float32");
      at::Tensor c = t->contiguous().cpu();
      return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
    };
    const auto js = bytes(*find(qs_key));
    Quantized4 q;
    read_quant_state_json(std::string(js.begin(), js.end()), q.state, qs_key);
    PEFT_CHECK(q.state.shape == (std::vector<int64_t>{l.out_features(), l.in_features()}), std::invalid_argument,
               "[load_model] ", w, ": quant_state shape does not match the layer [", l.out_features(), ", ",
               l.in_features(), "]");
    q.packed = bytes(*find(w));
    if (q.state.nested) {
      const at::Tensor* codes = find(w + ".absmax");
      PEFT_CHECK(codes->scalar_type() == at::kByte, FormatError, "[load_model] ", w, ".absmax: expected uint8 codes");
      q.state.absmax_codes = bytes(*codes);
      q.state.nested_absmax = floats(w + ".nested_absmax");
      const auto map = floats(w + ".nested_quant_map");
      PEFT_CHECK(map.size() == 256 && std::equal(map.begin(), map.end(), dynamic_map().begin()), NotSupported,
                 "[load_model] ", w, ".nested_quant_map is not bitsandbytes' dynamic map");
      used.push_back(w + ".nested_absmax");
      used.push_back(w + ".nested_quant_map");
    } else {
      q.state.absmax = floats(w + ".absmax");
    }
    const auto qmap = floats(w + ".quant_map");
    const auto& book = code_4bit(q.state.quant_type);
    PEFT_CHECK(qmap.size() == 16 && std::equal(qmap.begin(), qmap.end(), book.begin()), NotSupported,
               "[load_model] ", w, ".quant_map is not the ", to_string(q.state.quant_type), " code book");
    l.set_quantized(std::make_shared<Linear4bitWeight>(std::move(q), compute_dtype));
    for (const std::string& k : {w, w + ".absmax", w + ".quant_map", qs_key}) used.push_back(k);
  });
  return used;
}

nlohmann::json add_quantized_state(models::PretrainedModel& model, std::map<std::string, at::Tensor>& tensors) {
  nlohmann::json qc;
  for_each_linear(model, [&](const std::string& name, models::AdaptableLinearImpl& l) {
    const auto* w = dynamic_cast<const Linear4bitWeight*>(l.quantized().get());
    if (!w) return;
    const Quantized4& q = w->quantized();
    const std::string k = name + ".weight";
    auto u8 = [](const std::vector<uint8_t>& v, std::vector<int64_t> shape) {
      return at::from_blob(const_cast<uint8_t*>(v.data()), shape, at::kByte).clone();
    };
    auto f32 = [](const float* p, int64_t n) { return at::from_blob(const_cast<float*>(p), {n}, at::kFloat).clone(); };
    tensors[k] = u8(q.packed, {static_cast<int64_t>(q.packed.size()), 1});
    const auto& book = code_4bit(q.state.quant_type);
    tensors[k + ".quant_map"] = f32(book.data(), 16);
    if (q.state.nested) {
      tensors[k + ".absmax"] = u8(q.state.absmax_codes, {static_cast<int64_t>(q.state.absmax_codes.size())});
      tensors[k + ".nested_absmax"] = f32(q.state.nested_absmax.data(), static_cast<int64_t>(q.state.nested_absmax.size()));
      tensors[k + ".nested_quant_map"] = f32(dynamic_map().data(), 256);
    } else {
      tensors[k + ".absmax"] = f32(q.state.absmax.data(), static_cast<int64_t>(q.state.absmax.size()));
    }
    const std::string js = quant_state_json(q.state);
    tensors[k + ".quant_state.bitsandbytes__" + to_string(q.state.quant_type)] =
        u8(std::vector<uint8_t>(js.begin(), js.end()), {static_cast<int64_t>(js.size())});
    if (qc.is_null()) {
      // transformers' BitsAndBytesConfig.to_dict() for a 4-bit model.
      qc = {{"quant_method", "bitsandbytes"}, {"load_in_4bit", true}, {"load_in_8bit", false},
            {"_load_in_4bit", true}, {"_load_in_8bit", false},
            {"bnb_4bit_quant_type", to_string(q.state.quant_type)},
            {"bnb_4bit_use_double_quant", q.state.nested},
            {"bnb_4bit_compute_dtype", w->compute_dtype() == at::kBFloat16 ? "bfloat16" : "float32"},
            {"bnb_4bit_quant_storage", "uint8"}, {"llm_int8_enable_fp32_cpu_offload", false},
            {"llm_int8_has_fp16_weight", false}, {"llm_int8_skip_modules", nullptr}, {"llm_int8_threshold", 6.0}};
    }
  });
  return qc;
}

int64_t weight_bytes(models::PretrainedModel& model) {
  int64_t n = 0;
  for (const auto& p : model.named_parameters(true)) n += p.value().numel() * p.value().element_size();
  for_each_linear(model, [&](const std::string&, models::AdaptableLinearImpl& l) {
    if (l.quantized()) n += l.quantized()->nbytes();
  });
  return n;
}

void prepare_model_for_kbit_training(models::PretrainedModel& model, bool use_gradient_checkpointing) {
  torch::NoGradGuard ng;
  for (auto& p : model.parameters(true)) {
    p.set_requires_grad(false);
    if (p.is_floating_point() && p.scalar_type() != at::kFloat) p.set_data(p.to(at::kFloat));
  }
  for (auto& b : model.buffers(true))
    if (b.is_floating_point() && b.scalar_type() != at::kFloat) b.set_data(b.to(at::kFloat));
  if (use_gradient_checkpointing) model.set_gradient_checkpointing(true);
}

void dequantize_model(models::PretrainedModel& model) {
  for_each_linear(model, [&](const std::string&, models::AdaptableLinearImpl& l) {
    if (l.quantized()) l.set_quantized(nullptr);
  });
}

}  // namespace peft::quant
