#!/usr/bin/env bash
# The official `openai` Python client against `hearth serve`: installs the client into a venv under target/,
# builds hearth, starts `hearth serve smollm2-135m` on a free loopback port, runs crates/server/tests/python, and
# always stops the server. Fails loudly (never skips) when anything is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL=smollm2-135m
MODEL_FILE="${HEARTH_HOME:-$HOME/.cache/hearth}/models/$MODEL.gguf"
if [ ! -f "$MODEL_FILE" ]; then
  echo "test-python: $MODEL_FILE is missing: run scripts/fetch-models.sh" >&2
  exit 1
fi

VENV=target/py-openai
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check openai jsonschema ollama anthropic selenium

cargo build -p hearth
BIN="$PWD/target/debug/hearth"

PORT=$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
LOG=$(mktemp)
"$BIN" serve "$MODEL" --host 127.0.0.1 --port "$PORT" --ctx-size 1024 --parallel 4 >"$LOG" 2>&1 &
SERVER=$!
cleanup() {
  kill "$SERVER" 2>/dev/null || true
  wait "$SERVER" 2>/dev/null || true
  rm -f "$LOG"
}
trap cleanup EXIT

# Wait (at most 120 s) for /health; show the server's log when it does not come up.
"$VENV/bin/python" - "$PORT" "$SERVER" "$LOG" <<'PY'
import os, sys, time, urllib.request
port, pid, log = sys.argv[1], int(sys.argv[2]), sys.argv[3]
deadline = time.time() + 120
while True:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            if r.status == 200:
                break
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("test-python: hearth serve exited:\n" + open(log).read())
    if time.time() > deadline:
        sys.exit("test-python: hearth serve did not answer /health in 120 s:\n" + open(log).read())
    time.sleep(0.2)
PY

HEARTH_URL="http://127.0.0.1:$PORT/v1" HEARTH_BIN="$BIN" HEARTH_MODEL="$MODEL" \
  "$VENV/bin/python" -m unittest discover -s crates/server/tests/python -p 'test_*.py' -v
