// QLoRA over a model. Mirrors transformers' quantizer_bnb_4bit (which modules are quantised,
// pre-quantised state-dict keys, quantization_config) and peft/utils/other.py:
// prepare_model_for_kbit_training.
#include "peft/models/quantized_model.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <filesystem>

#include "peft/core/check.h"
#include "peft/core/json_file.h"
#include "peft/models/adaptable_linear.h"
#include "peft/models/model.h"
#include "peft/quant/linear4bit.h"

namespace peft::models {

namespace {

template <typename F>
void for_each_linear(PretrainedModel& model, F f) {
  for (const auto& item : model.named_modules("", /*include_self=*/false))
    if (auto* l = dynamic_cast<AdaptableLinearImpl*>(item.value().get())) f(item.key(), *l);
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

int quantize_model(PretrainedModel& model, const BnbConfig& cfg, const std::vector<std::string>& skip) {
  quant::Quant4Options o{quant::parse_quant_type(cfg.quant_type), cfg.blocksize, cfg.use_double_quant};
  quant::parse_compute_dtype(cfg.compute_dtype);  // a bad dtype fails before any slot changes
  int n = 0;
  torch::NoGradGuard ng;
  for_each_linear(model, [&](const std::string& name, AdaptableLinearImpl& l) {
    if (skipped(name, skip) || l.quantized()) return;
    const at::Tensor w = l.weight_out_in().detach();
    const std::string dtype = w.scalar_type() == at::kBFloat16 ? "bfloat16"
                              : w.scalar_type() == at::kHalf   ? "float16"
                                                               : "float32";
    at::Tensor wf = w.to(at::kFloat).contiguous().cpu();
    quant::Quantized4 q = quant::quantize_4bit(wf.data_ptr<float>(), {l.out_features(), l.in_features()}, o);
    q.state.dtype = dtype;
    l.set_quantized(std::make_shared<quant::Linear4bitWeight>(std::move(q), cfg.compute_dtype));
    ++n;
  });
  return n;
}

std::vector<std::string> load_prequantized(PretrainedModel& model,
                                           const std::map<std::string, at::Tensor>& tensors,
                                           const std::string& compute_dtype) {
  std::vector<std::string> used;
  const std::string prefix = model.base_model_prefix() + ".";
  auto find = [&](const std::string& key) -> const at::Tensor* {
    auto it = tensors.find(key);
    return it == tensors.end() ? nullptr : &it->second;
  };
  for_each_linear(model, [&](const std::string& name, AdaptableLinearImpl& l) {
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
    quant::Quantized4 q;
    quant::read_quant_state_json(std::string(js.begin(), js.end()), q.state, qs_key);
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
      PEFT_CHECK(map.size() == 256 && std::equal(map.begin(), map.end(), quant::dynamic_map().begin()), NotSupported,
                 "[load_model] ", w, ".nested_quant_map is not bitsandbytes' dynamic map");
      used.push_back(w + ".nested_absmax");
      used.push_back(w + ".nested_quant_map");
    } else {
      q.state.absmax = floats(w + ".absmax");
    }
    const auto qmap = floats(w + ".quant_map");
    const auto& book = quant::code_4bit(q.state.quant_type);
    PEFT_CHECK(qmap.size() == 16 && std::equal(qmap.begin(), qmap.end(), book.begin()), NotSupported,
               "[load_model] ", w, ".quant_map is not the ", quant::to_string(q.state.quant_type), " code book");
    l.set_quantized(std::make_shared<quant::Linear4bitWeight>(std::move(q), compute_dtype));
    for (const std::string& k : {w, w + ".absmax", w + ".quant_map", qs_key}) used.push_back(k);
  });
  return used;
}

namespace {

// transformers' BitsAndBytesConfig.to_dict() for a 4-bit model.
nlohmann::json bnb_dict(const quant::Linear4bitWeight& w) {
  const auto& st = w.quantized().state;
  return {{"quant_method", "bitsandbytes"}, {"load_in_4bit", true}, {"load_in_8bit", false},
          {"_load_in_4bit", true}, {"_load_in_8bit", false},
          {"bnb_4bit_quant_type", quant::to_string(st.quant_type)},
          {"bnb_4bit_use_double_quant", st.nested},
          {"bnb_4bit_compute_dtype", w.compute_dtype() == at::kBFloat16 ? "bfloat16" : "float32"},
          {"bnb_4bit_quant_storage", "uint8"}, {"llm_int8_enable_fp32_cpu_offload", false},
          {"llm_int8_has_fp16_weight", false}, {"llm_int8_skip_modules", nullptr}, {"llm_int8_threshold", 6.0}};
}

}  // namespace

nlohmann::json quantization_config(PretrainedModel& model) {
  nlohmann::json qc;
  for_each_linear(model, [&](const std::string&, AdaptableLinearImpl& l) {
    const auto* w = dynamic_cast<const quant::Linear4bitWeight*>(l.quantized().get());
    if (w && qc.is_null()) qc = bnb_dict(*w);
  });
  return qc;
}

BnbConfig bnb_config_from_json(const nlohmann::json& qc, const std::string& where) {
  auto fail = [&](const std::string& what) {
    throw FormatError("[quantization_config] " + where + ": " + what);
  };
  if (!qc.is_object()) fail("expected an object (transformers' BitsAndBytesConfig), got " + std::string(qc.type_name()));
  if (qc.value("quant_method", std::string("bitsandbytes")) != "bitsandbytes")
    fail("quant_method '" + qc.value("quant_method", std::string()) + "' is not bitsandbytes");
  auto get_bool = [&](const char* k, bool dflt) {
    auto it = qc.find(k);
    if (it == qc.end() || it->is_null()) return dflt;
    if (!it->is_boolean()) fail(std::string("field '") + k + "' should be true or false, got " + it->dump());
    return it->get<bool>();
  };
  auto get_str = [&](const char* k, const std::string& dflt, std::initializer_list<const char*> allowed) {
    auto it = qc.find(k);
    if (it == qc.end() || it->is_null()) return dflt;
    if (!it->is_string()) fail(std::string("field '") + k + "' should be a string, got " + it->dump());
    const std::string v = it->get<std::string>();
    std::string list;
    for (const char* a : allowed) {
      if (v == a) return v;
      list += std::string(list.empty() ? "" : ", ") + a;
    }
    fail(std::string("field '") + k + "': '" + v + "' is not one of " + list);
    return v;
  };
  BnbConfig b;
  b.load_in_4bit = get_bool("load_in_4bit", false);
  b.quant_type = get_str("bnb_4bit_quant_type", "fp4", {"nf4", "fp4"});
  b.use_double_quant = get_bool("bnb_4bit_use_double_quant", false);
  b.compute_dtype = get_str("bnb_4bit_compute_dtype", "float32", {"float32", "bfloat16", "torch.float32", "torch.bfloat16"});
  if (b.compute_dtype.rfind("torch.", 0) == 0) b.compute_dtype = b.compute_dtype.substr(6);
  return b;
}

std::string describe(const BnbConfig& b) {
  if (!b.load_in_4bit) return "full precision";
  return "4-bit " + b.quant_type + (b.use_double_quant ? ", double quant" : "") + ", compute " + b.compute_dtype;
}

std::optional<BnbConfig> adapter_base_quantization(const std::string& adapter_dir) {
  const std::filesystem::path f = std::filesystem::path(adapter_dir) / kBaseQuantizationFile;
  if (!std::filesystem::is_regular_file(f)) return std::nullopt;
  const nlohmann::json j = read_json_file(f.string());
  PEFT_CHECK(j.is_object() && j.contains("quantization_config"), FormatError, "[adapter] ", f.string(),
             ": expected an object with 'quantization_config'");
  BnbConfig b = bnb_config_from_json(j["quantization_config"], f.string());
  PEFT_CHECK(b.load_in_4bit, FormatError, "[adapter] ", f.string(), ": quantization_config.load_in_4bit is not true");
  return b;
}

nlohmann::json add_quantized_state(PretrainedModel& model, std::map<std::string, at::Tensor>& tensors) {
  nlohmann::json qc;
  for_each_linear(model, [&](const std::string& name, AdaptableLinearImpl& l) {
    const auto* w = dynamic_cast<const quant::Linear4bitWeight*>(l.quantized().get());
    if (!w) return;
    const quant::Quantized4& q = w->quantized();
    const std::string k = name + ".weight";
    auto u8 = [](const std::vector<uint8_t>& v, std::vector<int64_t> shape) {
      return at::from_blob(const_cast<uint8_t*>(v.data()), shape, at::kByte).clone();
    };
    auto f32 = [](const float* p, int64_t n) { return at::from_blob(const_cast<float*>(p), {n}, at::kFloat).clone(); };
    tensors[k] = u8(q.packed, {static_cast<int64_t>(q.packed.size()), 1});
    const auto& book = quant::code_4bit(q.state.quant_type);
    tensors[k + ".quant_map"] = f32(book.data(), 16);
    if (q.state.nested) {
      tensors[k + ".absmax"] = u8(q.state.absmax_codes, {static_cast<int64_t>(q.state.absmax_codes.size())});
      tensors[k + ".nested_absmax"] = f32(q.state.nested_absmax.data(), static_cast<int64_t>(q.state.nested_absmax.size()));
      tensors[k + ".nested_quant_map"] = f32(quant::dynamic_map().data(), 256);
    } else {
      tensors[k + ".absmax"] = f32(q.state.absmax.data(), static_cast<int64_t>(q.state.absmax.size()));
    }
    const std::string js = quant::quant_state_json(q.state);
    tensors[k + ".quant_state.bitsandbytes__" + quant::to_string(q.state.quant_type)] =
        u8(std::vector<uint8_t>(js.begin(), js.end()), {static_cast<int64_t>(js.size())});
    if (qc.is_null()) qc = bnb_dict(*w);
  });
  return qc;
}

int64_t weight_bytes(PretrainedModel& model) {
  int64_t n = 0;
  for (const auto& p : model.named_parameters(true)) n += p.value().numel() * p.value().element_size();
  for_each_linear(model, [&](const std::string&, AdaptableLinearImpl& l) {
    if (l.quantized()) n += l.quantized()->nbytes();
  });
  return n;
}

void prepare_model_for_kbit_training(PretrainedModel& model, bool use_gradient_checkpointing) {
  torch::NoGradGuard ng;
  for (auto& p : model.parameters(true)) {
    p.set_requires_grad(false);
    if (p.is_floating_point() && p.scalar_type() != at::kFloat) p.set_data(p.to(at::kFloat));
  }
  for (auto& b : model.buffers(true))
    if (b.is_floating_point() && b.scalar_type() != at::kFloat) b.set_data(b.to(at::kFloat));
  if (use_gradient_checkpointing) model.set_gradient_checkpointing(true);
}

void dequantize_model(PretrainedModel& model) {
  for_each_linear(model, [&](const std::string&, AdaptableLinearImpl& l) {
    if (l.quantized()) l.set_quantized(nullptr);
  });
}

}  // namespace peft::models
