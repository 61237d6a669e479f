# CLI smoke test for GGUF models: peft info / generate / convert on llama.cpp-converted files, the
# converted folder generating the same text as the GGUF itself, peft train + eval of LoRA on a
# Q8_0 base kept quantised, and a key that does not apply to GGUF exiting 2 naming it.
file(REMOVE_RECURSE ${OUT})
set(M ${SRC}/tests/fixtures/gguf/models)
execute_process(COMMAND ${PEFT} info ${M}/tiny_llama/tiny_llama_q8_0.gguf --tensors
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT out MATCHES "loads as LlamaForCausalLM" OR NOT out MATCHES "Q8_0 +[0-9,]+ +params"
   OR NOT out MATCHES "blk.0.attn_q.weight  Q8_0 \\[64, 64\\]  -> model.layers.0.self_attn.q_proj.weight")
  message(FATAL_ERROR "peft info on a GGUF failed (${rc}):\n${out}${err}")
endif()

execute_process(COMMAND ${PEFT} generate ${M}/stories260K_f32.gguf -p "Once upon a time" -n 24 --ids
                RESULT_VARIABLE rc OUTPUT_VARIABLE gen_gguf ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT gen_gguf MATCHES "^Once upon a time")
  message(FATAL_ERROR "peft generate on a GGUF failed (${rc}):\n${gen_gguf}${err}")
endif()
execute_process(COMMAND ${PEFT} convert ${M}/stories260K_f32.gguf ${OUT}/converted
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
foreach(f config.json generation_config.json model.safetensors tokenizer.json tokenizer_config.json)
  if(NOT rc EQUAL 0 OR NOT EXISTS ${OUT}/converted/${f})
    message(FATAL_ERROR "peft convert of a GGUF did not write ${f} (${rc}):\n${out}${err}")
  endif()
endforeach()
execute_process(COMMAND ${PEFT} generate ${OUT}/converted -p "Once upon a time" -n 24 --ids
                RESULT_VARIABLE rc OUTPUT_VARIABLE gen_hf ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT gen_hf STREQUAL gen_gguf)
  message(FATAL_ERROR "the converted folder generates differently (${rc}):\nGGUF: ${gen_gguf}\nHF:   ${gen_hf}${err}")
endif()

set(common model=${M}/tiny_llama/tiny_llama_q8_0.gguf train_file=${SRC}/data/e2e/train.csv
    eval_file=${SRC}/data/e2e/dev.csv max_train_samples=32 max_eval_samples=8 eval_generate=0 max_steps=2
    per_device_train_batch_size=4 logging_steps=1 eval_steps=0 save_steps=0 output_dir=${OUT}/run)
execute_process(COMMAND ${PEFT} train ${SRC}/examples/configs/e2e_lora.yaml ${common}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT out MATCHES "after: +eval loss" OR NOT EXISTS ${OUT}/run/adapter/adapter_model.safetensors)
  message(FATAL_ERROR "peft train on a Q8_0 GGUF failed (${rc}):\n${out}${err}")
endif()
execute_process(COMMAND ${PEFT} eval ${SRC}/examples/configs/e2e_lora.yaml ${common} adapter=${OUT}/run/adapter
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT out MATCHES "eval loss")
  message(FATAL_ERROR "peft eval on a GGUF failed (${rc}):\n${out}${err}")
endif()
execute_process(COMMAND ${PEFT} train ${SRC}/examples/configs/e2e_lora.yaml ${common} load_in_4bit=true
                RESULT_VARIABLE rc OUTPUT_QUIET ERROR_VARIABLE err)
if(NOT rc EQUAL 2 OR NOT err MATCHES "load_in_4bit" OR NOT err MATCHES "GGUF")
  message(FATAL_ERROR "load_in_4bit on a GGUF should exit 2 naming the key, got ${rc}: ${err}")
endif()
# Merging into a GGUF base as an HF folder carries the GGUF's tokenizer along.
execute_process(COMMAND ${PEFT} merge ${M}/tiny_llama/tiny_llama_q8_0.gguf ${OUT}/run/adapter ${OUT}/merged_hf
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT EXISTS ${OUT}/merged_hf/tokenizer.json OR NOT EXISTS ${OUT}/merged_hf/model.safetensors)
  message(FATAL_ERROR "peft merge of a GGUF base to an HF folder failed (${rc}):\n${out}${err}")
endif()
execute_process(COMMAND ${PEFT} generate ${OUT}/merged_hf -p "name[The Eagle] ||" -n 8
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "peft generate on the merged folder failed (${rc}):\n${out}${err}")
endif()

# --llamacpp-numerics: llama.cpp's own greedy tokens (tests/fixtures/gguf/llamacpp/manifest.json,
# written by tools/llamacpp/gen_llamacpp_logits.py), with its defaults and with an F32 cache and
# flash attention off; without the flag the same file may part from them.
file(READ ${SRC}/tests/fixtures/gguf/llamacpp/manifest.json manifest)
string(JSON prompt GET "${manifest}" files tiny_llama_kq_q4_k_m greedy prompt)
foreach(cfg "defaults;f16;on" "f32_cache;f32;off")
  list(GET cfg 0 key)
  list(GET cfg 1 cache)
  list(GET cfg 2 fa)
  string(JSON n LENGTH "${manifest}" files tiny_llama_kq_q4_k_m greedy ${key} generated_ids)
  set(want "")
  math(EXPR last "${n} - 1")
  foreach(i RANGE ${last})
    string(JSON id GET "${manifest}" files tiny_llama_kq_q4_k_m greedy ${key} generated_ids ${i})
    string(APPEND want " ${id}")
  endforeach()
  execute_process(COMMAND ${PEFT} generate ${M}/tiny_llama_kq/tiny_llama_kq_q4_k_m.gguf -p "${prompt}" -n ${n} --ids
                          --llamacpp-numerics --llamacpp-cache-type ${cache} --llamacpp-flash-attn ${fa}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  string(REGEX MATCH "ids:[^\n]*" ids "${out}")
  string(REGEX REPLACE "^[^|]*\\|" "" got "${ids}")
  if(NOT rc EQUAL 0 OR NOT got STREQUAL want)
    message(FATAL_ERROR "peft generate --llamacpp-numerics (${key}) does not give llama.cpp's ids (${rc}):\n"
                        "llama.cpp:${want}\npeft.cpp: ${got}\n${out}${err}")
  endif()
endforeach()
execute_process(COMMAND ${PEFT} generate ${M}/tiny_llama/tiny_llama_q8_0.gguf -p "x" -n 2 --llamacpp-numerics --dequantize
                RESULT_VARIABLE rc OUTPUT_QUIET ERROR_VARIABLE err)
if(rc EQUAL 0 OR NOT err MATCHES "llamacpp_numerics" OR NOT err MATCHES "dequantize")
  message(FATAL_ERROR "--llamacpp-numerics with --dequantize should fail naming both, got ${rc}: ${err}")
endif()
