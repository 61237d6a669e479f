#!/usr/bin/env bash
# A `peft compare` config run by peft.cpp and by Python PEFT (compare_peft.py), method by method:
# for each method the two sides train at the same time, each on one thread (OMP, OpenBLAS and MKL
# pools of 1) and so on one core of a two-core machine, then both tables are written:
#   <output_dir>/compare.md, compare.png      peft.cpp (peft compare --report-only)
#   <output_dir>-python/compare.md            both sides, row by row
# Tokens per CPU-second is the figure to compare across sides; wall-clock tokens/s assumes one
# free core per side (check the load averages in the tables).
#   tools/reference/compare_side_by_side.sh examples/configs/compare_minilm_sst2.yaml [lora,full] [key=value ...]
set -euo pipefail
cd "$(dirname "$0")/../.."
CONFIG=$1
METHODS=${2:-}
shift $(( $# >= 2 ? 2 : $# ))
PEFT=${PEFT:-build/peft}
PY=${PY:-/root/peft-venv/bin/python}
OUT=$(sed -n 's/^  output_dir: *//p' "$CONFIG" | head -1)
if [ -z "$METHODS" ]; then
  METHODS=$(sed -n 's/^  methods: *\[\(.*\)\]/\1/p' "$CONFIG" | tr -d ' ')
fi
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
for m in ${METHODS//,/ }; do
  echo "[side-by-side] $m ($(date +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg))"
  "$PEFT" compare "$CONFIG" "$@" --methods "$m" > "/tmp/side_by_side_$m.cpp.log" 2>&1 &
  cpp=$!
  "$PY" tools/reference/compare_peft.py "$CONFIG" "$@" --methods "$m" > "/tmp/side_by_side_$m.py.log" 2>&1 &
  py=$!
  wait $cpp || echo "[side-by-side] $m: peft.cpp FAILED (/tmp/side_by_side_$m.cpp.log)"
  wait $py || echo "[side-by-side] $m: Python FAILED (/tmp/side_by_side_$m.py.log)"
done
ALL=$(sed -n 's/^  methods: *\[\(.*\)\]/\1/p' "$CONFIG" | tr -d ' ')
"$PEFT" compare "$CONFIG" --methods "$ALL" --report-only > /dev/null
"$PY" tools/reference/compare_peft.py "$CONFIG" --methods "$ALL" --table-only --ours "$OUT"
