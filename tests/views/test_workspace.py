"""The anomaly workspace's view models without a browser: data readiness, the creation wizard,
the models list (toggles, duplicate, delete and its alarm wording) and the Result numbers."""

from __future__ import annotations

import pandas as pd
import pytest

from tbpanel.anomaly.config import ModelConfig
from tbpanel.views.workspace.models_list import ModelsList
from tbpanel.views.workspace.readiness import assess
from tbpanel.views.workspace.result import ResultSummary
from tbpanel.views.workspace.wizard import STEPS, ModelWizard
from tests.helpers.workspace import DAY, HOUR, MIN, T0, built, write


# -- readiness ------------------------------------------------------------------------------------
def test_readiness_counts_what_the_store_holds(env):
    platform, _, devices = env
    r = assess(platform.store, devices, ["vibration", "flow", "nothing"], T0, T0 + 7 * DAY)
    assert (r.entities, r.keys, r.keys_missing) == (3, ["flow", "vibration"], ["nothing"])
    assert r.points == 3 * 2 * 7 * 24 * 60 and r.step_ms == MIN
    assert (r.first_ts, r.last_ts) == (T0, T0 + 7 * DAY - MIN)
    assert r.coverage == pytest.approx(1.0) and r.segments == pytest.approx(3 * 7 * 60, abs=1)
    assert r.verdict == "Excellent", r.reasons
    assert any("nothing" in why for why in r.reasons)


@pytest.mark.parametrize(
    "days, devices_used, verdict", [(0.5, 3, "Poor"), (2, 3, "Fair"), (5, 3, "Good"), (7, 1, "Good")]
)
def test_readiness_verdict_follows_history_and_devices(env, days, devices_used, verdict):
    platform, _, devices = env
    r = assess(platform.store, devices[:devices_used], ["vibration"], T0, T0 + int(days * DAY))
    assert r.verdict == verdict, r.reasons
    assert r.reasons and all(isinstance(x, str) for x in r.reasons)


def test_readiness_sees_gaps_in_the_range(env):
    platform, _, devices = env
    # the range asks for 28 days, the data covers 7: a quarter covered is Poor, and it says why
    r = assess(platform.store, devices, ["vibration"], T0 - 21 * DAY, T0 + 7 * DAY)
    assert r.coverage == pytest.approx(0.25, abs=0.01)
    assert r.verdict == "Poor" and any("25 % of the range" in why for why in r.reasons)
    empty = assess(platform.store, devices, ["vibration"], T0 - 9 * DAY, T0 - 8 * DAY)
    assert empty.verdict == "Poor" and empty.points == 0 and "No numeric data" in empty.reasons[0]


def test_readiness_reports_a_coarser_step(env):
    platform, tenant, _ = env
    d = platform.registry.save_device(tenant.id, "slow", type="slow").id
    write(platform, d, 9, T0, T0 + 30 * DAY, step=HOUR)
    r = assess(platform.store, [d], [], T0, T0 + 30 * DAY)
    assert r.step_ms == HOUR and r.keys == ["vibration"] and r.segments == 30
    assert r.verdict == "Poor" and "30 training segments" in r.reasons[0]  # a month of hourly data: 30 days


# -- wizard ---------------------------------------------------------------------------------------
def walk(platform, tenant, devices, **choices) -> ModelWizard:
    w = ModelWizard(platform, tenant_id=tenant.id)
    w.intent = choices.get("intent", "quick_scan")
    assert w.next() == [] and w.step == 1
    w.device_type = "pump"
    w.set_range("custom", T0, T0 + 7 * DAY)
    w.fields = choices.get("fields", ["vibration"])
    assert w.next() == [] and STEPS[w.step] == "Readiness"
    w.check_readiness()
    assert w.next() == [] and w.step == 3
    w.sensitivity = choices.get("sensitivity", "medium")
    if "segment_ms" in choices:
        w.segment_ms = choices["segment_ms"]
    w.model_name = choices.get("name", "pump scan")
    assert w.next() == [] and w.step == 4
    return w


def test_wizard_profile_lists_devices_and_keys(env):
    platform, tenant, devices = env
    w = ModelWizard(platform, tenant_id=tenant.id)
    assert w.param.device_type.objects == ["lamp", "pump"]
    w.device_type = "pump"
    assert sorted(w.devices.values()) == sorted(devices) and w.keys_available == ["flow", "vibration"]
    assert w.fields == ["flow", "vibration"] and w.item_ids() == list(w.devices.values())
    w.device_type = "lamp"
    assert w.keys_available == [] and w.fields == []
    w.step = 1
    assert "Choose at least one telemetry key." in w.next() and w.step == 1


def test_wizard_maps_intent_and_sensitivity_to_the_preset(env):
    platform, tenant, devices = env
    w = walk(platform, tenant, devices, intent="operational_monitoring", sensitivity="high")
    expected = ModelConfig.preset("operational_monitoring", "high", MIN)
    cfg = w.config
    for knob in ("window", "sliding_step_percent", "segment_ms", "comparison", "adaptive", "threshold_percent"):
        assert getattr(cfg, knob) == getattr(expected, knob), knob
    assert (cfg.device_type, cfg.fields, cfg.items, cfg.train_start, cfg.train_end) == (
        "pump",
        ["vibration"],
        [],
        T0,
        T0 + 7 * DAY,
    )
    assert cfg.name == "pump scan" and cfg.telemetry_key == "pump_scan" and cfg.validate() == []


def test_wizard_granularities_derive_from_the_step(env):
    platform, tenant, devices = env
    w = walk(platform, tenant, devices, intent="quick_scan")
    g = w.granularities()
    assert list(g.values()) == sorted(g.values())
    assert {12 * MIN, 30 * MIN, HOUR, 2 * HOUR} <= set(g.values())  # 12/24/48/96 one-minute steps, rounded
    rec = [label for label in g if label.endswith("recommended")]
    assert len(rec) == 1 and g[rec[0]] == ModelConfig.preset("quick_scan", step_ms=MIN).segment_ms == w.segment_ms
    w.step = 3
    w.segment_ms = 2 * HOUR
    w.next()
    assert w.config.segment_ms == 2 * HOUR


def test_wizard_review_reports_problems_per_field_and_names_in_use(env):
    platform, tenant, devices = env
    w = walk(platform, tenant, devices)
    w.config.major_threshold, w.config.minor_threshold = 150.0, 300.0
    assert "major_threshold" in w.config.validate_by_field()
    assert any(p.startswith("major_threshold:") for p in w.problems())
    with pytest.raises(ValueError):
        w.build()
    w.config.major_threshold = 400.0
    model, task = w.build()
    assert platform.tasks.wait(task.id, timeout=120).status == "DONE"
    w2 = walk(platform, tenant, devices)
    assert any("exists" in p for p in w2.problems())
    assert platform.anomaly.get_model(model.id).status == "READY"


# -- models list ------------------------------------------------------------------------------------
def test_models_list_rows_and_toggles(env):
    platform, tenant, devices = env
    model = built(platform, tenant)
    fresh = platform.anomaly.create_model(tenant.id, ModelConfig(name="unbuilt", device_type="pump"))
    other = platform.registry.create_tenant("Other")
    platform.anomaly.create_model(other.id, ModelConfig(name="theirs", device_type="pump"))
    lst = ModelsList(platform, tenant_id=tenant.id).refresh()
    rows = {r.title: r for r in lst.rows}
    assert set(rows) == {"vib", "unbuilt"}
    n = len(platform.anomaly.anomalies(model.id))
    r = rows["vib"]
    assert (r.status, r.built, r.anomalies, r.monitoring, r.progress) == ("READY", True, n, False, None)
    assert r.items == len({a["item"] for a in platform.anomaly.anomalies(model.id)}) and r.last_run != "never"
    lst.toggle(model.id, "monitoring", True)
    lst.toggle(model.id, "alarms", True)
    refresh = platform.anomaly.get_model(model.id).refresh
    assert refresh.enabled and refresh.create_alarms and not refresh.save_telemetry
    with pytest.raises(ValueError, match="build the model"):
        lst.toggle(fresh.id, "monitoring", True)
    with pytest.raises(PermissionError):
        ModelsList(platform, tenant_id=other.id).toggle(model.id, "saving", True)


def test_models_list_duplicate_builds_a_copy(env):
    platform, tenant, _ = env
    model = built(platform, tenant)
    lst = ModelsList(platform, tenant_id=tenant.id)
    lst.toggle(model.id, "monitoring", True)
    copy, task = lst.duplicate(model.id)
    copy2, task2 = lst.duplicate(model.id)
    assert (copy.config.name, copy2.config.name) == ("vib (copy)", "vib (copy) 2")
    assert platform.tasks.wait(task.id, timeout=120).status == "DONE"
    platform.tasks.wait(task2.id, timeout=120)
    a = platform.anomaly.get_model(copy.id)
    assert a.status == "READY" and not a.refresh.enabled
    assert a.config.copy(name="vib").to_dict() == model.config.to_dict()
    assert len(platform.anomaly.anomalies(copy.id)) == len(platform.anomaly.anomalies(model.id))


@pytest.mark.parametrize("behaviour", ["clear", "delete"])
def test_delete_warning_spells_out_the_alarm_behaviour_and_delete_applies_it(env, behaviour):
    platform, tenant, devices = env
    model = built(platform, tenant, alarm_on_delete=behaviour)
    lst = ModelsList(platform, tenant_id=tenant.id)
    lst.toggle(model.id, "alarms", True)
    task = platform.anomaly.reprocess(model.id, T0, T0 + 7 * DAY, create_alarms=True)
    assert platform.tasks.wait(task.id, timeout=120).status == "DONE"
    from tbpanel.alarms import AlarmQuery

    alarms, total = platform.alarms.repo.query(AlarmQuery(tenant.id, model_id=model.id))
    assert total >= 1
    n = len(platform.anomaly.anomalies(model.id))
    text = lst.delete_warning(model.id)
    active = platform.alarms.repo.query(AlarmQuery(tenant.id, model_id=model.id, search_status="ACTIVE"))[1]
    assert f"Its {n} anomal" in text and "_EAD_anomaly" in text
    assert f"alarm behaviour on anomaly deletion* = {behaviour}" in text
    plural = "s" if total != 1 else ""
    if behaviour == "clear":
        assert "**cleared**" in text and f"{active} of its {total} alarm{plural}" in text
    else:
        assert "**deleted**" in text and f"{total} alarm{plural} disappear" in text
    lst.delete(model.id)
    assert platform.anomaly.get_model(model.id) is None
    after = {a.id: a for a in platform.alarms.repo.query(AlarmQuery(tenant.id))[0]}
    for a in alarms:
        if behaviour == "clear":
            assert after[a.id].cleared
        else:
            assert a.id not in after


# -- result --------------------------------------------------------------------------------------------
def test_result_summary_matches_the_service(env):
    platform, tenant, devices = env
    model = built(platform, tenant)
    names = {d: platform.registry.get_device(d).name for d in devices}
    s = ResultSummary(platform.anomaly, device_name=names.get, model_id=model.id, top_n=3).refresh()
    df = platform.anomaly.anomalies_frame(model.id)
    assert len(df) >= 2
    assert s.anomalies == len(df) and s.affected_items == df["item"].nunique()
    assert s.peak_score == pytest.approx(df["score"].max()) and s.score_max == pytest.approx(df["score"].max())
    assert s.score_min == pytest.approx(df["score"].min())
    assert s.total_impact == pytest.approx(df["score_index"].sum()) and s.active == int(df["active"].sum())
    assert list(s.top["score_index"]) == sorted(df["score_index"], reverse=True)[:3]
    assert s.top.iloc[0]["device"] == names[s.top.iloc[0]["item"]]
    assert list(s.ranked["impact"]) == sorted(s.ranked["impact"], reverse=True)
    assert s.ranked["anomalies"].sum() == len(df) and set(s.ranked["device"]) <= set(names.values())
    # the planted spikes of pump-0 (day 4) and pump-1 (day 2) are in the activity grid
    days = {(r.device, r.day) for r in s.activity.itertuples()}
    assert ("pump-0", pd.Timestamp(T0 + 4 * DAY, unit="ms", tz="UTC")) in days
    assert ("pump-1", pd.Timestamp(T0 + 2 * DAY, unit="ms", tz="UTC")) in days
    assert s.activity["anomalies"].sum() == len(df)
    assert s.score_range.count("–") == 1


def test_result_summary_of_a_model_without_anomalies(env):
    platform, tenant, _ = env
    model = platform.anomaly.create_model(tenant.id, ModelConfig(name="new", device_type="pump"))
    s = ResultSummary(platform.anomaly, model_id=model.id).refresh()
    assert (s.anomalies, s.affected_items, s.peak_score, s.total_impact, s.score_range) == (0, 0, 0.0, 0.0, "–")
    assert s.top.empty and s.ranked.empty and s.activity.empty
