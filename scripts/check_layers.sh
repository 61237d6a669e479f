#!/usr/bin/env bash
# Fails when a file of the library includes a header from a layer above its own.
#
#   scripts/check_layers.sh [ROOT]      (ROOT: the source tree, default: this script's parent)
#
# Reads every `#include "..."` in ROOT/include/peft/** and ROOT/src/**: "peft/..." names a public
# header; any other quoted name is resolved next to the including file, then under ROOT/src/ (the
# library's private include path). Each file belongs to the layer of its top folder
# (include/peft/<layer>/..., src/<layer>/...). A file may include its own layer and the layers
# before it in LAYERS; anything else is reported as `file:line: ...` naming both layers.
# Run by ctest as `layers`. docs/architecture.md shows the same order (checked below, when ROOT
# has that file); cli/ and examples/ sit above every layer and are not checked.
set -euo pipefail

# The one layer table, lowest first. `umbrella` is include/peft/peft.h alone, which the library
# never includes.
LAYERS="core config io quant models tuners export distributed train umbrella"

# Files directly under include/peft/ and the layer they belong to.
TOP_FILES="peft_model.h=tuners peft.h=umbrella"

# Includes allowed although they point up, as "including-file:included-file" (paths from ROOT,
# space separated), each with a comment giving the reason it is still there, e.g.
#   EXCEPTIONS="src/tuners/foo.cpp:include/peft/train/trainer.h"  # foo still logs through the trainer
# Remove an entry when its include goes away: a stale entry fails the check, so the list only shrinks.
EXCEPTIONS=""

root=${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
cd "$root"
[ -d include/peft ] && [ -d src ] || { echo "check_layers: $root has no include/peft and src" >&2; exit 2; }

find include/peft src -type f \( -name '*.h' -o -name '*.hpp' -o -name '*.cpp' -o -name '*.inc' \) | LC_ALL=C sort |
  xargs grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' /dev/null |
  awk -v layers="$LAYERS" -v top_files="$TOP_FILES" -v exceptions="$EXCEPTIONS" '
function normalize(p,    parts, n, i, out, k) {
  n = split(p, parts, "/"); k = 0
  for (i = 1; i <= n; i++) {
    if (parts[i] == "" || parts[i] == ".") continue
    if (parts[i] == ".." && k > 0 && out[k] != "..") { k--; continue }
    out[++k] = parts[i]
  }
  p = ""
  for (i = 1; i <= k; i++) p = p (i > 1 ? "/" : "") out[i]
  return p
}
function exists(p,    line, r) {
  if (p in seen) return seen[p]
  r = (getline line < p) >= 0
  close(p)
  seen[p] = r
  return r
}
# The layer of a path under include/peft/ or src/; "" when it has none.
function layer_of(p,    parts, n) {
  n = split(p, parts, "/")
  if (parts[1] == "include" && parts[2] == "peft") {
    if (n == 3) return (parts[3] in top) ? top[parts[3]] : ""
    return parts[3]
  }
  if (parts[1] == "src" && n >= 3) return parts[2]
  return ""
}
BEGIN {
  n = split(layers, names, " ")
  for (i = 1; i <= n; i++) rank[names[i]] = i
  m = split(top_files, tf, " ")
  for (i = 1; i <= m; i++) { split(tf[i], kv, "="); top[kv[1]] = kv[2] }
  m = split(exceptions, ex, " ")
  for (i = 1; i <= m; i++) if (ex[i] != "") allowed[ex[i]] = 0
  bad = 0
}
{
  # file:line:text
  file = $0; sub(/:.*/, "", file)
  rest = substr($0, length(file) + 2)
  line = rest; sub(/:.*/, "", line)
  name = rest; sub(/^[^"]*"/, "", name); sub(/".*/, "", name)
  if (name ~ /^peft\//) target = "include/" name
  else {
    dir = file; sub(/\/[^\/]*$/, "", dir)
    target = normalize(dir "/" name)
    if (!exists(target)) target = normalize("src/" name)
    if (!exists(target)) {
      printf "%s:%s: #include \"%s\" is neither next to the file nor under src/\n", file, line, name
      bad++; next
    }
  }
  from = layer_of(file); to = layer_of(target)
  if (from == "" || !(from in rank)) {
    printf "%s:%s: the file is in no layer (add its folder to LAYERS, or the file to TOP_FILES, in scripts/check_layers.sh)\n", file, line
    bad++; next
  }
  if (to == "" || !(to in rank)) {
    printf "%s:%s: #include \"%s\": %s is in no layer\n", file, line, name, target
    bad++; next
  }
  if (rank[to] <= rank[from]) next
  key = file ":" target
  if (key in allowed) { allowed[key]++; next }
  printf "%s:%s: #include \"%s\": layer %s includes layer %s, which is above it\n", file, line, name, from, to
  bad++
}
END {
  for (k in allowed)
    if (allowed[k] == 0) { printf "stale exception %s: that include is gone; remove it from EXCEPTIONS\n", k; bad++ }
  if (bad) {
    printf "check_layers: %d problem(s); layers, lowest first: %s\n", bad, layers
    exit 1
  }
}'
# docs/architecture.md must show the same order.
if [ -f docs/architecture.md ]; then
  order=""
  for l in $LAYERS; do [ "$l" = umbrella ] || order="$order${order:+ ← }\`$l\`"; done
  order="$order ← \`cli\` / \`examples\`"
  grep -qF -- "$order" docs/architecture.md || {
    echo "check_layers: docs/architecture.md does not show the layer order of this script:"
    echo "  $order"
    exit 1
  }
fi
echo "check_layers: every include points to its own layer or one below ($LAYERS)"
