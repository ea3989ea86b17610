"""The demo: a tenant with ThingsBoard's demo logins, a small fleet with history and planted
anomalies (``data/demo_fleet.json``), and a simulator that keeps posting over the real HTTP API.
"""
from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from pathlib import Path
from typing import Callable

import numpy as np

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
        start = end_ms - int(a["hours_before_end"] * 3_600_000)
        stop = start + int(a["duration_h"] * 3_600_000)
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


def _hash_noise(minute: np.ndarray, seed: int) -> np.ndarray:
    """Standard-normal-ish noise that depends only on (minute, seed): same answer every run."""
    x = (minute.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(seed)) & np.uint64(0xFFFFFFFFFFFF)
    u1 = (x % np.uint64(1_000_003)).astype(float) / 1_000_003 + 1e-9
    u2 = ((x // np.uint64(1_000_003)) % np.uint64(999_983)).astype(float) / 999_983
    return np.sqrt(-2 * np.log(u1)) * np.cos(2 * np.pi * u2)


def ensure_demo(platform, *, fleet: dict | None = None, end_ms: int | None = None,
                progress: Callable[[str], None] = log.info) -> dict:
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
    reg.create_user(TENANT_EMAIL, TENANT_PASSWORD, "TENANT_ADMIN", tenant.id,
                    first_name="Demo", last_name="Tenant")
    reg.create_user(CUSTOMER_EMAIL, CUSTOMER_PASSWORD, "CUSTOMER_USER", tenant.id,
                    customer_id=customer.id, first_name="Demo", last_name="Customer")
    ids = {}
    for spec in fleet["devices"]:
        device = reg.save_device(tenant.id, spec["name"], type=spec["type"],
                                 label=spec["type"].title(), access_token=spec["token"])
        if spec.get("customer"):
            reg.assign_device(device.id, customer.id)
        ids[spec["name"]] = device.id
    end_ms = end_ms if end_ms is not None else int(time.time() * 1000) // 60_000 * 60_000
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


class FleetSimulator:
    """Posts every demo device's current values to ``/api/v1/{token}/telemetry`` over HTTP."""

    def __init__(self, platform, base_url: str, *, period_s: float = 5.0, fleet: dict | None = None):
        self.fleet = fleet or load_fleet()
        self.base_url = base_url.rstrip("/")
        self.period_s = period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tbpanel-demo-fleet", daemon=True)
        self.posted = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def post_once(self) -> None:
        now = int(time.time() * 1000)
        ts = np.array([now], dtype=np.int64)
        for spec in self.fleet["devices"]:
            values = {key: float(series_values(self.fleet, spec["name"], key, ts, now + DAY_MS)[0])
                      for key in self.fleet["device_types"][spec["type"]]}
            body = json.dumps({"ts": now, "values": values}).encode()
            req = urllib.request.Request(f"{self.base_url}/api/v1/{spec['token']}/telemetry", data=body,
                                         headers={"Content-Type": "application/json"}, method="POST")
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
