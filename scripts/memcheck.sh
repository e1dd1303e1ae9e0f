#!/usr/bin/env bash
# Memory-safety checks of the unsafe code: the kernels (SIMD dot products, the packer and packed kernels, the
# compute pool, the attention tiles) and the GGUF reader. Not part of CI (tens of minutes on 2 cores); run it after
# changing unsafe code. Three checkers, each covering what the others cannot (docs/hostile.md has the last results):
#
#   miri      Miri (nightly + the miri and rust-src components) runs the kernels' unit tests twice: portable (the
#             scalar paths) and with AVX2/FMA/F16C enabled at compile time (`is_x86_feature_detected!` is then true,
#             so the AVX2 kernels and `HEARTH_ISA=avx2` run under Miri, which implements those intrinsics). Miri
#             checks every pointer access against its allocation's bounds and provenance, alignment, uninitialised
#             reads and data races between the pool's threads. `-Zmiri-deterministic-floats`: without it Miri
#             perturbs exp/ln by a few ULP at random, which the kernels' bit-exactness tests rightly reject.
#             The ops:: tests are left out: on these paths they run only safe code and take Miri tens of minutes.
#   asan      AddressSanitizer (RUSTC_BOOTSTRAP=1 -Zsanitizer=address on the stable toolchain, its own target dir):
#             native speed, so the AVX-512 (VNNI) kernels this CPU has run with every heap access checked: the
#             kernels' and the GGUF reader's tests. This is the checker that catches a packer writing past its
#             buffer (issue 12, item 1).
#   valgrind  Valgrind memcheck on the kernels' test binaries: valgrind does not emulate AVX-512, so the CPU looks
#             like AVX2 to the kernels' detection and the AVX2 paths run natively-compiled, checked for invalid
#             reads/writes and uses of uninitialised memory (which ASan does not see).
#
# Usage: scripts/memcheck.sh [miri|miri-avx2|asan|valgrind]...   (default: all; each says "clean" or fails)
set -euo pipefail
cd "$(dirname "$0")/.."
checks=("$@")
[ ${#checks[@]} -eq 0 ] && checks=(miri miri-avx2 asan valgrind)

# Test-name filters of the kernels' unit tests that run unsafe code (or the code around it) and are small enough.
MIRI_FILTERS=(packed:: pool:: lanes:: attention:: dtype:: formats:: isa::)
MIRIFLAGS_DEFAULT="-Zmiri-disable-isolation -Zmiri-deterministic-floats"

need_miri() {
  cargo +nightly miri --version >/dev/null 2>&1 || {
    echo "miri: not installed (rustup toolchain install nightly && rustup component add miri rust-src --toolchain nightly)" >&2
    return 1
  }
}

run_miri() {
  need_miri
  echo "== miri (portable): hearth-kernels ${MIRI_FILTERS[*]}"
  MIRIFLAGS="${MIRIFLAGS:-$MIRIFLAGS_DEFAULT}" nice cargo +nightly miri test -p hearth-kernels --lib -- "${MIRI_FILTERS[@]}"
  echo "miri: clean"
}

run_miri-avx2() {
  need_miri
  echo "== miri (avx2, fma, f16c): hearth-kernels ${MIRI_FILTERS[*]}"
  RUSTFLAGS="-Ctarget-feature=+avx2,+fma,+f16c" HEARTH_ISA=avx2 MIRIFLAGS="${MIRIFLAGS:-$MIRIFLAGS_DEFAULT}" \
    nice cargo +nightly miri test -p hearth-kernels --lib --target-dir target/miri-avx2 -- "${MIRI_FILTERS[@]}"
  echo "miri-avx2: clean"
}

run_asan() {
  # The sanitizer needs the unstable -Z flag (RUSTC_BOOTSTRAP on the stable toolchain) and an explicit target so
  # build scripts and proc macros are built without it. Doctests are left out: rustdoc does not link the sanitizer
  # runtime.
  local target
  target=$(rustc -vV | sed -n 's/^host: //p')
  echo "== asan: hearth-kernels, hearth-gguf on $target"
  RUSTC_BOOTSTRAP=1 RUSTFLAGS="-Zsanitizer=address" ASAN_OPTIONS="detect_leaks=0" \
    nice cargo test -q -p hearth-kernels -p hearth-gguf --tests --target "$target" --target-dir target/asan -- --skip kbench
  echo "asan: clean"
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
  for bin in $(test_binaries hearth-kernels); do
    echo "== valgrind: $bin"
    nice valgrind -q --error-exitcode=99 --leak-check=no --track-origins=no "$bin" --test-threads=2 -q \
      --skip kbench --skip golden
  done
  echo "valgrind: clean"
}

for c in "${checks[@]}"; do
  "run_$c"
done
