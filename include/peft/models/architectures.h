#pragma once
// Factories of the built-in architectures (tier 1). Each lives in its own src/models/<arch>.cpp;
// src/models/auto_model.cpp maps config.json's model_type to them in one explicit table.
#include <memory>

#include "peft/models/llama.h"
#include "peft/models/model.h"

namespace peft::models {

std::shared_ptr<PretrainedModel> make_llama(const ModelConfig& cfg, TaskHead head);
/// The Llama decoder with the options of `c`; the Llama-family architectures are built with it.
std::shared_ptr<PretrainedModel> make_llama_decoder(const ModelConfig& cfg, LlamaConfig c, TaskHead head);
std::shared_ptr<PretrainedModel> make_qwen2(const ModelConfig& cfg, TaskHead head);
std::shared_ptr<PretrainedModel> make_qwen3(const ModelConfig& cfg, TaskHead head);
std::shared_ptr<PretrainedModel> make_mistral(const ModelConfig& cfg, TaskHead head);
std::shared_ptr<PretrainedModel> make_gpt2(const ModelConfig& cfg, TaskHead head);
std::shared_ptr<PretrainedModel> make_bert(const ModelConfig& cfg, TaskHead head);
/// RoBERTa and XLM-RoBERTa: BERT's modules with RoBERTa's options (src/models/bert.cpp).
std::shared_ptr<PretrainedModel> make_roberta(const ModelConfig& cfg, TaskHead head);
std::shared_ptr<PretrainedModel> make_distilbert(const ModelConfig& cfg, TaskHead head);
std::shared_ptr<PretrainedModel> make_t5(const ModelConfig& cfg, TaskHead head);
/// Gemma, Gemma 2 and Gemma 3's text model (model_type gemma, gemma2, gemma3_text).
std::shared_ptr<PretrainedModel> make_gemma(const ModelConfig& cfg, TaskHead head);
/// model_type "gemma3" (the multimodal wrapper): throws NotSupported pointing to the text model.
std::shared_ptr<PretrainedModel> make_gemma3_multimodal(const ModelConfig& cfg, TaskHead head);
std::shared_ptr<PretrainedModel> make_phi3(const ModelConfig& cfg, TaskHead head);

}  // namespace peft::models
