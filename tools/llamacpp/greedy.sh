#!/usr/bin/env bash
# llama.cpp greedy generation for a prompt, to set beside `peft generate`. Developer tooling only.
#
#   tools/llamacpp/greedy.sh MODEL.gguf "Once upon a time" [N=32]            # llama-simple's text
#   GREEDY_TOOL=completion tools/llamacpp/greedy.sh MODEL.gguf "..." [N]     # llama-completion --temp 0
#   GREEDY_TOOL=ids tools/llamacpp/greedy.sh MODEL.gguf "..." [N]            # dump_logits --greedy: JSON
#                                       with prompt_ids, generated_ids, text (F32 KV cache, flash attention
#                                       off; CACHE_TYPE=f16 FLASH_ATTN=auto: llama.cpp's defaults, the ids
#                                       of llama-simple's text)
#   LORA=adapter.gguf LORA_SCALE=1.0 ...  applies a GGUF LoRA adapter (completion and ids modes)
#
# All three tokenise with BOS as the model's metadata says, stop at an end-of-generation token and
# pick the argmax at each step. llama-simple and llama-completion use llama.cpp's defaults (F16 KV
# cache, flash attention auto = on for the CPU); near-ties can therefore differ from the ids mode
# unless it is run with CACHE_TYPE=f16 FLASH_ATTN=auto.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
[[ $# -ge 2 ]] || { sed -n '2,15p' "$0" >&2; exit 2; }
MODEL="$1"; PROMPT="$2"; N="${3:-32}"
eval "$(bash "$HERE/build.sh" --env 2>/dev/null | tail -1)"
lora=()
case "${GREEDY_TOOL:-simple}" in
  simple)
    [[ -z "${LORA:-}" ]] || { echo "llama-simple takes no LoRA; use GREEDY_TOOL=completion or ids" >&2; exit 2; }
    "$LLAMACPP_BIN/llama-simple" -m "$MODEL" -n "$N" "$PROMPT" 2>/dev/null ;;
  completion)
    [[ -z "${LORA:-}" ]] || lora=(--lora-scaled "$LORA:${LORA_SCALE:-1.0}")
    "$LLAMACPP_BIN/llama-completion" -m "$MODEL" "${lora[@]}" -p "$PROMPT" -n "$N" --temp 0 --top-k 1 \
      --seed 0 -no-cnv --no-warmup 2>/dev/null ;;
  ids)
    [[ -z "${LORA:-}" ]] || lora=(--lora "$LORA" --lora-scale "${LORA_SCALE:-1.0}")
    "$DUMP_LOGITS" -m "$MODEL" "${lora[@]}" --prompt "$PROMPT" --greedy "$N" \
      --cache-type "${CACHE_TYPE:-f32}" --flash-attn "${FLASH_ATTN:-off}" ;;
  *) echo "GREEDY_TOOL must be simple, completion or ids" >&2; exit 2 ;;
esac
