# CLI test for multi-task P-Tuning v2 on the bundled stories260K: three E2E classification tasks
# (labels taken from the meaning representation with label_regex, a 10% validation split) trained
# with one shared prefix; the per-task adapters; continuing on one task from its adapter (its first
# evaluation equals the multi-task run's figure for that task); the configuration errors; and token
# classification (NER + chunking) on the CoNLL sample.
file(REMOVE_RECURSE ${OUT})
include(${CMAKE_CURRENT_LIST_DIR}/bundled_model.cmake)
peft_convert_bundled_model(${OUT}/model)
set(common model=${OUT}/model train_file=${SRC}/data/e2e/train.csv max_train_samples=200 max_eval_samples=100
    per_device_train_batch_size=8 logging_steps=1 eval_steps=0 save_steps=0 num_virtual_tokens=4)
execute_process(COMMAND ${PEFT} train ${SRC}/examples/configs/e2e_multitask_p_tuning_v2.yaml ${common}
                        max_steps=3 output_dir=${OUT}/multi
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT out MATCHES "task family_friendly: [0-9]+ training examples, labels \\[no, yes\\]"
   OR NOT out MATCHES "task area: [0-9]+ training examples, labels \\[city centre, riverside\\]"
   OR NOT out MATCHES "task eat_type: [0-9]+ training examples, labels \\[coffee shop, pub, restaurant\\]"
   OR NOT out MATCHES "trained 3 steps")
  message(FATAL_ERROR "multi-task peft train failed (${rc}):\n${out}${err}")
endif()
string(REGEX MATCH "after:  eval accuracy [0-9.e+-]+ \\(family_friendly ([0-9.e+-]+), area [0-9.e+-]+, eat_type [0-9.e+-]+\\)" m "${out}")
set(ff "${CMAKE_MATCH_1}")
if(ff STREQUAL "")
  message(FATAL_ERROR "no per-task accuracy in:\n${out}")
endif()
foreach(t family_friendly area eat_type)
  foreach(f adapter_config.json adapter_model.safetensors task.json)
    if(NOT EXISTS ${OUT}/multi/tasks/${t}/${f})
      message(FATAL_ERROR "multi-task run did not write tasks/${t}/${f}")
    endif()
  endforeach()
endforeach()
# Continue on one task from its adapter: the first evaluation is the multi-task model's on that task.
execute_process(COMMAND ${PEFT} train ${SRC}/examples/configs/e2e_family_friendly_p_tuning_v2.yaml ${common}
                        max_steps=2 adapter=${OUT}/multi/tasks/family_friendly output_dir=${OUT}/single
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT out MATCHES "starting from adapter" OR NOT out MATCHES "before: eval accuracy ${ff}\n"
   OR NOT out MATCHES "trained 2 steps")
  message(FATAL_ERROR "continuing on family_friendly should start at accuracy ${ff} (${rc}):\n${out}${err}")
endif()
# A fresh classification head is initialised from the seed: two runs print the same losses.
foreach(i 1 2)
  execute_process(COMMAND ${PEFT} train ${SRC}/examples/configs/e2e_family_friendly_p_tuning_v2.yaml ${common}
                          max_steps=1 output_dir=${OUT}/seeded${i}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out${i} ERROR_VARIABLE err)
  string(REGEX MATCH "before: eval loss [0-9.e+-]+.*after:  eval loss [0-9.e+-]+" losses${i} "${out${i}}")
  if(NOT rc EQUAL 0 OR losses${i} STREQUAL "")
    message(FATAL_ERROR "seeded run ${i} failed (${rc}):\n${out${i}}${err}")
  endif()
endforeach()
if(NOT losses1 STREQUAL losses2)
  message(FATAL_ERROR "two runs with the same seed differ:\n${losses1}\n---\n${losses2}")
endif()
foreach(bad "adapter=${OUT}/multi/tasks/eat_type;was trained for labels \\[coffee shop, pub, restaurant\\], but the data has \\[no, yes\\]"
            "label_regex=nothing\\[(x)\\];label_regex 'nothing")
  list(POP_BACK bad want)
  execute_process(COMMAND ${PEFT} train ${SRC}/examples/configs/e2e_family_friendly_p_tuning_v2.yaml ${common}
                          max_steps=1 output_dir=${OUT}/bad ${bad}
                  RESULT_VARIABLE rc OUTPUT_QUIET ERROR_VARIABLE err)
  if(rc EQUAL 0 OR NOT err MATCHES "${want}")
    message(FATAL_ERROR "'${bad}' should fail with '${want}', got ${rc}: ${err}")
  endif()
endforeach()
foreach(bad "task=causal_lm;needs task: seq_cls"
            "tasks=[{name: a}, {name: a}];the name 'a' is used twice"
            "tasks=[{name: a, learning_rate: 1}];unknown key 'learning_rate'")
  list(POP_BACK bad want)
  execute_process(COMMAND ${PEFT} train ${SRC}/examples/configs/e2e_multitask_p_tuning_v2.yaml ${common}
                          max_steps=1 output_dir=${OUT}/bad ${bad}
                  RESULT_VARIABLE rc OUTPUT_QUIET ERROR_VARIABLE err)
  if(NOT rc EQUAL 2 OR NOT err MATCHES "${want}")
    message(FATAL_ERROR "'${bad}' should exit 2 with '${want}', got ${rc}: ${err}")
  endif()
endforeach()
# Token classification: NER (the last CoNLL column) and chunking (column 2) with one shared prefix.
execute_process(COMMAND ${PEFT} train ${SRC}/examples/configs/conll_multitask_p_tuning_v2.yaml model=${OUT}/model
                        train_file=${SRC}/tests/fixtures/data/ner.conll eval_file=${SRC}/tests/fixtures/data/ner.conll
                        "tasks=[{name: ner}, {name: chunk, tag_column: 2}]" max_train_samples=0 max_eval_samples=0
                        max_steps=2 per_device_train_batch_size=2 logging_steps=1 eval_steps=0 save_steps=0
                        num_virtual_tokens=4 output_dir=${OUT}/tok
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT out MATCHES "task ner: [0-9]+ training examples, labels \\[B-LOC, B-MISC, B-ORG"
   OR NOT out MATCHES "task chunk: [0-9]+ training examples, labels \\[I-NP, I-VP, O\\]"
   OR NOT out MATCHES "after:  eval accuracy [0-9.e+-]+ \\(ner [0-9.e+-]+, chunk [0-9.e+-]+\\)"
   OR NOT EXISTS ${OUT}/tok/tasks/chunk/adapter_model.safetensors)
  message(FATAL_ERROR "multi-task token classification failed (${rc}):\n${out}${err}")
endif()
