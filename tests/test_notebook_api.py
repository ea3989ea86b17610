"""The API the notebooks use: the demo copy, name/unit helpers, the reprs and the server helper."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import tbpanel
from tbpanel.demo import (
    DEMO_END_MS,
    TENANT_EMAIL,
    TENANT_PASSWORD,
    demo_device_ids,
    demo_query,
    demo_units,
    load_fleet,
    open_demo,
    planted_anomalies,
)
from tbpanel.notebook import ServerProcess, start_server

DAY = 86_400_000


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    platform = open_demo(tmp_path_factory.mktemp("demo"))
    yield platform
    platform.close()


@pytest.fixture(scope="module")
def pump_model(demo):
    tenant = demo.registry.find_tenant("Demo tenant")
    cfg = tbpanel.ModelConfig.preset(
        "operational_monitoring",
        "medium",
        step_ms=60_000,
        name="pumps",
        device_type="pump",
        fields=["vibration", "pressure"],
    )
    return demo.anomaly.create_model(tenant.id, cfg).build(progress=False)


def test_open_demo_is_deterministic_and_reopens(tmp_path, demo):
    ids = demo_device_ids(demo)
    a = demo.store.query([ids["Pump P1"]], ["vibration"], DEMO_END_MS - DAY, DEMO_END_MS)
    other = open_demo(tmp_path / "again")
    try:
        ids2 = demo_device_ids(other)
        b = other.store.query([ids2["Pump P1"]], ["vibration"], DEMO_END_MS - DAY, DEMO_END_MS)
        np.testing.assert_array_equal(a["vibration"].values, b["vibration"].values)
        np.testing.assert_array_equal(a["time"].values, b["time"].values)
        assert a.sizes["time"] == 24 * 60
        # the history ends exactly at DEMO_END_MS
        assert int(other.store.stats()["points"]) == 21 * 24 * 60 * 15
    finally:
        other.close()
    again = open_demo(tmp_path / "again")  # a second open finds the demo and adds nothing
    try:
        assert demo_device_ids(again) == ids2
        assert again.store.stats()["points"] == 21 * 24 * 60 * 15
    finally:
        again.close()


def test_demo_device_ids_by_name(demo):
    ids = demo_device_ids(demo)
    assert sorted(ids) == sorted(d["name"] for d in load_fleet()["devices"])
    assert list(demo_device_ids(demo, ["Pump P2", "Thermostat T1"])) == ["Pump P2", "Thermostat T1"]
    with pytest.raises(KeyError, match="Pump P9"):
        demo_device_ids(demo, ["Pump P9"])


def test_demo_units_come_from_the_fleet():
    units = demo_units()
    assert units["temperature"] == "°C" and units["vibration"] == "mm/s"
    assert set(units) == {"temperature", "humidity", "pressure", "flow", "vibration"}


def test_demo_query_labels_names_and_units(demo):
    ds = demo_query(
        demo,
        ["Thermostat T2", "Pump P1"],
        ["temperature", "vibration"],
        start=DEMO_END_MS - 2 * DAY,
        end=DEMO_END_MS,
        interval="1h",
        agg="avg",
    )
    assert list(ds["device"].values) == ["Thermostat T2", "Pump P1"]
    assert ds.sizes["time"] == 48
    assert ds["temperature"].attrs["units"] == "°C" and ds["vibration"].attrs["units"] == "mm/s"
    assert ds.attrs["agg"] == "AVG"
    # a pump has no temperature: NaN, not a made-up value
    assert np.isnan(ds["temperature"].sel(device="Pump P1").values).all()
    assert np.isfinite(ds["temperature"].sel(device="Thermostat T2").values).all()


def test_planted_anomalies_match_the_data(demo):
    truth = planted_anomalies()
    assert list(truth["device"]) == [a["device"] for a in load_fleet()["anomalies"]]
    spike = truth[truth["kind"] == "spike"].iloc[0]
    assert spike.end - spike.start == pd.Timedelta("90min")
    ds = demo_query(
        demo, spike.device, spike.key, start=spike.start - pd.Timedelta("1D"), end=spike.end + pd.Timedelta("1D")
    )
    s = ds[spike.key].sel(device=spike.device).to_series()
    inside = s[(s.index >= spike.start.tz_localize(None)) & (s.index < spike.end.tz_localize(None))]
    outside = s.drop(inside.index)
    assert inside.min() > outside.max()  # a 7 degree spike on a 1.8 degree daily swing


def test_store_repr_shows_devices_keys_span_and_size(demo):
    text = repr(demo.store)
    assert "devices=6" in text and "series=15" in text
    assert "2026-10-30 00:00 UTC .. 2026-11-19 23:59 UTC" in text
    assert "keys=[flow, humidity, pressure, temperature, vibration]" in text
    assert "MiB" in text
    html = demo.store._repr_html_()
    assert "<table>" in html and "vibration" in html and "2026-11-19 23:59 UTC" in html


def test_store_repr_of_an_empty_and_a_closed_store(tmp_path):
    store = tbpanel.open_store(tmp_path / "s")
    assert "devices=0" in repr(store) and "span=empty" in repr(store)
    store.write("dev", {"x": 1}, ts=1_000)
    assert "span=1970-01-01 00:00 UTC .. 1970-01-01 00:00 UTC" in repr(store)
    store.close()
    assert "closed" in repr(store) and "closed" in store._repr_html_()


def test_model_summary_and_repr(demo, pump_model):
    s = pump_model.summary()
    assert s["status"] == "READY" and s["fields"] == ["vibration", "pressure"]
    assert s["segment"] == "30 min" and s["threshold_percent"] == 1.0 and s["refresh"] == "off"
    df = pump_model.anomalies()
    assert s["anomalies"] == len(df) > 0 and s["peak_score"] == pytest.approx(df["score"].max())
    html = pump_model._repr_html_()
    assert "READY" in html and "pumps" in html and "anomalies" in html
    tenant = demo.registry.find_tenant("Demo tenant")
    fresh = demo.anomaly.create_model(tenant.id, {"name": "new", "device_type": "pump", "fields": ["flow"]})
    assert fresh.summary()["status"] == "NEW" and fresh.summary()["anomalies"] == 0
    demo.anomaly.delete_model(fresh.id)


def test_pump_model_finds_the_planted_pump_anomalies(demo, pump_model):
    ids = demo_device_ids(demo)
    df = pump_model.anomalies()
    truth = planted_anomalies()
    for row in truth[truth["device"].str.startswith("Pump")].itertuples():
        mine = df[df["item"] == ids[row.device]]
        assert ((mine["start"] < row.end) & (mine["end"] > row.start)).any(), row.device


def test_start_server_posts_and_reads_back(tmp_path):
    open_demo(tmp_path / "d").close()
    with start_server(tmp_path / "d") as server:
        assert isinstance(server, ServerProcess) and server.running
        assert server.url.startswith("http://") and server.ws_url.startswith("ws://")
        token = next(d["token"] for d in load_fleet()["devices"] if d["name"] == "Pump P3")
        assert server.post_telemetry(token, {"ts": DEMO_END_MS + 1000, "values": {"flow": 99.5}}) == 200
        assert server.post_telemetry("no-such-token", {"flow": 1}) == 401
        assert server.post_telemetry(token, "not an object") == 400
        jwt = server.login(TENANT_EMAIL, TENANT_PASSWORD)
        pages = server.get("/api/tenant/devices?pageSize=10&page=0", jwt)
        dev = next(d for d in pages["data"] if d["name"] == "Pump P3")["id"]["id"]
        got = server.get(f"/api/plugins/telemetry/DEVICE/{dev}/values/timeseries?keys=flow", jwt)
        assert got["flow"][0] == {"ts": DEMO_END_MS + 1000, "value": "99.5"}
    assert not server.running and "stopped" in repr(server)
    server.stop()  # stopping twice is harmless


def test_start_server_reports_a_failed_start(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(RuntimeError, match="did not start"):
        start_server(blocker, timeout_s=60)


def test_promoted_variant_reprocesses_to_what_the_experiment_predicted(demo, capsys):
    """Notebook 03's claim: experiment() shows exactly what promoting and reprocessing stores."""
    from tbpanel.anomaly.service import wait_with_progress
    from tbpanel.plotting import as_frame

    tenant = demo.registry.find_tenant("Demo tenant")
    cfg = tbpanel.ModelConfig.preset(
        "operational_monitoring",
        "medium",
        step_ms=60_000,
        name="promote",
        device_type="pump",
        fields=["vibration", "pressure"],
    )
    model = demo.anomaly.create_model(tenant.id, cfg).build(progress=False)
    start, end = DEMO_END_MS - 14 * DAY, DEMO_END_MS
    variant = {"segment_ms": 2 * 3_600_000, "storage_frequency_ms": 3_600_000}
    predicted = as_frame(demo.anomaly.experiment(model.id, {"2h": variant}, start, end)["2h"])
    model, task = demo.anomaly.update_model(model.id, variant, rebuild=True)
    assert task is not None
    done = wait_with_progress(demo.tasks, task, show=True)
    assert done.status == "DONE"
    assert "100/100" in capsys.readouterr().err  # the progress bar ran to the end
    model = demo.anomaly.get_model(model.id)
    assert model.config.segment_ms == 2 * 3_600_000
    model.reprocess(start, end, items="all", progress=False)
    after = model.anomalies()
    assert len(after) == len(predicted) > 0
    assert sorted(zip(after["item"], after["start"], after["end"])) == sorted(
        zip(predicted["item"], predicted["start"], predicted["end"])
    )
    demo.anomaly.delete_model(model.id)
