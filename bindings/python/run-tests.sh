#!/usr/bin/env bash
# Builds and tests the edgestore Python package.
#
#   bash bindings/python/run-tests.sh
#
# Creates a virtualenv (bindings/python/.venv, or $EDGESTORE_VENV), installs the
# package with `pip install ./bindings/python` (PEP 517: pip fetches maturin
# from PyPI and compiles the Rust extension in release mode), installs the test
# dependencies, checks the type stubs against the compiled module with
# mypy.stubtest, type-checks the package and tests with mypy --strict, and runs
# the pytest suite. Exits non-zero on any failure.
#
# EDGESTORE_USE_CURRENT_PYTHON=1 installs into the current interpreter instead
# of a virtualenv. $PYTHON picks the interpreter (default python3).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python3}"

if [[ "${EDGESTORE_USE_CURRENT_PYTHON:-0}" == 1 ]]; then
    py="$(command -v "$python")"
else
    venv="${EDGESTORE_VENV:-$here/.venv}"
    echo "==> virtualenv $venv"
    "$python" -m venv "$venv"
    py="$venv/bin/python"
fi

echo "==> pip install $here"
"$py" -m pip install --quiet --disable-pip-version-check "$here"

echo "==> test dependencies"
"$py" -m pip install --quiet --disable-pip-version-check \
    "pytest>=7" "hypothesis>=6" numpy "mypy>=1.10" typing_extensions blake3

# Run from the test directory's parent with the installed package: the source
# tree's python/ folder is never on sys.path, so the wheel is what is tested.
cd "$here"

echo "==> mypy.stubtest edgestore (stubs vs the compiled module)"
"$py" -m mypy.stubtest edgestore

echo "==> mypy --strict"
"$py" -m mypy --strict python/edgestore tests

echo "==> pytest"
"$py" -m pytest -q -p no:cacheprovider tests
