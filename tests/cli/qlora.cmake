# CLI smoke test for QLoRA: peft train with method qlora on the bundled stories260K (two steps),
# the saved adapter evaluated on the same 4-bit base, and BitsAndBytesConfig errors naming the key.
file(REMOVE_RECURSE ${OUT})
include(${CMAKE_CURRENT_LIST_DIR}/bundled_model.cmake)
peft_convert_bundled_model(${OUT}/model)
set(common model=${OUT}/model train_file=${SRC}/data/e2e/train.csv eval_file=${SRC}/data/e2e/dev.csv
    max_train_samples=64 max_eval_samples=16 eval_generate=0 max_steps=2 per_device_train_batch_size=8
    logging_steps=1 eval_steps=0 save_steps=0 output_dir=${OUT}/run)
execute_process(COMMAND ${PEFT} train ${SRC}/examples/configs/e2e_qlora.yaml ${common}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT out MATCHES "4-bit base \\(nf4, double quant\\)" OR NOT out MATCHES "after:  eval loss")
  message(FATAL_ERROR "peft train method=qlora failed (${rc}):\n${out}${err}")
endif()
execute_process(COMMAND ${PEFT} eval ${SRC}/examples/configs/e2e_qlora.yaml ${common} adapter=${OUT}/run/adapter
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "peft eval of the QLoRA adapter failed (${rc}):\n${out}${err}")
endif()
execute_process(COMMAND ${PEFT} train ${SRC}/examples/configs/e2e_qlora.yaml ${common} bnb_4bit_quant_type=int4
                RESULT_VARIABLE rc OUTPUT_QUIET ERROR_VARIABLE err)
if(NOT rc EQUAL 2 OR NOT err MATCHES "bnb_4bit_quant_type")
  message(FATAL_ERROR "a bad bnb_4bit_quant_type should exit 2 naming the key, got ${rc}: ${err}")
endif()
execute_process(COMMAND ${PEFT} train ${SRC}/examples/configs/e2e_qlora.yaml ${common} bnb_4bit_compute_dtype=float16
                RESULT_VARIABLE rc OUTPUT_QUIET ERROR_VARIABLE err)
if(NOT rc EQUAL 2 OR NOT err MATCHES "bnb_4bit_compute_dtype")
  message(FATAL_ERROR "a bad bnb_4bit_compute_dtype should exit 2 naming the key, got ${rc}: ${err}")
endif()
# peft merge of the QLoRA adapter: into the dequantised 4-bit base (full precision), or re-quantised.
execute_process(COMMAND ${PEFT} merge ${OUT}/model ${OUT}/run/adapter ${OUT}/merged --4bit nf4 --double-quant
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT EXISTS ${OUT}/merged/model.safetensors)
  message(FATAL_ERROR "peft merge --4bit failed (${rc}):\n${out}${err}")
endif()
# peft merge BASE ADAPTER BASE (or a folder inside an input, or one holding it) refuses before
# writing anything: the base stays byte-identical.
file(SHA256 ${OUT}/model/model.safetensors base_hash)
foreach(dst "${OUT}/model" "${OUT}/model/" "${OUT}/model/sub" "${OUT}/run/adapter/../adapter" "${OUT}")
  execute_process(COMMAND ${PEFT} merge ${OUT}/model ${OUT}/run/adapter ${dst}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 2 OR NOT err MATCHES "\\[merge\\] output .* (is the input|holds the input)")
    message(FATAL_ERROR "peft merge into ${dst} should refuse with exit 2, got ${rc}:\n${out}${err}")
  endif()
endforeach()
file(SHA256 ${OUT}/model/model.safetensors base_hash_after)
if(NOT base_hash STREQUAL base_hash_after OR EXISTS ${OUT}/model/sub)
  message(FATAL_ERROR "a refused merge changed the base folder")
endif()
execute_process(COMMAND ${PEFT} merge ${OUT}/model ${OUT}/run/adapter ${OUT}/merged4 --4bit nf4 --double-quant --requantize
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT out MATCHES "re-quantised 35 4-bit layers")
  message(FATAL_ERROR "peft merge --requantize failed (${rc}):\n${out}${err}")
endif()
file(READ ${OUT}/merged4/config.json cfg)
if(NOT cfg MATCHES "quantization_config")
  message(FATAL_ERROR "a re-quantised merge should write quantization_config:\n${cfg}")
endif()
execute_process(COMMAND ${PEFT} info ${OUT}/merged4 RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "peft info on the 4-bit folder failed (${rc}):\n${out}${err}")
endif()
