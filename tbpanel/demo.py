"""The demo: a tenant with ThingsBoard's demo logins, a small fleet with history and planted
anomalies (``data/demo_fleet.json``), and a simulator that keeps posting over the real HTTP API.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .clock import now_ms
from .store.values import ValueType

log = logging.getLogger("tbpanel.demo")

TENANT_EMAIL, TENANT_PASSWORD = "tenant@thingsboard.org", "tenant"
CUSTOMER_EMAIL, CUSTOMER_PASSWORD = "customer@thingsboard.org", "customer"
FLEET_FILE = Path(__file__).resolve().parent.parent / "data" / "demo_fleet.json"
DAY_MS = 86_400_000


def load_fleet(path: str | Path | None = None) -> dict:
    """The demo fleet definition (device types, devices, planted anomalies)."""
    return json.loads(Path(path or FLEET_FILE).read_text())


def series_values(fleet: dict, device: str, key: str, ts_ms: np.ndarray, end_ms: int) -> np.ndarray:
    """Deterministic values of one series at ``ts_ms``, with the fleet's planted anomalies.

    Normal behaviour is a daily sinusoid plus noise seeded by (device, key, minute), so the
    history and the live simulator agree on what "normal" looks like.
    """
    spec = next(d for d in fleet["devices"] if d["name"] == device)
    shape = fleet["device_types"][spec["type"]][key]
    phase = (sum(map(ord, device + key)) % 360) / 360 * 2 * np.pi
    day_frac = (ts_ms % DAY_MS) / DAY_MS
    minute = ts_ms // 60_000
    seed = fleet["seed"] + sum(map(ord, device)) * 31 + sum(map(ord, key))
    noise = _hash_noise(minute, seed)
    values = shape["base"] + shape["daily_amp"] * np.sin(2 * np.pi * day_frac + phase) + shape["noise"] * noise
    for a in fleet["anomalies"]:
        if a["device"] != device or a["key"] != key:
            continue
        start, stop = anomaly_window(a, end_ms)
        inside = (ts_ms >= start) & (ts_ms < stop)
        if not inside.any():
            continue
        if a["kind"] in ("spike", "level_shift"):
            values[inside] += a["size"]
        elif a["kind"] == "drift":
            values[inside] += a["size"] * (ts_ms[inside] - start) / max(stop - start, 1)
        elif a["kind"] == "flatline":
            values[inside] = values[inside][0]
    return np.round(values, 3)


def anomaly_window(anomaly: dict, end_ms: int) -> tuple[int, int]:
    """``(start, stop)`` ms of a planted anomaly in a history ending at ``end_ms``; an anomaly
    without ``duration_h`` is still going on (stop: the end of time), so the live simulator keeps it up."""
    start = end_ms - int(anomaly["hours_before_end"] * 3_600_000)
    if anomaly.get("duration_h") is None:
        return start, np.iinfo(np.int64).max
    return start, start + int(anomaly["duration_h"] * 3_600_000)


def _hash_noise(minute: np.ndarray, seed: int) -> np.ndarray:
    """Standard-normal-ish noise that depends only on (minute, seed): same answer every run."""
    x = (minute.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(seed)) & np.uint64(0xFFFFFFFFFFFF)
    u1 = (x % np.uint64(1_000_003)).astype(float) / 1_000_003 + 1e-9
    u2 = ((x // np.uint64(1_000_003)) % np.uint64(999_983)).astype(float) / 999_983
    return np.sqrt(-2 * np.log(u1)) * np.cos(2 * np.pi * u2)


def ensure_demo(
    platform, *, fleet: dict | None = None, end_ms: int | None = None, progress: Callable[[str], None] = log.info
) -> dict:
    """Create the demo tenant, logins, devices and history unless they already exist.

    Idempotent: a second run (a restarted demo) finds the tenant and only returns the fleet.
    Returns ``{device name: device id}``.
    """
    fleet = fleet or load_fleet()
    reg = platform.registry
    tenant = reg.find_tenant(fleet["tenant"])
    if tenant is not None:
        return {d.name: d.id for d in reg.list_devices(tenant.id, page_size=1000)[0]}
    progress("creating the demo tenant, logins and devices ...")
    tenant = reg.create_tenant(fleet["tenant"])
    customer = reg.create_customer(tenant.id, fleet["customer"])
    reg.create_user(TENANT_EMAIL, TENANT_PASSWORD, "TENANT_ADMIN", tenant.id, first_name="Demo", last_name="Tenant")
    reg.create_user(
        CUSTOMER_EMAIL,
        CUSTOMER_PASSWORD,
        "CUSTOMER_USER",
        tenant.id,
        customer_id=customer.id,
        first_name="Demo",
        last_name="Customer",
    )
    ids = {}
    for spec in fleet["devices"]:
        device = reg.save_device(
            tenant.id, spec["name"], type=spec["type"], label=spec["type"].title(), access_token=spec["token"]
        )
        if spec.get("customer"):
            reg.assign_device(device.id, customer.id)
        ids[spec["name"]] = device.id
    end_ms = end_ms if end_ms is not None else now_ms() // 60_000 * 60_000
    step = fleet["step_s"] * 1000
    ts = np.arange(end_ms - fleet["history_days"] * DAY_MS, end_ms, step, dtype=np.int64)
    total = 0
    for spec in fleet["devices"]:
        for key in fleet["device_types"][spec["type"]]:
            values = series_values(fleet, spec["name"], key, ts, end_ms)
            dev = ids[spec["name"]]
            points = [(dev, key, int(t), ValueType.DOUBLE, float(v)) for t, v in zip(ts.tolist(), values.tolist())]
            total += platform.store.write_points(points)
        progress(f"  {spec['name']}: {fleet['history_days']} days of history written")
    progress(f"demo history: {total:,} points for {len(ids)} devices")
    return ids


DEMO_MODELS: list[dict[str, Any]] = [
    {"name": "Pump health", "device_type": "pump", "fields": ["pressure", "flow", "vibration"]},
    # the daily blips of three thermostats stay anomalies without an alarm (below MAJOR = 120);
    # the planted spike and the window still open raise alarms
    {
        "name": "Thermostat comfort",
        "device_type": "thermostat",
        "fields": ["temperature", "humidity"],
        "warning_enabled": False,
        "minor_enabled": False,
        "major_threshold": 120.0,
    },
]
DEMO_REFRESH = {"enabled": True, "every": 1, "unit": "HOUR", "save_telemetry": True, "create_alarms": True}


def ensure_demo_models(platform, *, progress: Callable[[str], None] = log.info) -> list:
    """One model per demo device type, built on the history, refreshed hourly with saved scores
    and alarms on — what the served demo shows. Idempotent, like :func:`ensure_demo`.

    A build creates anomalies but never alarms (alarms come from refresh and reprocess runs),
    so a model without alarms then reprocesses its history with "create alarms" on: the planted
    anomalies that are over become CLEARED alarms and the one still going on an ACTIVE alarm,
    before the demo serves its first page. A model that has alarms already is left alone, so a
    restart adds none.
    """
    from .alarms.query import AlarmQuery
    from .anomaly.config import ModelConfig

    fleet = load_fleet()
    tenant = platform.registry.find_tenant(fleet["tenant"])
    existing = {m.config.name: m for m in platform.anomaly.list_models(tenant.id)}
    models = []
    for spec in DEMO_MODELS:
        model = existing.get(spec["name"])
        if model is None:
            model = platform.anomaly.create_model(tenant.id, ModelConfig(**spec))
        if model.status != "READY":
            progress(f"building the demo model {spec['name']!r} ...")
            task = platform.tasks.wait(platform.anomaly.build(model.id).id)
            if task.status != "DONE":
                progress(f"  the demo model {spec['name']!r} did not build: {task.message}")
                continue
            model = platform.anomaly.set_refresh(model.id, DEMO_REFRESH)
        _, alarms = platform.alarms.repo.query(AlarmQuery(tenant.id, model_id=model.id, page_size=1))
        if not alarms and model.refresh.create_alarms and model.last_refresh_end_ms is not None:
            model = _alarms_from_history(platform, model, progress)
        models.append(model)
    return models


def ensure_demo_dashboards(platform, *, progress: Callable[[str], None] = log.info) -> list[str]:
    """The two demo dashboards ("Fleet overview"; "Customer A", assigned to the customer), every
    widget kind on the fleet (:mod:`tbpanel.dashboards.demo`). Idempotent; their ids."""
    from .dashboards.demo import ensure_demo_dashboards as ensure

    fleet = load_fleet()
    ids = ensure_demo(platform, fleet=fleet, progress=progress)
    return ensure(platform, fleet["tenant"], fleet["customer"], TENANT_EMAIL, ids, progress)


def _alarms_from_history(platform, model, progress: Callable[[str], None]):
    """Reprocess the model's history with alarm creation on, for just the devices and time that
    hold an anomaly scoring high enough for an alarm (from the earliest such anomaly's start up
    to the build's end): the same alarms as a reprocess of everything, in a fraction of the time."""
    from .anomaly.scoring import severity_for

    trained = platform.anomaly.trained(model.id)
    thresholds = trained.thresholds(model.config) if trained is not None else {}
    worthy = [a for a in platform.anomaly.anomalies(model.id) if severity_for(float(a["score"]), thresholds)]
    if not worthy:
        return model
    start = min(int(a["start_ts"]) for a in worthy)
    items = sorted({a["item"] for a in worthy})
    end = int(model.last_refresh_end_ms)
    progress(f"  creating the alarms of {model.config.name!r} from its anomalies ...")
    task = platform.tasks.wait(platform.anomaly.reprocess(model.id, start, end, items, create_alarms=True).id)
    if task.status != "DONE":
        progress(f"  the alarms of {model.config.name!r} were not created: {task.message}")
    return platform.anomaly.get_model(model.id) or model


class _MqttDevice:
    """One demo device's MQTT 3.1.1 session: QoS 1 publishes, each waiting for its PUBACK."""

    def __init__(self, host: str, port: int, token: str):
        from .transports import mqtt_codec as c

        self.c = c
        self.sock = socket.create_connection((host, port), timeout=10)
        self.buf = b""
        self.packet_id = 0
        self.sock.sendall(c.encode_connect(c.Connect(c.MQTT_311, f"demo-{token[:2]}", 60, True, token)))
        first, body = self._read()
        if first >> 4 != c.CONNACK or body[1] != 0:
            raise ConnectionError(f"MQTT connection refused (code {body[1]})")

    def _read(self) -> tuple[int, bytes]:
        while True:
            head = self.c.split_fixed_header(self.buf)
            if head and len(self.buf) >= head[2] + head[1]:
                first, length, size = head
                body, self.buf = self.buf[size : size + length], self.buf[size + length :]
                return first, body
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("MQTT session closed by the server")
            self.buf += chunk

    def publish(self, body: bytes) -> None:
        self.packet_id = self.packet_id % 65535 + 1
        self.sock.sendall(self.c.publish(self.c.MQTT_311, "v1/devices/me/telemetry", body, 1, self.packet_id))
        while True:
            first, _ = self._read()
            if first >> 4 == self.c.PUBACK:
                return

    def close(self) -> None:
        self.sock.close()


def history_end(platform, fleet: dict | None = None) -> int | None:
    """The end (ms) of the demo history in ``platform`` (its planted anomalies are placed
    relative to it), or None when the directory holds no demo history."""
    fleet = fleet or load_fleet()
    tenant = platform.registry.find_tenant(fleet["tenant"])
    if tenant is None:
        return None
    spec = fleet["devices"][0]
    device = next((d for d in platform.registry.all_devices(tenant.id) if d.name == spec["name"]), None)
    key = next(iter(fleet["device_types"][spec["type"]]))
    first = platform.store.query_raw(device.id, [key], 0, now_ms() + DAY_MS, limit=1, order="ASC") if device else {}
    if key not in first:
        return None
    return int(first[key][0][0]) + fleet["history_days"] * DAY_MS


class FleetSimulator:
    """Posts every demo device's current values: over HTTP (``/api/v1/{token}/telemetry``), or
    over MQTT for devices marked ``"transport": "mqtt"`` when the server has an MQTT port.

    The values follow :func:`series_values` for a history ending at ``end_ms`` (the demo
    history's end when ``platform`` holds one, else the simulator's start), so a planted
    anomaly that is still going on at the history's end goes on in the live data.
    """

    def __init__(
        self,
        platform,
        base_url: str,
        *,
        period_s: float = 5.0,
        fleet: dict | None = None,
        mqtt_port: int | None = None,
        end_ms: int | None = None,
    ):
        self.fleet = fleet or load_fleet()
        if end_ms is None and platform is not None:
            end_ms = history_end(platform, self.fleet)
        self.end_ms = end_ms if end_ms is not None else now_ms()
        self.base_url = base_url.rstrip("/")
        self.mqtt_port = mqtt_port
        self._mqtt: dict[str, _MqttDevice] = {}
        self.period_s = period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tbpanel-demo-fleet", daemon=True)
        self.posted = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:  # started
            self._thread.join(timeout=5)
        for session in self._mqtt.values():
            session.close()
        self._mqtt.clear()

    def _post_mqtt(self, port: int, token: str, body: bytes) -> None:
        session = self._mqtt.get(token)
        if session is None:
            host = urllib.parse.urlsplit(self.base_url).hostname or "127.0.0.1"
            session = self._mqtt[token] = _MqttDevice(host, port, token)
        try:
            session.publish(body)
        except OSError:
            self._mqtt.pop(token, None)
            session.close()
            raise

    def post_once(self) -> None:
        now = now_ms()
        ts = np.array([now], dtype=np.int64)
        for spec in self.fleet["devices"]:
            values = {
                key: float(series_values(self.fleet, spec["name"], key, ts, self.end_ms)[0])
                for key in self.fleet["device_types"][spec["type"]]
            }
            body = json.dumps({"ts": now, "values": values}).encode()
            if spec.get("transport") == "mqtt" and self.mqtt_port:
                self._post_mqtt(self.mqtt_port, spec["token"], body)
                self.posted += len(values)
                continue
            req = urllib.request.Request(
                f"{self.base_url}/api/v1/{spec['token']}/telemetry",
                data=body,
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            with urllib.request.urlopen(req, timeout=10) as resp:
                resp.read()
            self.posted += len(values)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.post_once()
            except Exception as exc:  # the demo keeps going; the server may be restarting
                log.warning("demo fleet post failed: %s", exc)
            self._stop.wait(self.period_s)


def main_from_args(args) -> int:
    """``tbpanel demo --url URL``: run the simulated fleet against a running server."""
    sim = FleetSimulator(None, args.url)
    print(f"posting the demo fleet to {args.url} every {sim.period_s:g} s (Ctrl-C stops)", flush=True)
    try:
        while True:
            sim.post_once()
            time.sleep(sim.period_s)
    except KeyboardInterrupt:
        return 0


#: The fixed end of the notebooks' demo history (2026-11-20 00:00 UTC): with it, every run of a
#: notebook or test sees the same points, the same planted anomalies and the same model results.
DEMO_END_MS = 1_795_132_800_000


def open_demo(path: str | Path, *, end_ms: int = DEMO_END_MS, **params):
    """Open (creating on first use) a demo data directory at ``path`` and return its Platform.

    For notebooks and tests: a private copy of the demo fleet with a *fixed* end time, so results
    are reproducible, and with compaction off so nothing moves between tiers while you explore.
    """
    from .platform import connect

    params.setdefault("compaction_interval_s", 0)
    platform = connect(path, **params)
    try:
        ensure_demo(platform, end_ms=end_ms, progress=lambda msg: None)
    except BaseException:
        platform.close()
        raise
    return platform


def demo_device_ids(platform, names: list[str] | None = None) -> dict[str, str]:
    """``{device name: device id}`` of the demo tenant (all devices, or the given names in order).

    The store is keyed by device id; people think in names, so notebooks translate here.
    """
    fleet = load_fleet()
    tenant = platform.registry.find_tenant(fleet["tenant"])
    if tenant is None:
        raise LookupError(f"no tenant {fleet['tenant']!r}: open the directory with open_demo()")
    devices = {d.name: d.id for d in platform.registry.all_devices(tenant.id)}
    if names is None:
        return dict(sorted(devices.items()))
    missing = [n for n in names if n not in devices]
    if missing:
        raise KeyError(f"unknown demo devices: {', '.join(missing)}")
    return {n: devices[n] for n in names}


def demo_units(fleet: dict | None = None) -> dict[str, str]:
    """``{key: unit}`` as the demo fleet defines them (e.g. ``temperature -> °C``)."""
    fleet = fleet or load_fleet()
    return {
        key: spec["unit"] for keys in fleet["device_types"].values() for key, spec in keys.items() if spec.get("unit")
    }


def demo_query(
    platform, devices: list[str] | str | None = None, keys=None, start=None, end=None, interval=None, agg=None
):
    """``store.query`` by device *name*, labelled with names and the fleet's units.

    Same arguments as :meth:`TelemetryStore.query` except that ``devices`` are demo device names
    (None: all of them); the result's ``device`` axis holds names and each variable carries
    ``attrs["units"]``.
    """
    from .plotting import with_units

    if isinstance(devices, str):
        devices = [devices]
    ids = demo_device_ids(platform, devices)
    ds = platform.store.query(list(ids.values()), keys, start, end, interval=interval, agg=agg)
    return with_units(ds, demo_units(), names={v: k for k, v in ids.items()})


def planted_anomalies(end_ms: int = DEMO_END_MS, fleet: dict | None = None):
    """The fleet's planted anomalies as a DataFrame (device, key, kind, start, end, story).

    This is the ground truth a model on the demo data should find; notebooks and tests score
    detections against it. ``end`` is NaT for an anomaly that is still going on.
    """
    import pandas as pd

    fleet = fleet or load_fleet()
    rows = []
    for a in fleet["anomalies"]:
        start, stop = anomaly_window(a, end_ms)
        rows.append(
            {
                "device": a["device"],
                "key": a["key"],
                "kind": a["kind"],
                "start": pd.Timestamp(start, unit="ms", tz="UTC"),
                "end": pd.Timestamp(stop, unit="ms", tz="UTC") if a.get("duration_h") is not None else pd.NaT,
                "story": a.get("story", ""),
            }
        )
    return pd.DataFrame(rows, columns=["device", "key", "kind", "start", "end", "story"])
