#pragma once
// Factories of the built-in architectures (tier 1). Each lives in its own src/models/<arch>.cpp;
// src/models/auto_model.cpp maps config.json's model_type to them in one explicit table.
#include <memory>

#include "peft/models/model.h"

namespace peft::models {

std::shared_ptr<PretrainedModel> make_llama(const ModelConfig& cfg, TaskHead head);
std::shared_ptr<PretrainedModel> make_gpt2(const ModelConfig& cfg, TaskHead head);
std::shared_ptr<PretrainedModel> make_bert(const ModelConfig& cfg, TaskHead head);
/// RoBERTa and XLM-RoBERTa: BERT's modules with RoBERTa's options (src/models/bert.cpp).
std::shared_ptr<PretrainedModel> make_roberta(const ModelConfig& cfg, TaskHead head);
std::shared_ptr<PretrainedModel> make_distilbert(const ModelConfig& cfg, TaskHead head);
std::shared_ptr<PretrainedModel> make_t5(const ModelConfig& cfg, TaskHead head);

}  // namespace peft::models
