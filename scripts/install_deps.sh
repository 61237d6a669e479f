#!/usr/bin/env bash
# Installs what peft.cpp builds against on Debian 12. Idempotent: installs only what is missing.
#  - Debian packages; OpenBLAS is left selected as libblas.so.3 (Debian's LibTorch is ~15x slower
#    on the reference BLAS).
#  - With PEFT_LIBTORCH=wheel (the Makefile's choice on Intel x86_64): LibTorch 2.x, the CPU libraries of PyPI's
#    torch wheel (libtorch_cpu, libc10, the bundled libgomp, the headers) plus the two small CUDA
#    runtime libraries libtorch_cpu.so names (libcudart, libcupti; never called on a CPU),
#    unpacked to $PEFT_LIBTORCH_CACHE (default ~/.cache/peft). Checked against PyPI's sha256.
#    PEFT_LIBTORCH=debian (this script's default) uses Debian's libtorch-dev 1.13 alone.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config
  libtorch-dev libopenblas0-pthread libgloo-dev
  nlohmann-json3-dev libsentencepiece-dev libcli11-dev libyaml-cpp-dev libhwy-dev
  libutf8proc-dev libpcre2-dev
  libcairo2-dev fonts-dejavu-core
  googletest libgtest-dev libbenchmark-dev
  clang libclang-rt-14-dev
  curl ca-certificates unzip
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "install_deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

arch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)
for lib in libblas.so.3 liblapack.so.3; do
  alt="${lib}-${arch}"
  want="/usr/lib/${arch}/openblas-pthread/${lib}"
  if [ -e "$want" ] && [ "$(readlink -f "/etc/alternatives/${alt}" 2>/dev/null)" != "$(readlink -f "$want")" ]; then
    echo "install_deps: selecting OpenBLAS for ${lib}"
    $SUDO update-alternatives --set "$alt" "$want"
  fi
done

# ------------------------------------------------------------------ LibTorch 2.x from PyPI
PEFT_LIBTORCH=${PEFT_LIBTORCH:-debian}
TORCH_VERSION=${PEFT_TORCH_VERSION:-2.15.0}
CUDA_RT_VERSION=${PEFT_CUDA_RT_VERSION:-13.2.86}   # the nvidia-cuda-runtime/-cupti torch 2.15 names
CACHE=${PEFT_LIBTORCH_CACHE:-$HOME/.cache/peft}
DEST="$CACHE/libtorch-$TORCH_VERSION"
case "$PEFT_LIBTORCH" in
  debian) exit 0 ;;
  wheel) ;;
  *) echo "install_deps: PEFT_LIBTORCH=$PEFT_LIBTORCH: expected 'wheel' or 'debian'" >&2; exit 2 ;;
esac
if [ -f "$DEST/.complete" ]; then exit 0; fi

# The URL and sha256 of the newest-Python manylinux x86_64 wheel of PACKAGE==VERSION on PyPI's
# simple index (any Python tag carries the same native libraries).
wheel_url() {
  local package=$1 version=$2 file=${1//-/_}
  curl -fsSL "https://pypi.org/simple/$package/" |
    grep -o "href=\"[^\"]*/${file}-${version}-[^\"]*x86_64[^\"]*\.whl#sha256=[0-9a-f]*\"" |
    sed -e 's/^href="//' -e 's/"$//' | sort -V | tail -n 1
}
fetch_wheel() {  # package version -> path of the verified wheel in $TMP
  local url sum out
  url=$(wheel_url "$1" "$2")
  if [ -z "$url" ]; then
    echo "install_deps: no x86_64 wheel of $1==$2 on https://pypi.org/simple/$1/" >&2; exit 1
  fi
  sum=${url##*#sha256=}; url=${url%%#*}
  out="$TMP/$(basename "$url")"
  echo "install_deps: downloading $(basename "$url")" >&2
  curl -fsSL --retry 3 -o "$out" "$url"
  if ! echo "$sum  $out" | sha256sum -c --quiet - >/dev/null; then
    echo "install_deps: $(basename "$url"): sha256 differs from PyPI's $sum" >&2; exit 1
  fi
  echo "$out"
}

if [ "$(uname -m)" != x86_64 ]; then
  echo "install_deps: PEFT_LIBTORCH=wheel is set up for x86_64 only; use PEFT_LIBTORCH=debian" >&2; exit 2
fi
mkdir -p "$CACHE"
TMP=$(mktemp -d "$CACHE/.download.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
torch_whl=$(fetch_wheel torch "$TORCH_VERSION")
rt_whl=$(fetch_wheel nvidia-cuda-runtime "$CUDA_RT_VERSION")
cupti_whl=$(fetch_wheel nvidia-cuda-cupti "$CUDA_RT_VERSION")
stage="$TMP/libtorch"
mkdir -p "$stage/lib"
unzip -q "$torch_whl" 'torch/include/*' 'torch/lib/libtorch_cpu.so' 'torch/lib/libc10.so' \
  'torch/lib/libgomp.so*' -d "$TMP/w"
mv "$TMP/w/torch/include" "$stage/include"
mv "$TMP/w/torch/lib/"* "$stage/lib/"
# libtorch_cpu.so's RPATH includes $ORIGIN: the CUDA runtime libraries go beside it.
unzip -q -j "$rt_whl" '*/libcudart.so.*' -d "$stage/lib"
unzip -q -j "$cupti_whl" '*/libcupti.so.*' -d "$stage/lib"
rm -f "$stage/lib/"*.a
echo "$TORCH_VERSION" > "$stage/VERSION"
touch "$stage/.complete"
rm -rf "$DEST"
mv "$stage" "$DEST"
echo "install_deps: LibTorch $TORCH_VERSION in $DEST"
