# examples/run_config.cpp runs an example config through the library (train/run.h) exactly as
# `peft train` does: same seed, same data, same steps -> the same results.json metrics.
file(REMOVE_RECURSE ${OUT})
include(${CMAKE_CURRENT_LIST_DIR}/bundled_model.cmake)
peft_convert_bundled_model(${OUT}/model)
set(common model=${OUT}/model train_file=${SRC}/data/e2e/train.csv eval_file=${SRC}/data/e2e/dev.csv
    max_train_samples=32 max_eval_samples=8 eval_generate=2 max_new_tokens=8 max_steps=3
    per_device_train_batch_size=8 logging_steps=1 eval_steps=3 save_steps=3)
execute_process(COMMAND ${PEFT} train ${SRC}/examples/configs/e2e_lora.yaml ${common} output_dir=${OUT}/cli
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "peft train failed (${rc}):\n${out}${err}")
endif()
execute_process(COMMAND ${EXAMPLE} ${SRC}/examples/configs/e2e_lora.yaml ${common} output_dir=${OUT}/lib
                RESULT_VARIABLE rc OUTPUT_VARIABLE lib ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT lib MATCHES "adapter: ${OUT}/lib/adapter")
  message(FATAL_ERROR "example_run_config failed (${rc}):\n${lib}${err}")
endif()
file(READ ${OUT}/cli/results.json a)
file(READ ${OUT}/lib/results.json b)
foreach(key eval_loss bleu)
  string(JSON va GET "${a}" metrics ${key})
  string(JSON vb GET "${b}" metrics ${key})
  string(JSON v0 GET "${a}" metrics_before ${key})
  if(NOT va STREQUAL vb)
    message(FATAL_ERROR "metrics.${key}: peft train ${va}, example_run_config ${vb}")
  endif()
endforeach()
string(JSON before GET "${a}" metrics_before eval_loss)
string(JSON after GET "${a}" metrics eval_loss)
if(NOT after LESS before)
  message(FATAL_ERROR "eval loss did not go down: ${before} -> ${after}")
endif()
