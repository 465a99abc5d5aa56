"""A writer killed with SIGKILL loses nothing it acknowledged (durable mode)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import edgestore

CHILD = textwrap.dedent(
    """
    import sys
    import edgestore

    db = edgestore.open(sys.argv[1], sync="durable", memtable_size_bytes=64 * 1024)
    i = sum(1 for _ in db.range("kv"))  # continue after an earlier run
    print("ready", i, flush=True)
    while True:
        value = (b"%08d" % i) * 64
        if i % 7 == 0:
            with db.batch() as batch:
                batch.put("kv", b"%08d" % i, value)
                batch.put("pair", b"%08d" % i, b"a")
                batch.put("pair", b"%08d-b" % i, b"b")
        else:
            db.put("kv", b"%08d" % i, value)
        print(i, flush=True)  # acknowledged: the put returned
        i += 1
    """
)


def value_for(i: int) -> bytes:
    return (b"%08d" % i) * 64


def run_and_kill(db_path: Path, min_acks: int) -> list[int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    ready, first = proc.stdout.readline().split()
    assert ready == "ready"
    acked: list[int] = []
    deadline = time.monotonic() + 60
    while len(acked) < min_acks and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        acked.append(int(line))
    os.kill(proc.pid, signal.SIGKILL)
    rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    # Lines printed before the kill were acknowledged too.
    acked.extend(int(x) for x in rest.split() if x.strip())
    assert len(acked) >= min_acks, "child made too little progress"
    assert acked == list(range(int(first), int(first) + len(acked)))
    return acked


def test_sigkill_mid_write_then_clean_reopen(tmp_path: Path) -> None:
    db_path = tmp_path / "db"
    total = 0
    for round_no in range(2):
        acked = run_and_kill(db_path, min_acks=300)
        with edgestore.open(db_path) as db:
            for i in acked:
                assert db.get("kv", b"%08d" % i) == value_for(i), (round_no, i)
            # Batches are all-or-nothing, acknowledged or not.
            pairs = dict(db.range("pair"))
            for k in list(pairs):
                if not k.endswith(b"-b"):
                    assert pairs.get(k + b"-b") == b"b"
                else:
                    assert pairs.get(k[:-2]) == b"a"
            for i in acked:
                if i % 7 == 0:
                    assert pairs[b"%08d" % i] == b"a"
            # No holes, and at most the one write in flight when the child
            # died can be present past the last acknowledged one.
            keys = [int(k) for k, _ in db.range("kv")]
            assert keys == list(range(len(keys)))
            assert acked[-1] + 1 <= len(keys) <= acked[-1] + 2
            db.verify()
            total = len(keys)
        # The killed process's lock died with it; the reopened one released it.
    assert total >= 600
