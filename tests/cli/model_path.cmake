# peft info on every kind of model path (recognised by content), and commands that take a model
# refusing a kind they do not read with one line naming it and the fix, exiting non-zero (no signal).
file(REMOVE_RECURSE ${OUT})
file(MAKE_DIRECTORY ${OUT})
set(S ${SRC}/models/stories260K)
set(F ${SRC}/tests/fixtures)

# Runs `peft ARGN`, expects exit code `want_rc` and every regex in the list `wants` on stdout+stderr.
function(expect_peft want_rc wants)
  execute_process(COMMAND ${PEFT} ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc MATCHES "^[0-9]+$")
    message(FATAL_ERROR "peft ${ARGN} died (${rc}):\n${out}${err}")
  endif()
  if(NOT rc EQUAL want_rc)
    message(FATAL_ERROR "peft ${ARGN} exited ${rc}, expected ${want_rc}:\n${out}${err}")
  endif()
  foreach(w IN LISTS wants)
    if(NOT "${out}${err}" MATCHES "${w}")
      message(FATAL_ERROR "peft ${ARGN} output lacks '${w}':\n${out}${err}")
    endif()
  endforeach()
  set(last_err "${err}" PARENT_SCOPE)
endfunction()

# A regex matching `s` literally.
function(literal var s)
  string(REGEX REPLACE "([][+.*?()^$|\\\\])" "\\\\\\1" r "${s}")
  set(${var} "${r}" PARENT_SCOPE)
endfunction()

literal(convert_line "peft convert ${S}/stories260K.bin OUT --tokenizer ${S}/tok512.bin")

# llama2.c checkpoints: the header described, and the exact convert command.
expect_peft(0 "llama2.c, version 0;dim: +64\n;hidden_dim: +172\n;layers: +5\n;query heads: +8\n;kv heads: +4\n;vocab size: +512\n;seq_len: +512\n;classifier: +shared;parameters: +260,032;convert with: +${convert_line}"
            info ${S}/stories260K.bin)
expect_peft(0 "llama2.c, version 1;parameters: +260,032" info ${S}/stories260K_v1.bin)
# Its tokenizer.
expect_peft(0 "llama2.c tokenizer.bin;vocab size: +512\n;max token len: +7\n" info ${S}/tok512.bin)
# The folder holding both: each file and what it is.
expect_peft(0 "holds: +stories260K.bin +a llama2.c checkpoint \\(v0;stories260K_v1.bin +a llama2.c checkpoint \\(v1;tok512.bin +a llama2.c tokenizer.bin;describe one: +peft info ${S}/stories260K.bin"
            info ${S})
# A folder with exactly one checkpoint: it is named and described.
file(MAKE_DIRECTORY ${OUT}/one)
file(COPY ${S}/stories260K.bin ${S}/tok512.bin DESTINATION ${OUT}/one)
expect_peft(0 "model file: +${OUT}/one/stories260K.bin;dim: +64\n;--tokenizer ${OUT}/one/tok512.bin" info ${OUT}/one)
# The kinds peft info described before: HF folder, safetensors file, GGUF model, adapter folder.
expect_peft(0 "LlamaForCausalLM;parameters:" info ${F}/gguf/models/tiny_llama/hf)
expect_peft(0 "shards: +1\n;tensors:" info ${F}/gguf/models/tiny_llama/hf/model.safetensors)
expect_peft(0 "loads as LlamaForCausalLM" info ${F}/gguf/models/tiny_llama/tiny_llama_q8_0.gguf)
expect_peft(0 "peft_type: +LORA" info ${F}/lora/llama_default)
# Anything else: one line of what was expected.
file(WRITE ${OUT}/notes.txt "not a model")
expect_peft(1 "notes.txt is not a file this tool reads;expected a Hugging Face model folder" info ${OUT}/notes.txt)
file(MAKE_DIRECTORY ${OUT}/empty)
expect_peft(1 "empty is a folder with no config.json" info ${OUT}/empty)

# Commands that need a model: the convert hint, exit 2 (a usage error), no signal.
expect_peft(2 "is a llama2.c checkpoint \\(v0, dim 64, 5 layers, vocab 512\\), not a Hugging Face model folder;convert it first: ${convert_line}"
            generate ${S}/stories260K.bin -n 2)
string(FIND "${last_err}" "\n" nl)
string(LENGTH "${last_err}" len)
math(EXPR last "${len} - 1")
if(NOT nl EQUAL last)
  message(FATAL_ERROR "the error should be one line:\n${last_err}")
endif()
expect_peft(2 "convert one first, e.g. ${convert_line}" generate ${S} -n 2)
expect_peft(2 "PEFT adapter folder;not a model" generate ${F}/lora/llama_default -n 2)
set(train_args ${SRC}/examples/configs/e2e_lora.yaml model=${S}/stories260K.bin train_file=${SRC}/data/e2e/train.csv
    eval_file=${SRC}/data/e2e/dev.csv max_steps=1 output_dir=${OUT}/run)
expect_peft(2 "llama2.c checkpoint;convert it first: ${convert_line}" train ${train_args})
expect_peft(2 "llama2.c checkpoint;convert it first: ${convert_line}" eval ${train_args})
expect_peft(2 "llama2.c checkpoint;convert it first: ${convert_line}" merge ${S}/stories260K.bin ${F}/lora/stories260k ${OUT}/merged)
# peft convert: its inputs checked the same way; the tokenizer beside a checkpoint is pointed out.
expect_peft(2 "tok512.bin is a llama2.c tokenizer.bin \\(512 tokens, max token length 7\\), not a GGUF model file or a llama2.c checkpoint"
            convert ${S}/tok512.bin ${OUT}/conv_tok)
expect_peft(2 "stories260K_v1.bin is a llama2.c checkpoint \\(v1, dim 64, 5 layers, vocab 512\\), not a llama2.c tokenizer.bin"
            convert ${S}/stories260K.bin ${OUT}/conv_swapped --tokenizer ${S}/stories260K_v1.bin)
literal(tok_re "${S}/tok512.bin")
expect_peft(0 "note: ${tok_re} beside it is a llama2.c tokenizer; add --tokenizer ${tok_re}" convert ${S}/stories260K.bin ${OUT}/conv)
