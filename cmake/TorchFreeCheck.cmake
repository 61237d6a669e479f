# peft_torch_free_check(<target> <headers>): an object library with one TU per header, each
# including only that header, compiled without LibTorch's include path. A header that pulls
# in torch (directly or through another header) fails the build: Debian puts ATen/c10 under
# /usr/include, so each TU also errors out when a c10 macro header got included.
function(peft_torch_free_check target headers)
  set(tus)
  foreach(h ${headers})
    file(RELATIVE_PATH rel ${PROJECT_SOURCE_DIR}/include ${h})
    string(MAKE_C_IDENTIFIER ${rel} id)
    set(tu ${CMAKE_CURRENT_BINARY_DIR}/header_check/${id}.cpp)
    file(GENERATE OUTPUT ${tu} CONTENT "#include \"${rel}\"\n#if defined(C10_MACROS_MACROS_H_) || defined(TORCH_API)\n#error \"${rel} is tier 0 and must not include LibTorch headers\"\n#endif\n")
    list(APPEND tus ${tu})
  endforeach()
  add_library(${target} OBJECT ${tus})
  target_include_directories(${target} PRIVATE ${PROJECT_SOURCE_DIR}/include)
  target_link_libraries(${target} PRIVATE nlohmann_json::nlohmann_json)
endfunction()
