# CLI smoke test for the llama.cpp export: peft export of PEFT's stories260K LoRA fixture against the
# bundled stories260K GGUF (and its F16 variant), refusals exiting non-zero with one line naming the
# adapter and the field, and peft merge --format gguf (f32 and q8_0) whose output loads again
# (peft info) with the base's tokenizer metadata.
file(REMOVE_RECURSE ${OUT})
file(MAKE_DIRECTORY ${OUT})
set(base ${SRC}/tests/fixtures/gguf/models/stories260K_f32.gguf)
set(adapter ${SRC}/tests/fixtures/lora/stories260k)

execute_process(COMMAND ${PEFT} export ${adapter} ${OUT}/adapter.gguf --base ${base}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT out MATCHES "20 lora_a/lora_b pairs \\(f32\\), adapter.lora.alpha 16")
  message(FATAL_ERROR "peft export failed (${rc}):\n${out}${err}")
endif()
execute_process(COMMAND ${PEFT} info --tensors ${OUT}/adapter.gguf RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT out MATCHES "tensors: +40" OR NOT out MATCHES "blk.4.attn_v.weight.lora_b +F32 \\[32, 8\\]")
  message(FATAL_ERROR "peft info on the exported adapter failed (${rc}):\n${out}${err}")
endif()
execute_process(COMMAND ${PEFT} export ${adapter} ${OUT}/adapter_f16.gguf --base ${base} --type f16
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT out MATCHES "\\(f16\\)")
  message(FATAL_ERROR "peft export --type f16 failed (${rc}):\n${out}${err}")
endif()

# Refusals: DoRA (a config field), an adapter for another base (shapes), a bad --type.
execute_process(COMMAND ${PEFT} export ${SRC}/tests/fixtures/lora/llama_dora ${OUT}/dora.gguf --base ${base}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc EQUAL 0 OR NOT err MATCHES "llama_dora: use_dora = true" OR EXISTS ${OUT}/dora.gguf)
  message(FATAL_ERROR "a DoRA adapter should be refused naming use_dora, got ${rc}:\n${out}${err}")
endif()
execute_process(COMMAND ${PEFT} export ${SRC}/tests/fixtures/lora/llama_all_linear ${OUT}/other.gguf --base ${base}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc EQUAL 0 OR NOT err MATCHES "another base")
  message(FATAL_ERROR "an adapter for another base should be refused, got ${rc}:\n${out}${err}")
endif()
execute_process(COMMAND ${PEFT} export ${adapter} ${OUT}/q.gguf --base ${base} --type q8_0
                RESULT_VARIABLE rc OUTPUT_QUIET ERROR_QUIET)
if(NOT rc EQUAL 2)
  message(FATAL_ERROR "peft export --type q8_0 should be a usage error (2), got ${rc}")
endif()

# Merged model as GGUF, F32 and Q8_0.
foreach(type f32 q8_0)
  execute_process(COMMAND ${PEFT} merge ${base} ${adapter} ${OUT}/merged_${type}.gguf --format gguf --type ${type}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0 OR NOT out MATCHES "wrote merged GGUF")
    message(FATAL_ERROR "peft merge --format gguf --type ${type} failed (${rc}):\n${out}${err}")
  endif()
  execute_process(COMMAND ${PEFT} info ${OUT}/merged_${type}.gguf RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0 OR NOT out MATCHES "loads as LlamaForCausalLM" OR NOT out MATCHES "tokenizer: +llama \\(pre default\\), 512 tokens")
    message(FATAL_ERROR "peft info on the merged ${type} GGUF failed (${rc}):\n${out}${err}")
  endif()
endforeach()
execute_process(COMMAND ${PEFT} info ${OUT}/merged_q8_0.gguf RESULT_VARIABLE rc OUTPUT_VARIABLE out)
if(NOT out MATCHES "Q8_0 +204,288" OR NOT out MATCHES "F16 +55,040")
  message(FATAL_ERROR "the q8_0 merge should hold Q8_0 matrices (F16 where rows of 172 are not whole blocks):\n${out}")
endif()
# An HF-folder base cannot give the GGUF metadata: refused with a hint.
execute_process(COMMAND ${PEFT} merge ${SRC}/tests/fixtures/gguf/models/tiny_llama/hf ${adapter} ${OUT}/x.gguf --format gguf
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc EQUAL 0 OR NOT err MATCHES "not a GGUF file")
  message(FATAL_ERROR "peft merge --format gguf on an HF base should be refused, got ${rc}:\n${out}${err}")
endif()
