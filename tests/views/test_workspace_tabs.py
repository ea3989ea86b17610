"""The model tabs' view models (``tbpanel.views.workspace``) on the demo fleet, without a browser.

One demo data directory (fixed end time, both demo models built) per module; every object under
test talks to the real platform: store, anomaly service, task runner.
"""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest

from tbpanel.anomaly.config import SEVERITIES
from tbpanel.anomaly.scoring import AUTO_COOLDOWN_SEGMENTS, severity_for
from tbpanel.demo import DEMO_END_MS, ensure_demo_models, open_demo, planted_anomalies
from tbpanel.views.workspace.clusters import ClusterInfo
from tbpanel.views.workspace.experiments import ExperimentBench, Variant
from tbpanel.views.workspace.inputs import InputDraft
from tbpanel.views.workspace.jobs import JobsDraft
from tbpanel.views.workspace.review import ReviewModel
from tbpanel.views.workspace.tasks import TaskBoard

DAY = 86_400_000


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    p = open_demo(tmp_path_factory.mktemp("tabs") / "demo")
    ensure_demo_models(p, progress=lambda msg: None)
    yield p
    p.close()


def model_named(platform, name):
    return next(m for m in platform.anomaly.list_models() if m.config.name == name)


def test_review_lists_anomalies_by_impact_and_zooms_onto_the_planted_level_shift(platform):
    model = model_named(platform, "Pump health")
    review = ReviewModel(platform, model)
    table = review.anomaly_table()
    stored = platform.anomaly.anomalies(model.id)
    assert len(table) == len(stored) >= 1
    assert list(table["score_index"]) == sorted(table["score_index"], reverse=True)
    planted = planted_anomalies(DEMO_END_MS)
    shift = planted[(planted.device == "Pump P1")].iloc[0]
    s, e = int(shift.start.timestamp() * 1000), int(shift.end.timestamp() * 1000)
    hit = table[(table.device == "Pump P1") & (table.start_ts < e) & (table.end_ts > s)]
    assert len(hit) == 1, table
    row = hit.iloc[0].to_dict()
    assert review.item == row["item"]  # the chart opens on the most important anomaly's device
    review.item = next(i for i in review.devices if i != row["item"])
    lo, hi = review.focus(row["id"])
    assert review.item == row["item"] and review.selected == row["id"]
    assert lo < row["start_ts"] and hi > row["end_ts"]
    assert hi - lo < 3 * (row["end_ts"] - row["start_ts"]) + 3 * 3_600_000
    ts, y = review.series()
    raw = platform.store.numeric_arrays(row["item"], [review.field], lo, hi)[review.field][0]
    inside = ts[(ts >= lo) & (ts < hi)]
    assert np.array_equal(inside, raw)  # every point inside the window
    assert len(ts) < 6_000  # the rest of three weeks is decimated
    scores = review.scores()
    during = scores[(scores.end_ts > row["start_ts"]) & (scores.start_ts < row["end_ts"])]
    assert during.score.max() == pytest.approx(row["score"], abs=0.05)  # the table rounds to 0.1
    assert (scores[scores.end_ts < row["start_ts"] - DAY].score < 100).mean() > 0.9
    with pytest.raises(KeyError):
        review.focus("no-such-anomaly")
    version = review.version()
    task = platform.anomaly.reprocess(model.id, row["start_ts"] - DAY, row["end_ts"] + DAY, [row["item"]])
    assert platform.tasks.wait(task.id, timeout=60).status == "DONE"
    assert review.version() != version  # the tab sees that anomalies may have changed
    review.reload()
    fresh = review.anomaly_table()
    assert row["id"] not in set(fresh["id"])  # the reprocess replaced it by a fresh one, same place
    assert len(fresh[(fresh["item"] == row["item"]) & (fresh["start_ts"] == row["start_ts"])]) == 1


def test_review_opens_and_zooms_on_the_field_that_drove_each_planted_anomaly(platform):
    found = 0
    planted = planted_anomalies(DEMO_END_MS)
    for name in ("Pump health", "Thermostat comfort"):
        review = ReviewModel(platform, model_named(platform, name))
        table = review.anomaly_table()
        top = table.iloc[0]
        assert review.item == top["item"] and review.field == review.driving_field(top["id"])
        for p in planted.itertuples():
            s = int(p.start.timestamp() * 1000)
            e = DEMO_END_MS if pd.isna(p.end) else int(p.end.timestamp() * 1000)
            hit = table[(table.device == p.device) & (table.start_ts < e) & (table.end_ts > s)]
            if hit.empty:
                continue  # this model does not see it (other device type) or missed it (the frozen sensor)
            found += 1
            review.field = next(f for f in review.param.field.objects if f != p.key)  # somewhere else
            review.focus(hit.iloc[0]["id"])
            assert review.field == p.key, (p.device, review.drivers(hit.iloc[0]["id"]))
            shares = review.drivers(hit.iloc[0]["id"])
            assert next(iter(shares)) == p.key and sum(shares.values()) == pytest.approx(1.0)
            ts, _ = review.series()
            assert len(ts) and review.field in platform.store.keys(review.item)
    assert found >= 4  # P1's level shift, P2's drift, T2's spike, T1's open window
    assert ReviewModel(platform, model_named(platform, "Pump health")).field == "vibration"  # P1's shift first


def test_cluster_info_matches_the_stored_statistics(platform):
    model = model_named(platform, "Thermostat comfort")
    info = ClusterInfo(platform, model)
    info.load()
    table = info.table()
    tm = info.trained
    assert len(table) == tm.clusters.k and table.segments.sum() == tm.n_train_segments
    items = len(tm.trained_items)
    for row in table.itertuples():
        # re-scoring the training range puts the segments where the build did (the build's own
        # segmentation may hold one more, trailing segment per device than complete-segment scoring)
        mine = int(np.sum(info.segments.cluster == row.cluster))
        assert row.segments - items <= mine <= row.segments
        edges, counts = info.histogram(row.cluster)
        assert counts.sum() == mine and len(edges) == len(counts) + 1
    curves = info.centroid_curves()
    assert list(curves) == tm.fields and all(c.shape[0] == tm.clusters.k for c in curves.values())
    samples = info.samples(0)
    assert 1 <= len(samples) <= info.samples_per_cluster
    assert [s["score"] for s in samples] == sorted(s["score"] for s in samples)
    assert set(samples[0]["values"]) == set(tm.fields) and samples[0]["device"].startswith("Thermostat")


def test_input_preview_follows_a_threshold_before_saving(platform):
    model = model_named(platform, "Thermostat comfort")
    draft = InputDraft(platform, model)
    scores = [a["score"] for a in platform.anomaly.anomalies(model.id)]
    preview = draft.alarm_preview().set_index("severity")
    assert preview.anomalies.sum() == len(scores)
    th = draft.thresholds()
    for sev in SEVERITIES:
        assert preview.loc[sev.upper(), "anomalies"] == sum(severity_for(s, th) == sev for s in scores)
    new = float(np.median(scores))
    draft.draft.critical_threshold = new
    after = draft.alarm_preview().set_index("severity")
    assert after.loc["CRITICAL", "anomalies"] == sum(s >= new for s in scores)
    assert after.loc["CRITICAL", "training_segments"] == int(np.sum(draft.train_scores() >= new))
    assert draft.rebuild_needed() == []
    assert "major_threshold" not in draft.errors() or new < draft.draft.major_threshold
    draft.draft.warning_enabled = False
    assert draft.alarm_preview().set_index("severity").loc["WARNING", "enabled"] == False  # noqa: E712
    assert platform.anomaly.get_model(model.id).config.critical_threshold is None  # nothing stored yet
    draft.reset()
    assert draft.changes() == {}


def test_input_says_when_a_change_needs_a_rebuild_and_validates(platform):
    model = model_named(platform, "Pump health")
    draft = InputDraft(platform, model)
    draft.draft.threshold_percent = 2.0
    assert draft.rebuild_needed() == ["threshold_percent"] and "requires a rebuild" in draft.rebuild_note()
    assert draft.save(rebuild=False) is None and "requires a rebuild" in draft.message
    assert platform.anomaly.get_model(model.id).config.threshold_percent == model.config.threshold_percent
    draft.reset()
    draft.draft.minor_threshold = 50.0
    assert "below the WARNING threshold" in " ".join(draft.errors()["minor_threshold"])
    assert draft.save() is None and draft.message.startswith("Not saved")
    draft.reset()
    draft.draft.alarm_type = "Pump anomaly"
    assert draft.rebuild_needed() == [] and draft.save() is None and draft.message == "Saved."
    assert platform.anomaly.get_model(model.id).config.alarm_type == "Pump anomaly"


def test_jobs_advice_and_enabling_refresh(platform):
    model = model_named(platform, "Pump health")
    platform.anomaly.set_refresh(model.id, {"enabled": False})
    jobs = JobsDraft(platform, model_named(platform, "Pump health"))
    assert jobs.segment_bound_ms() == jobs.trained.resolved.step_ms()
    jobs.storage_frequency_ms = 300_000
    assert any("below the advised minimum of 1 hour" in a for a in jobs.advice())
    jobs.storage_frequency_ms = 3_600_000  # the 24-min demo segments slide by 12 min: 1 h is not below the step
    assert any("not below the model's sliding step" in a for a in jobs.advice())
    jobs.refresh.param.update(enabled=True, every=2, unit="HOUR", create_alarms=True)
    assert "Every 2 hours" in jobs.schedule_text()
    assert jobs.save() and "Saved" in jobs.message
    stored = platform.anomaly.get_model(model.id).refresh
    assert stored.enabled and stored.every == 2 and stored.create_alarms


def test_tasks_reprocess_history_and_cancel(platform):
    model = model_named(platform, "Thermostat comfort")
    board = TaskBoard(platform, model)
    board.request.param.update(start=DEMO_END_MS, end=DEMO_END_MS - DAY)
    assert board.start_reprocess() is None and "end is after its start" in board.message
    board.request.param.update(items_mode="specific", items=[], start=DEMO_END_MS - 3 * DAY, end=DEMO_END_MS)
    assert board.start_reprocess() is None and "Select at least one device" in board.message
    before = {a["id"] for a in platform.anomaly.anomalies(model.id)}
    gate = threading.Event()
    blocker = platform.tasks.submit("TEST", lambda ctx: gate.wait(30) and {}, model_id=model.id)
    try:
        board.request.param.update(items_mode="trained")
        sig = board.signature()
        task = board.start_reprocess()
        assert task is not None and board.selected == task.id and board.signature() != sig
        hist = board.history()
        assert list(hist.id[:2]) == [task.id, blocker.id] and hist.status.iloc[0] == "QUEUED"
        assert board.cancel(task.id) and board.message == "Cancel requested."
    finally:
        gate.set()
    done = platform.tasks.wait(task.id, timeout=60)
    assert done.status == "CANCELLED" and any("cancelled" in line for line in board.log(task.id))
    assert {a["id"] for a in platform.anomaly.anomalies(model.id)} == before  # earlier anomalies kept
    assert not board.cancel(task.id) and "already ended" in board.message
    task = board.start_reprocess()
    assert platform.tasks.wait(task.id, timeout=60).status == "DONE"
    assert board.history().set_index("id").loc[task.id, "progress"] == 100


def test_tasks_form_starts_from_the_models_switches_and_its_status_follows_the_task(platform):
    model = model_named(platform, "Pump health")
    assert model.refresh.create_alarms and model.refresh.save_telemetry  # the demo's switches
    board = TaskBoard(platform, model)
    assert board.request.create_alarms and board.request.save_telemetry
    platform.anomaly.set_refresh(model.id, {"create_alarms": False, "save_telemetry": False})
    try:
        off = TaskBoard(platform, model_named(platform, "Pump health"))
        assert not off.request.create_alarms and not off.request.save_telemetry
    finally:
        platform.anomaly.set_refresh(model.id, {"create_alarms": True, "save_telemetry": True})
    board.request.param.update(start=DEMO_END_MS - DAY, end=DEMO_END_MS)
    task = board.start_reprocess()
    assert task is not None and task.params_["createAlarms"] and task.params_["saveTelemetry"]
    assert board.followed == task.id and board.message.startswith("Reprocess of")
    done = platform.tasks.wait(task.id, timeout=60)
    assert done.status == "DONE"
    board.follow()  # what the Tasks view does on every change of the task table
    assert "queued" not in board.message and " done: " in board.message
    assert f"{done.result['deleted']} anomalies replaced by {done.result['created']}" in board.message
    assert not board.follow()  # nothing changed since


def test_experiment_variants_merge_anomalous_segments_close_together(platform):
    """A less sensitive variant lets the plateau of P1's level shift dip under 100 here and there;
    its variants inherit the ensemble's merge rule, so pieces that close stay one anomaly."""
    model = model_named(platform, "Pump health")
    bench = ExperimentBench(platform, model, start=DEMO_END_MS - 7 * DAY, end=DEMO_END_MS)
    assert bench.merge_segments == AUTO_COOLDOWN_SEGMENTS and model.config.cooldown_segments is None
    less = next(v for v in bench.variants if v.label == "less sensitive")
    assert bench.named()["less sensitive"] == {**less.overrides(), "cooldown_segments": AUTO_COOLDOWN_SEGMENTS}
    segment = platform.anomaly.trained(model.id).segment_ms
    results = {}
    for merge in (0, AUTO_COOLDOWN_SEGMENTS, 12):
        bench.merge_segments = merge
        run = platform.anomaly.experiment(model.id, bench.named(), bench.start, bench.end, "trained")
        results[merge] = run["less sensitive"]
        by_item: dict = {}
        for a in sorted(results[merge], key=lambda a: a["start_ts"]):
            by_item.setdefault(a["item"], []).append(a)
        for pieces in by_item.values():  # no two anomalies of a device closer than the merge
            assert all(b["start_ts"] - a["end_ts"] > merge * segment for a, b in zip(pieces, pieces[1:]))
    assert len(results[0]) > 1  # unmerged, the one planted window comes in pieces
    assert len(results[12]) <= len(results[AUTO_COOLDOWN_SEGMENTS]) <= len(results[0])
    assert len(results[12]) == 1  # twelve segments bridge every dip of the plateau
    bench.merge_segments = 0
    assert bench.named()["less sensitive"] == less.overrides()  # 0: as the model


def test_experiment_compares_variants_without_touching_the_model_then_promotes_one(platform):
    model = model_named(platform, "Thermostat comfort")
    bench = ExperimentBench(platform, model, start=DEMO_END_MS - 7 * DAY, end=DEMO_END_MS)
    assert [v.label for v in bench.variants] == ["more sensitive", "less sensitive"]
    bench.variants = [*bench.variants, Variant(label="current")]
    assert any("different" in p for p in bench.problems()) and bench.run() is None
    bench.variants = bench.variants[:2] + [Variant(label="hourly", segment_ms=3_600_000, window="fixed")]
    before = [a["id"] for a in platform.anomaly.anomalies(model.id)]
    task = bench.run()
    assert platform.tasks.wait(task.id, timeout=120).status == "DONE"
    comp = bench.comparison().set_index("variant")
    assert list(comp.index) == ["current", "more sensitive", "less sensitive", "hourly"]
    direct = platform.anomaly.compare(
        platform.anomaly.experiment(model.id, bench.named(), bench.start, bench.end, "trained")
    ).set_index("variant")
    assert comp.anomalies.to_dict() == direct.anomalies.to_dict()
    assert comp.loc["more sensitive", "anomalies"] >= comp.loc["less sensitive", "anomalies"]
    assert len(bench.anomalies()) == comp.anomalies.sum()
    assert [a["id"] for a in platform.anomaly.anomalies(model.id)] == before  # nothing stored changed
    rebuild = bench.promote("more sensitive")
    assert rebuild is not None and "rebuilding" in bench.message
    assert platform.tasks.wait(rebuild.id, timeout=120).status == "DONE"
    stored = platform.anomaly.get_model(model.id)
    assert stored.config.threshold_percent == 2 * model.config.threshold_percent and stored.status == "READY"
