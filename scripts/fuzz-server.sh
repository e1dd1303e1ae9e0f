#!/usr/bin/env bash
# Long fuzzing of the server's HTTP surface (crates/server/tests/fuzz_http.rs): requests through app() with the
# tiny Qwen3 fixture, the Host check and the rewriting of hyper's error answers. CI runs each target for ~10 s
# inside `cargo test`; this runs them for SECONDS each (default 1800).
#
# With cargo-bolero installed (`cargo install cargo-bolero`), it fuzzes with libFuzzer's coverage guidance on the
# stable toolchain (--rustc-bootstrap); otherwise with bolero's random engine in an ordinary test build. A failing
# input is printed with its BOLERO_RANDOM_SEED / saved under crates/server/tests/__fuzz__/<target>/crashes, where
# `cargo test` replays it from then on: commit it.
#
#   scripts/fuzz-server.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-1800}"
targets=(fuzz_requests_through_the_router fuzz_host_check_and_hyper_error_rewriting)
if cargo bolero --version >/dev/null 2>&1; then
  for t in "${targets[@]}"; do
    nice cargo bolero test -p hearth-server --rustc-bootstrap --sanitizer NONE -T "${secs}s" "fuzz_http::$t" || exit 1
  done
else
  echo "cargo-bolero not installed: random inputs for ${secs} s per target" >&2
  # The Host/rewrite target gets a quarter of the time (see test_time() in the test).
  HEARTH_FUZZ_SECS="$secs" nice cargo test -p hearth-server --test fuzz_http -- --nocapture --test-threads 1
fi
