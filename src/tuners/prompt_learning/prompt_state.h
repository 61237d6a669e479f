#pragma once
// PeftModel's prompt-learning state (private to src/tuners).
#include <map>
#include <memory>
#include <string>

#include "peft/peft_model.h"
#include "peft/tuners/p_tuning/config.h"
#include "peft/tuners/prompt_learning/encoder.h"

namespace peft::detail {

struct PromptState {
  std::map<std::string, std::shared_ptr<prompt::PromptEncoder>> encoders;  ///< adapter -> encoder
  std::map<std::string, std::vector<TemplateItem>> templates;  ///< adapter -> P-Tuning template (ids resolved)
  bool warned_position_ids = false;
  bool warned_token_type_ids = false;
};

}  // namespace peft::detail
