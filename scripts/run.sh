#!/usr/bin/env bash
# Builds and runs the golambda server. Arguments and GOLAMBDA_* variables pass through;
# the data dir defaults to this checkout (its plugins/, user_functions/, registry/).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/ensure-go.sh
. "$root/scripts/ensure-go.sh"
golambda_ensure_go
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
export GOLAMBDA_DATA_DIR="${GOLAMBDA_DATA_DIR:-$root}"
exec "$root/target/release/golambda" "$@"
