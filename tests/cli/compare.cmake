# peft compare: two methods on a few steps of the bundled E2E slice with the bundled model; the
# table must list each method with its trainable-parameter count and metrics, the chart must
# exist, and a failed method must make the command fail while its row says why.
file(REMOVE_RECURSE ${OUT})
include(${CMAKE_CURRENT_LIST_DIR}/bundled_model.cmake)
peft_convert_bundled_model(${OUT}/model)
file(WRITE ${OUT}/cmp.yaml "model: ${OUT}/model
train_file: ${SRC}/data/e2e/train.csv
eval_file: ${SRC}/data/e2e/dev.csv
prompt_template: \"{mr} ||\"
completion_template: \" {ref}\"
max_length: 96
max_train_samples: 64
max_eval_samples: 16
max_steps: 3
per_device_train_batch_size: 8
learning_rate: 0.004
target_modules: [q_proj, v_proj]
compare:
  output_dir: ${OUT}/result
  methods: [lora]
  lora: {r: 4, lora_alpha: 8}
")
execute_process(COMMAND ${PEFT} compare ${OUT}/cmp.yaml RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "peft compare failed (${rc}): ${out}${err}")
endif()
file(READ ${OUT}/result/compare.md md)
# LoRA r=4 on q_proj (64 -> 64) and v_proj (64 -> 32) in 5 layers: 5 * 4 * (64 + 64 + 64 + 32) = 4480.
if(NOT md MATCHES "\\| lora \\| 4480 \\| [0-9.]+ \\| [0-9]+ \\| [0-9]+ \\| [0-9]+ \\| [0-9.]+ → [0-9.]+ \\|")
  message(FATAL_ERROR "compare.md lacks the LoRA row with 4480 trainable parameters:\n${md}")
endif()
if(NOT md MATCHES "Machine: .*load average")
  message(FATAL_ERROR "compare.md does not say on which machine and at which load it ran:\n${md}")
endif()
# --report-only rewrites the table from the results already there, training nothing.
file(REMOVE ${OUT}/result/compare.md)
execute_process(COMMAND ${PEFT} compare ${OUT}/cmp.yaml --report-only RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
file(READ ${OUT}/result/compare.md md2)
if(NOT rc EQUAL 0 OR NOT md2 MATCHES "\\| lora \\| 4480 \\|" OR out MATCHES "peft train")
  message(FATAL_ERROR "peft compare --report-only failed (${rc}): ${out}${err}\n${md2}")
endif()
if(NOT EXISTS ${OUT}/result/compare.png OR NOT EXISTS ${OUT}/result/lora/results.json)
  message(FATAL_ERROR "peft compare did not write compare.png / lora/results.json")
endif()
# A method that cannot run: the command fails (exit 1) and the table names the reason.
execute_process(COMMAND ${PEFT} compare ${OUT}/cmp.yaml --methods lora --out ${OUT}/bad train_file=${OUT}/none.csv
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
file(READ ${OUT}/bad/compare.md md)
if(NOT rc EQUAL 1 OR NOT md MATCHES "failed: .*none.csv")
  message(FATAL_ERROR "a failing method should fail peft compare and be named in the table, got ${rc}:\n${md}\n${err}")
endif()
# Usage errors exit 2.
execute_process(COMMAND ${PEFT} compare ${OUT}/cmp.yaml --methods lora,loha RESULT_VARIABLE rc OUTPUT_QUIET ERROR_VARIABLE err)
if(NOT rc EQUAL 2 OR NOT err MATCHES "unknown method 'loha'")
  message(FATAL_ERROR "an unknown method should exit 2 naming it, got ${rc}: ${err}")
endif()
