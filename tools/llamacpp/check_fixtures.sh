#!/usr/bin/env bash
# Runs llama.cpp (dump_logits) on every GGUF model fixture and compares its logits with the
# transformers logits stored next to it (tests/fixtures/gguf/models/). Developer tooling only.
#   tools/llamacpp/check_fixtures.sh
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PY="${PEFT_PY:-/root/peft-venv/bin/python}"
M="$ROOT/tests/fixtures/gguf/models"
cmp() { "$PY" "$HERE/compare_logits.py" "$@"; }
for d in tiny_llama tiny_llama_tied tiny_llama_kq; do
  [[ -f "$M/$d/expected.safetensors" ]] || continue
  for f in "$M/$d"/*.gguf; do
    kind="${f##*/${d}_}"; kind="${kind%.gguf}"
    [[ "$kind" == f32 ]] && key=logits || key="logits_$kind"
    cmp -m "$f" --logits "$M/$d/expected.safetensors" --key "$key"
  done
done
if [[ -f "$M/stories260K_f32.gguf" ]]; then
  for i in 0 1 2 3; do
    cmp -m "$M/stories260K_f32.gguf" --logits "$M/stories260K_expected.safetensors" \
      --key "prompt${i}_logits" --ids-key "prompt${i}_ids"
  done
fi
