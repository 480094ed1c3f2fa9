#!/usr/bin/env bash
# Soak test (not part of the test suite): mixed load on a release build for a while.
# Usage: scripts/soak.sh [seconds, default 180] [clients, default 8]. Run it as root to
# exercise per-run users; it reports requests, answers by status, peak RSS and leftovers.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/ensure-go.sh
. "$root/scripts/ensure-go.sh"
golambda_ensure_go
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
exec python3 "$root/benches/soak.py" "$root/target/release/golambda" "${1:-180}" "${2:-8}"
