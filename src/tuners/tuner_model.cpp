// TunerModel's defaults (tuners/tuner_model.h).
#include "peft/tuners/tuner_model.h"

#include "peft/core/check.h"

namespace peft {

models::ModelOutput TunerModel::forward(const models::ModelInputs& in, const std::vector<std::string>& adapter_names) {
  PEFT_CHECK(adapter_names.empty(), NotSupported, "[PeftModel::forward] ",
             to_string(owner_.peft_config(owner_.adapter_names().front()).peft_type),
             " adapters cannot run a mixed-adapter batch (adapter_names)");
  return base().forward(in);
}

at::Tensor TunerModel::generate(const at::Tensor& input_ids, const at::Tensor& attention_mask,
                                const models::GenerationConfig& cfg) {
  return base().is_encoder_decoder() ? models::generate_seq2seq(base(), input_ids, attention_mask, cfg)
                                     : models::generate(base(), input_ids, attention_mask, cfg);
}

void TunerModel::load_training_state(const std::map<std::string, at::Tensor>& state) {
  PEFT_CHECK(state.empty(), std::invalid_argument, "[PeftModel] ",
             to_string(owner_.peft_config(owner_.adapter_names().front()).peft_type),
             " adapters keep no training state besides the adapter, but the checkpoint holds ", state.size(),
             " tensors of one");
}

void TunerModel::merge(const std::vector<std::string>& names, bool) {
  throw NotSupported("[merge_adapter] " + to_string(owner_.peft_config(names.empty() ? "" : names.front()).peft_type) +
                     " adapters cannot be merged into the weights");
}

}  // namespace peft
