# CLI smoke test for the prompt-learning methods on the bundled stories260K: a few steps of
# p_tuning (LSTM) on E2E with a checkpoint, --resume from it, continuing from the saved adapter
# (adapter=DIR), peft info --adapter, and the
# configuration errors (unknown method, TEXT init without text, prefix methods with gradient checkpointing).
file(REMOVE_RECURSE ${OUT})
include(${CMAKE_CURRENT_LIST_DIR}/bundled_model.cmake)
peft_convert_bundled_model(${OUT}/model)
set(common model=${OUT}/model train_file=${SRC}/data/e2e/train.csv eval_file=${SRC}/data/e2e/dev.csv
    max_train_samples=32 max_eval_samples=8 eval_generate=0 max_steps=4
    per_device_train_batch_size=8 logging_steps=2 eval_steps=4 save_steps=2 output_dir=${OUT}/run
    num_virtual_tokens=4 encoder_hidden_size=16)
execute_process(COMMAND ${PEFT} train ${SRC}/examples/configs/e2e_p_tuning.yaml ${common}
                        encoder_reparameterization_type=LSTM
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT out MATCHES "method p_tuning \\(P_TUNING\\): trainable params: 20,320 ")
  message(FATAL_ERROR "peft train p_tuning failed (${rc}):\n${out}${err}")
endif()
foreach(f adapter/adapter_config.json adapter/adapter_model.safetensors adapter/prompt_encoder.safetensors
          checkpoint-2/prompt_encoder.safetensors)
  if(NOT EXISTS ${OUT}/run/${f})
    message(FATAL_ERROR "peft train did not write ${f}")
  endif()
endforeach()
execute_process(COMMAND ${PEFT} train ${SRC}/examples/configs/e2e_p_tuning.yaml ${common}
                        encoder_reparameterization_type=LSTM --resume ${OUT}/run/checkpoint-2
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT out MATCHES "trained 4 steps")
  message(FATAL_ERROR "peft train --resume failed (${rc}):\n${out}${err}")
endif()
# adapter=DIR continues training the saved adapter: its first evaluation is where the run ended.
string(REGEX MATCH "after:  eval loss ([0-9.e+-]+)" m "${out}")
set(ended "${CMAKE_MATCH_1}")
execute_process(COMMAND ${PEFT} train ${SRC}/examples/configs/e2e_p_tuning.yaml ${common}
                        encoder_reparameterization_type=LSTM adapter=${OUT}/run/adapter output_dir=${OUT}/cont
                        max_steps=2
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR ended STREQUAL "" OR NOT out MATCHES "starting from adapter"
   OR NOT out MATCHES "before: eval loss ${ended}\n" OR NOT out MATCHES "trained 2 steps")
  message(FATAL_ERROR "peft train adapter=DIR should start at eval loss ${ended} (${rc}):\n${out}${err}")
endif()
execute_process(COMMAND ${PEFT} info ${OUT}/model --adapter ${OUT}/run/adapter
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT out MATCHES "P_TUNING, task CAUSAL_LM" OR NOT out MATCHES "trainable params: 20,320 ")
  message(FATAL_ERROR "peft info --adapter failed (${rc}):\n${out}${err}")
endif()
foreach(bad "method=prompt_tunning;is not one of lora, qlora, adalora, prefix_tuning"
            "method=prompt_tuning;prompt_tuning_init=TEXT;prompt_tuning_init_text can't be None"
            "method=p_tuning_v2;gradient_checkpointing=true;train_file=${SRC}/data/e2e/train.csv;eval_file=;max_train_samples=8;max_steps=1;does not work with gradient checkpointing"
            "method=prefix_tuning;num_virtual_tokens=0;num_virtual_tokens must be a positive integer")
  list(POP_BACK bad want)
  execute_process(COMMAND ${PEFT} train ${SRC}/examples/configs/e2e_p_tuning.yaml model=${OUT}/model ${bad}
                  RESULT_VARIABLE rc OUTPUT_QUIET ERROR_VARIABLE err)
  if(NOT rc EQUAL 2 OR NOT err MATCHES "${want}")
    message(FATAL_ERROR "'${bad}' should exit 2 with '${want}', got ${rc}: ${err}")
  endif()
endforeach()
