#!/usr/bin/env bash
# Runs libFuzzer targets one after another (one process each) and prints, per target, the
# executions, the seconds and the rate; exits non-zero when any target found a crash, a leak,
# undefined behaviour, a timeout or an out-of-memory.
#
#   scripts/fuzz.sh smoke BUILD_DIR SECONDS NAME...   fresh copy of each seed corpus, then fuzz
#   scripts/fuzz.sh long  BUILD_DIR SECONDS NAME...   grow BUILD_DIR/corpus/<name> (kept between runs)
#   FUZZ_RUNS=1000000 scripts/fuzz.sh long ...        stop each target after that many executions
#                                                     (SECONDS still caps the time; 0 = no cap)
#
# NAME is a target of tests/fuzz/CMakeLists.txt: BUILD_DIR/tests/fuzz/fuzz_<NAME>, seeded from
# tests/fuzz/corpus_<NAME>/, with tests/fuzz/<NAME>.dict as its dictionary and the libFuzzer flags
# of tests/fuzz/<NAME>.options (one line, e.g. -max_len=65536 -rss_limit_mb=2048) when present.
# A name whose binary was not built (no fuzz_<NAME>.cpp) is skipped. Crashing inputs are written
# to BUILD_DIR/artifacts/.
set -uo pipefail
cd "$(dirname "$0")/.."

mode=${1:?usage: scripts/fuzz.sh smoke|long BUILD_DIR SECONDS NAME...}
build=${2:?build dir}
seconds=${3:?seconds}
shift 3
case $mode in smoke|long) ;; *) echo "fuzz.sh: mode '$mode' is not smoke or long" >&2; exit 2 ;; esac

mkdir -p "$build/artifacts" "$build/logs"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
failed=()
printf '%-22s %12s %9s %10s %8s  %s\n' target execs seconds exec/s corpus result
for name in "$@"; do
  bin=$build/tests/fuzz/fuzz_$name
  if [ ! -x "$bin" ]; then
    printf '%-22s %s\n' "fuzz_$name" "skipped (no $bin: tests/fuzz/fuzz_$name.cpp missing or not built)"
    continue
  fi
  seeds=tests/fuzz/corpus_$name
  if [ "$mode" = smoke ]; then
    corpus=$build/smoke/$name
    rm -rf "$corpus"
  else
    corpus=$build/corpus/$name
  fi
  mkdir -p "$corpus"
  [ -d "$seeds" ] && cp -n "$seeds"/* "$corpus"/ 2>/dev/null
  flags=(-timeout=10 -rss_limit_mb=2048 -print_final_stats=1
         -artifact_prefix="$build/artifacts/fuzz_$name-")
  [ "$seconds" != 0 ] && flags+=(-max_total_time="$seconds")
  [ -n "${FUZZ_RUNS:-}" ] && flags+=(-runs="$FUZZ_RUNS")
  [ "$mode" = smoke ] && flags+=(-seed=1)
  [ -f "tests/fuzz/$name.dict" ] && flags+=(-dict="tests/fuzz/$name.dict")
  # shellcheck disable=SC2207
  [ -f "tests/fuzz/$name.options" ] && flags+=($(cat "tests/fuzz/$name.options"))
  log=$build/logs/fuzz_$name.log
  start=$(date +%s.%N)
  "$bin" "${flags[@]}" "$corpus" >"$log" 2>&1
  rc=$?
  end=$(date +%s.%N)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
  rate=$(awk -v n="${execs:-0}" -v s="$secs" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }')
  files=$(find "$corpus" -type f | wc -l)
  if [ $rc -eq 0 ]; then
    result=ok
  else
    result="FAILED (exit $rc, log $log)"
    failed+=("fuzz_$name")
  fi
  printf '%-22s %12s %9s %10s %8s  %s\n' "fuzz_$name" "${execs:-?}" "$secs" "$rate" "$files" "$result"
  if [ $rc -ne 0 ]; then
    grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error|artifact_prefix|Test unit written|==[0-9]+== ERROR: libFuzzer)' "$log" |
      head -n 8 | awk '{ print "    " $0 }'
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: ${failed[*]} failed (crashing inputs in $build/artifacts/)" >&2
  exit 1
fi
