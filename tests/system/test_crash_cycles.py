"""SIGKILL the real server 20+ times under concurrent ingest, compaction, refresh, reprocess,
model builds and alarm changes; after every restart the invariants of crash_support hold."""

from __future__ import annotations

import time

import pytest

from tests.helpers.crash import DISRUPTIONS, CrashHarness

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
    print(
        f"\n{f.cycles} kill cycles in {time.monotonic() - t0:.1f} s: {f.points_checked} point values checked, "
        f"{f.batches_acked} batches acknowledged ({f.batches_acked_mqtt} over MQTT), {f.batches_unsure} unacknowledged, "
        f"{f.orphan_generations_at_kill} kills mid-compaction, interrupted tasks {f.interrupted_tasks}, "
        f"{f.alarm_changes_acked} alarm changes acknowledged"
    )
    assert f.cycles == CYCLES and set(f.disruptions) == set(DISRUPTIONS)
    assert f.batches_acked > f.batches_acked_mqtt > 0 and f.alarm_changes_acked > 0


def test_a_build_that_died_with_its_process_leaves_the_model_failed_not_building(tmp_path):
    """Deterministic version of what the kill cycles found: a model whose build task was running
    when the process died was left IN_PROGRESS ("building") forever."""
    from tbpanel.anomaly.config import ModelConfig
    from tbpanel.jobs import IN_PROGRESS, Task
    from tbpanel.platform import Platform

    with Platform(tmp_path, compaction_interval_s=0) as p:
        model = p.anomaly.create_model("tenant", ModelConfig(name="m", device_type="pump", fields=["x"]))
        # what a SIGKILL in the middle of the build leaves behind: both rows say "running"
        p.anomaly.repo.update_model(model.id, status="IN_PROGRESS", message="building")
        p.tasks._save(
            Task(
                id="t-build",
                kind="BUILD",
                model_id=model.id,
                tenant_id="tenant",
                status=IN_PROGRESS,
                created_ms=1,
                started_ms=2,
            )
        )
    with Platform(tmp_path, compaction_interval_s=0) as p:
        assert p.tasks.get("t-build").status == "FAILED"
        reopened = p.anomaly.get_model(model.id)
        assert reopened.status == "FAILED" and reopened.message.startswith("interrupted"), reopened.message
