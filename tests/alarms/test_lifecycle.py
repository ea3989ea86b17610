"""Alarms from anomalies on a real analytics.sqlite: every rule of "Alarms from anomalies",
atomicity with the anomaly transaction, and a hypothesis property test of the invariants.

Most tests hand-make anomaly changes and push them through the same path the anomaly service
uses (one transaction, listeners inside it), so each rule is exercised exactly; one test runs
the real engine end to end (build, then refresh over a planted spike).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tbpanel.anomaly.config import ModelConfig
from tbpanel.jobs import DONE
from tbpanel.platform import Platform
from tbpanel.store import ValueType
from tests.helpers.alarms import DAY, HOUR, MIN, T0, Harness, check_invariants


@pytest.fixture
def h(tmp_path):
    platform = Platform(tmp_path / "data", compaction_interval_s=0)
    tenant = platform.registry.create_tenant("T")
    harness = Harness(platform, tenant.id)
    harness.devices = [platform.registry.save_device(tenant.id, f"pump-{i}", type="pump").id for i in range(3)]
    yield harness
    platform.close()


def test_spike_raises_alarm_with_severity_and_details(h):
    m = h.model()
    d = h.devices[0]
    ch = h.run(m, new=[h.anomaly(m, d, T0, 160)])
    [alarm] = h.alarms()
    a = ch.created[0]
    assert alarm.severity == "MINOR" and alarm.status == "ACTIVE_UNACK" and alarm.type == "Anomaly"
    assert alarm.originator_id == d and alarm.originator_name == "pump-0" and alarm.anomaly_id == a["id"]
    assert alarm.details == {
        "modelId": m.id,
        "modelName": "m",
        "anomalyId": a["id"],
        "score": 160.0,
        "scoreIndex": 1.6,
        "startTs": T0,
        "endTs": T0 + HOUR,
    }
    assert alarm.start_ts == T0 and alarm.tenant_id == h.tenant_id


def test_no_alarm_below_lowest_enabled_threshold_or_with_toggle_off(h):
    m = h.model(warning_enabled=False)  # lowest enabled: MINOR at 150
    d = h.devices[0]
    h.run(m, new=[h.anomaly(m, d, T0, 120)])
    assert h.alarms() == []
    h.run(m, new=[h.anomaly(m, d, T0 + DAY, 500)], create_alarms=False)
    assert h.alarms() == []
    h.run(m, source="BUILD", create_alarms=False, new=[h.anomaly(m, d, T0 + 2 * DAY, 500)])
    assert h.alarms() == []


def test_growing_anomaly_escalates_never_lowers(h):
    m = h.model()
    d = h.devices[0]
    a = h.run(m, new=[h.anomaly(m, d, T0, 110)]).created[0]
    assert h.alarms()[0].severity == "WARNING"
    a = h.run(m, grow=[(a, {"end_ts": T0 + 2 * HOUR, "score": 250.0})]).extended[0]
    assert h.alarms()[0].severity == "MAJOR" and h.alarms()[0].end_ts == T0 + 2 * HOUR
    a = h.run(m, grow=[(a, {"end_ts": T0 + 3 * HOUR, "score": 120.0})]).extended[0]
    [alarm] = h.alarms()
    assert alarm.severity == "MAJOR" and alarm.details["endTs"] == T0 + 3 * HOUR and alarm.details["score"] == 120.0


def test_below_threshold_anomaly_gets_alarm_once_it_grows_past_one(h):
    m = h.model()
    a = h.run(m, new=[h.anomaly(m, h.devices[0], T0, 50)]).created[0]
    assert h.alarms() == []
    h.run(m, grow=[(a, {"score": 320.0, "end_ts": T0 + 2 * HOUR})])
    [alarm] = h.alarms()
    assert alarm.severity == "CRITICAL" and alarm.anomaly_id == a["id"]


def test_second_anomaly_while_first_alarm_active_is_suppressed(h):
    m = h.model()
    d, other = h.devices[0], h.devices[1]
    first = h.run(m, new=[h.anomaly(m, d, T0, 400)]).created[0]
    ch = h.run(m, new=[h.anomaly(m, d, T0 + 3 * HOUR, 400), h.anomaly(m, other, T0 + 3 * HOUR, 400)])
    second, elsewhere = ch.created
    alarms = h.alarms()
    assert {a.anomaly_id for a in alarms} == {first["id"], elsewhere["id"]}
    stored = h.stored(m)
    assert stored[second["id"]]["suppressed"] and not stored[elsewhere["id"]]["suppressed"]
    assert not stored[first["id"]]["suppressed"]
    # another model with another alarm type is not blocked
    m2 = h.model(alarm_type="Vibration")
    h.run(m2, new=[h.anomaly(m2, d, T0 + 3 * HOUR, 400)])
    assert len([a for a in h.alarms() if a.originator_id == d and not a.cleared]) == 2


def test_anomaly_end_clears_at_data_time_and_ack_is_independent(h):
    m = h.model()
    d = h.devices[0]
    a = h.run(m, new=[h.anomaly(m, d, T0, 200)]).created[0]
    alarm = h.alarms()[0]
    h.run(m, end=[(a, {"end_ts": T0 + 5 * HOUR})])
    [cleared] = h.alarms()
    assert cleared.id == alarm.id and cleared.cleared and not cleared.acknowledged
    assert cleared.status == "CLEARED_UNACK" and cleared.clear_ts == T0 + 5 * HOUR and cleared.end_ts == T0 + 5 * HOUR
    # after it cleared, a new anomaly on the device gets its own alarm
    h.run(m, new=[h.anomaly(m, d, T0 + 6 * HOUR, 200)])
    assert len(h.alarms()) == 2 and sum(not a.cleared for a in h.alarms()) == 1


def test_reprocess_of_history_creates_cleared_alarms(h):
    m = h.model()
    d = h.devices[0]
    h.run(
        m,
        source="REPROCESS",
        new=[h.anomaly(m, d, T0, 200, active=False), h.anomaly(m, d, T0 + DAY, 200, active=False)],
    )
    alarms = h.alarms()
    assert len(alarms) == 2 and all(a.cleared and a.clear_ts == a.end_ts for a in alarms)


@pytest.mark.parametrize("behaviour", ["clear", "delete"])
def test_anomaly_deletion_clears_or_deletes_alarm(h, behaviour):
    m = h.model(alarm_on_delete=behaviour)
    d = h.devices[0]
    a = h.run(m, new=[h.anomaly(m, d, T0, 200)]).created[0]
    # reprocess: the anomaly is replaced by a re-detected one; the old alarm goes first, so the
    # new anomaly is not suppressed by it
    ch = h.run(m, source="REPROCESS", delete=[a], new=[h.anomaly(m, d, T0, 210)])
    alarms = {x.anomaly_id: x for x in h.alarms()}
    new_id = ch.created[0]["id"]
    assert not alarms[new_id].cleared and not h.stored(m)[new_id]["suppressed"]
    if behaviour == "delete":
        assert a["id"] not in alarms
    else:
        assert alarms[a["id"]].cleared and alarms[a["id"]].details["anomalyDeleted"] is True
    # model deletion
    h.p.anomaly.delete_model(m.id)
    left = h.alarms()
    if behaviour == "delete":
        assert left == []
    else:
        assert len(left) == 2 and all(x.cleared for x in left)


def test_listener_failure_rolls_back_anomaly_and_alarm(h):
    m = h.model()
    d = h.devices[0]

    def boom(db, model, changes):
        raise RuntimeError("crash between detection and alarm commit")

    h.p.anomaly.changed.connect(boom)
    with pytest.raises(RuntimeError):
        h.run(m, new=[h.anomaly(m, d, T0, 300)])
    assert h.stored(m) == {} and h.alarms() == []
    h.p.anomaly.changed.disconnect(boom)
    a = h.run(m, new=[h.anomaly(m, d, T0, 300)]).created[0]
    h.p.anomaly.changed.connect(boom)
    with pytest.raises(RuntimeError):
        h.run(m, end=[(a, {"end_ts": T0 + 2 * HOUR})])
    assert h.stored(m)[a["id"]]["active"] and not h.alarms()[0].cleared


def test_live_listeners_hear_only_committed_changes(h):
    m = h.model()
    heard = []
    h.p.alarms.changed.connect(lambda kind, alarm: heard.append((kind, alarm.anomaly_id)))

    def boom(db, model, changes):
        raise RuntimeError("x")

    h.p.anomaly.changed.connect(boom)
    with pytest.raises(RuntimeError):
        h.run(m, new=[h.anomaly(m, h.devices[0], T0, 300)])
    assert heard == []
    h.p.anomaly.changed.disconnect(boom)
    a = h.run(m, new=[h.anomaly(m, h.devices[0], T0, 300)]).created[0]
    assert heard == [("UPDATED", a["id"])]


def test_storm_warning(h):
    h.p.alarms.storm_limit = 2
    m = h.model()
    h.run(m, new=[h.anomaly(m, d, T0, 300) for d in h.devices[:2]])
    assert h.p.alarms.last_storm is None
    m2 = h.model(alarm_type="Other")
    ch = h.run(m2, new=[h.anomaly(m2, d, T0, 300) for d in h.devices])
    assert any("ALARM STORM" in note and "3 alarms" in note for note in ch.notes)  # for the task log
    storm = h.p.alarms.last_storm
    assert storm["raised"] == 3 and storm["limit"] == 2 and storm["modelId"] == m2.id


# ---------------------------------------------------------------------------------------------
# invariants under random sequences of operations
# ---------------------------------------------------------------------------------------------

OPS = st.lists(
    st.tuples(
        st.sampled_from(
            ["new", "grow", "end", "reprocess", "rebuild", "thresholds", "toggle", "delete_model", "new_model"]
        ),
        st.integers(0, 2),
        st.floats(20, 500),
        st.booleans(),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_invariants_hold_after_every_step(h, ops):
    for m in h.p.anomaly.list_models():
        h.p.anomaly.delete_model(m.id)
    with h.repo.transaction() as db:
        db.execute("DELETE FROM alarms")
    models = [h.model(alarm_on_delete="clear"), h.model(alarm_on_delete="delete", alarm_type="Other")]
    create = True
    clock = T0
    for op, i, score, flag in ops:
        clock += HOUR
        if not models:
            models.append(h.model(alarm_on_delete="delete" if flag else "clear"))
        m = models[i % len(models)]
        mine = list(h.stored(m).values())
        live = [a for a in mine if a["active"]]
        if op == "new":
            h.run(m, create_alarms=create, new=[h.anomaly(m, h.devices[i], clock, score)])
        elif op == "grow" and live:
            a = live[i % len(live)]
            h.run(m, create_alarms=create, grow=[(a, {"score": score, "end_ts": clock})])
        elif op == "end" and live:
            a = live[i % len(live)]
            h.run(m, create_alarms=create, end=[(a, {"end_ts": clock})])
        elif op == "reprocess":
            gone = [a for a in mine if a["item"] == h.devices[i]]
            h.run(
                m,
                source="REPROCESS",
                create_alarms=flag,
                delete=gone,
                new=[
                    h.anomaly(m, h.devices[i], T0, score, active=False),
                    h.anomaly(m, h.devices[i], clock, score, active=True),
                ],
            )
        elif op == "rebuild":
            h.run(
                m,
                source="BUILD",
                create_alarms=False,
                delete=mine,
                new=[h.anomaly(m, h.devices[i], T0, score, active=flag)],
            )
        elif op == "thresholds":
            h.p.anomaly.update_model(m.id, {"warning_threshold": min(score, 100.0), "warning_enabled": flag})
        elif op == "toggle":
            create = flag
        elif op == "delete_model":
            h.p.anomaly.delete_model(m.id)
            models.remove(m)
        elif op == "new_model":
            models.append(h.model(alarm_type="Anomaly" if flag else "Other"))
        check_invariants(h)


# ---------------------------------------------------------------------------------------------
# the real engine end to end
# ---------------------------------------------------------------------------------------------


def _write(platform, device, seed, start, end, spike_at=None, spike=0.0, spike_len=2 * HOUR):
    ts = np.arange(start, end, MIN, dtype=np.int64)
    rng = np.random.default_rng(seed * 1_000_003 + start // MIN)
    values = 10 + 2 * np.sin(2 * np.pi * (ts % DAY) / DAY) + rng.normal(0, 0.1, len(ts))
    if spike_at is not None:
        values[(ts >= spike_at) & (ts < spike_at + spike_len)] += spike
    platform.store.write_points(
        [(device, "vibration", int(t), ValueType.DOUBLE, float(v)) for t, v in zip(ts.tolist(), values.tolist())]
    )


def test_engine_build_then_refresh_raises_and_clears(h):
    p = h.p
    for i, d in enumerate(h.devices):
        _write(p, d, i, T0, T0 + 7 * DAY, spike_at=T0 + 3 * DAY if i == 0 else None, spike=7.0)
    cfg = ModelConfig(
        name="vib",
        device_type="pump",
        fields=["vibration"],
        train_start=T0,
        train_end=T0 + 7 * DAY,
        window="fixed",
        segment_ms=HOUR,
    )
    model = p.anomaly.create_model(h.tenant_id, cfg).build(progress=False)
    assert p.anomaly.anomalies(model.id) and h.alarms() == []  # build never creates alarms
    p.anomaly.set_refresh(model.id, {"enabled": True, "create_alarms": True})
    spike_at = T0 + 7 * DAY + 5 * HOUR
    _write(p, h.devices[1], 1, T0 + 7 * DAY, T0 + 7 * DAY + 12 * HOUR, spike_at=spike_at, spike=9.0, spike_len=3 * HOUR)
    for i in (0, 2):
        _write(p, h.devices[i], i, T0 + 7 * DAY, T0 + 7 * DAY + 12 * HOUR)
    task = p.tasks.wait(p.anomaly.refresh_now(model.id, T0 + 7 * DAY + 7 * HOUR).id, 60)
    assert task.status == DONE, task.message
    active = [a for a in h.alarms() if not a.cleared]
    assert [a.originator_id for a in active] == [h.devices[1]]
    anomaly = h.stored(model)[active[0].anomaly_id]
    thresholds = p.anomaly.trained(model.id).thresholds(model.config)
    from tbpanel.anomaly.scoring import severity_for

    assert active[0].severity == severity_for(anomaly["score"], thresholds).upper()
    task = p.tasks.wait(p.anomaly.refresh_now(model.id, T0 + 7 * DAY + 12 * HOUR).id, 60)
    assert task.status == DONE, task.message
    [alarm] = [a for a in h.alarms() if a.originator_id == h.devices[1]]
    anomaly = h.stored(model)[alarm.anomaly_id]
    assert not anomaly["active"] and alarm.cleared and alarm.clear_ts == anomaly["end_ts"]
    check_invariants(h)


# ---------------------------------------------------------------------------------------------
# a process killed inside the anomaly transaction, after the alarm writes, before the commit
# ---------------------------------------------------------------------------------------------

CRASH_SCRIPT = r"""
import os, sys
from tbpanel.platform import Platform
from tbpanel.anomaly.service import AnomalyChanges
data, model_id, anomaly_id, new_row = sys.argv[1], sys.argv[2], sys.argv[3], eval(sys.argv[4])
p = Platform(data, compaction_interval_s=0)
p.anomaly.changed.connect(lambda db, model, changes: os._exit(9))   # after the alarm listener
model = p.anomaly.get_model(model_id)
old = [a for a in p.anomaly.anomalies(model_id) if a["id"] == anomaly_id][0]
ch = AnomalyChanges("REFRESH", create_alarms=True)
with p.anomaly.repo.transaction() as db:
    p.anomaly.repo.update_anomaly(db, anomaly_id, active=False, end_ts=old["end_ts"] + 3600000)
    ch.ended.append({**old, "active": False, "end_ts": old["end_ts"] + 3600000})
    ch.created.append(p.anomaly.repo.insert_anomaly(db, new_row))
    p.anomaly.changed.emit(db, model, ch)
"""


def test_killed_between_detection_and_commit_leaves_invariants(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    data = tmp_path / "data"
    p = Platform(data, compaction_interval_s=0)
    tenant = p.registry.create_tenant("T")
    device = p.registry.save_device(tenant.id, "pump", type="pump").id
    h = Harness(p, tenant.id)
    m = h.model()
    first = h.run(m, new=[h.anomaly(m, device, T0, 250)]).created[0]
    before_alarms = [a.to_json() for a in h.alarms()]
    before_anomalies = h.stored(m)
    new_row = h.anomaly(m, device, T0 + 5 * HOUR, 400)
    p.close()
    root = Path(__file__).resolve().parent.parent.parent
    proc = subprocess.run(
        [sys.executable, "-c", CRASH_SCRIPT, str(data), m.id, first["id"], repr(new_row)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 9, proc.stderr  # it really died inside the transaction
    again = Platform(data, compaction_interval_s=0)
    try:
        h2 = Harness(again, tenant.id)
        assert h2.stored(m) == before_anomalies
        assert [a.to_json() for a in h2.alarms()] == before_alarms
        check_invariants(h2)
        # and the same change without the crash goes through whole
        h2.run(m, end=[(first, {"end_ts": T0 + 2 * HOUR})], new=[new_row])
        alarms = h2.alarms()
        assert len(alarms) == 2 and sum(not a.cleared for a in alarms) == 1
        check_invariants(h2)
    finally:
        again.close()


# ---------------------------------------------------------------------------------------------
# invariants with the real engine: random refresh / reprocess / rebuild / threshold edits /
# toggle changes / model deletion over generated series
# ---------------------------------------------------------------------------------------------

FIVE_MIN = 5 * MIN
ENGINE_OPS = st.lists(
    st.tuples(
        st.sampled_from(["refresh", "refresh", "reprocess", "rebuild", "thresholds", "toggle", "delete_model"]),
        st.integers(0, 1),
        st.floats(0.0, 9.0),
        st.booleans(),
    ),
    min_size=1,
    max_size=8,
)


def _series(p, device, seed, start, end, spike=0.0, spike_from=None):
    ts = np.arange(start, end, FIVE_MIN, dtype=np.int64)
    rng = np.random.default_rng(seed + start // FIVE_MIN)
    values = 10 + 2 * np.sin(2 * np.pi * (ts % DAY) / DAY) + rng.normal(0, 0.1, len(ts))
    if spike_from is not None:
        values[ts >= spike_from] += spike
    p.store.write_points(
        [(device, "vibration", int(t), ValueType.DOUBLE, float(v)) for t, v in zip(ts.tolist(), values.tolist())]
    )


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(ops=ENGINE_OPS, storm_limit=st.integers(1, 3))
def test_engine_invariants_after_every_step(tmp_path_factory, ops, storm_limit):
    p = Platform(tmp_path_factory.mktemp("engine") / "data", compaction_interval_s=0)
    try:
        p.alarms.storm_limit = storm_limit
        tenant = p.registry.create_tenant("T")
        devices = [p.registry.save_device(tenant.id, f"pump-{i}", type="pump").id for i in range(2)]
        for i, d in enumerate(devices):
            _series(p, d, i, T0, T0 + 2 * DAY)
        h = Harness(p, tenant.id)
        cfg = ModelConfig(
            name="vib",
            device_type="pump",
            fields=["vibration"],
            train_start=T0,
            train_end=T0 + 2 * DAY,
            window="fixed",
            segment_ms=HOUR,
        )

        def new_model():
            model = p.anomaly.create_model(tenant.id, cfg).build(progress=False)
            p.anomaly.set_refresh(model.id, {"enabled": True, "create_alarms": True})
            return model

        model = new_model()
        end = T0 + 2 * DAY
        for op, i, spike, flag in ops:
            if op == "refresh":  # three more hours, maybe anomalous on one device
                for j, d in enumerate(devices):
                    _series(
                        p,
                        d,
                        j,
                        end,
                        end + 3 * HOUR,
                        spike=spike if j == i else 0.0,
                        spike_from=end + HOUR if flag else None,
                    )
                end += 3 * HOUR
                task = p.tasks.wait(p.anomaly.refresh_now(model.id, end).id, 60)
            elif op == "reprocess":
                task = p.tasks.wait(p.anomaly.reprocess(model.id, T0 + DAY, end, "all", create_alarms=flag).id, 60)
            elif op == "rebuild":
                _, task = p.anomaly.update_model(model.id, {"threshold_percent": 0.5 + spike / 3}, rebuild=True)
                if task is not None:  # None: the drawn threshold is the one it has, nothing to rebuild
                    task = p.tasks.wait(task.id, 60)
                p.anomaly.set_refresh(model.id, {"enabled": True})
            elif op == "thresholds":
                p.anomaly.update_model(model.id, {"warning_threshold": 60.0 + 10 * spike, "warning_enabled": flag})
                task = None
            elif op == "toggle":
                p.anomaly.set_refresh(model.id, {"create_alarms": flag})
                task = None
            else:
                p.anomaly.delete_model(model.id)
                check_invariants(h)
                model = new_model()
                task = None
            assert task is None or task.status == DONE, task.message
            if task is not None and any("ALARM STORM" in line for line in task.log_lines):
                assert task.kind != "BUILD" and p.alarms.last_storm["raised"] > storm_limit
            check_invariants(h)
    finally:
        p.close()
