# Source lists, one block per folder (see docs/architecture.md for the layering).
set(S ${CMAKE_CURRENT_LIST_DIR}/../src)
set(I ${CMAKE_CURRENT_LIST_DIR}/../include/peft)

# Torch-free library: core, config, torch-free io (JSON, safetensors, HF dirs, tokenizers).
set(PEFT_CORE_SOURCES
  ${S}/core/dtype.cpp
  ${S}/core/file_util.cpp
  ${S}/io/safetensors.cpp
  ${S}/io/hf_checkpoint.cpp
  ${S}/io/llama2c.cpp
)

# Tier-0 headers: compiled alone without LibTorch by the header check.
file(GLOB PEFT_TIER0_HEADERS CONFIGURE_DEPENDS
  ${I}/core/*.h ${I}/config/*.h ${I}/io/*.h ${I}/tuners/*/config.h)
list(FILTER PEFT_TIER0_HEADERS EXCLUDE REGEX "(tensor_fwd|tensor_bridge|runtime_torch)\\.h$")

# LibTorch library.
set(PEFT_TORCH_SOURCES
  ${S}/core/runtime.cpp
  ${S}/io/tensor_bridge.cpp
)

set(PEFT_CLI_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/../cli/main.cpp
  ${CMAKE_CURRENT_LIST_DIR}/../cli/info.cpp
  ${CMAKE_CURRENT_LIST_DIR}/../cli/convert.cpp
)
