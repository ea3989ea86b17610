"""The wizard's human face without a browser: a label, unit and help for every setting the
Advanced form shows, one segment recommendation shared by readiness and granularity, and the
device picker by name (issue 19, item 4)."""

from __future__ import annotations

import re

import pytest

from tbpanel.anomaly.config import ModelConfig
from tbpanel.ui.workspace.wizard import NOT_ADVANCED, AdvancedForm
from tbpanel.views.workspace.readiness import assess
from tbpanel.views.workspace.settings import SETTINGS, duration_options, help_text, setting
from tbpanel.views.workspace.wizard import ModelWizard, recommended_segment
from tests.helpers.workspace import DAY, HOUR, MIN, T0

from .test_workspace import walk

#: abbreviations of the knobs' Python names that mean nothing to a newcomer
JARGON = {"ms", "eps", "gmm", "dbscan", "dtw", "n", "iter", "pct", "percent"}


def test_every_advanced_setting_has_a_human_label_and_help():
    shown = [k for k in ModelConfig.param if k not in NOT_ADVANCED]
    assert set(SETTINGS) == set(ModelConfig.param)  # the table covers every knob, nothing else
    for knob in shown:
        row = setting(knob)
        assert row.label and row.label != knob and "_" not in row.label, knob
        # "Dbscan eps", "Gmm components", "Segment ms": a Python name with jargon in it is no label
        if set(knob.split("_")) & JARGON:
            assert row.label.lower() != knob.replace("_", " "), f"{knob}: {row.label!r} is the Python name"
        assert not re.search(r"\bms\b", row.title), f"{knob}: {row.title!r} shows milliseconds"
        assert help_text(knob), f"{knob} has no help text"
    titles = [setting(k).title for k in shown]
    assert len(set(titles)) == len(titles)  # no two fields look alike
    assert setting("dbscan_eps").title.startswith("DBSCAN radius (ε)")
    assert setting("gmm_components").label == "Gaussian mixture components"
    assert setting("segment_ms").label == "Segment length" and setting("segment_ms").kind == "duration"
    # every *_ms knob is a duration choice or a date, never a raw millisecond number
    for knob in shown:
        if knob.endswith("_ms") or knob in ("train_start", "train_end"):
            assert setting(knob).kind in ("duration", "date"), knob


def test_the_advanced_form_draws_labels_pickers_and_durations_from_the_table(env):
    platform, tenant, devices = env
    w = walk(platform, tenant, devices)
    form = AdvancedForm(config=w.config, devices=dict(w.devices))
    widgets = form._widgets
    for knob, widget in widgets.items():
        assert widget.name.startswith(setting(knob).label), (knob, widget.name)
    assert type(widgets["train_start"]).__name__ == "DatetimePicker" and widgets["train_start"].allow_input
    assert widgets["segment_ms"].options["1 h"] == HOUR and widgets["segment_ms"].value == w.config.segment_ms
    # the device picker offers the profile's devices by name and stores their ids
    picker = widgets["items"]
    assert type(picker).__name__ == "MultiChoice" and picker.options == dict(sorted(w.devices.items()))
    assert set(picker.options) == {"pump-0", "pump-1", "pump-2"}
    picker.value = [w.devices["pump-1"]]
    assert form.config.items == [devices[1]]
    # a date picked is epoch ms in the config
    widgets["train_end"].value = widgets["train_end"].value.replace(day=3)
    assert form.config.train_end == T0 + 2 * DAY


def test_device_options_are_names_and_keep_ids_the_profile_lacks(env):
    platform, tenant, devices = env
    w = ModelWizard(platform, tenant_id=tenant.id)
    w.device_type = "pump"
    assert w.device_options() == {f"pump-{i}": d for i, d in enumerate(devices)}
    assert w.device_options(["gone-id"])["unknown device gone-id"] == "gone-id"


def test_duration_options_offer_auto_and_keep_an_odd_value():
    opts = duration_options("segment_ms", 90_000)
    assert opts["auto"] == 0 and opts["90 s"] == 90_000 and opts["30 min"] == 30 * MIN
    assert list(opts.values()) == sorted(opts.values())
    assert "auto" not in duration_options("storage_frequency_ms", HOUR)  # 0 is not allowed there


@pytest.mark.parametrize("intent", ["quick_scan", "operational_monitoring", "comparative_analysis"])
def test_readiness_counts_the_segments_the_next_step_recommends(env, intent):
    platform, tenant, devices = env
    w = walk(platform, tenant, devices, intent=intent)
    r, rec = w.readiness, w.recommended_segment()
    assert rec == recommended_segment(intent, MIN) == ModelConfig.preset(intent, step_ms=MIN).segment_ms
    assert r.segment_ms == rec == w.segment_ms  # what readiness counted is what granularity preselects
    [recommended] = [label for label, seg in w.granularities().items() if label.endswith("recommended")]
    assert w.granularities()[recommended] == rec
    assert r.segments == pytest.approx(3 * 7 * DAY / rec, abs=1)
    points = f"~{rec // MIN} points"
    assert points in r.reasons[0] and points in recommended, (r.reasons[0], recommended)
    # without a recommendation, readiness counts ModelConfig's auto segments (24 steps)
    plain = assess(platform.store, devices, ["vibration"], T0, T0 + 7 * DAY)
    assert plain.segment_ms == 24 * MIN
