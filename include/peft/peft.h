#pragma once
// Umbrella header for users of peft.cpp; never included inside the library itself.
#include "peft/core/error.h"
#include "peft/core/runtime.h"
#include "peft/io/hf_checkpoint.h"
#include "peft/io/llama2c.h"
#include "peft/io/safetensors.h"
#include "peft/io/tensor_bridge.h"
