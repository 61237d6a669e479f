#pragma once
// FullConfig: full fine-tuning, the baseline the PEFT methods are measured against (tier 0).
// Not a PEFT method: every parameter of the model is trained with the same trainer, and the result
// is saved as a model folder (config.json + model.safetensors, the tokenizer copied beside), not as
// an adapter. It has no fields of its own.
//
//   peft::FullConfig c;  c.task_type = peft::TaskType::SeqCls;
//   auto pm = peft::get_peft_model(base, c);   // all parameters trainable
#include <memory>
#include <string>

#include "peft/config/peft_config.h"

namespace peft {

struct FullConfig : PeftConfig {
  FullConfig() { peft_type = PeftType::Full; }
  std::unique_ptr<PeftConfig> clone() const override { return std::make_unique<FullConfig>(*this); }
  /// The base fields of a run's method keys (unknown keys are kept, as for every config).
  static FullConfig from_json(const nlohmann::json& j, const std::string& source = "run config");
};

}  // namespace peft
