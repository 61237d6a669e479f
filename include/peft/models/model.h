#pragma once
// The model seam every architecture implements and every tuner talks to (tier 2).
//
//   auto model = peft::models::load_model("models/stories260K-hf");
//   peft::models::ModelInputs in;  in.input_ids = ids;
//   at::Tensor logits = model->forward(in).logits;
#include <torch/nn/module.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "peft/models/model_config.h"

namespace peft::models {

/// Keys and values for one attention stack layer: [B, kv_heads, S, head_dim].
struct KeyValue {
  at::Tensor key;
  at::Tensor value;
};

/// Growing key/value cache for incremental decoding; one entry per attention layer.
/// `length()` counts cached positions (not the key/value prefix).
struct KVCache {
  std::vector<KeyValue> layers;
  int64_t length() const { return layers.empty() || !layers[0].key.defined() ? 0 : layers[0].key.size(2); }
  void clear() { layers.clear(); cross_layers.clear(); }
  /// Encoder-decoder models: cross-attention keys/values per decoder layer, computed from the
  /// encoder states on the first step and reused (transformers' EncoderDecoderCache).
  std::vector<KeyValue> cross_layers;
};

/// Inputs of a forward pass (the names follow transformers' forward arguments).
struct ModelInputs {
  at::Tensor input_ids;       ///< [B, T] int64 (or leave undefined and give inputs_embeds)
  at::Tensor inputs_embeds;   ///< [B, T, hidden]
  at::Tensor attention_mask;  ///< [B, S] 1 = attend, 0 = padding; S = T + cached (+ prefix, optional)
  at::Tensor position_ids;    ///< [B, T]; default: cumulative over the mask (left padding aware)
  at::Tensor token_type_ids;  ///< [B, T] (BERT)
  at::Tensor labels;          ///< task labels; -100 = ignored
  /// Per-layer key/value prefix, [B, kv_heads, P, head_dim] each; concatenated before the
  /// softmax, never rotated, always visible; the mask is extended by P when it covers T only.
  std::vector<KeyValue> prefix_kv;
  KVCache* cache = nullptr;   ///< when set: read past keys/values and append this step's
  /// Causal LMs: logits for the last `logits_to_keep` positions only (0 = all), as transformers'
  /// argument of that name; generation asks for 1.
  int64_t logits_to_keep = 0;
  /// Only the loss is wanted (the trainer's step): a causal LM whose output projection is a
  /// plain fp32 matrix then computes it from the final hidden states without the [B, T, vocab]
  /// logits (models::causal_lm_loss_from_hidden) and leaves `logits` undefined.
  bool loss_only = false;

  // Encoder-decoder models only.
  at::Tensor decoder_input_ids;
  at::Tensor decoder_inputs_embeds;
  at::Tensor decoder_attention_mask;
  std::vector<KeyValue> decoder_prefix_kv;  ///< decoder self-attention prefix
  at::Tensor encoder_outputs;               ///< reuse an encoder pass ([B, S, d_model])
};

struct ModelOutput {
  at::Tensor logits;             ///< [B, T, vocab] or [B, num_labels] or [B, T, num_labels]
  at::Tensor loss;               ///< defined when labels were given
  at::Tensor last_hidden_state;  ///< final hidden states (after the final norm)
  at::Tensor pooler_output;      ///< BERT pooler
  at::Tensor encoder_last_hidden_state;
};

enum class TaskHead { Base, CausalLM, SeqCls, TokenCls, Seq2SeqLM };

}  // namespace peft::models
namespace peft::quant {
class QuantizedBase;
}
namespace peft::models {

/// Inference with llama.cpp's CPU arithmetic (quant/ggml_cpu.h) on a GGUF model: every matmul
/// quantises its activations to the weight type's vec_dot type and sums block dot products as
/// ggml's x86 AVX2 kernels do, and norms, RoPE, attention and SiLU round as ggml's, so greedy
/// generation gives llama.cpp's tokens. Inference only: with gradients recorded (training) the
/// model computes in plain fp32 as usual. One sequence at a time (batch 1, no padding).
struct LlamaCppNumerics {
  bool enabled = false;
  /// KV cache type: F16 (llama.cpp's default, `-ctk f16 -ctv f16`) or F32 (`-ctk f32 -ctv f32`).
  bool kv_cache_f16 = true;
  /// Flash attention: on is what llama.cpp's default `-fa auto` resolves to on the CPU; off is
  /// `-fa off` (mul_mat + soft_max).
  bool flash_attn = true;
};

/// What a GGUF loader hands to a model for LlamaCppNumerics besides its slots.
struct LlamaCppNumericsWeights {
  /// The output matmul on token_embd's blocks when the output is tied to the embeddings.
  std::shared_ptr<quant::QuantizedBase> tied_output;
  /// rope_freqs.weight (Llama 3.x files): llama.cpp divides the rotary angles by these.
  std::vector<float> rope_freq_factors;
};

/// A transformers-compatible model. Registered parameter names are the HF state-dict keys.
class PretrainedModel : public torch::nn::Module {
 public:
  virtual ModelOutput forward(const ModelInputs& in) = 0;
  /// Word embeddings as the model's get_input_embeddings() gives them (no positions; Gemma's sqrt(hidden)
  /// scaling included): what prompt methods prepend to.
  virtual at::Tensor embed(const at::Tensor& input_ids) = 0;
  /// The word-embedding table [vocab, hidden].
  virtual at::Tensor word_embeddings() = 0;
  virtual const ModelConfig& config() const = 0;
  virtual TaskHead head() const = 0;
  virtual bool is_encoder_decoder() const { return false; }
  /// Attention layers per stack, key/value heads and head size (what a KV prefix must match).
  virtual int64_t num_layers() const = 0;
  virtual int64_t num_kv_heads() const = 0;
  virtual int64_t head_dim() const = 0;
  /// The HF prefix of the base model inside task models ("model", "transformer", "bert").
  virtual std::string base_model_prefix() const = 0;
  /// Parameter names that alias another one (tied weights): {alias, source}.
  virtual std::vector<std::pair<std::string, std::string>> tied_weights() const { return {}; }
  /// Checkpoint keys the model ignores without complaint (regexes, e.g. rotary buffers).
  virtual std::vector<std::string> ignored_checkpoint_keys() const { return {}; }
  /// Switches inference to llama.cpp's CPU arithmetic (see LlamaCppNumerics); NotSupported for
  /// architectures without it (every one but Llama).
  virtual void set_llamacpp_numerics(const LlamaCppNumerics& n, const LlamaCppNumericsWeights& w);
  /// generate(): true when the KV cache holding `cached` positions must be dropped and all `total`
  /// ids run again before the next step (Phi-3, whose rotary factors switch with the length).
  virtual bool rebuild_cache_for_generation(int64_t /*cached*/, int64_t /*total*/) const { return false; }
  /// Recompute each layer in backward instead of keeping its activations (training only).
  void set_gradient_checkpointing(bool on) { gradient_checkpointing_ = on; }
  bool gradient_checkpointing() const { return gradient_checkpointing_ && is_training(); }

 protected:
  /// What every architecture's forward starts with: exactly one of input_ids / inputs_embeds
  /// (ids go through embed()), the embeddings checked to be [B, T, hidden_size], the key/value
  /// prefix checked to hold one entry per layer. Errors are prefixed "[<model>]".
  struct ForwardStart {
    at::Tensor hidden;   ///< [B, T, hidden_size]
    int64_t batch = 0, length = 0;
    int64_t past = 0;    ///< positions already in the KV cache
    int64_t prefix = 0;  ///< P, the key/value prefix length
  };
  ForwardStart start_forward(const ModelInputs& in, const char* model, int64_t hidden_size, int64_t num_layers);

 private:
  bool gradient_checkpointing_ = false;
};

/// While alive (on this thread), new AdaptableLinear / AdaptableEmbedding weights are left
/// uninitialised (at::empty): for loaders that overwrite them (transformers' no_init_weights).
class NoInitWeights {
 public:
  NoInitWeights();
  ~NoInitWeights();
  NoInitWeights(const NoInitWeights&) = delete;
  NoInitWeights& operator=(const NoInitWeights&) = delete;
  /// True while a guard is alive on this thread.
  static bool active();

 private:
  bool previous_;
};

/// How load_model builds the model.
struct LoadOptions {
  /// Task head; default: the one named by config.json's `architectures[0]`.
  std::optional<TaskHead> head;
  /// Classification heads: the number of labels when it differs from config.json's (a new head
  /// of that size is initialised and noted on stderr, as transformers does); 0 keeps config.json's.
  int64_t num_labels = 0;
  /// Classification heads of decoder-only models pool the last non-padding token: the padding id
  /// used when config.json has no pad_token_id (-1: none).
  int64_t pad_token_id = -1;
  /// "float32" (default), "bfloat16", "float16", or "auto" (the checkpoint's dtype).
  std::string dtype = "float32";

  // QLoRA: transformers' BitsAndBytesConfig (4-bit part). With load_in_4bit every linear layer
  // but the output head is quantised on load (models/quantized_model.h). Checkpoints that bitsandbytes
  // already quantised (config.json quantization_config) load as 4-bit whatever these say.
  bool load_in_4bit = false;
  std::string bnb_4bit_quant_type = "fp4";  ///< "nf4" or "fp4" (transformers' default: fp4)
  bool bnb_4bit_use_double_quant = false;
  std::string bnb_4bit_compute_dtype = "float32";  ///< "float32" or "bfloat16"

  /// GGUF files: decode block-quantised projections to fp32 parameters instead of keeping them
  /// in their blocks (quant/ggml_linear.h). F32/F16/BF16 tensors always load as dense tensors.
  bool dequantize = false;

  /// Every loaded weight is checked for NaN/inf (a damaged or diverged checkpoint gives an error
  /// naming the tensors); true turns the error into a warning, for models that hold inf masks on
  /// purpose. Block-quantised GGUF weights are not scanned.
  bool allow_nonfinite_weights = false;

  /// GGUF files: run inference with llama.cpp's CPU arithmetic (LlamaCppNumerics), to check that
  /// peft.cpp computes a GGUF model exactly as llama.cpp does. Keeps every projection in its GGUF
  /// encoding (incompatible with dequantize).
  LlamaCppNumerics llamacpp_numerics;
};

/// Loads config.json + safetensors weights (a folder), or a GGUF file, into the matching
/// architecture. Every missing or
/// unexpected tensor and every shape mismatch is reported in one error naming the tensors and
/// both shapes; task-head weights absent from a base checkpoint are initialised and reported on
/// stderr, as transformers does.
std::shared_ptr<PretrainedModel> load_model(const std::string& path, const LoadOptions& opts = {});

/// A GGUF model (llama.cpp's format): config from its metadata, llama.cpp tensor names mapped to
/// HF keys, Q/K rows un-permuted; block-quantised projections stay quantised unless
/// opts.dequantize (default head: CausalLM).
std::shared_ptr<PretrainedModel> load_gguf_model(const std::string& path, const LoadOptions& opts = {});

/// Copies a checkpoint's tensors into `model` by HF key, with the same checks as load_model.
void load_weights(PretrainedModel& model, const std::string& path, const std::string& dtype = "float32",
                  bool allow_nonfinite = false);

/// Refuses a tokenizer that can produce ids the model's embedding has no row for: its size
/// (vocabulary plus added tokens) above config.json's vocab_size. A smaller tokenizer is fine
/// (checkpoints pad their vocabulary to a multiple of 64 or 128).
void check_tokenizer_fits(const PretrainedModel& model, std::size_t tokenizer_size, const std::string& tokenizer_source);

/// Builds an architecture from a config alone (weights left at their initial values).
std::shared_ptr<PretrainedModel> create_model(const ModelConfig& cfg, TaskHead head);

/// The head named by config.json's `architectures[0]` (Base when absent or unknown).
TaskHead head_from_architectures(const ModelConfig& cfg);
/// transformers' class name for `head` on the architecture of `cfg`, from `architectures[0]` (or the
/// model_type) with the head's suffix swapped: BertModel + SeqCls -> BertForSequenceClassification.
std::string architecture_name(const ModelConfig& cfg, TaskHead head);

/// The last non-padding position per row, for pooling the last token (HF's SeqCls rule).
at::Tensor last_token_index(const at::Tensor& input_ids, const at::Tensor& attention_mask, int64_t pad_token_id);

}  // namespace peft::models

namespace peft::models {

/// Writes a full Hugging Face folder (config.json + model.safetensors) for `model`, e.g. after
/// merge_and_unload; transformers loads it as the original architecture.
void save_pretrained(PretrainedModel& model, const std::string& dir);

}  // namespace peft::models
