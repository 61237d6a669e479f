#!/usr/bin/env bash
# Builds the llama.cpp tools peft.cpp's GGUF work is checked against, plus dump_logits.
# Developer tooling only: neither the project build nor CI needs it. Idempotent and cached.
#
#   tools/llamacpp/build.sh            # prints the bin folder on the last line
#
# Environment:
#   LLAMACPP_BUILD   build folder; reused as is when it already holds the binaries (default:
#                    /work/llamacpp-build if it has them, else $CACHE/build)
#   LLAMACPP_SRC     llama.cpp source tree (default: vendor/llama.cpp of the llama-cpp-python sdist,
#                    downloaded with pip into $CACHE)
#   PEFT_LLAMACPP_CACHE  cache folder (default ~/.cache/peft-llamacpp); dump_logits goes to $CACHE/bin
#   LLAMACPP_PY_VERSION  llama-cpp-python sdist version (default 0.3.36)
#   LLAMACPP_SDIST   an already downloaded sdist .tar.gz (skips pip download)
#   PEFT_PY          Python whose pip downloads the sdist (default /root/peft-venv/bin/python, else python3)
#   JOBS             parallel build jobs (default 2)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VERSION="${LLAMACPP_PY_VERSION:-0.3.36}"
CACHE="${PEFT_LLAMACPP_CACHE:-$HOME/.cache/peft-llamacpp}"
JOBS="${JOBS:-2}"
TOOLS=(llama-quantize llama-simple llama-completion llama-tokenize llama-export-lora llama-eval-callback
       llama-perplexity)
LIBS=(libllama.so libggml.so libggml-base.so libggml-cpu.so)

have_all() {  # $1 = build folder
  local b="$1/bin" t
  for t in "${TOOLS[@]}"; do [[ -x "$b/$t" ]] || return 1; done
  for t in "${LIBS[@]}"; do [[ -e "$b/$t" ]] || return 1; done
}

if [[ -z "${LLAMACPP_BUILD:-}" ]]; then
  if have_all /work/llamacpp-build; then LLAMACPP_BUILD=/work/llamacpp-build; else LLAMACPP_BUILD="$CACHE/build"; fi
fi

find_src() {
  if [[ -n "${LLAMACPP_SRC:-}" ]]; then echo "$LLAMACPP_SRC"; return; fi
  # The tree the build folder was configured from, if any.
  local s
  s="$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$LLAMACPP_BUILD/CMakeCache.txt" 2>/dev/null || true)"
  if [[ -n "$s" && -f "$s/include/llama.h" ]]; then echo "$s"; return; fi
  s="$CACHE/llama_cpp_python-$VERSION/vendor/llama.cpp"
  if [[ ! -f "$s/include/llama.h" ]]; then
    local tgz="${LLAMACPP_SDIST:-$CACHE/llama_cpp_python-$VERSION.tar.gz}"
    mkdir -p "$CACHE"
    if [[ ! -f "$tgz" ]]; then
      local py="${PEFT_PY:-/root/peft-venv/bin/python}"
      [[ -x "$py" ]] || py=python3
      echo "downloading the llama-cpp-python $VERSION sdist into $CACHE" >&2
      "$py" -m pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$CACHE" >&2
    fi
    echo "unpacking $tgz" >&2
    tar -xzf "$tgz" -C "$CACHE" "llama_cpp_python-$VERSION/vendor/llama.cpp"
  fi
  echo "$s"
}

SRC="$(find_src)"

if have_all "$LLAMACPP_BUILD"; then
  echo "reusing llama.cpp build in $LLAMACPP_BUILD" >&2
else
  echo "building llama.cpp ($SRC) into $LLAMACPP_BUILD" >&2
  launcher=()
  command -v ccache >/dev/null && launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  cmake -S "$SRC" -B "$LLAMACPP_BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
    -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_SERVER=OFF "${launcher[@]}" >&2
  cmake --build "$LLAMACPP_BUILD" --target llama "${TOOLS[@]}" -j "$JOBS" >&2
fi

BIN="$LLAMACPP_BUILD/bin"
OUT_BIN="$CACHE/bin"
mkdir -p "$OUT_BIN"
DUMP="$OUT_BIN/dump_logits"
if [[ ! -x "$DUMP" || "$HERE/dump_logits.cpp" -nt "$DUMP" || "$BIN/libllama.so" -nt "$DUMP" ]]; then
  echo "compiling $DUMP" >&2
  "${CXX:-c++}" -std=c++17 -O2 -Wall -Wextra -I"$SRC/include" -I"$SRC/ggml/include" "$HERE/dump_logits.cpp" \
    -L"$BIN" -lllama -lggml -lggml-base -Wl,-rpath,"$BIN" -o "$DUMP.tmp"
  mv "$DUMP.tmp" "$DUMP"
fi
# Everything the other scripts need, for `eval "$(build.sh --env)"`.
if [[ "${1:-}" == "--env" ]]; then
  echo "LLAMACPP_BIN=$BIN; DUMP_LOGITS=$DUMP; LLAMACPP_SRC=$SRC"
else
  echo "llama.cpp tools: $BIN; dump_logits: $DUMP" >&2
  echo "$BIN"
fi
