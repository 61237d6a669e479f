#!/usr/bin/env bash
# Installs the Debian 12 packages peft.cpp builds against. Idempotent: installs only what is
# missing, and leaves OpenBLAS selected as libblas.so.3 (LibTorch is ~15x slower on the
# reference BLAS).
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config
  libtorch-dev libopenblas0-pthread libgloo-dev
  nlohmann-json3-dev libsentencepiece-dev libcli11-dev libyaml-cpp-dev libhwy-dev
  libutf8proc-dev libpcre2-dev
  zlib1g-dev
  googletest libgtest-dev libbenchmark-dev
  clang libclang-rt-14-dev
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
