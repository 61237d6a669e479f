# CLI test for the NLU tasks on the bundled stories260K and data/nlu: sentence-pair classification
# (accuracy + F1), token classification on the CoNLL sample (entity F1), regression (MSE, Pearson,
# Spearman) and multi-label classification (micro/macro F1, subset accuracy), each trained for a
# few steps; then `peft eval` on the trained adapter must print the same metrics as the run's
# final evaluation (results.json), and --output writes one JSON row per example. Also: the
# "newly initialised" note only when the head really is new, and the data errors.
file(REMOVE_RECURSE ${OUT})
include(${CMAKE_CURRENT_LIST_DIR}/bundled_model.cmake)
peft_convert_bundled_model(${OUT}/model)
set(common model=${OUT}/model max_steps=3 logging_steps=1 save_steps=0 eval_steps=0 per_device_train_batch_size=8)

# train CONFIG NAME [overrides...]: trains into ${OUT}/NAME; sets out_NAME, err_NAME.
function(train config name)
  execute_process(COMMAND ${PEFT} train ${SRC}/examples/configs/${config} ${common} output_dir=${OUT}/${name} ${ARGN}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0 OR NOT out MATCHES "trained 3 steps")
    message(FATAL_ERROR "peft train ${config} failed (${rc}):\n${out}${err}")
  endif()
  set(out_${name} "${out}" PARENT_SCOPE)
  set(err_${name} "${err}" PARENT_SCOPE)
endfunction()

# same_metrics CONFIG NAME KEYS [overrides...]: peft eval on ${OUT}/NAME/adapter prints (in its last
# line, as JSON) the values results.json holds for every key; writes ${OUT}/NAME/preds.jsonl.
function(same_metrics config name keys)
  execute_process(COMMAND ${PEFT} eval ${SRC}/examples/configs/${config} ${common} adapter=${OUT}/${name}/adapter
                          --output ${OUT}/${name}/preds.jsonl ${ARGN}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  string(REGEX MATCH "metrics: ([^\n]*)" m "${out}")
  set(got "${CMAKE_MATCH_1}")
  if(NOT rc EQUAL 0 OR got STREQUAL "")
    message(FATAL_ERROR "peft eval ${config} failed (${rc}):\n${out}${err}")
  endif()
  if(err MATCHES "newly initialised")
    message(FATAL_ERROR "peft eval with an adapter that holds the head reports it as newly initialised:\n${err}")
  endif()
  file(READ ${OUT}/${name}/results.json results)
  foreach(k IN LISTS keys eval_loss)
    string(JSON want GET "${results}" metrics ${k})
    string(JSON have GET "${got}" ${k})
    if(NOT want STREQUAL have)
      message(FATAL_ERROR "${name}: peft eval ${k} = ${have}, the run's final evaluation ${k} = ${want}\n${out}")
    endif()
  endforeach()
  set(eval_${name} "${out}" PARENT_SCOPE)
endfunction()

# Sentence pairs (MRPC layout): accuracy and the F1 of label 1.
train(pairs_mrpc_lora.yaml pairs train_file=${SRC}/data/nlu/pairs.tsv)
if(NOT out_pairs MATCHES "after:  eval accuracy [0-9.e+-]+\n" OR NOT out_pairs MATCHES "after:  eval f1 [0-9.e+-]+")
  message(FATAL_ERROR "sentence-pair run without accuracy and f1:\n${out_pairs}")
endif()
if(NOT err_pairs MATCHES "newly initialised \\(not in the checkpoint\\): score.weight")
  message(FATAL_ERROR "a fresh score head should be reported as newly initialised:\n${err_pairs}")
endif()
same_metrics(pairs_mrpc_lora.yaml pairs "accuracy;f1" train_file=${SRC}/data/nlu/pairs.tsv)
# A classification adapter on a causal LM: one line saying what it is and what to do.
execute_process(COMMAND ${PEFT} generate ${OUT}/model -a ${OUT}/pairs/adapter -p "a" -n 2
                RESULT_VARIABLE rc OUTPUT_QUIET ERROR_VARIABLE err)
if(NOT rc EQUAL 1 OR NOT err MATCHES "is a SEQ_CLS adapter .* loaded as a causal LM: use it with the task it was "
   OR NOT err MATCHES "task: seq_cls")
  message(FATAL_ERROR "peft generate with a SEQ_CLS adapter should say what to do (${rc}):\n${err}")
endif()
execute_process(COMMAND ${PEFT} eval ${SRC}/examples/configs/e2e_lora.yaml ${common} adapter=${OUT}/pairs/adapter
                        max_eval_samples=4 RESULT_VARIABLE rc OUTPUT_QUIET ERROR_VARIABLE err)
if(NOT rc EQUAL 1 OR NOT err MATCHES "is a SEQ_CLS adapter")
  message(FATAL_ERROR "peft eval of a SEQ_CLS adapter with a causal_lm config should say what it is (${rc}):\n${err}")
endif()
file(STRINGS ${OUT}/pairs/preds.jsonl rows)
list(LENGTH rows n)
list(GET rows 0 first)
string(JSON gold GET "${first}" gold)
string(JSON p1 GET "${first}" probabilities 1)
if(NOT n EQUAL 6 OR NOT first MATCHES "\"input\":\".* \\|\\|\\| .*\"" OR gold STREQUAL "" OR p1 STREQUAL "")
  message(FATAL_ERROR "preds.jsonl should hold the 6 validation pairs with probabilities (${n}):\n${first}")
endif()

# Token classification (P-Tuning v2 prefix + token classifier) on the CoNLL sample: entity F1.
set(conll train_file=${SRC}/tests/fixtures/data/ner.conll eval_file=${SRC}/tests/fixtures/data/ner.conll
    max_train_samples=0 max_eval_samples=0 num_virtual_tokens=4 per_device_eval_batch_size=4)
train(conll_p_tuning_v2.yaml ner ${conll})
if(NOT out_ner MATCHES "after:  eval f1 [0-9.e+-]+" OR NOT out_ner MATCHES "after:  eval precision")
  message(FATAL_ERROR "token classification run without entity F1:\n${out_ner}")
endif()
same_metrics(conll_p_tuning_v2.yaml ner "accuracy;precision;recall;f1" ${conll})
file(STRINGS ${OUT}/ner/preds.jsonl rows)
list(GET rows 0 first)
string(JSON tags LENGTH "${first}" prediction)
string(JSON scores LENGTH "${first}" scores)
if(tags EQUAL 0 OR NOT tags EQUAL scores)
  message(FATAL_ERROR "token rows need one predicted tag and score per word:\n${first}")
endif()

# Regression (STS-B layout, num_labels 1): MSE, Pearson, Spearman.
train(stsb_regression_lora.yaml sts train_file=${SRC}/data/nlu/sts.tsv)
foreach(k mse pearson spearman)
  if(NOT out_sts MATCHES "after:  eval ${k} [0-9.e+-]+")
    message(FATAL_ERROR "regression run without ${k}:\n${out_sts}")
  endif()
endforeach()
same_metrics(stsb_regression_lora.yaml sts "mse;pearson;spearman" train_file=${SRC}/data/nlu/sts.tsv)
# A label that is not a number names its file and line.
execute_process(COMMAND ${PEFT} train ${SRC}/examples/configs/stsb_regression_lora.yaml ${common}
                        train_file=${SRC}/data/nlu/sts.tsv label_column=sentence2 output_dir=${OUT}/bad
                RESULT_VARIABLE rc OUTPUT_QUIET ERROR_VARIABLE err)
if(rc EQUAL 0 OR NOT err MATCHES "sts.tsv:2: regression label 'A man plays the guitar.' in column 'sentence2' is not a number")
  message(FATAL_ERROR "a non-numeric regression label should fail naming file:line (${rc}): ${err}")
endif()

# Multi-label (a JSON list of names per row): micro/macro F1 and subset accuracy.
train(topics_multi_label_lora.yaml topics train_file=${SRC}/data/nlu/topics.jsonl)
same_metrics(topics_multi_label_lora.yaml topics "micro_f1;macro_f1;subset_accuracy" train_file=${SRC}/data/nlu/topics.jsonl)
file(STRINGS ${OUT}/topics/preds.jsonl rows)
list(GET rows 0 first)
string(JSON p GET "${first}" probabilities sports)
if(p STREQUAL "")
  message(FATAL_ERROR "multi-label rows need a probability per label:\n${first}")
endif()
foreach(bad "problem_type=regresion;'regresion' is not one of regression"
            "num_labels=1;num_labels': 1 means regression")
  list(POP_BACK bad want)
  execute_process(COMMAND ${PEFT} train ${SRC}/examples/configs/topics_multi_label_lora.yaml ${common}
                          output_dir=${OUT}/bad ${bad}
                  RESULT_VARIABLE rc OUTPUT_QUIET ERROR_VARIABLE err)
  if(NOT rc EQUAL 2 OR NOT err MATCHES "${want}")
    message(FATAL_ERROR "'${bad}' should exit 2 with '${want}', got ${rc}: ${err}")
  endif()
endforeach()
