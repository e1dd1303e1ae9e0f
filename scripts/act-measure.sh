#!/bin/bash
# Measures `hearth act` (release build): the share of decisions that are the model's own action, the overshoot
# (elapsed_ms - deadline_ms) at p50/p99/max, and grammar_ms at p99, over N generated table-top world states per
# deadline. Not a test: it needs a quiet machine to mean much (it prints the load average before each run).
#
#   scripts/act-measure.sh MODEL [N] [DEADLINE_MS...]     (default: 300 states; 100 500 1000 2000 4000 ms)
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:?usage: scripts/act-measure.sh MODEL [N] [DEADLINE_MS...]}
n=${2:-300}
shift $(( $# < 2 ? $# : 2 ))
deadlines=${*:-100 500 1000 2000 4000}
[ -n "${NO_BUILD:-}" ] || cargo build --release -q -p hearth -p hearth-act --examples --bins
worlds=$(mktemp)
out=$(mktemp)
trap 'rm -f "$worlds" "$out"' EXIT
target/release/examples/worlds table "$n" 1 > "$worlds"
echo "| model | deadline ms | steps | model's action | p50 / p99 / max overshoot ms | p99 grammar ms | mean tokens (model) | load avg |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
for d in $deadlines; do
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  target/release/hearth act "$model" --actions examples/act/pick-place.json --deadline-ms "$d" \
    < "$worlds" > "$out" 2>/dev/null
  python3 - "$model" "$d" "$load" "$out" <<'PY'
import json, sys
model, d, load, path = sys.argv[1:]
ds = [json.loads(l) for l in open(path)]
def pct(xs, p):
    xs = sorted(xs)
    return xs[max(0, -(-len(xs) * p // 100) - 1)] if xs else float("nan")
over = [x["elapsed_ms"] - x["deadline_ms"] for x in ds]
g = [x["grammar_ms"] for x in ds]
m = [x for x in ds if x["source"] == "model"]
toks = sum(x["tokens"] for x in m) / max(1, len(m))
print(f"| {model} | {d} | {len(ds)} | {len(m)} ({100*len(m)/len(ds):.0f}%) | "
      f"{pct(over,50):.2f} / {pct(over,99):.2f} / {max(over):.2f} | {pct(g,99):.2f} | {toks:.1f} | {load} |")
PY
done
