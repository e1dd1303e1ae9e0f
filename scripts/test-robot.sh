#!/usr/bin/env bash
# The robot test (issue 16): hearth as the planner of a simulated SO-101 arm in a dora-rs dataflow. Installs the
# example's Python packages (examples/so101/setup.sh), builds hearth and its dora node (scripts/build-dora-node.sh;
# dora-node-api is heavy, see crates/dora-node/Cargo.toml), then runs one headless episode with SmolLM2 and fails
# unless every action the controller received was valid for the world state it was decided on, fewer than 1% of the
# 50 Hz ticks that started while the model was deciding were more than 5 ms late, no node crashed, and the episode log
# replays with `hearth replay` (examples/so101/run_episode.py --check). Bounded: three tasks of at most 40 s each.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/fetch-models.sh smollm2-135m
venv_bin="$(bash examples/so101/setup.sh)"
bin="$(bash scripts/build-dora-node.sh | tail -1)"
export PATH="$bin:$venv_bin:$PATH"
python -m unittest discover -s examples/so101 -p "test_*.py"
out="${ROBOT_OUT:-$(mktemp -d)}"
timeout 1200 python examples/so101/run_episode.py --check --model smollm2-135m --out "$out/smollm2"
echo "robot test: 1 passed, 0 failed"
