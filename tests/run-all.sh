#!/usr/bin/env bash
# Runs every test of edgestore: Rust (fmt, clippy, unit, integration, property,
# kill -9), the user's seed contract, the C harness (plain, ASan+UBSan,
# valgrind) and the Python suite. Installs the Debian packages it needs when
# run as root on a machine that lacks them.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for tool in cmake:cmake pkg-config:pkg-config valgrind:valgrind g++:g++; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || need+=("${tool##*:}")
done
if ((${#need[@]})); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "== installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "missing tools: ${need[*]} (install them, e.g. apt-get install ${need[*]})" >&2
    exit 1
  fi
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== cargo test"
cargo test --workspace --quiet
echo "== fuzz (short timed run of each cargo-fuzz target)"
bash core/fuzz/run.sh
if [[ -x ../shared/tools/seed-contract ]]; then
  echo "== seed contract"
  ../shared/tools/seed-contract
fi
if [[ -f tests/run-c-tests.sh ]]; then
  echo "== C harness"
  bash tests/run-c-tests.sh
fi
if [[ -f bindings/python/run-tests.sh ]]; then
  echo "== Python"
  bash bindings/python/run-tests.sh
fi
echo "== demo"
cargo run --quiet --release -p edgestore-cli -- demo --db "$(mktemp -d)/demo" >/dev/null
echo "all edgestore tests passed"
