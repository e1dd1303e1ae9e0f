#!/bin/bash
# hearth against llama.cpp on one machine, in one run: the same llama-bench tests on the same files, each pair run
# back to back (hearth, then llama-bench), printed as a table of ratios with the peak RSS of every run and a
# load-time estimate. Nothing of llama.cpp is in this repository: build it by hand first (docs/bench.md).
#
#   LLAMA_BENCH=/path/to/llama-bench scripts/side-by-side.sh [SET…]
#
# SETs (default: small dense moe):
#   small  SmolLM2-135M (Q4_1) and Gemma-3-270M (Q4_K_M): pp512, tg128, tg128 at depth 3900
#   dense  the SmolLM2-1.7B shape in Q4_K and Q4_0 (scripts/bench-files.py): pp128, tg32
#   moe    Qwen3-30B-A3B's layer shapes, 8 layers, Q4_K (scripts/bench-files.py --layers 8): pp128, tg32
# Environment:
#   ROUNDS (1): run every pair this many times, alternating which engine goes first, and print medians with the
#   range of each ratio (a shared VM's speed moves by a quarter within minutes: one pair proves little),
#   THREADS (2), REPS (3; depth tests run once), HEARTH (target/release/hearth),
#   HEARTH_ISA (e.g. avx2, passed to hearth; build llama.cpp to match: -DGGML_NATIVE=OFF -DGGML_AVX2=ON
#   -DGGML_AVX512=OFF -DGGML_FMA=ON -DGGML_F16C=ON), LLAMA_ARGS (extra llama-bench flags, e.g. "--repack 0").
# Output: a Markdown table on stdout; the raw JSON of every run under $OUT (default /tmp/side-by-side).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${LLAMA_BENCH:?set LLAMA_BENCH to a hand-built llama-bench (docs/bench.md)}"
THREADS=${THREADS:-2}
REPS=${REPS:-3}
HEARTH=${HEARTH:-target/release/hearth}
OUT=${OUT:-/tmp/side-by-side}
MODELS=${MODELS:-$HOME/.cache/hearth/models}
BENCH=${BENCH:-$HOME/.cache/hearth/bench}
mkdir -p "$OUT"
sets=("$@")
[ ${#sets[@]} -gt 0 ] || sets=(small dense moe)

need() { [ -f "$1" ] || { echo "missing $1 ($2)" >&2; exit 1; }; }

# pair NAME FILE ARGS…: one hearth run and one llama-bench run with the same test flags, each under /usr/bin/time,
# hearth first in odd rounds and llama-bench first in even ones.
pair() {
  local name=$1 file=$2
  shift 2
  at="$OUT/$name.$round" pair_file=$file
  if ((round % 2)); then run_hearth "$@"; run_llama "$@"; else run_llama "$@"; run_hearth "$@"; fi
  echo "$name $round" >>"$OUT/runs"
}
run_hearth() {
  /usr/bin/time -f "%M %e" -o "$at.hearth.time" \
    "$HEARTH" bench "$pair_file" -t "$THREADS" --json "$@" >"$at.hearth.json"
}
run_llama() {
  # shellcheck disable=SC2086
  /usr/bin/time -f "%M %e" -o "$at.llama.time" \
    "$LLAMA_BENCH" -m "$pair_file" -t "$THREADS" -o json $LLAMA_ARGS "$@" >"$at.llama.json" 2>"$at.llama.err"
}

LLAMA_ARGS=${LLAMA_ARGS:-}
ROUNDS=${ROUNDS:-1}
: >"$OUT/runs"
for round in $(seq 1 "$ROUNDS"); do
for set in "${sets[@]}"; do
  case $set in
  small)
    for m in smollm2-135m gemma3-270m; do
      need "$MODELS/$m.gguf" "scripts/fetch-models.sh"
      pair "$m" "$MODELS/$m.gguf" -p 512 -n 128 -r "$REPS"
      pair "$m-d3900" "$MODELS/$m.gguf" -p 0 -n 128 -d 3900 -r 1
      pair "$m-load" "$MODELS/$m.gguf" -p 8 -n 0 -r 1
    done
    ;;
  dense)
    for f in smollm2-1.7b-q4_k smollm2-1.7b-q4_0; do
      need "$BENCH/$f.gguf" "scripts/bench-files.py smollm2-1.7b ${f##*-}"
      pair "$f" "$BENCH/$f.gguf" -p 128 -n 32 -r "$REPS"
      pair "$f-load" "$BENCH/$f.gguf" -p 8 -n 0 -r 1
    done
    ;;
  moe)
    f=qwen3-30b-a3b-q4_k-8l
    need "$BENCH/$f.gguf" "scripts/bench-files.py qwen3-30b-a3b q4_k --layers 8"
    pair "$f" "$BENCH/$f.gguf" -p 128 -n 32 -r "$REPS"
    pair "$f-load" "$BENCH/$f.gguf" -p 8 -n 0 -r 1
    ;;
  *) echo "unknown set $set" >&2; exit 2 ;;
  esac
done
done

python3 - "$OUT" <<'EOF'
import json, os, statistics, sys
out = sys.argv[1]
def tests(path):
    text = open(path).read()
    start = text.find("[")
    return json.loads(text[start:]) if start >= 0 else []
def name(t):
    s = f"pp{t['n_prompt']}" if t["n_prompt"] > 0 else f"tg{t['n_gen']}"
    return s + (f" @ d{t['n_depth']}" if t.get("n_depth", 0) else "")
def peak(path):
    kib, secs = open(path).read().split()[-2:]
    return int(kib) / 1024, float(secs)
rounds = {}  # run name -> the file prefix of each of its rounds, in order of first appearance
for line in open(f"{out}/runs"):
    run, r = line.split()
    rounds.setdefault(run, []).append(f"{out}/{run}.{r}")
n_rounds = max(len(v) for v in rounds.values())
med = statistics.median
print(f"CPU: {next(l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name'))}; "
      f"HEARTH_ISA={os.environ.get('HEARTH_ISA', '(auto)')}; rounds: {n_rounds}"
      + (" (medians; the ratio's range over the rounds in brackets)" if n_rounds > 1 else ""))
print()
print("| file | test | hearth t/s | llama.cpp t/s | hearth / llama.cpp | peak RSS MiB hearth / llama.cpp |")
print("| --- | --- | ---: | ---: | ---: | ---: |")
loads = []
for run, ats in rounds.items():
    h_rss = max(peak(f"{a}.hearth.time")[0] for a in ats)
    l_rss = max(peak(f"{a}.llama.time")[0] for a in ats)
    if run.endswith("-load"):
        loads.append((run[:-5], med(peak(f"{a}.hearth.time")[1] for a in ats),
                      med(peak(f"{a}.llama.time")[1] for a in ats), h_rss, l_rss))
        continue
    per_test = {}  # test -> [(hearth t/s, its sd, llama t/s, its sd)], one per round
    for a in ats:
        h, l = tests(f"{a}.hearth.json"), tests(f"{a}.llama.json")
        for x in h:
            y = next((y for y in l if name(y) == name(x)), None)
            per_test.setdefault(name(x), [])
            if y is not None:
                per_test[name(x)].append((x["avg_ts"], x["stddev_ts"], y["avg_ts"], y["stddev_ts"]))
    for test, vals in per_test.items():
        if not vals:
            print(f"| {run} | {test} | | (missing) | | |")
            continue
        ratios = [h / l for h, _, l, _ in vals]
        if len(vals) == 1:
            h, hs, l, ls = vals[0]
            hearth, llama, span = f"{h:.1f} ± {hs:.1f}", f"{l:.1f} ± {ls:.1f}", ""
        else:
            hearth, llama = f"{med(v[0] for v in vals):.1f}", f"{med(v[2] for v in vals):.1f}"
            span = f" ({min(ratios):.2f}-{max(ratios):.2f})"
        print(f"| {run} | {test} | {hearth} | {llama} | **{med(ratios):.2f}x**{span} | {h_rss:.0f} / {l_rss:.0f} |")
print()
print("| file | load + 8-token prompt, s: hearth / llama.cpp | peak RSS MiB |")
print("| --- | ---: | ---: |")
for f, hs, ls, hr, lr in loads:
    print(f"| {f} | {hs:.2f} / {ls:.2f} | {hr:.0f} / {lr:.0f} |")
EOF
