"""Time to first useful paint of every page, cold and warm, on ``tbpanel serve --demo``.

Starts the demo server on a free loopback port, signs in as the demo tenant administrator with
headless Debian chromium (Playwright, ``/usr/bin/chromium``) and opens each page. A page's *first
useful paint* is the moment one specific element, named in the table, is visible: the thing a
person came to the page for, not the page shell. Pages are timed from ``goto`` (navigation start);
a model's tabs after Result from the click on the tab title, the model page already showing.

*Cold* is the first time a page is opened after the server started (the server's first session of
that page: imports, caches and SQLite pages still cold); *warm* is the median of the next runs,
each in a fresh page of the same signed-in browser context.

Usage:  .venv/bin/python benchmarks/pages.py [--runs 4] [--model "Pump health"]
Goal (issue 19): every page's first useful paint ≤ 1.5 s warm.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from ingest_query import machine  # noqa: E402
from report import write_report  # noqa: E402

from tests.helpers.browser import BROWSER_ARGS  # noqa: E402
from tests.helpers.server import Api, ServerProcess  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
TIMEOUT_MS = 120_000
GOAL_S = 1.5

#: the plot of /telemetry has a series with points in it
TELEMETRY_JS = """() => { if (typeof Bokeh === "undefined") return false;
  for (const doc of Bokeh.documents) for (const m of doc.all_models)
  if (m.name === 'telemetry-plot') for (const r of m.renderers) {
    const s = r.data_source; if (s && s.name && s.name.startsWith('series:') && s.data.y && s.data.y.length) return true; }
  return false; }"""

#: (path or tab, what counts as its first useful paint, how to wait for it)
PAGES: list[tuple[str, str, tuple[str, str]]] = [
    ("/", "the fleet table's row of Pump P1", ("css", ".tabulator-row:has-text('Pump P1')")),
    ("/telemetry", "Pump P1's plot: a line with points (series:<key> data)", ("js", TELEMETRY_JS)),
    ("/alarms", "the alarm table (its header)", ("css", ".tabulator-col[tabulator-field='severity']")),
    ("/models", "the first model row", ("css", ".model-head")),
    ("Result", "the Anomalies card's number", ("css", "#card-anomalies .value")),
    ("Review", "the anomaly table's first row", ("css", ".tabulator-row:visible:has([tabulator-field='severity'])")),
    ("Cluster info", "the cluster table's first row", ("css", ".tabulator-row:visible [tabulator-field='share_pct']")),
    ("Input", "the alarm preview's counts", ("css", "#alarm-preview td.count")),
    ("Jobs", "the Save button", ("css", ".jobs-save button:visible")),
    ("Tasks", "the Run reprocess button", ("css", ".run-reprocess button:visible")),
    ("Experiments", "the variant rows", ("css", ".variant-row:visible")),
]


def load_average() -> str:
    """The 1/5/15-minute load average: the figures mean little without it on a shared machine."""
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def wait(page, how: tuple[str, str]) -> None:
    kind, what = how
    if kind == "js":
        page.wait_for_function(what, timeout=TIMEOUT_MS, polling=20)
    else:
        page.locator(what).first.wait_for(state="visible", timeout=TIMEOUT_MS)


def time_page(ctx, url: str, path: str, how) -> float:
    page = ctx.new_page()
    try:
        t0 = time.perf_counter()
        page.goto(url + path, wait_until="commit")
        wait(page, how)
        return time.perf_counter() - t0
    finally:
        page.close()


def time_tab(ctx, url: str, model_id: str, tab: str, how) -> float:
    page = ctx.new_page()
    try:
        page.goto(f"{url}/model?id={model_id}")
        page.wait_for_selector("#model-title", timeout=TIMEOUT_MS)
        title = page.locator(".bk-tab").filter(has_text=re.compile(f"^{re.escape(tab)}$"))
        title.wait_for(timeout=TIMEOUT_MS)
        t0 = time.perf_counter()
        title.click()
        wait(page, how)
        return time.perf_counter() - t0
    finally:
        page.close()


def signed_in(browser, url: str, email: str, password: str):
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    page = ctx.new_page()
    page.goto(f"{url}/login?next=/models")
    page.fill("#username", email)
    page.fill("#password", password)
    page.click("#login")
    page.wait_for_url(f"{url}/models", timeout=TIMEOUT_MS)
    page.close()
    return ctx


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=4, help="loads per page: the first is cold, the rest warm")
    ap.add_argument("--model", default="Pump health", help="the demo model whose tabs are timed")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--label", default="", help="a note for the report's title (e.g. before/after)")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # a kill still stops the demo server
    from playwright.sync_api import sync_playwright

    from tbpanel.demo import TENANT_EMAIL, TENANT_PASSWORD

    lines = [
        f"# tbpanel pages, first useful paint{' · ' + args.label if args.label else ''} · "
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}",
        f"machine: {machine()}",
        f"load average at start: {load_average()}",
        f"command: {' '.join([Path(sys.executable).name] + sys.argv)}",
        "",
    ]
    print("\n".join(lines), flush=True)
    times: dict[str, list[float]] = {name: [] for name, _, _ in PAGES}
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(Path(tmp) / "demo", extra=("--demo",)).start(timeout=300)
        try:
            tenant = Api.login(server.url, TENANT_EMAIL, TENANT_PASSWORD)
            model = next(m for m in tenant.get("/api/tbpanel/models").json() if m["name"] == args.model)
            devices = tenant.get("/api/tenant/devices?pageSize=100&page=0").json()["data"]
            pump = next(d["id"]["id"] for d in devices if d["name"] == "Pump P1")
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS)
                ctx = signed_in(browser, server.url, TENANT_EMAIL, TENANT_PASSWORD)
                for run in range(args.runs):
                    for name, _, how in PAGES:
                        if name == "/telemetry":
                            t = time_page(ctx, server.url, f"/telemetry?device={pump}", how)
                        elif name.startswith("/"):
                            t = time_page(ctx, server.url, name, how)
                        elif name == "Result":
                            t = time_page(ctx, server.url, f"/model?id={model['id']}", how)
                        else:
                            t = time_tab(ctx, server.url, model["id"], name, how)
                        times[name].append(t)
                        print(f"run {run + 1} {name}: {t:.2f} s", flush=True)
                browser.close()
        finally:
            server.stop()
    lines += [
        f"load average at the end: {load_average()}",
        "",
        f"Demo model {args.model!r}; {args.runs} loads per page (1 cold, {args.runs - 1} warm). Pages are timed",
        "from navigation start, the model's tabs after Result from the click on the tab title.",
        "",
        "| page | first useful paint = visible … | cold s | warm s (median) | warm max s | goal ≤ 1.5 s warm |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, what, _ in PAGES:
        ts = times[name]
        warm = ts[1:] or ts
        med = statistics.median(warm)
        lines.append(
            f"| {name} | {what} | {ts[0]:.2f} | {med:.2f} | {max(warm):.2f} | {'yes' if med <= GOAL_S else 'NO'} |"
        )
    print("\n".join(lines[-(len(PAGES) + 5) :]), flush=True)
    write_report(args.out, "pages", lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
