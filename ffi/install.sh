#!/usr/bin/env bash
# Installs the C library: header, libedgestore.so/.a, edgestore.pc and the
# CMake package config, from an existing cargo build.
#   cargo build -p edgestore-ffi --release
#   ffi/install.sh --prefix /usr/local [--profile release|debug]
# Then: pkg-config --cflags --libs edgestore   (PKG_CONFIG_PATH=$prefix/lib/pkgconfig)
#   or: find_package(edgestore CONFIG REQUIRED) (CMAKE_PREFIX_PATH=$prefix)
set -euo pipefail

usage() { echo "usage: $0 --prefix DIR [--profile release|debug]" >&2; exit 2; }
prefix=""
profile="release"
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) [ $# -ge 2 ] || usage; prefix="$2"; shift 2 ;;
        --profile) [ $# -ge 2 ] || usage; profile="$2"; shift 2 ;;
        *) usage ;;
    esac
done
[ -n "$prefix" ] || usage

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}/$profile"
header="$root/include/edgestore.h"
for f in "$target/libedgestore.so" "$target/libedgestore.a" "$header"; do
    if [ ! -f "$f" ]; then
        echo "missing $f: run cargo build -p edgestore-ffi (add --release for --profile release)" >&2
        exit 1
    fi
done

ver() { sed -n "s/^#define EDGESTORE_VERSION_$1 \([0-9]*\)$/\1/p" "$header"; }
version="$(ver MAJOR).$(ver MINOR).$(ver PATCH)"

mkdir -p "$prefix"
prefix="$(cd "$prefix" && pwd)"
install -d "$prefix/include" "$prefix/lib/pkgconfig" "$prefix/lib/cmake/edgestore"
install -m 0644 "$header" "$prefix/include/edgestore.h"
install -m 0755 "$target/libedgestore.so" "$prefix/lib/libedgestore.so"
install -m 0644 "$target/libedgestore.a" "$prefix/lib/libedgestore.a"
subst() { sed -e "s|@PREFIX@|$prefix|g" -e "s|@VERSION@|$version|g" "$1" > "$2"; }
subst "$here/pkg/edgestore.pc.in" "$prefix/lib/pkgconfig/edgestore.pc"
subst "$here/pkg/edgestoreConfig.cmake.in" "$prefix/lib/cmake/edgestore/edgestoreConfig.cmake"
subst "$here/pkg/edgestoreConfigVersion.cmake.in" "$prefix/lib/cmake/edgestore/edgestoreConfigVersion.cmake"
echo "installed edgestore $version ($profile) into $prefix"
