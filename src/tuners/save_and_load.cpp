// PeftModel's saved form. Mirrors peft/utils/save_and_load.py (get_peft_model_state_dict,
// set_peft_model_state_dict) and peft/peft_model.py (save_pretrained, from_pretrained,
// load_adapter). What is method-specific (the keys, side files, AdaLoRA's ranks) comes from the
// TunerModel; modules_to_save are handled here for every method.
#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include <filesystem>
#include <iostream>
#include <set>
#include <sstream>

#include "modules_to_save.h"
#include "peft/core/check.h"
#include "peft/core/error_context.h"
#include "peft/core/strings.h"
#include "peft/io/hf_checkpoint.h"
#include "peft/io/safetensors.h"
#include "peft/io/tensor_bridge.h"
#include "peft/models/adaptable_linear.h"
#include "peft/models/quantized_model.h"
#include "peft/peft_model.h"
#include "peft/tuners/registry.h"
#include "peft/tuners/tuner_model.h"

namespace peft {

namespace fs = std::filesystem;

namespace {

/// The tensors of adapter `name` under PEFT's keys: the tuner's plus modules_to_save.
std::map<std::string, at::Tensor> with_modules_to_save(const PeftModel& pm, std::map<std::string, at::Tensor> out,
                                                       const std::string& name) {
  const std::string pre = pm.tuner().key_prefix();
  for (const auto& m : pm.modules_to_save_params(name)) out[pre + m.param] = m.value;
  return out;
}

}  // namespace

std::map<std::string, at::Tensor> PeftModel::adapter_state_dict(const std::string& name) const {
  PEFT_CHECK(configs_.count(name), std::invalid_argument, "[save_pretrained] no adapter named '", name, "'");
  return with_modules_to_save(*this, tuner().saved_state_dict(name), name);
}

void PeftModel::save_pretrained(const std::string& dir, const std::vector<std::string>& selected) const {
  const auto names = selected.empty() ? order_ : selected;
  for (const auto& n : names) {
    PEFT_CHECK(configs_.count(n), std::invalid_argument, "[save_pretrained] no adapter named '", n, "'");
    const fs::path out = n == "default" ? fs::path(dir) : fs::path(dir) / n;
    fs::create_directories(out);
    std::map<std::string, at::Tensor> tensors;
    for (const auto& [k, v] : adapter_state_dict(n)) tensors[k] = v.contiguous().clone();
    io::save_safetensors((out / tuner_->weights_file()).string(), tensors, {{"format", "pt"}});
    tuner_->save_extra(out.string(), n);
    if (!tuner_->saves_adapter_config()) continue;
    nlohmann::json j = configs_.at(n)->to_json();
    j["inference_mode"] = true;
    if (j["base_model_name_or_path"].is_null() && !base_->config().source().empty())
      j["base_model_name_or_path"] = fs::path(base_->config().source()).parent_path().string();
    io::write_json_file((out / "adapter_config.json").string(), j);
    // A 4-bit base: recorded beside the adapter, so it is used on the base it was trained on.
    const nlohmann::json qc = models::quantization_config(*base_);
    if (!qc.is_null()) io::write_json_file((out / models::kBaseQuantizationFile).string(), {{"quantization_config", qc}});
    else fs::remove(out / models::kBaseQuantizationFile);
  }
}

namespace {

/// A classification adapter needs its head on the model: a model loaded for another task (a
/// causal LM, say) is refused with what to do instead of a list of unmatched tensors.
void check_task_fits(const std::string& dir, const PeftConfig& cfg, const models::PretrainedModel& base) {
  using models::TaskHead;
  const TaskHead have = base.head();
  const bool seq = cfg.task_type == TaskType::SeqCls, tok = cfg.task_type == TaskType::TokenCls;
  if ((!seq && !tok) || have == (seq ? TaskHead::SeqCls : TaskHead::TokenCls)) return;
  const char* head = seq ? "sequence-classification" : "token-classification";
  throw FormatError("[from_pretrained] " + dir + " is a " + to_string(cfg.task_type) + " adapter (adapter_config.json "
                    "task_type) with a " + head + " head, but the model was loaded " +
                    (have == TaskHead::CausalLM ? "as a causal LM" : have == TaskHead::Seq2SeqLM ? "as a seq2seq LM"
                                                                                          : "for another task") +
                    ": use it with the task it was trained for (peft eval with task: " + (seq ? "seq_cls" : "token_cls") +
                    "; C++: LoadOptions::head = TaskHead::" + (seq ? "SeqCls" : "TokenCls") +
                    "); peft generate needs a CAUSAL_LM adapter");
}

/// A warning when the adapter records a 4-bit base (base_quantization.json) and `base` is not
/// quantised that way.
void warn_base_quantization(const std::string& dir, models::PretrainedModel& base) {
  const auto want = models::adapter_base_quantization(dir);
  if (!want) return;
  const nlohmann::json qc = models::quantization_config(base);
  const std::string file = (fs::path(dir) / models::kBaseQuantizationFile).string();
  if (qc.is_null()) {
    for (const auto& m : base.modules())  // a block-quantised GGUF base: its own quantisation
      if (auto* l = dynamic_cast<models::AdaptableLinearImpl*>(m.get()); l && l->quantized()) return;
    std::cerr << "warning: the adapter " << dir << " was trained on a " << models::describe(*want)
              << " base (" << file << "), but this base is in full precision: outputs differ from training's; load "
              << "the base in 4 bits (peft: --4bit " << want->quant_type
              << (want->use_double_quant ? " --double-quant" : "") << "; C++: LoadOptions::load_in_4bit)\n";
    return;
  }
  const models::BnbConfig have = models::bnb_config_from_json(qc, "the base model");
  if (have.quant_type != want->quant_type || have.use_double_quant != want->use_double_quant)
    std::cerr << "warning: the adapter " << dir << " was trained on a " << models::describe(*want) << " base ("
              << file << "), but this base is " << models::describe(have) << ": outputs differ from training's\n";
}

}  // namespace

std::shared_ptr<PeftModel> PeftModel::from_pretrained(std::shared_ptr<models::PretrainedModel> base,
                                                      const std::string& dir, const std::string& adapter_name,
                                                      bool is_trainable) {
  ErrorContext ctx("loading the adapter " + dir);
  auto cfg = load_peft_config(dir);
  cfg->inference_mode = !is_trainable;
  check_task_fits(dir, *cfg, *base);
  auto pm = std::make_shared<PeftModel>(std::move(base), *cfg, adapter_name);
  pm->tuner().before_load(adapter_name);
  pm->load_adapter_weights((fs::path(dir) / "adapter_model.safetensors").string(), adapter_name);
  warn_base_quantization(dir, pm->base_model());
  pm->set_adapter(adapter_name);
  return pm;
}

void PeftModel::load_adapter(const std::string& dir, const std::string& name, bool is_trainable) {
  ErrorContext ctx("loading the adapter " + dir + " as '" + name + "'");
  auto cfg = load_peft_config(dir);
  cfg->inference_mode = !is_trainable;
  check_task_fits(dir, *cfg, *base_);
  inject(name, *cfg);
  tuner_->before_load(name);
  load_adapter_weights((fs::path(dir) / "adapter_model.safetensors").string(), name);
  warn_base_quantization(dir, *base_);
  set_adapters(active_);
}

void PeftModel::load_adapter_weights(const std::string& file, const std::string& name) {
  PEFT_CHECK(fs::exists(file), FormatError, "[from_pretrained] ", file,
             ": not found (adapter_model.bin pickles are not read; save adapters as safetensors)");
  PEFT_CHECK(configs_.count(name), std::invalid_argument, "[from_pretrained] no adapter named '", name, "'");
  const auto f = io::SafetensorsFile::open(file);
  // Every key this adapter expects, by saved name -> our tensor (mirrors the inverse of
  // get_peft_model_state_dict, as set_peft_model_state_dict derives it).
  const auto tuned = tuner_->state_dict(name);
  const auto expected = with_modules_to_save(*this, tuned, name);
  auto params = base_->named_parameters(true);
  const std::string pre = tuner_->key_prefix();
  std::vector<std::string> unexpected, mismatched, nonfinite;
  std::set<std::string> seen;
  torch::NoGradGuard ng;
  for (const auto& key : f.names()) {
    auto it = expected.find(key);
    if (it == expected.end()) {
      unexpected.push_back(key);
      continue;
    }
    const at::Tensor src = io::to_tensor(f, key);
    seen.insert(key);  // present: a shape mismatch is reported as such, not as missing
    if (src.sizes() != it->second.sizes()) {
      std::ostringstream os;
      os << "'" << key << "': file " << src.sizes() << " vs model " << it->second.sizes()
         << tuner_->mismatch_hint(key, name);
      mismatched.push_back(os.str());
      continue;
    }
    if (src.is_floating_point()) {
      const int64_t finite = at::isfinite(src).sum().item<int64_t>();
      if (finite != src.numel()) {
        nonfinite.push_back("'" + key + "' (" + std::to_string(src.numel() - finite) + " of " +
                            std::to_string(src.numel()) + " values)");
        continue;
      }
    }
    // modules_to_save values go to the adapter's copy (and to the live module if it is live);
    // ".original_module." entries are the untouched base values and are only checked for shape.
    bool done = false;
    for (auto& [mod, e] : mts_->modules) {
      for (std::size_t i = 0; i < e.params.size(); ++i) {
        const std::string leaf = e.params[i].substr(mod.size() + 1);
        if (key == pre + mod + ".original_module." + leaf) done = true;
        if ((pre + e.params[i] == key || key == pre + mod + ".modules_to_save." + leaf) && e.copies.count(name)) {
          e.copies[name][i].copy_(src);
          if (e.live == name) params[e.params[i]].copy_(src);
          done = true;
        }
      }
    }
    if (!done) at::Tensor(it->second).copy_(src);
  }
  std::vector<std::string> missing;
  for (const auto& [k, v] : tuned)
    if (!seen.count(k) && tuner_->required_key(k)) missing.push_back(k);
  PEFT_CHECK(nonfinite.empty(), FormatError, "[from_pretrained] ", file,
             ": NaN or infinite values (the adapter of a diverged run?) in ", join(nonfinite, 12));
  const std::string e = listings({
      listing("shape mismatches (an adapter trained for another base model?)", mismatched, 4),
      listing("missing from the file", missing, 4),
      listing("in the file but matching no module of this model (the adapter would have no effect)", unexpected, 4)});
  const std::string& trained_on = configs_.at(name)->base_model_name_or_path;
  const std::string this_base = base_->config().source().empty()
                                    ? std::string()
                                    : fs::path(base_->config().source()).parent_path().string();
  const bool same_base = !trained_on.empty() && !this_base.empty() &&
                         fs::weakly_canonical(trained_on) == fs::weakly_canonical(this_base);
  PEFT_CHECK(e.empty(), FormatError, "[from_pretrained] ", file, " does not fit this model",
             this_base.empty() ? std::string() : " (" + this_base + ")", ":", e,
             trained_on.empty() || same_base ? std::string()
                                : "; adapter_config.json says it was trained on '" + trained_on +
                                      "' (base_model_name_or_path): load the adapter on that model");
  tuner_->after_load(fs::path(file).parent_path().string(), name, !configs_.at(name)->inference_mode);
}

}  // namespace peft
