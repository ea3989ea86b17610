"""Sustained load: steady ingest + live dashboards + WebSocket subscribers + reprocess, together.

For ``--seconds`` a real server gets, all at once:

* ``--devices`` devices posting one point each at a steady total ``--rate`` (HTTP device API;
  every value a unique sequence number, so each one can be followed),
* ``--pages`` headless Chromium pages on /telemetry, each hooked on its plot's data source
  (live_latency.py's hook) to time when a point reaches the browser,
* ``--subscribers`` WebSocket clients subscribed to every device's key,
* an anomaly model being reprocessed over its two days of history, one run after another.

Reported: errors (failed posts, failed reprocess runs, server log errors), points lost (an
acknowledged value missing from the store afterwards, or from a subscriber's stream), ack
latency p50/p95, WebSocket and browser delivery latency p50/p95 after the ack, and the
server's RSS (start, peak, end). tests/test_soak.py runs a short version and asserts zero
errors and zero lost points.

Usage:  .venv/bin/python benchmarks/soak.py [--seconds 300] [--rate 50] [--devices 10] [--pages 4] [--subscribers 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from live_latency import BROWSER_ARGS, CHROMIUM, EMAIL, HOOK_JS, PASSWORD, pct, setup_devices, signed_in_context  # noqa: E402
from report import write_report  # noqa: E402

HOUR = 3_600_000


@dataclass
class SoakResult:
    acked: dict = field(default_factory=dict)  # value -> (device index, ts, ack wall ms)
    ack_ms: list = field(default_factory=list)  # POST round trips
    post_errors: int = 0
    lost_in_store: int = 0
    ws_latency: list = field(default_factory=list)
    ws_missing: int = 0
    page_latency: list = field(default_factory=list)
    page_missing: int = 0
    reprocess_done: int = 0
    reprocess_failed: int = 0
    server_errors: list = field(default_factory=list)
    rss: list = field(default_factory=list)  # (seconds since start, bytes)

    @property
    def errors(self) -> int:
        return self.post_errors + self.reprocess_failed + len(self.server_errors)

    @property
    def lost(self) -> int:
        return self.lost_in_store + self.ws_missing

    def summary(self, seconds: float, rate: float, pages: int, subscribers: int) -> list[str]:
        mb = [r / 2**20 for _, r in self.rss] or [0]

        def lat(xs):
            return (
                f"p50 {pct(xs, 0.5):.0f} ms, p95 {pct(xs, 0.95):.0f} ms, max {max(xs):.0f} ms"  # noqa: E731
                if xs
                else "no samples"
            )

        return [
            f"{seconds:g} s at {rate:g} posts/s with {pages} dashboard pages, {subscribers} WebSocket subscribers "
            f"and back-to-back reprocess runs",
            f"errors: {self.errors} (failed posts {self.post_errors}, failed reprocess runs {self.reprocess_failed}, "
            f"server log errors {len(self.server_errors)})",
            f"points: {len(self.acked)} acknowledged, {self.lost_in_store} missing from the store, "
            f"{self.ws_missing} missing from a WebSocket stream, {self.page_missing} not (yet) in a page's plot",
            f"ack latency (POST round trip): {lat(self.ack_ms)}",
            f"WebSocket delivery after the ack: {lat(self.ws_latency)}",
            f"dashboard plot delivery after the ack: {lat(self.page_latency)}",
            f"reprocess runs completed: {self.reprocess_done}",
            f"server RSS: start {mb[0]:.0f} MiB, peak {max(mb):.0f} MiB, end {mb[-1]:.0f} MiB",
        ]


class Soak:
    """One soak run against a started server (``url``, process ``pid``, its log ``output``)."""

    def __init__(
        self,
        url: str,
        pid: int,
        output: list[str],
        *,
        devices: int = 10,
        rate: float = 50,
        pages: int = 4,
        subscribers: int = 4,
    ):
        self.url, self.pid, self.output = url, pid, output
        self.n_devices, self.rate, self.n_pages, self.n_subs = devices, rate, pages, subscribers
        self.result = SoakResult()
        self.lock = threading.Lock()
        self.stop = threading.Event()

    # -- setup --------------------------------------------------------------------------------
    def setup(self) -> None:
        """Devices with two days of history, and a built model on them to reprocess."""
        self.devices, headers = setup_devices(self.url, self.n_devices)
        self.api = requests.Session()
        self.api.headers.update(headers)
        self.jwt = headers["X-Authorization"].split(" ", 1)[1]
        now = int(time.time() * 1000) // HOUR * HOUR
        self.history = (now - 50 * HOUR, now - 2 * HOUR)
        for i, (_, token) in enumerate(self.devices):
            ts = np.arange(*self.history, 600_000)
            v = 5 + np.sin(2 * np.pi * (ts % (24 * HOUR)) / (24 * HOUR)) + (i % 3) * 0.1
            body = [{"ts": int(t), "values": {"v": round(float(x), 4)}} for t, x in zip(ts, v)]
            requests.post(f"{self.url}/api/v1/{token}/telemetry", json=body, timeout=60).raise_for_status()
        config = {
            "name": "soak",
            "device_type": "bench",
            "fields": ["v"],
            "window": "fixed",
            "segment_ms": HOUR,
            "train_start": self.history[0],
            "train_end": self.history[1],
        }
        r = self.api.post(f"{self.url}/api/tbpanel/models", json={"config": config})
        r.raise_for_status()
        self.model_id = r.json()["id"]
        task = self.api.post(f"{self.url}/api/tbpanel/models/{self.model_id}/build").json()
        assert self.wait(task["id"]) == "DONE", "the soak model did not build"

    def wait(self, task_id: str, timeout: float = 300) -> str:
        deadline = time.time() + timeout
        while time.time() < deadline:
            status = self.api.get(f"{self.url}/api/tbpanel/tasks/{task_id}").json()["status"]
            if status in ("DONE", "FAILED", "CANCELLED"):
                return status
            time.sleep(0.2)
        return "TIMEOUT"

    # -- the load -----------------------------------------------------------------------------
    def post_loop(self, dev: int, token: str, seconds: float) -> None:
        s = requests.Session()
        period = self.n_devices / self.rate
        t_next = time.monotonic() + dev / self.n_devices * period
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(max(0.0, t_next - time.monotonic()))
            t_next += period
            with self.lock:
                value = self.seq
                self.seq += 1
            ts = int(time.time() * 1000)
            t0 = time.perf_counter()
            try:
                r = s.post(f"{self.url}/api/v1/{token}/telemetry", json={"ts": ts, "values": {"v": value}}, timeout=30)
                ok = r.status_code == 200
            except requests.RequestException:
                ok = False
            ack = time.time() * 1000
            with self.lock:
                if ok:
                    self.result.acked[value] = (dev, ts, ack)
                    self.result.ack_ms.append((time.perf_counter() - t0) * 1000)
                else:
                    self.result.post_errors += 1

    def reprocess_loop(self) -> None:
        m = f"{self.url}/api/tbpanel/models/{self.model_id}"
        while not self.stop.is_set():
            r = self.api.post(
                f"{m}/reprocess",
                json={"startTs": self.history[0], "endTs": self.history[1], "items": "all", "createAlarms": True},
            )
            status = self.wait(r.json()["id"]) if r.status_code == 200 else f"HTTP {r.status_code}"
            with self.lock:
                if status == "DONE":
                    self.result.reprocess_done += 1
                else:
                    self.result.reprocess_failed += 1

    def rss_loop(self) -> None:
        proc, t0 = psutil.Process(self.pid), time.monotonic()
        while not self.stop.is_set():
            self.result.rss.append((time.monotonic() - t0, proc.memory_info().rss))
            self.stop.wait(1.0)
        self.result.rss.append((time.monotonic() - t0, proc.memory_info().rss))

    async def subscriber(self, arrivals: dict, ready: asyncio.Event) -> None:
        from tornado.websocket import websocket_connect

        conn = await websocket_connect(
            self.url.replace("http://", "ws://") + f"/api/ws/plugins/telemetry?token={self.jwt}"
        )
        await conn.write_message(
            json.dumps(
                {
                    "tsSubCmds": [
                        {"cmdId": i, "entityType": "DEVICE", "entityId": did, "keys": "v"}
                        for i, (did, _) in enumerate(self.devices)
                    ]
                }
            )
        )
        ready.set()
        while True:
            msg = await conn.read_message()
            if msg is None:
                return
            now = time.time() * 1000
            for _ts, value in json.loads(msg).get("data", {}).get("v", []):
                if value is not None:
                    arrivals.setdefault(int(float(value)), now)

    def ws_thread(self, seconds: float, store: list, started: threading.Event) -> None:
        async def main():
            tasks, readies = [], []
            for _ in range(self.n_subs):
                arrivals, ready = {}, asyncio.Event()
                store.append(arrivals)
                readies.append(ready)
                tasks.append(asyncio.create_task(self.subscriber(arrivals, ready)))
            await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 60)
            started.set()
            while not self.stop.is_set():
                await asyncio.sleep(0.2)
            await asyncio.sleep(2.0)  # the last pushes
            for t in tasks:
                t.cancel()

        asyncio.run(main())

    def run(self, seconds: float) -> SoakResult:
        from playwright.sync_api import sync_playwright

        self.seq = 0
        mark = len(self.output)
        res = self.result
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS)
            ctx = signed_in_context(browser, self.url)
            pages = []
            for i in range(self.n_pages):
                p = ctx.new_page()
                p.goto(f"{self.url}/telemetry?device={self.devices[i % self.n_devices][0]}&window=5m")
                p.wait_for_function(
                    "() => Bokeh.documents.some(d => [...d.all_models].some(m => m.name === 'series:v'))",
                    timeout=60_000,
                )
                assert p.evaluate(HOOK_JS)
                pages.append((i % self.n_devices, p))
            ws_arrivals: list[dict] = []
            ws_started = threading.Event()
            side = [threading.Thread(target=self.ws_thread, args=(seconds, ws_arrivals, ws_started), daemon=True)]
            side[0].start()
            assert ws_started.wait(60), "WebSocket subscribers did not connect"
            side += [
                threading.Thread(target=self.reprocess_loop, daemon=True),
                threading.Thread(target=self.rss_loop, daemon=True),
            ]
            for t in side[1:]:
                t.start()
            posters = [
                threading.Thread(target=self.post_loop, args=(i, tok, seconds))
                for i, (_, tok) in enumerate(self.devices)
            ]
            for t in posters:
                t.start()
            for t in posters:
                t.join()
            time.sleep(1.0)
            for dev, p in pages:  # the browsers: latency of what arrived (a page may lag; reported, not lost)
                arrived = {int(v): t for v, t in p.evaluate("() => window.__arrivals")}
                for value, (d, _ts, ack) in res.acked.items():
                    if d == dev:
                        if value in arrived:
                            res.page_latency.append(arrived[value] - ack)
                        else:
                            res.page_missing += 1
            self.stop.set()
            for t in side:
                t.join(timeout=300)
            browser.close()
        for arrivals in ws_arrivals:
            for value, (_d, _ts, ack) in res.acked.items():
                if value in arrivals:
                    res.ws_latency.append(arrivals[value] - ack)
                else:
                    res.ws_missing += 1
        self.check_store()
        res.server_errors = [line for line in self.output[mark:] if "Traceback" in line or " ERROR " in line]
        return res

    def check_store(self) -> None:
        """Every acknowledged value is in the store at its ts."""
        by_dev: dict[int, dict[int, int]] = {}
        for value, (dev, ts, _) in self.result.acked.items():
            by_dev.setdefault(dev, {})[value] = ts
        for dev, values in by_dev.items():
            did = self.devices[dev][0]
            r = self.api.get(
                f"{self.url}/api/plugins/telemetry/DEVICE/{did}/values/timeseries",
                params=dict(
                    keys="v",
                    startTs=min(values.values()),
                    endTs=max(values.values()) + 1,
                    limit=10_000_000,
                    useStrictDataTypes="true",
                ),
            )
            r.raise_for_status()
            stored = {int(p["value"]): p["ts"] for p in r.json().get("v", [])}
            self.result.lost_in_store += sum(1 for v, ts in values.items() if stored.get(v) != ts)


def main() -> int:
    from ingest_query import machine

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--rate", type=float, default=50, help="posts per second, all devices together")
    ap.add_argument("--devices", type=int, default=10)
    ap.add_argument("--pages", type=int, default=4)
    ap.add_argument("--subscribers", type=int, default=4)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    from tests.helpers import ServerProcess, cli

    lines = [
        f"# tbpanel soak · {time.strftime('%Y-%m-%d %H:%M:%S')}",
        f"machine: {machine()}",
        f"command: {' '.join([Path(sys.executable).name] + sys.argv)}",
        "",
    ]
    print("\n".join(lines), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "server"
        cli("init", "--data", str(data), "--admin-email", EMAIL, "--admin-password", PASSWORD)
        server = ServerProcess(data, extra=("--coap-port", "-1")).start()
        try:
            soak = Soak(
                server.url,
                server.proc.pid,
                server.output,
                devices=args.devices,
                rate=args.rate,
                pages=args.pages,
                subscribers=args.subscribers,
            )
            soak.setup()
            print(f"set up; soaking for {args.seconds:g} s …", flush=True)
            result = soak.run(args.seconds)
        finally:
            server.stop()
    lines += result.summary(args.seconds, args.rate, args.pages, args.subscribers)
    lines += [f"(on {os.cpu_count()} cores shared by the server, the browsers and the load threads)"]
    print("\n".join(lines[4:]), flush=True)
    write_report(args.out, "soak", lines)
    return 0 if result.errors == 0 and result.lost == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
