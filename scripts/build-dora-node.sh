#!/usr/bin/env bash
# Builds `hearth` and `hearth-dora-node` (hearth as a dora-rs node, crates/dora-node) into the same folder,
# target/release, so that `hearth dora-node` finds the node beside it. The node is its own workspace: dora-node-api's
# ~360 crates are built only here, never by `cargo build/test --workspace`.
set -euo pipefail
cd "$(dirname "$0")/.."
nice cargo build --release -p hearth
nice cargo build --release --manifest-path crates/dora-node/Cargo.toml --target-dir target
echo "$PWD/target/release"
