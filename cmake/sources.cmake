# Source lists, one block per folder (see docs/architecture.md for the layering).
set(S ${CMAKE_CURRENT_LIST_DIR}/../src)
set(I ${CMAKE_CURRENT_LIST_DIR}/../include/peft)

# Torch-free library: core, config, torch-free io (JSON, safetensors, HF dirs, tokenizers).
set(PEFT_CORE_SOURCES
  ${S}/core/dtype.cpp
  ${S}/core/file_util.cpp
  ${S}/core/json_file.cpp
  ${S}/core/yaml_bounds.cpp
  ${S}/core/memory_bounds.cpp
  ${S}/core/error_context.cpp
  ${S}/core/utf8.cpp
  ${S}/io/safetensors.cpp
  ${S}/io/gguf.cpp
  ${S}/io/hf_checkpoint.cpp
  ${S}/io/llama2c.cpp
  ${S}/io/model_path.cpp
  ${S}/models/model_config.cpp
  ${S}/models/gguf_model.cpp
  ${S}/core/regex.cpp
  ${S}/config/peft_config.cpp
  ${S}/tuners/target_match.cpp
  ${S}/tuners/lora/config.cpp
  ${S}/tuners/adalora/config.cpp
  ${S}/tuners/ia3/config.cpp
  ${S}/tuners/prompt_learning/config.cpp
  ${S}/tuners/prompt_tuning/config.cpp
  ${S}/tuners/p_tuning/config.cpp
  ${S}/tuners/prefix_tuning/config.cpp
  ${S}/tuners/full/config.cpp
  ${S}/io/tokenizer/unicode.cpp
  ${S}/io/tokenizer/normalized.cpp
  ${S}/io/tokenizer/normalizers.cpp
  ${S}/io/tokenizer/models.cpp
  ${S}/io/tokenizer/processors.cpp
  ${S}/io/tokenizer/hf_tokenizer.cpp
  ${S}/io/tokenizer/llama2c_tokenizer.cpp
  ${S}/io/tokenizer/gguf_tokenizer.cpp
  ${S}/io/tokenizer/tokenizer.cpp
  ${S}/train/data.cpp
  ${S}/train/training_args.cpp
  ${S}/train/adamw_kernel.cpp
  # The run config's keys (YAML, yaml-cpp); the rest of train/run_config is LibTorch's.
  ${S}/train/run_config_keys.cpp
  ${S}/train/sampler.cpp
  ${S}/train/trainer_state.cpp
  ${S}/train/metrics.cpp
  ${S}/train/event_writer.cpp
  ${S}/train/plot.cpp
  # QLoRA: torch-free 4-bit quantisation (bitsandbytes format).
  ${S}/quant/quantize.cpp
  ${S}/quant/gemv4_hwy.cpp
  # GGUF: ggml block types to and from fp32.
  ${S}/quant/ggml_quants.cpp
  ${S}/quant/ggml_quants_hwy.cpp
  # llama.cpp's CPU arithmetic (GGUF inference as llama.cpp computes it).
  ${S}/quant/ggml_cpu.cpp
  # Adapters to llama.cpp's LoRA GGUF.
  ${S}/export/gguf_lora.cpp
)
# Highway re-includes the kernel file by name for each SIMD target.
set_source_files_properties(${S}/quant/gemv4_hwy.cpp PROPERTIES INCLUDE_DIRECTORIES ${S}/quant)
# ggml types are bit-exact with numpy: no a*b+c contracted into an FMA.
set_source_files_properties(${S}/quant/ggml_quants_hwy.cpp PROPERTIES INCLUDE_DIRECTORIES ${S}/quant
  COMPILE_OPTIONS -ffp-contract=off)
set_source_files_properties(${S}/quant/ggml_quants.cpp PROPERTIES COMPILE_OPTIONS -ffp-contract=off)
# ggml's rounding: a*b+c is fused exactly where ggml's binary fuses it (std::fma), nowhere else.
set_source_files_properties(${S}/quant/ggml_cpu.cpp PROPERTIES COMPILE_OPTIONS -ffp-contract=off)

# The fused optimizer's loops vectorise only at -O3 and with sqrt free of errno.
set_source_files_properties(${S}/train/adamw_kernel.cpp PROPERTIES COMPILE_OPTIONS "-O3;-fno-math-errno")

# AdaLoRA's score EMAs round each product and sum as torch's tensor ops (no FMA).
set_source_files_properties(${S}/tuners/adalora/layer.cpp PROPERTIES COMPILE_OPTIONS -ffp-contract=off)

# The training attention's vector loops are written as a*b+c: multiply-adds.
set_source_files_properties(${S}/models/cpu_attention_train.cpp PROPERTIES COMPILE_OPTIONS "-ffp-contract=fast;-Wno-psabi")

# Tier-0 headers: compiled alone without LibTorch by the header check.
file(GLOB PEFT_TIER0_HEADERS CONFIGURE_DEPENDS
  ${I}/core/*.h ${I}/config/*.h ${I}/io/*.h ${I}/tuners/*/config.h
  ${I}/train/data.h ${I}/train/training_args.h ${I}/train/run_config.h ${I}/train/sampler.h ${I}/train/trainer_state.h ${I}/train/metrics.h ${I}/train/event_writer.h ${I}/train/plot.h
  ${I}/models/model_config.h ${I}/models/gguf_model.h ${I}/models/llama.h ${I}/models/gemma.h ${I}/models/gpt2.h
  ${I}/models/bert.h ${I}/models/t5.h ${I}/models/phi3.h ${I}/tuners/target_match.h
  ${I}/quant/quantize.h ${I}/quant/ggml_quants.h ${I}/quant/ggml_cpu.h ${I}/export/gguf.h)
list(FILTER PEFT_TIER0_HEADERS EXCLUDE REGEX "(tensor_fwd|tensor_bridge|runtime_torch)\\.h$")

# LibTorch library.
set(PEFT_TORCH_SOURCES
  ${S}/core/runtime.cpp
  ${S}/io/tensor_bridge.cpp
  ${S}/models/blocks.cpp
  ${S}/models/cpu_kernels.cpp
  ${S}/models/cpu_attention_train.cpp
  ${S}/models/adaptable_linear.cpp
  ${S}/models/auto_model.cpp
  ${S}/models/quantized_model.cpp
  ${S}/models/llama.cpp
  ${S}/models/qwen2.cpp
  ${S}/models/qwen3.cpp
  ${S}/models/mistral.cpp
  ${S}/models/gemma.cpp
  ${S}/models/gpt2.cpp
  ${S}/models/bert.cpp
  ${S}/models/distilbert.cpp
  ${S}/models/t5.cpp
  ${S}/models/phi3.cpp
  ${S}/models/generation.cpp
  ${S}/tuners/lora/layer.cpp
  ${S}/tuners/adalora/layer.cpp
  ${S}/tuners/ia3/layer.cpp
  ${S}/tuners/peft_model.cpp
  ${S}/tuners/save_and_load.cpp
  ${S}/tuners/registry.cpp
  ${S}/tuners/tuner_model.cpp
  ${S}/tuners/layer_tuner.cpp
  ${S}/tuners/lora/model.cpp
  ${S}/tuners/adalora/model.cpp
  ${S}/tuners/ia3/model.cpp
  ${S}/tuners/prompt_learning/encoder.cpp
  ${S}/tuners/prompt_learning/model.cpp
  ${S}/tuners/prompt_learning/generate.cpp
  ${S}/tuners/prompt_learning/ensemble.cpp
  ${S}/tuners/p_tuning/template.cpp
  ${S}/tuners/prefix_tuning/infix.cpp
  ${S}/tuners/full/model.cpp
  ${S}/train/trainer.cpp
  ${S}/train/optim.cpp
  ${S}/train/checkpoint.cpp
  ${S}/train/progress.cpp
  ${S}/train/multitask.cpp
  ${S}/train/run_config.cpp
  ${S}/train/datasets.cpp
  ${S}/train/evaluate.cpp
  ${S}/train/run.cpp
  # QLoRA: the 4-bit linear base.
  ${S}/quant/linear4bit.cpp
  # GGUF: ggml block-type linear base.
  ${S}/quant/ggml_linear.cpp
  # A merged model as a llama.cpp GGUF.
  ${S}/export/gguf_merge.cpp
)

set(PEFT_CLI_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/../cli/main.cpp
  ${CMAKE_CURRENT_LIST_DIR}/../cli/info.cpp
  ${CMAKE_CURRENT_LIST_DIR}/../cli/adapter_info.cpp
  ${CMAKE_CURRENT_LIST_DIR}/../cli/convert.cpp
  ${CMAKE_CURRENT_LIST_DIR}/../cli/generate.cpp
  ${CMAKE_CURRENT_LIST_DIR}/../cli/train.cpp
  ${CMAKE_CURRENT_LIST_DIR}/../cli/compare.cpp
  ${CMAKE_CURRENT_LIST_DIR}/../cli/export.cpp
  ${CMAKE_CURRENT_LIST_DIR}/../cli/quant_options.cpp
)

# Data-parallel training (src/distributed): the launcher is torch-free; the process group
# (c10d + Gloo) is added in CMakeLists.txt, or its stub when the gloo headers are missing. The
# sampler that shards the batches over the ranks is the trainer's (src/train/sampler.cpp).
list(APPEND PEFT_CORE_SOURCES
  ${S}/distributed/launcher.cpp
)
list(APPEND PEFT_TIER0_HEADERS ${I}/distributed/launcher.h)
list(APPEND PEFT_TORCH_SOURCES ${S}/distributed/env.cpp)
list(APPEND PEFT_CLI_SOURCES ${CMAKE_CURRENT_LIST_DIR}/../cli/launch.cpp)
