#!/usr/bin/env bash
# Long fuzzing runs of hearth's bolero targets (CI runs each for ~1 s of random inputs under `cargo test`).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]        (default: 600 s, every target)
#
# With cargo-bolero (installed from crates.io on first use) the targets run coverage-guided under libFuzzer on the
# stable toolchain (`--rustc-bootstrap`). FUZZ_ENGINE=random runs bolero's random engine through `cargo test`
# instead (no install, no coverage guidance). Inputs that crash are saved by bolero under the target's
# `tests/__fuzz__/<target>/crashes/`: commit them and `cargo test` replays them from then on (a regression test),
# and add the file to the hostile corpus (crates/cli/tests/hostile/) when it is a GGUF file.
# The generated hostile corpus makes good seeds: HEARTH_CORPUS_DIR=dir cargo test -p hearth --test hostile_files.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-600}
shift || true
# package  test-file  target
ALL=(
  "hearth-gguf fuzz fuzz_gguf_reader_bytes"
  "hearth-gguf fuzz fuzz_gguf_reader_mutations"
  "hearth-text fuzz fuzz_tokenizer_encode"
  "hearth-text fuzz fuzz_tokenizer_decode"
  "hearth-text fuzz fuzz_chat_template"
  "hearth fuzz_load fuzz_load_and_decode"
)
selected=()
for t in "${ALL[@]}"; do
  name=${t##* }
  if [ $# -eq 0 ] || printf '%s\n' "$@" | grep -qx "$name"; then
    selected+=("$t")
  fi
done
[ ${#selected[@]} -gt 0 ] || { echo "no such target: $*" >&2; exit 2; }

engine=${FUZZ_ENGINE:-libfuzzer}
if [ "$engine" = libfuzzer ] && ! cargo bolero --version >/dev/null 2>&1; then
  echo "installing cargo-bolero (libFuzzer engine only)…" >&2
  cargo install cargo-bolero --locked --no-default-features --features libfuzzer
fi

for t in "${selected[@]}"; do
  read -r pkg file name <<<"$t"
  echo "== $name ($pkg, ${secs}s, $engine)"
  if [ "$engine" = libfuzzer ]; then
    cargo bolero test -p "$pkg" --rustc-bootstrap -T "${secs}s" "$name"
  else
    BOLERO_RANDOM_TEST_TIME_MS=$((secs * 1000)) cargo test --release -p "$pkg" --test "$file" -- --exact "$name"
  fi
done
