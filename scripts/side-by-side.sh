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

# pair NAME FILE ARGS…: one hearth run and one llama-bench run with the same test flags, each under /usr/bin/time.
pair() {
  local name=$1 file=$2
  shift 2
  /usr/bin/time -f "%M %e" -o "$OUT/$name.hearth.time" \
    "$HEARTH" bench "$file" -t "$THREADS" --json "$@" >"$OUT/$name.hearth.json"
  # shellcheck disable=SC2086
  /usr/bin/time -f "%M %e" -o "$OUT/$name.llama.time" \
    "$LLAMA_BENCH" -m "$file" -t "$THREADS" -o json $LLAMA_ARGS "$@" >"$OUT/$name.llama.json" 2>"$OUT/$name.llama.err"
  echo "$name" >>"$OUT/runs"
}

LLAMA_ARGS=${LLAMA_ARGS:-}
: >"$OUT/runs"
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

python3 - "$OUT" <<'EOF'
import json, os, sys
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
print(f"CPU: {next(l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name'))}; "
      f"HEARTH_ISA={os.environ.get('HEARTH_ISA', '(auto)')}")
print()
print("| file | test | hearth t/s | llama.cpp t/s | hearth / llama.cpp | peak RSS MiB hearth / llama.cpp |")
print("| --- | --- | ---: | ---: | ---: | ---: |")
loads = []
for run in open(f"{out}/runs").read().split():
    h_rss, h_s = peak(f"{out}/{run}.hearth.time")
    l_rss, l_s = peak(f"{out}/{run}.llama.time")
    if run.endswith("-load"):
        loads.append((run[:-5], h_s, l_s, h_rss, l_rss))
        continue
    h, l = tests(f"{out}/{run}.hearth.json"), tests(f"{out}/{run}.llama.json")
    for a in h:
        b = next((b for b in l if name(b) == name(a)), None)
        if b is None:
            print(f"| {run} | {name(a)} | {a['avg_ts']:.1f} | (missing) | | |")
            continue
        print(f"| {run} | {name(a)} | {a['avg_ts']:.1f} ± {a['stddev_ts']:.1f} | {b['avg_ts']:.1f} ± {b['stddev_ts']:.1f} "
              f"| **{a['avg_ts'] / b['avg_ts']:.2f}x** | {h_rss:.0f} / {l_rss:.0f} |")
print()
print("| file | load + 8-token prompt, s: hearth / llama.cpp | peak RSS MiB |")
print("| --- | ---: | ---: |")
for f, hs, ls, hr, lr in loads:
    print(f"| {f} | {hs:.2f} / {ls:.2f} | {hr:.0f} / {lr:.0f} |")
EOF
