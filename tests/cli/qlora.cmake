# CLI smoke test for QLoRA: peft train with method qlora on the bundled stories260K (two steps),
# the saved adapter evaluated on the same 4-bit base, and BitsAndBytesConfig errors naming the key;
# the adapter's recorded 4-bit base used by default by eval, generate and merge.
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
string(REGEX MATCH "after:  eval loss ([0-9.]+)" _ "${out}")
set(trained_loss ${CMAKE_MATCH_1})
# The adapter records its 4-bit base beside it (a file PEFT ignores).
file(READ ${OUT}/run/adapter/base_quantization.json bq)
if(NOT bq MATCHES "\"bnb_4bit_quant_type\": *\"nf4\"" OR NOT bq MATCHES "\"bnb_4bit_use_double_quant\": *true")
  message(FATAL_ERROR "base_quantization.json should record nf4 with double quant:\n${bq}")
endif()
execute_process(COMMAND ${PEFT} eval ${SRC}/examples/configs/e2e_qlora.yaml ${common} adapter=${OUT}/run/adapter
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "peft eval of the QLoRA adapter failed (${rc}):\n${out}${err}")
endif()
# A LoRA config (no 4-bit keys) with the QLoRA adapter: the recorded 4-bit base is used, said so,
# and the eval loss is the trainer's final one on that base.
execute_process(COMMAND ${PEFT} eval ${SRC}/examples/configs/e2e_lora.yaml ${common} adapter=${OUT}/run/adapter
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
string(REGEX MATCH "eval loss ([0-9.]+)" _ "${out}")
set(loss ${CMAKE_MATCH_1})
if(NOT rc EQUAL 0 OR NOT out MATCHES "4-bit base \\(nf4, double quant\\) as the adapter was trained"
   OR NOT loss STREQUAL trained_loss)
  message(FATAL_ERROR "peft eval of a QLoRA adapter should run on its recorded 4-bit base and give the trained "
                      "eval loss ${trained_loss}, got ${loss} (${rc}):\n${out}${err}")
endif()
# load_in_4bit=false: the full-precision base, with a warning that it is not the trained one.
execute_process(COMMAND ${PEFT} eval ${SRC}/examples/configs/e2e_lora.yaml ${common} adapter=${OUT}/run/adapter
                        load_in_4bit=false RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
string(REGEX MATCH "eval loss ([0-9.]+)" _ "${out}")
set(loss ${CMAKE_MATCH_1})
if(NOT rc EQUAL 0 OR out MATCHES "4-bit base" OR NOT err MATCHES "warning: the adapter .* was trained on a 4-bit nf4"
   OR loss STREQUAL trained_loss OR loss STREQUAL "")
  message(FATAL_ERROR "load_in_4bit=false should evaluate on the full-precision base with a warning (${rc}):\n${out}${err}")
endif()
# peft generate with the QLoRA adapter and no options: on the 4-bit base, and it says so.
execute_process(COMMAND ${PEFT} generate ${OUT}/model -a ${OUT}/run/adapter -p "name[Aromi] ||" -n 4
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT err MATCHES "note: 4-bit nf4, double quant, compute float32 base, as the adapter was trained"
   OR err MATCHES "warning")
  message(FATAL_ERROR "peft generate -a QLORA_ADAPTER should run on the recorded 4-bit base (${rc}):\n${out}${err}")
endif()
execute_process(COMMAND ${PEFT} generate ${OUT}/model -a ${OUT}/run/adapter -p "name[Aromi] ||" -n 4 --no-4bit
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT err MATCHES "note: full-precision base \\(--no-4bit\\)")
  message(FATAL_ERROR "peft generate --no-4bit should say it keeps the full-precision base (${rc}):\n${out}${err}")
endif()
execute_process(COMMAND ${PEFT} generate ${OUT}/model -a ${OUT}/run/adapter -n 1 --4bit fp4
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT err MATCHES "warning: .* trained on a 4-bit nf4, double quant.*--4bit asks for fp4")
  message(FATAL_ERROR "peft generate --4bit fp4 on an nf4 adapter should warn (${rc}):\n${out}${err}")
endif()
execute_process(COMMAND ${PEFT} generate ${OUT}/model -a ${OUT}/run/adapter -n 1 --4bit nf4 --no-4bit
                RESULT_VARIABLE rc OUTPUT_QUIET ERROR_VARIABLE err)
if(NOT rc EQUAL 2 OR NOT err MATCHES "contradict")
  message(FATAL_ERROR "--4bit with --no-4bit should exit 2, got ${rc}: ${err}")
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
# Without options the merge uses the recorded base too: the same bytes as --4bit nf4 --double-quant.
execute_process(COMMAND ${PEFT} merge ${OUT}/model ${OUT}/run/adapter ${OUT}/merged_default
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
file(SHA256 ${OUT}/merged/model.safetensors h_explicit)
file(SHA256 ${OUT}/merged_default/model.safetensors h_default)
if(NOT rc EQUAL 0 OR NOT err MATCHES "as the adapter was trained" OR NOT h_explicit STREQUAL h_default)
  message(FATAL_ERROR "peft merge without --4bit should merge into the recorded 4-bit base (${rc}):\n${out}${err}")
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
