"""ModelConfig: validation messages, exact JSON round trip, rebuild rules, presets, auto knobs."""

from __future__ import annotations

import json

import pytest

from tbpanel.anomaly import INTENTS, SENSITIVITIES, ModelConfig


def test_defaults_are_valid_and_domain_object_has_no_panel():
    import subprocess
    import sys

    cfg = ModelConfig()
    assert cfg.validate() == []
    assert cfg.check() is cfg
    out = subprocess.run(
        [sys.executable, "-c", "import sys, tbpanel.anomaly; print('panel' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "False"


def test_validation_messages_name_the_field():
    cfg = ModelConfig(
        train_start=2_000,
        train_end=1_000,
        comparison="feature",
        features=["mean", "bogus"],
        segment_ms=3_600_000,
        max_gap_ms=7_200_000,
        min_duration_ms=7_200_000,
        minor_threshold=300.0,
        major_threshold=200.0,
        telemetry_key="bad key!",
        name=" ",
    )
    by_field = cfg.validate_by_field()
    assert set(by_field) >= {
        "train_end",
        "features",
        "max_gap_ms",
        "min_duration_ms",
        "major_threshold",
        "telemetry_key",
        "name",
    }
    msgs = cfg.validate()
    assert any(m.startswith("train_end: ") and "end after it starts" in m for m in msgs)
    assert any(m.startswith("features: ") and "bogus" in m for m in msgs)
    assert any(m.startswith("major_threshold: ") and "below the MINOR" in m for m in msgs)
    with pytest.raises(ValueError) as e:
        cfg.check()
    assert "train_end" in str(e.value) and "telemetry_key" in str(e.value)


def test_disabled_tier_is_not_checked_for_order_and_all_disabled_is_flagged():
    ok = ModelConfig(minor_threshold=300.0, major_threshold=200.0, minor_enabled=False)
    assert ok.validate() == []
    none = ModelConfig(warning_enabled=False, minor_enabled=False, major_enabled=False, critical_enabled=False)
    assert any(m.startswith("warning_enabled: ") for m in none.validate())


def test_dtw_with_feature_based_and_param_bounds():
    cfg = ModelConfig(comparison="feature", distance="dtw")
    assert any(m.startswith("distance: ") for m in cfg.validate())
    with pytest.raises(ValueError):
        ModelConfig(threshold_percent=0)  # param enforces single-value bounds
    with pytest.raises(ValueError):
        ModelConfig(window="tumbling")


def test_json_round_trip_is_exact():
    cfg = ModelConfig(
        name="pumps",
        device_type="pump",
        fields=["pressure", "flow"],
        items=["p1", "p2"],
        train_start=1_600_000_000_000,
        train_end=1_700_000_000_000,
        segment_ms=21_600_000,
        window="fixed",
        comparison="feature",
        features=["min", "max", "q50"],
        algorithm="gmm",
        gmm_components=3,
        auto_clusters=False,
        threshold_percent=2.5,
        cluster_joining=False,
        minor_threshold=150.5,
        critical_enabled=False,
        alarm_on_delete="delete",
        adaptive=False,
        refit_every_segments=3,
        clip=0.25,
    )
    text = cfg.to_json()
    again = ModelConfig.from_json(text)
    assert again.to_json() == text
    assert again.to_dict() == cfg.to_dict()
    assert json.loads(text)["features"] == ["min", "max", "q50"]
    with pytest.raises(ValueError, match="Unknown"):
        ModelConfig.from_dict(cfg.to_dict() | {"no_such_knob": 1})


def test_needs_rebuild():
    old = ModelConfig(fields=["t"])
    free = old.copy(
        name="renamed",
        telemetry_key="k2",
        storage_frequency_ms=60_000,
        alarm_type="X",
        warning_threshold=120.0,
        critical_enabled=False,
        alarm_on_delete="delete",
    )
    assert ModelConfig.needs_rebuild(old, free) == []
    changed = old.copy(segment_ms=3_600_000, threshold_percent=3.0, name="x")
    assert ModelConfig.needs_rebuild(old, changed) == ["segment_ms", "threshold_percent"]
    assert "name" in ModelConfig.REBUILD_FREE and "telemetry_key" in ModelConfig.REBUILD_FREE


@pytest.mark.parametrize("intent", INTENTS)
@pytest.mark.parametrize("sensitivity", SENSITIVITIES)
def test_presets_are_valid_and_follow_sensitivity(intent, sensitivity):
    cfg = ModelConfig.preset(intent, sensitivity, step_ms=60_000)
    assert cfg.validate() == []
    assert cfg.segment_ms >= 16 * 60_000
    low = ModelConfig.preset(intent, "low", step_ms=60_000)
    high = ModelConfig.preset(intent, "high", step_ms=60_000)
    assert low.threshold_percent < high.threshold_percent
    assert cfg.storage_frequency_ms <= cfg.segment_ms
    with pytest.raises(ValueError):
        ModelConfig.preset("bogus", sensitivity)


def test_resolved_fills_auto_knobs_from_the_step():
    cfg = ModelConfig()
    r = cfg.resolved(300_000)  # 5-minute data
    assert r.segment_ms == 24 * 300_000
    assert r.step_ms() == 12 * 300_000  # sliding 50 %
    assert r.aggregation_points == 12
    assert r.min_points == 12 and r.min_duration_ms == r.segment_ms // 2
    assert r.max_gap_ms == max(4 * 300_000, r.segment_ms // 4)
    explicit = ModelConfig(segment_ms=3_600_000, max_gap_ms=60_000, window="fixed").resolved(300_000)
    assert explicit.segment_ms == 3_600_000 and explicit.max_gap_ms == 60_000
    assert explicit.step_ms() == 3_600_000
