#!/usr/bin/env bash
# Memory-safety checks of the unsafe code: the kernels (SIMD dot products, the packer and packed kernels, the
# compute pool) and the engine's parallel row splitter. Not part of CI (minutes to tens of minutes); run it after
# changing unsafe code. Three checkers, each covering what the others cannot:
#
#   miri      Miri (nightly + the miri and rust-src components) runs the kernels' unit tests on the portable paths:
#             the packer, the scalar packed kernel, the pool's lock-free job hand-off, the attention tiles. Miri
#             interprets every pointer access against its provenance and bounds, and checks data races in the pool.
#   valgrind  Valgrind memcheck on the kernels' and engine's test binaries: the AVX2 paths (valgrind does not
#             emulate AVX-512, so the CPU looks like AVX2 to the kernels' run-time detection) and the portable ones.
#   asan      AddressSanitizer (RUSTC_BOOTSTRAP=1 -Zsanitizer=address, a separate target dir): native speed, so the
#             AVX-512 and packed kernels run on this CPU with every heap access checked. This is the checker that
#             would have caught the packer writing past its buffer.
#
# Usage: scripts/memcheck.sh [miri|valgrind|asan]...   (default: all three; each reports "clean" or fails)
set -euo pipefail
cd "$(dirname "$0")/.."
checks=("$@")
[ ${#checks[@]} -eq 0 ] && checks=(miri valgrind asan)

# The kernels' unit tests that exercise unsafe code and are small enough for Miri (it runs ~1000x slower).
MIRI_TESTS=(
  packed::tests::every_shape_fits_its_buffer
  packed::tests::scalar_kernel_equals_the_specification
  pool::tests
  lanes::tests
)

run_miri() {
  if ! cargo +nightly miri --version >/dev/null 2>&1; then
    echo "miri: not installed (rustup toolchain install nightly && rustup component add miri rust-src --toolchain nightly)" >&2
    return 1
  fi
  for t in "${MIRI_TESTS[@]}"; do
    echo "== miri: hearth-kernels $t"
    MIRIFLAGS="${MIRIFLAGS:--Zmiri-disable-isolation}" \
      cargo +nightly miri test -q -p hearth-kernels --lib -- "$t"
  done
  echo "miri: clean"
}

# Test binaries of a package (one per line), built in the dev profile.
test_binaries() {
  cargo test -p "$1" --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m.get("executable") and m["target"]["kind"]!=["bench"] and m.get("profile",{}).get("test"):
        print(m["executable"])'
}

run_valgrind() {
  command -v valgrind >/dev/null || { echo "valgrind: not installed (apt-get install valgrind)" >&2; return 1; }
  # The kernels' own tests, and the engine's batch tests (the row splitter and the attention tasks).
  for bin in $(test_binaries hearth-kernels); do
    echo "== valgrind: $bin"
    valgrind -q --error-exitcode=99 --leak-check=no --track-origins=no "$bin" --test-threads=2 -q \
      --skip kbench --skip golden
  done
  echo "valgrind: clean"
}

run_asan() {
  # The sanitizer needs the unstable -Z flag (RUSTC_BOOTSTRAP on the stable toolchain) and an explicit target so
  # build scripts and proc macros are built without it.
  local target
  target=$(rustc -vV | sed -n 's/^host: //p')
  echo "== asan: hearth-kernels, hearth-engine (batch) on $target"
  RUSTC_BOOTSTRAP=1 RUSTFLAGS="-Zsanitizer=address" ASAN_OPTIONS="detect_leaks=0" \
    cargo test -q -p hearth-kernels --target "$target" --target-dir target/asan
  echo "asan: clean"
}

for c in "${checks[@]}"; do
  "run_$c"
done
