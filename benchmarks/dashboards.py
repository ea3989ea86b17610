"""A 12-widget dashboard over 100 devices: first full render, RSS per session, ack → drawn.

Starts a server on a fresh data directory (``ingest_query.start_server``), creates 100 devices
(type ``bench``, one point of ``v`` each) and one dashboard of 12 widgets (every kind, the
time-series chart twice: lines and hourly bars) whose alias is "every ``bench`` device", saved
through the real ``DashboardStore``. Then, in headless Debian chromium:

* *first full render*: from ``goto`` until all 12 widgets are drawn and every line of the chart
  (one per device) has its points (cold: the first open; warm: the median of the next ``--runs``);
* *RSS per session*: the server's resident memory after opening ``--sessions`` dashboard pages,
  minus before, divided by the sessions;
* *ack → drawn*: with those sessions open, ``--rate`` posts/s spread over 10 devices for
  ``--seconds``; each page records when a value reaches the chart's line data (a
  ``ColumnDataSource.streaming`` hook), compared with the time the device's POST got its 200.

Usage:  .venv/bin/python benchmarks/dashboards.py [--sessions 10] [--seconds 20] [--rate 20]
Goal (issue 18): ack → drawn p95 ≤ 250 ms with 10 sessions open, as for the telemetry page.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from ingest_query import machine, start_server  # noqa: E402
from live_latency import BROWSER_ARGS, CHROMIUM, EMAIL, pct, post_steadily, setup_devices, signed_in_context  # noqa: E402
from report import write_report  # noqa: E402

from tbpanel.clock import HOUR_MS  # noqa: E402
from tbpanel.dashboards.model import (  # noqa: E402
    WIDGET_KINDS,
    Dashboard,
    TimeseriesChart,
    TimeWindow,
)
from tbpanel.dashboards.store import DashboardStore  # noqa: E402
from tbpanel.entities import EntityRegistry  # noqa: E402

RENDERED_JS = """([n, chart, lines]) => { if (typeof Bokeh === "undefined") return false;
  let c = 0; const walk = (r) => { for (const el of r.querySelectorAll('*')) {
    if (el.classList && el.classList.contains('dash-widget')) c++; if (el.shadowRoot) walk(el.shadowRoot); } };
  walk(document); if (c !== n) return false;
  let drawn = 0;
  for (const d of Bokeh.documents) for (const m of d.all_models)
    if (m.name && m.name.startsWith('line:' + chart + ':') && m.data && m.data.y && m.data.y.length) drawn++;
  return drawn >= lines; }"""

HOOK_JS = """(chart) => {
  window.__arrivals = []; let n = 0;
  for (const doc of Bokeh.documents) for (const m of doc.all_models)
    if (m.name && m.name.startsWith('line:' + chart + ':')) {
      const seen = new Set(Array.from(m.data.y)); n++;
      m.streaming.connect(() => { const now = Date.now(), y = m.data.y;
        for (let i = y.length - 1; i >= 0 && !seen.has(y[i]); i--) { seen.add(y[i]); window.__arrivals.push([y[i], now]); } });
    }
  return n; }"""


def make_dashboard(data_dir: Path) -> tuple[str, str, int]:
    """The 12-widget dashboard, stored; (its id, the live chart's widget id, widgets)."""
    reg = EntityRegistry(data_dir)
    try:
        d = Dashboard(title="Benchmark: 12 widgets over 100 devices")
        alias = d.device_type_alias("bench", "Bench devices")
        chart = d.add_widget(TimeseriesChart(title="v", alias_id=alias, keys=["v"]))
        bars = TimeseriesChart(
            title="hourly",
            alias_id=alias,
            keys=["v"],
            chart="bar",
            use_dashboard_timewindow=False,
            timewindow=TimeWindow(last_ms=24 * HOUR_MS, agg="AVG", interval_ms=HOUR_MS),
        )
        d.add_widget(bars)
        for kind, cls in WIDGET_KINDS.items():
            if kind != "timeseries_chart":
                d.add_widget(cls(title=kind, alias_id=alias, keys=["v"]))
        stored = DashboardStore(reg).save(reg.find_user(EMAIL), d.to_json())
        return stored["id"]["id"], chart.id, len(d.widgets)
    finally:
        reg.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--sessions", type=int, default=10)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rate", type=float, default=20, help="posts per second, over 10 devices")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    lines = [
        f"# tbpanel dashboards · {time.strftime('%Y-%m-%d %H:%M:%S')}",
        f"machine: {machine()}",
        f"command: {' '.join([Path(sys.executable).name] + sys.argv)}",
        "",
    ]
    print("\n".join(lines), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "server"
        proc, url = start_server(data)
        try:
            devices, _ = setup_devices(url, args.devices)
            dash_id, chart_id, n_widgets = make_dashboard(data)
            path = f"{url}/dashboard?id={dash_id}"
            server = psutil.Process(proc.pid)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS)
                ctx = signed_in_context(browser, url)
                renders = []
                for _ in range(args.runs + 1):
                    p = ctx.new_page()
                    t0 = time.perf_counter()
                    p.goto(path)
                    p.wait_for_function(RENDERED_JS, arg=[n_widgets, chart_id, args.devices], timeout=600_000)
                    renders.append(time.perf_counter() - t0)
                    print(f"first full render: {renders[-1]:.2f} s", flush=True)
                    p.close()
                time.sleep(20)  # closed sessions are reaped (15 s linger, 3 s checks)
                rss0 = server.memory_info().rss
                pages = []
                for _ in range(args.sessions):
                    p = ctx.new_page()
                    p.goto(path)
                    p.wait_for_function(RENDERED_JS, arg=[n_widgets, chart_id, args.devices], timeout=600_000)
                    assert p.evaluate(HOOK_JS, chart_id) == args.devices
                    pages.append(p)
                rss1 = server.memory_info().rss
                print(f"{len(pages)} dashboards open; posting {args.rate:g}/s for {args.seconds:g} s …", flush=True)
                acks: dict[int, tuple[int, float]] = {}
                errors = post_steadily(url, devices[:10], args.rate, args.seconds, acks, threading.Lock())
                time.sleep(1.0)
                latencies, missing = [], 0
                for p in pages:
                    arrived = {int(v): t for v, t in p.evaluate("() => window.__arrivals")}
                    for value, (_, ack) in acks.items():
                        if value in arrived:
                            latencies.append(arrived[value] - ack)
                        else:
                            missing += 1
                browser.close()
        finally:
            proc.terminate()
            proc.wait()
    warm = statistics.median(renders[1:]) if len(renders) > 1 else renders[0]
    lines += [
        f"{n_widgets} widgets over {args.devices} devices (the chart: {args.devices} lines)",
        f"first full render: cold {renders[0]:.2f} s, warm median {warm:.2f} s (of {len(renders) - 1})",
        f"server RSS per open dashboard session: {(rss1 - rss0) / args.sessions / 2**20:.1f} MiB "
        f"({args.sessions} sessions: {rss0 / 2**20:.0f} → {rss1 / 2**20:.0f} MiB)",
        f"{args.sessions} sessions, {args.rate:g} posts/s over 10 devices for {args.seconds:g} s: "
        f"{len(acks)} acknowledged, {len(latencies)} (page, point) arrivals, {missing} missing, {errors} POST errors",
        f"ack → drawn: p50 {pct(latencies, 0.5):.0f} ms, p95 {pct(latencies, 0.95):.0f} ms, max {max(latencies):.0f} ms"
        if latencies
        else "ack → drawn: no arrivals measured",
    ]
    print("\n".join(lines[-5:]), flush=True)
    write_report(args.out, "dashboards", lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
