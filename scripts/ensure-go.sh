#!/usr/bin/env bash
# Makes sure a Go toolchain is on PATH, installing Debian's golang-go when it is missing
# and this machine can install packages. Sourced by run.sh and test.sh.

golambda_ensure_go() {
    if [ -n "${GOLAMBDA_GO:-}" ] && [ -x "${GOLAMBDA_GO}" ]; then
        return 0
    fi
    if command -v go >/dev/null 2>&1; then
        return 0
    fi
    for candidate in /usr/local/go/bin /usr/lib/go/bin; do
        if [ -x "$candidate/go" ]; then
            export PATH="$candidate:$PATH"
            return 0
        fi
    done
    echo "golambda: no Go toolchain on PATH; installing Debian's golang-go" >&2
    local sudo=""
    if [ "$(id -u)" != 0 ]; then
        if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
            echo "golambda: cannot install Go without root; install it (see go.dev/doc/install) and retry" >&2
            return 1
        fi
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "golambda: no apt-get here; install Go (see go.dev/doc/install) and retry" >&2
        return 1
    fi
    $sudo apt-get update -qq >&2 &&
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq golang-go >&2 || {
        echo "golambda: installing golang-go failed" >&2
        return 1
    }
    command -v go >/dev/null 2>&1
}
