#!/usr/bin/env bash
# Regenerates include/edgestore.h from ffi/src with the pinned cbindgen.
#   ffi/generate-header.sh          rewrite the header
#   ffi/generate-header.sh --check  fail (exit 1) if the committed header is stale
# Install the pinned version with:
#   cargo install cbindgen --version 0.29.4 --locked
set -euo pipefail

CBINDGEN_VERSION="0.29.4"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
header="$root/include/edgestore.h"

if ! command -v cbindgen >/dev/null 2>&1; then
    echo "cbindgen not found; install it with: cargo install cbindgen --version $CBINDGEN_VERSION --locked" >&2
    exit 2
fi
have="$(cbindgen --version | awk '{print $2}')"
if [ "$have" != "$CBINDGEN_VERSION" ]; then
    echo "cbindgen $have found but $CBINDGEN_VERSION is pinned; run: cargo install cbindgen --version $CBINDGEN_VERSION --locked --force" >&2
    exit 2
fi

tmp="$(mktemp)"
trap 'rm -f "$tmp"' EXIT
cbindgen --quiet --config "$here/cbindgen.toml" --crate edgestore-ffi --output "$tmp" "$here"

case "${1:-}" in
    --check)
        if ! diff -u "$header" "$tmp"; then
            echo "include/edgestore.h is out of date: run ffi/generate-header.sh" >&2
            exit 1
        fi
        echo "include/edgestore.h is up to date"
        ;;
    "")
        mkdir -p "$(dirname "$header")"
        cp "$tmp" "$header"
        echo "wrote $header"
        ;;
    *)
        echo "usage: $0 [--check]" >&2
        exit 2
        ;;
esac
