"""Stopping the real server while it compacts a big month (issue 15, item 6).

SIGTERM: the process exits (no waiting for the whole month: the compaction is abandoned at its
next step, see tbpanel/store/compaction.py), and the next start compacts the month completely,
with every acknowledged point present. SIGKILL at the same moment loses nothing either.
"""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from tbpanel.store import open_store
from tests.helpers.server import ADMIN, ServerProcess, cli

MONTH0 = 1_672_531_200_000  # 2023-01-01: long closed, so the compactor takes it at once
ENTITIES = 40
PER_ENTITY = 40_000  # 1.6M points in one month: seconds of compaction on this machine
STEP = 60_000


def _backfill(data: Path) -> None:
    """Acknowledged points: ``write_points`` returns once they are durable."""
    with open_store(data / "telemetry", compaction_interval_s=0) as store:
        ts = MONTH0 + np.arange(PER_ENTITY, dtype=np.int64) * STEP
        for e in range(ENTITIES):
            n = store.write_points([(f"ent-{e}", "v", int(t), 2, e + i / 8) for i, t in enumerate(ts)])
            assert n == PER_ENTITY


def _check_everything_there(data: Path) -> None:
    with open_store(data / "telemetry", compaction_interval_s=0) as store:
        ts = MONTH0 + np.arange(PER_ENTITY, dtype=np.int64) * STEP
        expect = np.arange(PER_ENTITY) / 8
        for e in range(ENTITIES):
            got = store.numeric_arrays(f"ent-{e}", ["v"], MONTH0, MONTH0 + 31 * 86_400_000)["v"]
            assert np.array_equal(got[0], ts), f"ent-{e}: timestamps differ"
            assert np.array_equal(got[1], e + expect), f"ent-{e}: values differ"
        hot = store._readers.get().execute("SELECT count(*) FROM hot").fetchone()[0]
        assert hot == 0, f"{hot} points still in the hot tier: the compaction was not completed"
        blocks = store._readers.get().execute("SELECT count(*) FROM hot_blocks").fetchone()[0]
        assert blocks == 0, f"{blocks} blocks still in the hot tier: the compaction was not completed"


def _wait_for(server: ServerProcess, pattern: str, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if any(re.search(pattern, line) for line in list(server.output)):
            return
        assert server.proc is not None and server.proc.poll() is None, "".join(server.output)
        time.sleep(0.02)
    raise AssertionError(f"no {pattern!r} in the server output:\n{''.join(server.output)}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_stop_during_compaction_then_restart_completes_it(tmp_path: Path, sig: signal.Signals) -> None:
    data = tmp_path / "data"
    cli("init", "--data", str(data), "--admin-email", ADMIN[0], "--admin-password", ADMIN[1])
    _backfill(data)
    extra = ("--compaction-interval", "0.2", "--mqtt-port", "-1", "--coap-port", "-1")
    server = ServerProcess(data, extra=extra).start()
    try:
        _wait_for(server, r"compacting 2023-01")
        assert server.proc is not None
        server.proc.send_signal(sig)
        code = server.proc.wait(timeout=120)  # generous: the point is that it exits at all
    finally:
        server.kill()
    out = "".join(server.output)
    if sig == signal.SIGTERM:
        assert code == 0, out
        assert "compaction stopped: the store is closing" in out, out  # it was stopped mid-month
        assert "compacted 2023-01" not in out, out
        assert "tbpanel stopped" in out, out
    else:
        assert code == -signal.SIGKILL
    # the next start finishes the month; nothing acknowledged is missing
    server = ServerProcess(data, extra=extra).start()
    try:
        _wait_for(server, rf"compacted 2023-01: {ENTITIES * PER_ENTITY} hot points moved")
    finally:
        server.stop()
    assert server.proc is not None and server.proc.returncode == 0, "".join(server.output)
    _check_everything_there(data)
