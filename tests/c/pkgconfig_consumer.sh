#!/bin/sh
# Builds a program with `pkg-config --cflags --libs edgestore` against an
# installed prefix and runs it. Usage: pkgconfig_consumer.sh PREFIX SOURCE.c OUTDIR
set -eu
prefix="$1"; src="$2"; out="$3"
mkdir -p "$out"
PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
export PKG_CONFIG_PATH
pkg-config --exists edgestore
echo "pkg-config edgestore: version $(pkg-config --modversion edgestore): $(pkg-config --cflags --libs edgestore)"
# shellcheck disable=SC2046
cc -std=c99 -Wall -Wextra -Werror -D_XOPEN_SOURCE=700 -o "$out/consumer" "$src" \
    $(pkg-config --cflags --libs edgestore) -Wl,-rpath,"$prefix/lib"
"$out/consumer"
