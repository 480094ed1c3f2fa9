#!/usr/bin/env bash
# Runs the whole test suite: unit tests and the integration tests, which start the real
# server binary with the real Go toolchain. Installs Go first when it is missing.
# Extra arguments go to `cargo test` (for example a test name filter).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/ensure-go.sh
. "$root/scripts/ensure-go.sh"
golambda_ensure_go
echo "go: $(go version)"
# The metrics test checks /metrics with the reference Python parser of the format.
if ! python3 -c "import prometheus_client" 2>/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore prometheus_client
fi
cd "$root"
# Unit tests of the library, then the end-to-end suite (doc tests: none).
cargo test --locked --lib --tests "$@"
