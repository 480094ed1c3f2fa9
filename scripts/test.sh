#!/usr/bin/env bash
# Runs the whole test suite: unit tests and the integration tests, which start the real
# server binary with the real toolchains (Go, Python, Node.js, Rust, /bin/sh). Installs Go,
# Debian's python3 with pip, Node.js and npm first when they are missing, and, as root, puts a
# copy of the Rust toolchain where the build and run users can reach it.
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
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
missing=()
for tool in /usr/bin/python3:python3 /usr/lib/python3/dist-packages/pip:python3-pip \
    /usr/bin/node:nodejs /usr/bin/npm:npm; do
    [ -e "${tool%%:*}" ] || missing+=("${tool##*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "test: installing ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
echo "python: $(/usr/bin/python3 --version), node: $(/usr/bin/node --version)"
# As root, builds and runs execute as other users, who cannot enter /root, where rustup
# keeps the toolchain: the suite uses a copy of it (hard links where the disk allows).
if [ "$(id -u)" = 0 ] && command -v rustc >/dev/null; then
    sysroot="$(rustc --print sysroot)"
    rust_copy=/opt/golambda-rust
    if [ "$(cat "$rust_copy/.from" 2>/dev/null)" != "$sysroot $(rustc --version)" ]; then
        rm -rf "$rust_copy.part" "$rust_copy"
        mkdir -p "$rust_copy.part"
        cp -al "$sysroot/bin" "$sysroot/lib" "$rust_copy.part/" 2>/dev/null ||
            { rm -rf "$rust_copy.part"/*; cp -a "$sysroot/bin" "$sysroot/lib" "$rust_copy.part/"; }
        echo "$sysroot $(rustc --version)" >"$rust_copy.part/.from"
        chmod 755 "$rust_copy.part"
        mv "$rust_copy.part" "$rust_copy"
    fi
    echo "rust: $("$rust_copy/bin/rustc" --version) in $rust_copy"
fi
cd "$root"
# Unit tests of the library, then the end-to-end suite (doc tests: none).
cargo test --locked --lib --tests "$@"
