#!/usr/bin/env bash
# Runs the hearth-kernels tests (NEON kernels against the scalar specification) for aarch64 under qemu-user on an
# x86-64 machine, with and without the dot-product extension. Installs nothing: it stops and names the package when
# a tool is missing.
# Extra arguments go to `cargo test` (e.g. `scripts/test-aarch64.sh --test simd`).
set -euo pipefail
cd "$(dirname "$0")/.."

target=aarch64-unknown-linux-gnu
sysroot=${QEMU_LD_PREFIX:-/usr/aarch64-linux-gnu}
missing=()
command -v qemu-aarch64 >/dev/null || missing+=("qemu-user (for qemu-aarch64)")
command -v aarch64-linux-gnu-gcc >/dev/null || missing+=("gcc-aarch64-linux-gnu (linker)")
[ -d "$sysroot/lib" ] || missing+=("libc6-dev-arm64-cross (aarch64 libc at $sysroot)")
if [ ${#missing[@]} -gt 0 ]; then
  (IFS=,; echo "error: missing ${missing[*]}" | sed 's/,/, /g') >&2
  echo "install with: sudo apt-get install qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross" >&2
  exit 1
fi
if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  echo "error: the Rust target $target is not installed; run: rustup target add $target" >&2
  exit 1
fi

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
# Twice: on an emulated CPU with the dot-product extension (the NEON kernels use `sdot`) and on one without (the
# baseline ARMv8.0 path). The kernels pick between them at run time, so only the emulated CPU changes.
status=0
for cpu in max cortex-a53; do
  echo "== qemu-aarch64 -cpu $cpu"
  export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -cpu $cpu -L $sysroot"
  # Tests that re-run their own binary as a child (tests/isa_env.rs) start it through the same runner.
  export HEARTH_TEST_RUNNER="$CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER"
  cargo test -p hearth-kernels --target "$target" --no-fail-fast "$@" || status=1
done
exit $status
