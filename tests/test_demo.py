"""The demo's story without a browser: its start-up raises alarms from the planted anomalies
(through a real reprocess), once, and the anomaly still going on at the history's end goes on
in the live simulator's values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tbpanel.alarms.query import AlarmQuery
from tbpanel.demo import (
    DEMO_END_MS,
    FleetSimulator,
    ensure_demo_models,
    history_end,
    load_fleet,
    open_demo,
    planted_anomalies,
    series_values,
)

DAY = 86_400_000


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    p = open_demo(tmp_path_factory.mktemp("demo-story") / "demo")
    ensure_demo_models(p, progress=lambda msg: None)
    yield p
    p.close()


def alarms(platform):
    tenant = platform.registry.find_tenant(load_fleet()["tenant"])
    rows, total = platform.alarms.repo.query(AlarmQuery(tenant.id, page_size=1000))
    assert total == len(rows)
    return rows


def ms(ts) -> int:
    return int(ts.timestamp() * 1000)


def test_start_up_raises_active_and_cleared_alarms_from_the_planted_anomalies(platform):
    rows = alarms(platform)
    truth = planted_anomalies(DEMO_END_MS)
    ongoing = truth[truth["end"].isna()]
    assert list(ongoing["device"]) == ["Thermostat T1"]
    active = [a for a in rows if not a.cleared]
    assert [a.originator_name for a in active] == ["Thermostat T1"]
    assert ms(ongoing["start"].iloc[0]) <= active[0].start_ts < active[0].end_ts <= DEMO_END_MS
    assert active[0].end_ts > DEMO_END_MS - DAY  # it runs up to the history's end
    cleared = [a for a in rows if a.cleared]
    assert {"Pump P1", "Thermostat T2"} <= {a.originator_name for a in cleared}
    assert all(a.clear_ts == a.end_ts for a in cleared)  # cleared at the data time the episode ended
    # every alarm lies on a planted anomaly, and its anomaly is one the models hold now
    anomalies = {a["id"]: a for m in platform.anomaly.list_models() for a in platform.anomaly.anomalies(m.id)}
    for alarm in rows:
        mine = truth[truth["device"] == alarm.originator_name]
        ends = [DEMO_END_MS if pd.isna(e) else ms(e) for e in mine["end"]]  # NaT: still going on
        assert any(alarm.start_ts < e and alarm.end_ts > ms(s) for s, e in zip(mine["start"], ends)), alarm
        assert alarm.anomaly_id in anomalies and alarm.details["modelId"] == alarm.model_id
        assert anomalies[alarm.anomaly_id]["active"] == (not alarm.cleared)


def test_a_restarted_demo_adds_no_alarm(platform):
    before = sorted(a.id for a in alarms(platform))
    anomalies = {
        m.id: sorted(a["id"] for a in platform.anomaly.anomalies(m.id)) for m in platform.anomaly.list_models()
    }
    tasks = len(platform.tasks.list(limit=1000))
    ensure_demo_models(platform, progress=lambda msg: None)
    assert sorted(a.id for a in alarms(platform)) == before
    assert {
        m.id: sorted(a["id"] for a in platform.anomaly.anomalies(m.id)) for m in platform.anomaly.list_models()
    } == (anomalies)
    assert len(platform.tasks.list(limit=1000)) == tasks  # no reprocess ran again


def test_the_ongoing_anomaly_goes_on_in_the_live_data(platform):
    assert history_end(platform) == DEMO_END_MS
    sim = FleetSimulator(platform, "http://127.0.0.1:1")
    assert sim.end_ms == DEMO_END_MS  # the simulator places anomalies where the history did
    fleet = load_fleet()
    calm = dict(fleet, anomalies=[])  # the same fleet without planted anomalies
    later = np.arange(DEMO_END_MS, DEMO_END_MS + 3 * DAY, 3_600_000, dtype=np.int64)
    for device, key, shift in (("Thermostat T1", "temperature", -4.0), ("Thermostat T2", "temperature", 0.0)):
        live = series_values(fleet, device, key, later, sim.end_ms)
        normal = series_values(calm, device, key, later, sim.end_ms)
        np.testing.assert_allclose(live - normal, shift, atol=1e-6)  # T2's spike is long over
    assert FleetSimulator(None, "http://127.0.0.1:1").end_ms > DEMO_END_MS - DAY  # no platform: its start
