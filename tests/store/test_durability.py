"""An acknowledged write survives SIGKILL, also while the compactor is rewriting partitions.

A child process writes numbered batches (each batch acknowledged by ``write_points``
returning, then printed), with background compaction running every 50 ms so that the kill
can land in the middle of a partition rewrite. The parent kills it with SIGKILL, reopens the
store and checks that every acknowledged batch is there, whole, exactly once; batches that
were not acknowledged are either entirely present or entirely absent.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tbpanel.store import ValueType, open_store

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BASE = 1_704_067_200_000  # 2024-01-01: every month written is long closed, so it gets compacted
PER_BATCH = 100
STEP = 37_000  # ms between points: 2,000 batches span about 85 days (three months)

CHILD = f"""
import sys
sys.path.insert(0, {REPO!r})
from tbpanel.store import open_store
store = open_store(sys.argv[1], compaction_interval_s=0.05, grace_ms=0)
first = int(sys.argv[2])
for i in range(first, first + 100_000):
    pts = [("dev", "k", {BASE} + (i * {PER_BATCH} + j) * {STEP}, 1, i * 1000 + j) for j in range({PER_BATCH})]
    # every 7th batch also rewrites points of an older batch (late data into cold months)
    if i % 7 == 0 and i >= 50:
        old = i // 2
        pts += [("dev", "k", {BASE} + (old * {PER_BATCH} + j) * {STEP}, 1, old * 1000 + j) for j in range(10)]
    store.write_points(pts)
    print(i, flush=True)
"""


def run_and_kill(path: str, first: int, n_acks: int) -> list[int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, path, str(first)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    acked = []
    deadline = time.monotonic() + 120
    try:
        while len(acked) < n_acks:
            line = proc.stdout.readline()
            if not line:
                raise AssertionError(f"child exited early: {proc.stderr.read()}")
            acked.append(int(line))
            assert time.monotonic() < deadline, "child too slow"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        rest, _ = proc.communicate()
    acked += [int(x) for x in rest.split()]  # acknowledged before the kill, still in the pipe
    assert proc.returncode == -signal.SIGKILL
    return acked


def check(path: str, acked: list[int]) -> int:
    with open_store(path, compaction_interval_s=0) as s:
        got = s.query_raw("dev", ["k"], 0, 2**62, limit=10**9, order="ASC").get("k", [])
        ts = [p[0] for p in got]
        assert ts == sorted(set(ts)), "duplicate or unordered points"
        by_batch: dict[int, list[int]] = {}
        for t, vt, v in got:
            assert vt == ValueType.LONG
            n = (t - BASE) // STEP
            assert v == (n // PER_BATCH) * 1000 + n % PER_BATCH  # the value written for that ts
            by_batch.setdefault(n // PER_BATCH, []).append(v)
        for i in acked:
            assert len(by_batch.get(i, [])) == PER_BATCH, f"acknowledged batch {i} is not complete"
        for i, vals in by_batch.items():
            assert len(vals) in (PER_BATCH,), f"batch {i} is partially stored"
        return max(by_batch) + 1 if by_batch else 0


@pytest.mark.slow
def test_acknowledged_writes_survive_sigkill(tmp_path):
    path = str(tmp_path / "data")
    acked = run_and_kill(path, 0, 300)
    nxt = check(path, acked)
    assert nxt >= 300
    # second round on the same store: reopen (orphan cleanup), write more, kill again
    acked2 = run_and_kill(path, nxt, 400)
    check(path, acked + acked2)
    with open_store(path, compaction_interval_s=0) as s:
        st = s.compact(before_ts=BASE + 400 * 86_400_000)
        assert st["skipped"] is None
        assert s.query_agg("dev", ["k"], 0, 2**62, "COUNT", None)["k"][0][2] >= (len(acked) + len(acked2)) * PER_BATCH
    check(path, acked + acked2)
