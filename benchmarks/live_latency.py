"""Live push latency: POST acknowledged → point present in the browser's plot data.

N headless Chromium pages (Playwright, Debian's /usr/bin/chromium) show /telemetry for one of
D devices each (raw, last 5 minutes) while the devices post over HTTP at a steady total rate.
Each point's value is a unique sequence number. In every page a hook on the plot's
``ColumnDataSource`` (BokehJS ``streaming`` signal) records ``Date.now()`` when the point
arrives in the plot data; the latency is that minus the wall-clock time the POST's 200 came
back. Reports p50/p95/max over all (page, point) pairs, points that never arrived, and the
server process's CPU during the run (the browsers share the same cores).

Usage:  .venv/bin/python benchmarks/live_latency.py [--sessions 10] [--devices 10] [--rate 20] [--seconds 20]
Goal (../shared/design.md): p95 ≤ 250 ms with 10 open dashboards.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from ingest_query import machine, start_server  # noqa: E402
from report import write_report  # noqa: E402

EMAIL, PASSWORD = "bench@tbpanel.test", "bench-pass"
CHROMIUM = "/usr/bin/chromium"
BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
]

HOOK_JS = """() => {
  window.__arrivals = [];
  for (const doc of Bokeh.documents)
    for (const m of doc.all_models)
      if (m.name === 'series:v') {
        const seen = new Set(Array.from(m.data.y));
        m.streaming.connect(() => {   // rows are appended at the end (and rolled over at the start)
          const now = Date.now(), y = m.data.y;
          for (let i = y.length - 1; i >= 0 && !seen.has(y[i]); i--) { seen.add(y[i]); window.__arrivals.push([y[i], now]); }
        });
        return true;
      }
  return false;
}"""


def setup_devices(url: str, n: int) -> tuple[list[tuple[str, str]], dict]:
    s = requests.Session()
    jwt = s.post(f"{url}/api/auth/login", json={"username": EMAIL, "password": PASSWORD}).json()["token"]
    s.headers["X-Authorization"] = f"Bearer {jwt}"
    devices = []
    for i in range(n):
        did = s.post(f"{url}/api/device", json={"name": f"live-{i}", "type": "bench"}).json()["id"]["id"]
        token = s.get(f"{url}/api/device/{did}/credentials").json()["credentialsId"]
        requests.post(f"{url}/api/v1/{token}/telemetry", json={"v": -1}).raise_for_status()  # the key exists
        devices.append((did, token))
    return devices, dict(s.headers)


def post_steadily(url: str, devices, rate: float, seconds: float, acks: dict, lock: threading.Lock) -> int:
    """One thread per device; together ``rate`` posts/s. Values are unique sequence numbers."""
    per_device = rate / len(devices)
    errors = [0]
    counter = iter(range(10**9))

    def run(token: str, dev: int) -> None:
        s = requests.Session()
        period = 1.0 / per_device
        t_next = time.monotonic() + (dev / len(devices)) * period
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(max(0.0, t_next - time.monotonic()))
            t_next += period
            with lock:
                value = next(counter)
            r = s.post(f"{url}/api/v1/{token}/telemetry", json={"v": value})
            ack = time.time() * 1000
            if r.status_code != 200:
                errors[0] += 1
                continue
            with lock:
                acks[value] = (dev, ack)

    threads = [threading.Thread(target=run, args=(tok, i)) for i, (_, tok) in enumerate(devices)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors[0]


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def signed_in_context(browser, url: str):
    """A browser context whose cookie is the demo tenant admin's (signed in once through the login
    form), for opening many dashboard pages."""
    ctx = browser.new_context(viewport={"width": 1200, "height": 800})
    page = ctx.new_page()
    page.goto(f"{url}/login?next=/")
    page.fill("#username", EMAIL)
    page.fill("#password", PASSWORD)
    page.click("#login")
    page.wait_for_url(f"{url}/")
    page.close()
    return ctx


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=10)
    ap.add_argument("--devices", type=int, default=10)
    ap.add_argument("--rate", type=float, default=20, help="posts per second, all devices together")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    lines = [
        f"# tbpanel live push latency · {time.strftime('%Y-%m-%d %H:%M:%S')}",
        f"machine: {machine()}",
        f"command: {' '.join([Path(sys.executable).name] + sys.argv)}",
        "",
    ]
    print("\n".join(lines), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_server(Path(tmp) / "server")
        try:
            devices, _ = setup_devices(url, args.devices)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS)
                ctx = signed_in_context(browser, url)
                pages = []
                for i in range(args.sessions):
                    did = devices[i % len(devices)][0]
                    p = ctx.new_page()
                    p.goto(f"{url}/telemetry?device={did}&window=5m")
                    p.wait_for_function(
                        "() => Bokeh.documents.some(d => [...d.all_models].some(m => m.name === 'series:v'))",
                        timeout=60_000,
                    )
                    assert p.evaluate(HOOK_JS)
                    pages.append((i % len(devices), p))
                print(f"{len(pages)} pages open; posting {args.rate:g}/s for {args.seconds:g} s …", flush=True)
                server = psutil.Process(proc.pid)
                cpu0, wall0 = server.cpu_times(), time.monotonic()
                acks: dict[int, tuple[int, float]] = {}
                errors = post_steadily(url, devices, args.rate, args.seconds, acks, threading.Lock())
                cpu1, wall1 = server.cpu_times(), time.monotonic()
                time.sleep(1.0)  # let the last pushes land
                latencies, missing = [], 0
                for dev, p in pages:
                    arrived = {int(v): t for v, t in p.evaluate("() => window.__arrivals")}
                    for value, (d, ack) in acks.items():
                        if d != dev:
                            continue
                        if value in arrived:
                            latencies.append(arrived[value] - ack)
                        else:
                            missing += 1
                browser.close()
        finally:
            proc.terminate()
            proc.wait()
    cpu = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / (wall1 - wall0) * 100
    lines += [
        f"{args.sessions} browser sessions, {args.devices} devices, {args.rate:g} posts/s for {args.seconds:g} s: "
        f"{len(acks)} points acknowledged, {len(latencies)} (page, point) arrivals, {missing} missing, "
        f"{errors} POST errors",
        f"ack → in the browser's plot data: p50 {pct(latencies, 0.5):.0f} ms, p95 {pct(latencies, 0.95):.0f} ms, "
        f"max {max(latencies):.0f} ms (mean {statistics.mean(latencies):.0f} ms; negative = pushed before the "
        f"client saw its 200)"
        if latencies
        else "no arrivals measured",
        f"server process CPU during the run: {cpu:.0f}% of one core (on {os.cpu_count()} cores shared with "
        f"the browsers and the posting threads)",
    ]
    print("\n".join(lines[-3:]), flush=True)
    write_report(args.out, "live_latency", lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
