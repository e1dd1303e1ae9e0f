#!/usr/bin/env bash
# The robot's figures for the record (issue 16; docs/robot.md): four headless episodes of the SO-101 dataflow, one
# after another, each at ordinary priority (no SCHED_FIFO), then one table.
#   1. SmolLM2 plans            2. Gemma3 plans
#   3. the planner idle: oracle_node.py in hearth's place (no model), the loop's lateness without hearth
#   4. SmolLM2 in a scene + task list made now by examples/so101/make_scene.py (random; in no file of the repo)
# Runs 1, 2 and 4 use the dataflow's settings (1 compute thread, nice 10, SCHED_IDLE, 2 s deadline; ROBOT_THREADS,
# ROBOT_NICE, ROBOT_SCHED, ROBOT_DEADLINE_MS change them); tasks time out after 40 s each, three tasks per run.
#
#   scripts/robot-measure.sh [OUT_DIR]     # default: a new folder under /tmp; prints the table last
#
# Needs nothing done first: it fetches the two models, makes the venv (examples/so101/setup.sh) and builds
# `hearth` and the node with scripts/build-dora-node.sh (release; no-ops when target/release is current). A clean
# release build of the node is ~16 CPU-min plus ~7 for its LTO link, 12-15 min on an idle 2-core machine: run
# scripts/build-dora-node.sh before a quiet window. DORA_NODE_PROFILE=robot builds the node in the cheaper robot
# profile instead; ROBOT_BIN=DIR[:DIR] uses a hearth and hearth-dora-node built elsewhere and builds nothing.
# Duration once built: about 10-12 minutes (each run 2-3 min: model load, up to 3 x 40 s of tasks, `hearth replay`).
# Each run's report (run_episode.py's JSON), dora log, summary, tick log and episode log stay in OUT_DIR/<run>/.
set -euo pipefail
cd "$(dirname "$0")/.."
out="$(realpath -m "${1:-$(mktemp -d /tmp/robot-measure.XXXXXX)}")"
mkdir -p "$out"

bash scripts/fetch-models.sh smollm2-135m gemma3-270m >&2
venv_bin="$(bash examples/so101/setup.sh | tail -1)"
bin="${ROBOT_BIN:-$(bash scripts/build-dora-node.sh | tail -1)}"
export PATH="$bin:$venv_bin:$PATH"
node="$(command -v hearth-dora-node || echo "beside hearth")"
echo "robot-measure: hearth $(command -v hearth), node $node, output in $out" >&2

settings=(--threads "${ROBOT_THREADS:-1}" --nice "${ROBOT_NICE:-10}" --sched "${ROBOT_SCHED:-idle}"
  --deadline-ms "${ROBOT_DEADLINE_MS:-2000}")
run() {  # NAME ARGS...: one episode; its report in OUT/NAME.json (a failed run is reported, not fatal)
  local name=$1
  shift
  echo "robot-measure: $name ($(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  python examples/so101/run_episode.py --out "$out/$name" "$@" >"$out/$name.json" ||
    echo "robot-measure: $name: run_episode exited $?" >&2
}
start=$(date +%s)
run smollm2 --model smollm2-135m "${settings[@]}" --render
run gemma3 --model gemma3-270m "${settings[@]}"
run oracle --oracle
python examples/so101/make_scene.py --out "$out/unseen-scene" >"$out/unseen-scene.json"
run unseen --model smollm2-135m "${settings[@]}" --scene "$out/unseen-scene/scene.xml" \
  --tasks "$(cat "$out/unseen-scene/tasks.json")" --render
echo "robot-measure: $(($(date +%s) - start)) s of episodes; unseen scene: $(cat "$out/unseen-scene.json")" >&2

python - "$out" "${settings[*]}" <<'EOF'
import json, sys
from pathlib import Path
out, settings = Path(sys.argv[1]), sys.argv[2]
rows = [("SmolLM2", "smollm2"), ("Gemma3", "gemma3"), ("planner idle (oracle, no model)", "oracle"),
        ("SmolLM2, scene + tasks made at run time", "unseen")]
print(f"\nSO-101 episodes at ordinary priority; hearth: {settings}; OUT={out}\n")
head = ["run", "load (1 min)", "ticks", "late > 5 ms %: all / deciding", "late ms p50 / p99 / max", "decisions",
        "invalid", "sources model / fallback", "latency ms p50 / p99", "dropped", "tasks", "replay", "problems"]
print("| " + " | ".join(head) + " |")
print("|" + " --- |" * len(head))
for label, name in rows:
    try:
        r = json.loads((out / f"{name}.json").read_text())
    except (OSError, ValueError):
        print(f"| {label} | (no report: see {out / name}/dora.log) |")
        continue
    s = r.get("summary")
    if s is None:
        gaps = " |" * 9
        print(f"| {label} | {r['loadavg_before'][0]:.1f} | (no summary) |{gaps} {'; '.join(r['problems'])} |")
        continue
    lat, late = s["latency_ms"], s["late_ms"]
    share = f"{100 * r['late_share']:.2f} / " + (f"{100 * r['late_share_deciding']:.2f}" if name != "oracle" else "—")
    src = s["sources"]
    sources = f"{src.get('model', 0)} / {src.get('fallback', 0)}" if name != "oracle" else "oracle"
    rp = r.get("replay")
    replay = ("ok" if rp and rp["rc"] == 0 else "FAILED") + (f", {rp['s']} s" if rp else "")
    replay = "—" if name == "oracle" else replay
    late_ms = f"{late['p50']} / {late['p99']} / {late['max']}"
    cells = [label, f"{r['loadavg_before'][0]:.1f}", s["ticks"], share, late_ms,
             s["decisions"], s["invalid_actions"], sources, f"{lat['p50']} / {lat['p99']}", s["dropped_frames"],
             f"{s['tasks_done']}/{s['tasks_total']}", replay, "; ".join(r["problems"]) or "none"]
    print("| " + " | ".join(str(c) for c in cells) + " |")
EOF
