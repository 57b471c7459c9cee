#!/usr/bin/env bash
# Build the Signway server (v0.4.8, Rust) once, for the interop tests and the gateway benchmark.
#
# Signway is a baseline, never part of signgate: its source and its offline build script live
# outside this repository, in SIGNWAY_SRC (default ../shared/signway). The binary goes to
# SIGNWAY_CACHE/bin/signway-v0.4.8 (default .cache/signway, which git ignores), beside a stamp
# holding the SHA-256 of the tarball and the build script, so it is rebuilt only when they change.
#
# Without cargo (or with one older than the 1.65 Signway needs) this prints one line saying what
# is skipped and exits 0. Anything else that goes wrong fails: a missing source or a broken build
# must not quietly turn the interop tests into skips.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SIGNWAY_SRC=${SIGNWAY_SRC:-$ROOT/../shared/signway}
SIGNWAY_CACHE=${SIGNWAY_CACHE:-$ROOT/.cache/signway}
# Relative paths are taken from the repository's root, as the tests and the benchmark take them.
case $SIGNWAY_SRC in /*) ;; *) SIGNWAY_SRC=$ROOT/$SIGNWAY_SRC ;; esac
case $SIGNWAY_CACHE in /*) ;; *) SIGNWAY_CACHE=$ROOT/$SIGNWAY_CACHE ;; esac
BIN=$SIGNWAY_CACHE/bin/signway-v0.4.8
STAMP=$SIGNWAY_CACHE/bin/source.sha256
export PATH=$PATH:$HOME/.cargo/bin  # rustup's cargo, where a plain shell may not have it on PATH

skip() {
    echo "signway: $1, so Signway is not built: the tests against the live Signway server and its benchmark columns are skipped" >&2
    exit 0
}

command -v cargo >/dev/null || skip "cargo not found"
rustc_minor=$(rustc --version 2>/dev/null | sed -n 's/^rustc 1\.\([0-9]*\).*/\1/p')
[ "${rustc_minor:-0}" -ge 65 ] || skip "rustc $(rustc --version 2>/dev/null | cut -d' ' -f2) is older than the 1.65 Signway needs"

for f in "$SIGNWAY_SRC/build.sh" "$SIGNWAY_SRC/signway-v0.4.8.tar.gz"; do
    [ -r "$f" ] || { echo "signway: $f is missing; set SIGNWAY_SRC to the folder holding Signway's tarball and build.sh" >&2; exit 1; }
done
want=$(cd "$SIGNWAY_SRC" && sha256sum build.sh signway-v0.4.8.tar.gz)

mkdir -p "$SIGNWAY_CACHE"
# One build at a time: `make test` and `make bench` may start together.
exec 9>"$SIGNWAY_CACHE/.lock"
flock 9
if [ -x "$BIN" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$want" ]; then
    exit 0
fi

# The crates Signway needs, from Debian's archive (build.sh's own list; it installs them itself
# unless SKIP_APT=1, but without a lock timeout and with recommends).
"$ROOT/scripts/ensure-debian-packages.sh" \
    librust-hyper-dev librust-hyper-tls-dev librust-tokio-dev librust-url-dev librust-anyhow-dev \
    librust-serde-dev librust-serde-derive-dev librust-serde-json-dev librust-hex-dev librust-hmac-dev \
    librust-sha2-dev librust-time-dev librust-time-macros-dev librust-percent-encoding-dev \
    librust-tracing-dev librust-async-trait-dev librust-tracing-subscriber-dev librust-tracing-serde-dev \
    librust-clap-dev librust-clap-derive-dev librust-openssl-dev librust-lazy-static-dev \
    librust-reqwest-dev libssl-dev pkg-config

echo "signway: building Signway v0.4.8 from $SIGNWAY_SRC (about a minute or two of cargo)" >&2
started=$SECONDS
work=$(mktemp -d "$SIGNWAY_CACHE/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
# The build tree (about 220 MB) is thrown away; only the binary is kept. It is moved into place
# whole, so an interrupted build never leaves a half-written binary behind.
SKIP_APT=1 SRC="$work/src" BIN_DIR="$work/bin" JOBS="${JOBS:-2}" bash "$SIGNWAY_SRC/build.sh" >"$work/build.log" 2>&1 || {
    tail -n 40 "$work/build.log" >&2
    echo "signway: the build failed (last lines above)" >&2
    exit 1
}
mkdir -p "$SIGNWAY_CACHE/bin"
mv -f "$work/bin/signway-v0.4.8" "$BIN"
echo "$want" >"$STAMP"
echo "signway: built $BIN in $((SECONDS - started)) s" >&2
