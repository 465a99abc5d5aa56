#!/usr/bin/env bash
# Short timed fuzz run of every cargo-fuzz target of edgestore (CI step; see
# core/fuzz/src/lib.rs for what each target checks). Stable Rust, no
# sanitizer, debug assertions on. New corpus entries go to a temporary
# directory, so the checked-in corpus (core/fuzz/corpus/<target>/) stays
# small; a crash fails the run and leaves its input in
# core/fuzz/artifacts/<target>/ (keep it in core/fuzz/regressions/<target>/
# with the fix: `cargo test` replays that directory).
#
#   bash core/fuzz/run.sh                 # every target, 20 s each
#   EDGESTORE_FUZZ_SECS=600 bash core/fuzz/run.sh wal ops
#
# Installs cargo-fuzz (`cargo install cargo-fuzz --locked`) when missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."   # core/

secs="${EDGESTORE_FUZZ_SECS:-20}"
targets=("$@")
if ((${#targets[@]} == 0)); then
    targets=(wal segment manifest ops)
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked --quiet
fi

flags=(--sanitizer=none --debug-assertions)
echo "== cargo fuzz build"
cargo fuzz build "${flags[@]}" >/dev/null 2>&1 || cargo fuzz build "${flags[@]}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
status=0
for t in "${targets[@]}"; do
    mkdir -p "$work/$t"
    log="$work/$t.log"
    # One process (no -jobs/-fork): the 2-core CI machine runs one target at a time.
    seeds=("fuzz/corpus/$t")
    [[ -d "fuzz/regressions/$t" ]] && seeds+=("fuzz/regressions/$t")
    if cargo fuzz run "${flags[@]}" "$t" "$work/$t" "${seeds[@]}" -- \
        -max_total_time="$secs" -max_len=4096 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$log" 2>&1; then
        runs="$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | tail -1)"
        echo "== fuzz $t: ok (${runs:-no summary}; corpus $(ls "$work/$t" | wc -l) inputs)"
    else
        status=1
        echo "== fuzz $t: FAILED" >&2
        grep -v '^#[0-9]' "$log" | tail -60 >&2
    fi
done
exit "$status"
