"""Memory of the server (issue 9): RSS with 10,000 devices x 5 keys posting, and per dashboard session.

Steps, with the RSS of the ``tbpanel serve`` process (psutil) after each:
  1. started (empty data directory);
  2. --devices devices created over the REST API (``POST /api/device?accessToken=...``);
  3. --clients processes POST one message of --keys values per request, round-robin over all
     devices, for --seconds (peak RSS sampled every 0.2 s during the run, and RSS after);
  4. --sessions idle dashboard sessions (after one warm-up session that is not counted):
     headless Chromium pages on /telemetry for devices that do not post; cost per session =
     RSS delta / sessions;
  5. --sessions live sessions, opened while the idle ones stay open: /telemetry pages for
     devices posting once a second (raw, 5 min window, points pushed over the WebSocket) for
     --seconds; cost per session likewise.

Usage:  .venv/bin/python benchmarks/memory.py [--devices 10000] [--keys 5] [--clients 4] [--seconds 20] [--sessions 10]
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from ingest_query import machine, request, start_server  # noqa: E402
from live_latency import BROWSER_ARGS, CHROMIUM, EMAIL, PASSWORD, signed_in_context  # noqa: E402
from report import write_report  # noqa: E402

MiB = 2**20


def create_devices(url: str, n: int, threads: int = 4) -> list[tuple[str, str]]:
    jwt = requests.post(f"{url}/api/auth/login", json={"username": EMAIL, "password": PASSWORD}).json()["token"]
    host = url.split("//")[1]
    headers = {"X-Authorization": f"Bearer {jwt}", "Content-Type": "application/json"}

    def make(rng):
        conn = http.client.HTTPConnection(host)
        out = []
        for i in rng:
            tok = f"mem-{i:06d}-{os.getpid()}"
            status, body = request(
                conn,
                "POST",
                f"/api/device?accessToken={tok}",
                json.dumps({"name": f"mem-{i}", "type": "bench"}),
                headers,
            )
            assert status == 200, body
            out.append((json.loads(body)["id"]["id"], tok))
        return out

    with ThreadPoolExecutor(threads) as ex:
        parts = ex.map(make, [range(t, n, threads) for t in range(threads)])
    return [d for p in parts for d in p]


def _poster(args) -> int:
    host, tokens, keys, seconds = args
    conn = http.client.HTTPConnection(host)
    headers = {"Content-Type": "application/json"}
    deadline = time.perf_counter() + seconds
    n = i = 0
    while time.perf_counter() < deadline:
        tok = tokens[i % len(tokens)]
        body = json.dumps({f"k{k}": (i + k) * 0.5 for k in range(keys)}).encode()
        status, _ = request(conn, "POST", f"/api/v1/{tok}/telemetry", body, headers)
        n += status == 200
        i += 1
    return n


class Sampler:
    def __init__(self, proc: psutil.Process):
        self.proc, self.peak, self._stop = proc, 0, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.2)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=10_000)
    ap.add_argument("--keys", type=int, default=5)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--sessions", type=int, default=10)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    lines = [
        f"# tbpanel server memory · {time.strftime('%Y-%m-%d %H:%M:%S')}",
        f"machine: {machine()}",
        f"load average: {' / '.join(f'{x:.2f}' for x in os.getloadavg())}",
        f"command: `{' '.join(['.venv/bin/python', os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:])}`",
        "",
    ]
    print("\n".join(lines), flush=True)

    def note(msg):
        lines.append(msg)
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_server(Path(tmp) / "server")
        srv = psutil.Process(proc.pid)
        rss = lambda: srv.memory_info().rss  # noqa: E731
        try:
            time.sleep(1)
            r0 = rss()
            note(f"- started: RSS {r0 / MiB:.0f} MiB")
            t = time.perf_counter()
            devices = create_devices(url, args.devices)
            r1 = rss()
            note(
                f"- {args.devices:,} devices created ({time.perf_counter() - t:.0f} s): RSS {r1 / MiB:.0f} MiB "
                f"(+{(r1 - r0) / args.devices / 1024:.1f} KiB/device)"
            )
            host = url.split("//")[1]
            toks = [d[1] for d in devices]
            with Sampler(srv) as s, mp.Pool(args.clients) as pool:
                sent = sum(
                    pool.map(
                        _poster, [(host, toks[c :: args.clients], args.keys, args.seconds) for c in range(args.clients)]
                    )
                )
            r2 = rss()
            note(
                f"- {args.clients} clients posting {args.keys} keys/message round-robin over all devices for "
                f"{args.seconds:g} s ({sent:,} messages, {sent / args.seconds:,.0f}/s, "
                f"{min(sent, args.devices):,} devices with data): peak RSS {s.peak / MiB:.0f} MiB, after {r2 / MiB:.0f} MiB"
            )

            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS)
                ctx = signed_in_context(browser, url)

                def open_pages(devs):
                    ps = []
                    for did, _ in devs:
                        p = ctx.new_page()
                        p.goto(f"{url}/telemetry?device={did}&window=5m")
                        p.wait_for_function(
                            "() => window.Bokeh && Bokeh.documents.length > 0 && "
                            "Bokeh.documents[0].all_models.size > 10",
                            timeout=60_000,
                        )
                        ps.append(p)
                    time.sleep(2)
                    return ps

                warm = open_pages(devices[-args.sessions - 1 : -args.sessions])  # one-time costs, not counted
                base = rss()
                idle = open_pages(devices[-args.sessions :])  # these devices no longer post
                r3 = rss()
                note(
                    f"- {args.sessions} idle dashboard sessions (/telemetry, device not posting): RSS "
                    f"{base / MiB:.0f} → {r3 / MiB:.0f} MiB, {(r3 - base) / args.sessions / MiB:.1f} MiB/session"
                )
                # the idle pages stay open: RSS rarely shrinks after a session closes, so the live
                # sessions are measured on top of them rather than in memory the idle ones freed
                live_devs = devices[: args.sessions]
                base = rss()
                live = open_pages(live_devs)
                stop = threading.Event()

                def post_live():
                    conn = http.client.HTTPConnection(host)
                    i = 0
                    while not stop.is_set():
                        for _, tok in live_devs:
                            request(
                                conn,
                                "POST",
                                f"/api/v1/{tok}/telemetry",
                                json.dumps({f"k{k}": i + k for k in range(args.keys)}).encode(),
                                {"Content-Type": "application/json"},
                            )
                        i += 1
                        time.sleep(1)

                th = threading.Thread(target=post_live, daemon=True)
                with Sampler(srv) as s:
                    th.start()
                    time.sleep(args.seconds)
                    stop.set()
                    th.join()
                r4 = rss()
                note(
                    f"- {args.sessions} live dashboard sessions (/telemetry, device posting 1/s, {args.seconds:g} s): "
                    f"RSS {base / MiB:.0f} → {r4 / MiB:.0f} MiB (peak {s.peak / MiB:.0f}), "
                    f"{(r4 - base) / args.sessions / MiB:.1f} MiB/session"
                )
                for p in warm + idle + live:
                    p.close()
                browser.close()
        finally:
            proc.terminate()
            proc.wait()
    write_report(args.out, "memory", lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
