"""SIGKILL the real server 20+ times under concurrent ingest, compaction, refresh, reprocess,
model builds and alarm changes; after every restart the invariants of crash_support hold."""
from __future__ import annotations

import time

import pytest

from crash_support import DISRUPTIONS, CrashHarness

CYCLES = 20  # each of the six disruptions three or four times


@pytest.mark.slow
def test_every_acknowledged_point_survives_repeated_sigkill(tmp_path):
    h = CrashHarness(tmp_path / "data", seed=8)
    t0 = time.monotonic()
    try:
        h.setup()
        for _ in range(CYCLES):
            h.cycle()
    finally:
        h.close()
    f = h.figures
    print(f"\n{f.cycles} kill cycles in {time.monotonic() - t0:.1f} s: {f.points_checked} point values checked, "
          f"{f.batches_acked} batches acknowledged, {f.batches_unsure} unacknowledged, "
          f"{f.orphan_generations_at_kill} kills mid-compaction, interrupted tasks {f.interrupted_tasks}, "
          f"{f.alarm_changes_acked} alarm changes acknowledged")
    assert f.cycles == CYCLES and set(f.disruptions) == set(DISRUPTIONS)
    assert f.batches_acked > 0 and f.alarm_changes_acked > 0
