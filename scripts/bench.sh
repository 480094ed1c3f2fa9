#!/usr/bin/env bash
# Measures the core latencies on this machine with a release build: PUT /register of the
# hello example (cold Go build cache, identical re-registration, changed code with a warm
# cache) and GET /hello (single client, keep-alive). Prints a Markdown table.
# Usage: scripts/bench.sh [requests]   (default 500 GET requests)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/ensure-go.sh
. "$root/scripts/ensure-go.sh"
golambda_ensure_go
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
exec python3 "$root/benches/core_latency.py" "$root/target/release/golambda" "${1:-500}"
