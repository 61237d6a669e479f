# Installs the libraries, public headers and a package config so downstream projects can
#   find_package(peft REQUIRED)   target_link_libraries(app PRIVATE peft::peft)
include(CMakePackageConfigHelpers)
set(PEFT_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/peft)
set(_targets peft_core)
if(PEFT_WITH_TORCH)
  list(APPEND _targets peft)
  if(PEFT_BUILD_CLI)
    install(TARGETS peft_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  endif()
endif()
install(TARGETS ${_targets} EXPORT peftTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
# The SentencePiece module peft_core dlopens (not part of the export set; see CMakeLists.txt).
if(TARGET peft_spm)
  install(TARGETS peft_spm LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}/peft)
endif()
install(DIRECTORY include/peft DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT peftTargets NAMESPACE peft:: DESTINATION ${PEFT_CMAKE_DIR})
set(PEFT_INSTALLED_WITH_TORCH ${PEFT_WITH_TORCH})
if(PEFT_WITH_TORCH AND PEFT_LIBTORCH STREQUAL "wheel")
  set(PEFT_INSTALLED_LIBTORCH_WHEEL "${PEFT_LIBTORCH_DIR}")
  install(FILES cmake/LibTorchWheel.cmake DESTINATION ${PEFT_CMAKE_DIR})
else()
  set(PEFT_INSTALLED_LIBTORCH_WHEEL "")
endif()
configure_package_config_file(cmake/peftConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/peftConfig.cmake INSTALL_DESTINATION ${PEFT_CMAKE_DIR})
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/peftConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/peftConfig.cmake
  ${CMAKE_CURRENT_BINARY_DIR}/peftConfigVersion.cmake DESTINATION ${PEFT_CMAKE_DIR})
