# LibTorch from PyPI's torch wheel, as scripts/install_deps.sh unpacks it (PEFT_LIBTORCH=wheel):
# <dir>/lib (libtorch_cpu.so, libc10.so, the bundled libgomp and the CUDA runtime libraries
# libtorch_cpu.so names) and <dir>/include. The wheel's own TorchConfig.cmake is not used: it
# requires a CUDA toolkit, which a CPU build never needs.
#
# peft_import_libtorch_wheel(<dir>) defines the imported targets torch_cpu and c10 (as the wheel's
# Caffe2Targets.cmake does, CPU parts only) and sets TORCH_LIBRARIES, TORCH_INCLUDE_DIRS and
# Torch_VERSION in the caller's scope.
function(peft_import_libtorch_wheel dir)
  foreach(f lib/libtorch_cpu.so lib/libc10.so include/torch/csrc/api/include/torch/torch.h VERSION)
    if(NOT EXISTS "${dir}/${f}")
      message(FATAL_ERROR "PEFT_LIBTORCH=wheel: ${dir}/${f} is missing; run scripts/install_deps.sh "
                          "with PEFT_LIBTORCH=wheel (make deps does) or set PEFT_LIBTORCH_DIR")
    endif()
  endforeach()
  file(STRINGS "${dir}/VERSION" _version LIMIT_COUNT 1)
  set(_includes "${dir}/include;${dir}/include/torch/csrc/api/include")
  if(NOT TARGET c10)
    add_library(c10 SHARED IMPORTED GLOBAL)
    set_target_properties(c10 PROPERTIES
      IMPORTED_LOCATION "${dir}/lib/libc10.so"
      INTERFACE_INCLUDE_DIRECTORIES "${_includes}")
  endif()
  if(NOT TARGET torch_cpu)
    add_library(torch_cpu SHARED IMPORTED GLOBAL)
    set_target_properties(torch_cpu PROPERTIES
      IMPORTED_LOCATION "${dir}/lib/libtorch_cpu.so"
      INTERFACE_COMPILE_DEFINITIONS "USE_DISTRIBUTED;USE_C10D_GLOO;USE_RPC;USE_TENSORPIPE"
      INTERFACE_INCLUDE_DIRECTORIES "${_includes}"
      INTERFACE_LINK_LIBRARIES "c10"
      # LibTorch 2.x headers need C++20 (TorchConfig.cmake asks the same); peft's own headers stay C++17.
      INTERFACE_COMPILE_FEATURES cxx_std_20)
  endif()
  set(TORCH_LIBRARIES torch_cpu c10 PARENT_SCOPE)
  set(TORCH_INCLUDE_DIRS "${_includes}" PARENT_SCOPE)
  set(Torch_VERSION "${_version}" PARENT_SCOPE)
  set(TORCH_FOUND TRUE PARENT_SCOPE)
  message(STATUS "peft: LibTorch ${_version} from ${dir}")
endfunction()
