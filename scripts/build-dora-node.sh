#!/usr/bin/env bash
# Builds `hearth` and `hearth-dora-node` (hearth as a dora-rs node, crates/dora-node) and prints the folder(s) that
# hold them, for PATH (`hearth dora-node` finds the node beside hearth or on the PATH). The node is its own
# workspace: dora-node-api's ~360 crates are built only here, never by `cargo build/test --workspace`.
#   default                  both in target/release (the node with thin LTO: ~16 CPU-min clean + ~7 for its link)
#   DORA_NODE_PROFILE=robot  the node in the `robot` profile (crates/dora-node/Cargo.toml: the model's hot path at
#                            opt-level 3, the dora tree at 0, no LTO; ~9 CPU-min clean) in target/dora-node/robot
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${DORA_NODE_PROFILE:-release}"
nice cargo build --release -p hearth >&2
if [ "$profile" = release ]; then
  nice cargo build --release --manifest-path crates/dora-node/Cargo.toml --target-dir target >&2
  echo "$PWD/target/release"
else
  nice cargo build --profile "$profile" --manifest-path crates/dora-node/Cargo.toml --target-dir target/dora-node >&2
  echo "$PWD/target/release:$PWD/target/dora-node/$profile"
fi
