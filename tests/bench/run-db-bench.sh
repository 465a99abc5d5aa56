#!/usr/bin/env bash
# Builds libedgestore (release), installs it into a staging prefix, builds
# db_bench through the tests/ CMake project (Release) and runs it.
#
#   tests/bench/run-db-bench.sh --quick              # CI size, about a minute
#   tests/bench/run-db-bench.sh                      # full run (1M fills, 200k reads), under ~10 min on 2 cores
#   tests/bench/run-db-bench.sh --markdown           # tables as markdown (for the README)
#   tests/bench/run-db-bench.sh --engines edgestore,rocksdb --sizes 16x100
#
# Every argument goes to db_bench (db_bench --help lists them). Without --dir
# the databases go to tests/build/bench/run (the repository's disk); set
# DB_BENCH_DIR to put them elsewhere. Needs cargo, cmake, a C compiler and,
# for the peers, librocksdb-dev liblmdb-dev libleveldb-dev libsqlite3-dev
# (each one missing is left out of the tables).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="$root/tests/build/bench"
stage="$build/stage"
jobs="${DB_BENCH_JOBS:-2}"

cd "$root"
echo "== cargo build --release -p edgestore-ffi" >&2
cargo build --release -p edgestore-ffi >&2

echo "== install into $stage" >&2
rm -rf "$stage"
ffi/install.sh --prefix "$stage" --profile release >&2

echo "== build db_bench (Release)" >&2
cmake -S "$root/tests" -B "$build/cmake" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$stage" -DEDGESTORE_PKGCONFIG_PREFIX= -DEDGESTORE_LINK=shared >&2
cmake --build "$build/cmake" --target db_bench -j "$jobs" >&2

have_dir=0
for a in "$@"; do [ "$a" = --dir ] && have_dir=1; done
args=("$@")
if [ "$have_dir" = 0 ]; then
    dir="${DB_BENCH_DIR:-$build/run}"
    mkdir -p "$dir"
    args=(--dir "$dir" "${args[@]}")
fi

echo "== $build/cmake/bench/db_bench ${args[*]}" >&2
exec "$build/cmake/bench/db_bench" "${args[@]}"
