#!/usr/bin/env bash
# Builds libedgestore, installs it into a staging prefix, and runs the C test
# harness (tests/CMakeLists.txt) in up to four modes:
#   normal    plain build, linked against libedgestore.so; also the
#             pkg-config consumer test
#   static    the same tests linked against libedgestore.a
#   asan      C side compiled with -fsanitize=address,undefined (the Rust
#             library itself is not instrumented; its malloc/free still go
#             through ASan's interceptors, so leaks and bad frees are caught)
#   valgrind  every test program under valgrind memcheck, zero errors and zero
#             definite/indirect leaks required
# Needs: cargo, cmake, a C and C++ compiler, pkg-config, valgrind
# (Debian: cmake pkg-config valgrind gcc g++ make). Installs nothing.
#
# Environment:
#   EDGESTORE_TEST_MODES   subset of "normal static asan valgrind" (default: all)
#   EDGESTORE_PROFILE      cargo profile: debug (default) or release
#   EDGESTORE_LINK         shared (default) or static, for the normal/asan/valgrind modes
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
modes="${EDGESTORE_TEST_MODES:-normal static asan valgrind}"
profile="${EDGESTORE_PROFILE:-debug}"
link="${EDGESTORE_LINK:-shared}"
build="$root/tests/build"
stage="$build/stage"
jobs="${EDGESTORE_TEST_JOBS:-2}"

cd "$root"
echo "== cargo build -p edgestore-ffi ($profile)"
if [ "$profile" = release ]; then
    cargo build -p edgestore-ffi --release
else
    cargo build -p edgestore-ffi
fi

if command -v cbindgen >/dev/null 2>&1; then
    echo "== header drift check"
    ffi/generate-header.sh --check
else
    echo "== cbindgen not installed: skipping the header drift check (ffi/generate-header.sh --check)"
fi

echo "== install into $stage"
rm -rf "$stage"
ffi/install.sh --prefix "$stage" --profile "$profile"

run_mode() {
    local mode="$1"; shift
    local dir="$build/$mode"
    echo "== [$mode] configure + build"
    cmake -S "$root/tests" -B "$dir" -DCMAKE_BUILD_TYPE=Debug \
        -DCMAKE_PREFIX_PATH="$stage" -DEDGESTORE_LINK="$link" "$@" >/dev/null
    cmake --build "$dir" -j "$jobs" >/dev/null
    echo "== [$mode] ctest"
    ctest --test-dir "$dir" --output-on-failure -j "$jobs" --timeout 600
}

for mode in $modes; do
    case "$mode" in
        normal)
            run_mode normal -DEDGESTORE_PKGCONFIG_PREFIX="$stage" -DEDGESTORE_TEST_LAUNCHER=
            ;;
        static)
            run_mode static -DEDGESTORE_LINK=static -DEDGESTORE_PKGCONFIG_PREFIX= -DEDGESTORE_TEST_LAUNCHER=
            ;;
        asan)
            san="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
            ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1" \
            UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
            run_mode asan -DCMAKE_C_FLAGS="$san" -DCMAKE_CXX_FLAGS="$san" \
                -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" \
                -DEDGESTORE_PKGCONFIG_PREFIX= -DEDGESTORE_TEST_LAUNCHER=
            ;;
        valgrind)
            run_mode valgrind -DEDGESTORE_PKGCONFIG_PREFIX= \
                "-DEDGESTORE_TEST_LAUNCHER=valgrind;--tool=memcheck;--error-exitcode=1;--leak-check=full;--show-leak-kinds=definite,indirect;--errors-for-leak-kinds=definite,indirect;--track-origins=yes;--quiet"
            ;;
        *)
            echo "unknown mode $mode (expected normal, static, asan, valgrind)" >&2
            exit 2
            ;;
    esac
done
echo "== all C test modes passed: $modes"
