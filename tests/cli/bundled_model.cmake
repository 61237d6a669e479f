# Shared by the CLI tests: converts the bundled stories260K (llama2.c) into an HF folder at DIR.
function(peft_convert_bundled_model dir)
  execute_process(COMMAND ${PEFT} convert ${SRC}/models/stories260K/stories260K.bin ${dir}
                          --tokenizer ${SRC}/models/stories260K/tok512.bin
                  RESULT_VARIABLE rc OUTPUT_QUIET ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "peft convert failed (${rc}): ${err}")
  endif()
endfunction()
