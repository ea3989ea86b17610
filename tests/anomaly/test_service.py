"""Anomaly models end to end on a real store: build, refresh, reprocess, saved scores,
persistence across a restart, rebuild rules, cancellation and the refresh scheduler."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from tbpanel.anomaly.config import ModelConfig
from tbpanel.anomaly.service import RebuildRequired
from tbpanel.jobs import CANCELLED, DONE, FAILED
from tbpanel.platform import Platform
from tbpanel.store import ValueType

MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR
T0 = 1_767_225_600_000  # 2026-01-01 UTC


def series(device_seed: int, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
    ts = np.arange(start, end, MIN, dtype=np.int64)
    rng = np.random.default_rng(device_seed * 1_000_003 + start // MIN)
    values = 10 + 2 * np.sin(2 * np.pi * (ts % DAY) / DAY) + rng.normal(0, 0.1, len(ts))
    return ts, values


def write(platform, device, seed, start, end, spike_at=None, spike=0.0, spike_len=2 * HOUR):
    ts, values = series(seed, start, end)
    if spike_at is not None:
        values[(ts >= spike_at) & (ts < spike_at + spike_len)] += spike
    platform.store.write_points(
        [(device, "vibration", int(t), ValueType.DOUBLE, float(v)) for t, v in zip(ts.tolist(), values.tolist())]
    )


@pytest.fixture
def env(tmp_path):
    platform = Platform(tmp_path / "data", compaction_interval_s=0)
    tenant = platform.registry.create_tenant("T")
    devices = [platform.registry.save_device(tenant.id, f"pump-{i}", type="pump").id for i in range(3)]
    # planted in the training range: device 0 on day 4, device 1 on day 2
    spikes = {0: T0 + 4 * DAY + 6 * HOUR, 1: T0 + 2 * DAY + 10 * HOUR}
    for i, d in enumerate(devices):
        write(platform, d, i, T0, T0 + 7 * DAY, spike_at=spikes.get(i), spike=7.0 if i in spikes else 0.0)
    events = []
    platform.anomaly.changed.connect(lambda db, model, changes: events.append(changes))
    yield platform, tenant, devices, events
    platform.close()


def make_model(platform, tenant, **overrides):
    cfg = ModelConfig(
        name="vib",
        device_type="pump",
        fields=["vibration"],
        train_start=T0,
        train_end=T0 + 7 * DAY,
        window="fixed",
        segment_ms=HOUR,
        **({"detector": "clustering"} | overrides),  # create / extend / end without a cool-down
    )
    model = platform.anomaly.create_model(tenant.id, cfg)
    return model.build(progress=False)


def test_build_persists_and_survives_restart(env, tmp_path):
    platform, tenant, devices, events = env
    model = make_model(platform, tenant)
    assert model.status == "READY" and model.built_ms
    trained = model.trained()
    assert trained is not None and len(trained.cluster_sizes) >= 1
    before = platform.anomaly.anomalies(model.id)
    assert events[-1].source == "BUILD" and len(events[-1].created) == len(before)
    platform.anomaly.set_refresh(model.id, {"enabled": True, "every": 2, "unit": "HOUR", "save_telemetry": True})
    platform.close()
    again = Platform(tmp_path / "data", compaction_interval_s=0)
    try:
        m2 = again.anomaly.get_model(model.id)
        assert m2.status == "READY" and m2.refresh.enabled and m2.refresh.every == 2
        assert m2.config.to_json() == model.config.to_json()
        assert again.anomaly.anomalies(model.id) == before
        t2 = m2.trained()
        data = {devices[0]: {"vibration": series(0, T0, T0 + DAY)}}
        a = trained.score(data, T0, T0 + DAY)
        b = t2.score(data, T0, T0 + DAY)
        assert np.array_equal(a.score, b.score)
        build_tasks = again.tasks.list(model_id=model.id)
        assert build_tasks[0].kind == "BUILD" and build_tasks[0].status == DONE
    finally:
        again.close()
    # keep the fixture's close() harmless
    platform.close = lambda: None


def test_refresh_creates_extends_and_ends_anomalies(env):
    platform, tenant, devices, events = env
    model = make_model(platform, tenant)
    platform.anomaly.set_refresh(model.id, {"enabled": True, "every": 1, "unit": "HOUR", "create_alarms": True})
    spike_at = T0 + 7 * DAY + 5 * HOUR
    write(
        platform, devices[1], 1, T0 + 7 * DAY, T0 + 7 * DAY + 9 * HOUR, spike_at=spike_at, spike=8.0, spike_len=4 * HOUR
    )
    for d, seed in ((devices[0], 0), (devices[2], 2)):
        write(platform, d, seed, T0 + 7 * DAY, T0 + 7 * DAY + 9 * HOUR)
    task = platform.tasks.wait(platform.anomaly.refresh_now(model.id, T0 + 7 * DAY + 8 * HOUR).id, 60)
    assert task.status == DONE, task.message
    refresh = events[-1]
    assert refresh.source == "REFRESH" and refresh.create_alarms
    new = [a for a in refresh.created if a["item"] == devices[1]]
    assert new and all(a["active"] for a in new), refresh.counts()
    assert spike_at <= new[0]["start_ts"] < spike_at + HOUR
    assert new[0]["detected_at"] == new[0]["start_ts"] + HOUR  # end of its first anomalous (1 h) segment
    # the spike goes on one more hour: the same anomaly is extended
    task = platform.tasks.wait(platform.anomaly.refresh_now(model.id, T0 + 7 * DAY + 9 * HOUR).id, 60)
    assert task.status == DONE, task.message
    extended = [a for a in events[-1].extended if a["id"] == new[0]["id"]]
    assert extended and extended[0]["end_ts"] > new[0]["end_ts"] and extended[0]["active"]
    # normal data again: the anomaly ends
    write(platform, devices[1], 1, T0 + 7 * DAY + 9 * HOUR, T0 + 7 * DAY + 12 * HOUR)
    task = platform.tasks.wait(platform.anomaly.refresh_now(model.id, T0 + 7 * DAY + 12 * HOUR).id, 60)
    assert task.status == DONE, task.message
    ended = [a for a in events[-1].ended if a["id"] == new[0]["id"]]
    assert ended and not ended[0]["active"]
    stored = {a["id"]: a for a in platform.anomaly.anomalies(model.id)}
    assert stored[new[0]["id"]]["active"] is False
    assert stored[new[0]["id"]]["end_ts"] == spike_at + 4 * HOUR


def test_reprocess_replaces_exactly_range_times_items(env):
    platform, tenant, devices, events = env
    model = make_model(platform, tenant)
    before = platform.anomaly.anomalies(model.id)
    lo, hi = T0 + 3 * DAY, T0 + 5 * DAY
    inside = [a for a in before if a["item"] == devices[0] and lo <= a["start_ts"] < hi]
    untouched = [a for a in before if not (a["item"] == devices[0] and lo <= a["start_ts"] < hi)]
    assert inside and untouched, "the fixture should give anomalies on both sides"
    task = platform.tasks.wait(platform.anomaly.reprocess(model.id, lo, hi, [devices[0]]).id, 60)
    assert task.status == DONE, task.message
    after = platform.anomaly.anomalies(model.id)
    ids_after = {a["id"] for a in after}
    assert all(a["id"] in ids_after for a in untouched)
    assert not any(a["id"] in ids_after for a in inside)
    fresh = [a for a in after if a["id"] not in {b["id"] for b in before}]
    assert fresh and all(a["item"] == devices[0] and lo <= a["start_ts"] < hi for a in fresh)
    assert events[-1].source == "REPROCESS" and {a["id"] for a in events[-1].deleted} == {a["id"] for a in inside}
    assert len(after) == len(untouched) + len(fresh)


def test_saved_scores_at_the_storage_frequency(env):
    platform, tenant, devices, _ = env
    model = make_model(platform, tenant, storage_frequency_ms=2 * HOUR, telemetry_key="vib")
    platform.anomaly.set_refresh(model.id, {"enabled": True, "save_telemetry": True})
    write(
        platform,
        devices[2],
        2,
        T0 + 7 * DAY,
        T0 + 7 * DAY + 12 * HOUR,
        spike_at=T0 + 7 * DAY + 4 * HOUR,
        spike=9.0,
        spike_len=2 * HOUR,
    )
    task = platform.tasks.wait(platform.anomaly.refresh_now(model.id, T0 + 7 * DAY + 12 * HOUR).id, 60)
    assert task.status == DONE, task.message
    ead = platform.store.numeric_arrays(devices[2], ["_EAD_vib"], T0, T0 + 30 * DAY)["_EAD_vib"]
    eid = platform.store.numeric_arrays(devices[2], ["_EID_vib"], T0, T0 + 30 * DAY)["_EID_vib"]
    assert np.all(ead[0] % (2 * HOUR) == 0) and np.array_equal(ead[0], eid[0])
    assert len(np.unique(ead[0])) == len(ead[0])
    spike_bucket = T0 + 7 * DAY + 4 * HOUR
    i = int(np.flatnonzero(ead[0] == spike_bucket)[0])
    assert ead[1][i] >= 100 and eid[1][i] > 0
    quiet = ead[0] >= T0 + 7 * DAY + 8 * HOUR
    assert np.all(eid[1][quiet] == 0)
    # reprocess with saving overwrites, never deletes: the same buckets keep one point each
    platform.tasks.wait(
        platform.anomaly.reprocess(
            model.id, T0 + 7 * DAY, T0 + 7 * DAY + 12 * HOUR, [devices[2]], save_telemetry=True
        ).id,
        60,
    )
    again = platform.store.numeric_arrays(devices[2], ["_EAD_vib"], T0, T0 + 30 * DAY)["_EAD_vib"]
    assert np.array_equal(again[0], ead[0])


def test_rebuild_rules(env):
    platform, tenant, devices, events = env
    model = make_model(platform, tenant)
    platform.anomaly.set_refresh(model.id, {"enabled": True})
    with pytest.raises(RebuildRequired) as err:
        platform.anomaly.update_model(model.id, {"threshold_percent": 2.0})
    assert "threshold_percent" in str(err.value)
    renamed, task = platform.anomaly.update_model(model.id, {"name": "renamed", "telemetry_key": "x"})
    assert task is None and renamed.config.name == "renamed" and renamed.refresh.enabled
    old = {a["id"] for a in platform.anomaly.anomalies(model.id)}
    _, task = platform.anomaly.update_model(model.id, {"threshold_percent": 2.0}, rebuild=True)
    assert platform.tasks.wait(task.id, 60).status == DONE
    rebuilt = platform.anomaly.get_model(model.id)
    assert not rebuilt.refresh.enabled and rebuilt.config.threshold_percent == 2.0
    assert events[-1].source == "BUILD" and {a["id"] for a in events[-1].deleted} == old
    assert not old & {a["id"] for a in platform.anomaly.anomalies(model.id)}


def test_failed_and_cancelled_builds_keep_earlier_anomalies(env):
    platform, tenant, devices, _ = env
    model = make_model(platform, tenant)
    before = platform.anomaly.anomalies(model.id)
    # cancelled while queued behind a blocker (one worker thread)
    release = threading.Event()
    blocker = platform.tasks.submit("BLOCK", lambda ctx: release.wait(30) and {})
    queued = platform.anomaly.build(model.id)
    assert platform.tasks.cancel(queued.id)
    release.set()
    platform.tasks.wait(blocker.id, 30)
    assert platform.tasks.wait(queued.id, 30).status == CANCELLED
    assert platform.anomaly.get_model(model.id).status == CANCELLED
    assert platform.anomaly.anomalies(model.id) == before
    # failed: a field that has no data
    platform.anomaly.repo.update_model(model.id, config=model.config.copy(fields=["no_such_field"]).to_json())
    failed = platform.tasks.wait(platform.anomaly.build(model.id).id, 30)
    assert failed.status == FAILED and "no numeric data" in failed.message
    assert platform.anomaly.get_model(model.id).status == FAILED
    assert platform.anomaly.anomalies(model.id) == before
    assert platform.anomaly.trained(model.id) is not None  # the earlier model still scores


def test_scheduler_runs_due_refreshes_once(env):
    platform, tenant, devices, _ = env
    model = make_model(platform, tenant)
    assert platform.anomaly.run_due(T0 + 8 * DAY) == []  # refresh off
    platform.anomaly.set_refresh(model.id, {"enabled": True, "every": 1, "unit": "HOUR"})
    first = platform.anomaly.run_due(T0 + 7 * DAY + HOUR)
    assert len(first) == 1
    assert platform.tasks.wait(first[0].id, 60).status == DONE
    assert platform.anomaly.run_due(T0 + 7 * DAY + HOUR) == []  # ran moments ago (wall clock)


def test_delete_model_keeps_saved_scores(env):
    platform, tenant, devices, events = env
    model = make_model(platform, tenant)
    platform.anomaly.set_refresh(model.id, {"enabled": True, "save_telemetry": True})
    write(platform, devices[0], 0, T0 + 7 * DAY, T0 + 7 * DAY + 4 * HOUR)
    platform.tasks.wait(platform.anomaly.refresh_now(model.id, T0 + 7 * DAY + 4 * HOUR).id, 60)
    n = len(platform.anomaly.anomalies(model.id))
    platform.anomaly.delete_model(model.id)
    assert platform.anomaly.get_model(model.id) is None
    assert events[-1].source == "DELETE" and len(events[-1].deleted) == n
    assert "_EAD_anomaly" in platform.store.keys(devices[0])


def test_experiment_does_not_touch_the_model(env):
    platform, tenant, devices, _ = env
    model = make_model(platform, tenant)
    before = platform.anomaly.anomalies(model.id)
    results = platform.anomaly.experiment(
        model.id, {"strict": {"threshold_percent": 0.1}, "loose": {"threshold_percent": 10.0}}, T0, T0 + 7 * DAY, "all"
    )
    assert set(results) == {"current", "strict", "loose"}
    assert len(results["loose"]) >= len(results["strict"])
    table = platform.anomaly.compare(results)
    assert list(table["variant"]) == ["current", "strict", "loose"]
    assert platform.anomaly.anomalies(model.id) == before
    frame = model.anomalies()
    assert list(frame.columns[:4]) == ["id", "item", "start", "end"] and len(frame) == len(before)
