#pragma once
// BERT (BertModel / BertForSequenceClassification / BertForTokenClassification) and RoBERTa /
// XLM-RoBERTa (the same encoder with RoBERTa's positions and classification head)
// hyper-parameters (tier 0: torch-free).
#include <string>

#include "peft/models/model_config.h"

namespace peft::models {

struct BertConfig {
  int64_t vocab_size = 30522, hidden_size = 768, num_hidden_layers = 12, num_attention_heads = 12,
          intermediate_size = 3072, max_position_embeddings = 512, type_vocab_size = 2,
          pad_token_id = 0, num_labels = 2;
  double hidden_dropout_prob = 0.1, attention_probs_dropout_prob = 0.1, layer_norm_eps = 1e-12,
         initializer_range = 0.02;
  /// Dropout before the classifier; config.json's null means hidden_dropout_prob (as transformers).
  double classifier_dropout = 0.1;
  std::string hidden_act = "gelu", problem_type;
  /// Only "absolute" is supported (transformers 5 dropped the relative variants).
  std::string position_embedding_type = "absolute";
  /// "bert", "roberta" or "xlm-roberta" (config.json's model_type); also the error prefix.
  std::string model_type = "bert";
  /// RoBERTa / XLM-RoBERTa: positions count from pad_token_id + 1 over the non-padding tokens
  /// (padding keeps pad_token_id, a padding row of position_embeddings), no pooler in the task
  /// models, RobertaClassificationHead (dense + tanh + out_proj on the first token), prefix
  /// "roberta".
  bool roberta() const { return model_type != "bert"; }

  /// Parses and validates: hidden_size not divisible by num_attention_heads -> ConfigError;
  /// position_embedding_type other than "absolute", is_decoder or add_cross_attention -> NotSupported.
  static BertConfig from(const ModelConfig& cfg);
};

}  // namespace peft::models
