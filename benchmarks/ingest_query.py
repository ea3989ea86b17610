"""Ingest and query speed of tbpanel on this machine (issue: foundation benchmark).

Measures, in one run:
  1. HTTP ingest, batched: N client processes each POSTing ~100 points per request
     (keep-alive connections) to /api/v1/{token}/telemetry; every 200 is a durable write.
  2. HTTP ingest, one small message per request.
  3. In-process store writes (TelemetryStore.write_points, batches of 10,000).
  4. 1 year of 1-minute data for one key → 1-hour AVG: in-process (cold cache and warm) and
     over HTTP (/values/timeseries?agg=AVG&interval=3600000).

Usage:  .venv/bin/python benchmarks/ingest_query.py [--seconds 10] [--clients 4] [--out benchmarks/results]
Targets (../shared/design.md): ≥150k points/s batched HTTP, ≥5k req/s small messages,
≤5 ms in-process / ≤20 ms HTTP for the year query.
"""
from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from report import write_report  # noqa: E402

YEAR_MIN = 525_600
T0 = 1_672_531_200_000  # 2023-01-01 UTC


def machine() -> str:
    import numpy, zarr, tornado  # noqa: E401
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cpu = "?"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{platform.node()} · {os.cpu_count()} cores ({cpu}) · {mem:.1f} GiB · Python {platform.python_version()}"
            f" · numpy {numpy.__version__} · zarr {zarr.__version__} · tornado {tornado.version}")


def start_server(data: Path, init: bool = True) -> tuple[subprocess.Popen, str]:
    if init:
        subprocess.run([sys.executable, "-m", "tbpanel.cli", "init", "--data", str(data), "--admin-email",
                        "bench@tbpanel.test", "--admin-password", "bench-pass"], check=True, capture_output=True)
    proc = subprocess.Popen([sys.executable, "-m", "tbpanel.cli", "serve", "--data", str(data), "--port", "0",
                             "--log-level", "WARNING"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        if "tbpanel serving at" in line:
            return proc, line.split("tbpanel serving at", 1)[1].strip().rstrip("/")
    raise RuntimeError("server did not start")


def request(conn: http.client.HTTPConnection, method: str, path: str, body=None, headers=None):
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    return resp.status, data


def login_and_devices(url: str, n: int) -> tuple[str, list[tuple[str, str]]]:
    host = url.split("//")[1]
    conn = http.client.HTTPConnection(host)
    _, data = request(conn, "POST", "/api/auth/login", json.dumps(
        {"username": "bench@tbpanel.test", "password": "bench-pass"}), {"Content-Type": "application/json"})
    jwt = json.loads(data)["token"]
    auth = {"X-Authorization": f"Bearer {jwt}", "Content-Type": "application/json"}
    devices = []
    for i in range(n):
        _, data = request(conn, "POST", "/api/device", json.dumps({"name": f"bench-{i}-{time.time_ns()}", "type": "bench"}), auth)
        did = json.loads(data)["id"]["id"]
        _, data = request(conn, "GET", f"/api/device/{did}/credentials", None, auth)
        devices.append((did, json.loads(data)["credentialsId"]))
    return jwt, devices


def _client(args) -> tuple[int, int, int]:
    host, token, worker, seconds, batch = args
    conn = http.client.HTTPConnection(host)
    headers = {"Content-Type": "application/json"}
    sent_points = requests_ok = errors = 0
    deadline = time.perf_counter() + seconds
    i = 0
    base = T0 + worker * 10**10
    while time.perf_counter() < deadline:
        if batch == 1:
            body = b'{"temperature": %d.5}' % (i % 100)
            points = 1
        else:
            body = json.dumps([{"ts": base + (i * batch + j) * 1000, "values": {"v": j, "w": i * 0.5}}
                               for j in range(batch // 2)]).encode()
            points = batch // 2 * 2
        status, _ = request(conn, "POST", f"/api/v1/{token}/telemetry", body, headers)
        if status == 200:
            requests_ok += 1
            sent_points += points
        else:
            errors += 1
        i += 1
    return sent_points, requests_ok, errors


def http_ingest(url: str, devices, clients: int, seconds: float, batch: int) -> dict:
    host = url.split("//")[1]
    with mp.Pool(clients) as pool:
        t = time.perf_counter()
        results = pool.map(_client, [(host, devices[w % len(devices)][1], w, seconds, batch) for w in range(clients)])
        elapsed = time.perf_counter() - t
    points = sum(r[0] for r in results)
    reqs = sum(r[1] for r in results)
    return {"points_per_s": points / elapsed, "requests_per_s": reqs / elapsed,
            "errors": sum(r[2] for r in results), "elapsed_s": elapsed}


def inprocess_writes(tmp: Path, total: int = 1_000_000, batch: int = 10_000) -> float:
    from tbpanel.store import ValueType, open_store
    store = open_store(tmp / "inproc", compaction_interval_s=0)
    ts = T0 + np.arange(total, dtype=np.int64) * 1000
    batches = []
    for s in range(0, total, batch):
        batches.append([(f"dev-{(s // batch) % 100}", "v", int(t), ValueType.DOUBLE, float(t % 97))
                        for t in ts[s:s + batch].tolist()])
    t = time.perf_counter()
    for b in batches:
        store.write_points(b)
    elapsed = time.perf_counter() - t
    store.close()
    return total / elapsed


def load_year(url: str, token: str) -> None:
    """A year of 1-minute points for one key, posted through the device API in 5,000-point bodies."""
    conn = http.client.HTTPConnection(url.split("//")[1])
    for start in range(0, YEAR_MIN, 5000):
        body = json.dumps([{"ts": T0 + (start + i) * 60_000, "values": {"temp": round(20 + np.sin((start + i) / 1440 * 6.283), 3)}}
                           for i in range(min(5000, YEAR_MIN - start))])
        status, _ = request(conn, "POST", f"/api/v1/{token}/telemetry", body, {"Content-Type": "application/json"})
        assert status == 200


def year_query(url: str, jwt: str, device_id: str, repeats: int = 30) -> dict:
    """Times the 1h AVG over the year through /values/timeseries."""
    host = url.split("//")[1]
    conn = http.client.HTTPConnection(host)
    end = T0 + YEAR_MIN * 60_000
    path = (f"/api/plugins/telemetry/DEVICE/{device_id}/values/timeseries?keys=temp&startTs={T0}&endTs={end}"
            f"&agg=AVG&interval=3600000")
    auth = {"X-Authorization": f"Bearer {jwt}"}
    http_ms = []
    for _ in range(repeats):
        t = time.perf_counter()
        status, body = request(conn, "GET", path, None, auth)
        http_ms.append((time.perf_counter() - t) * 1000)
        assert status == 200 and len(json.loads(body)["temp"]) == YEAR_MIN // 60
    return {"http_ms": http_ms}


def inprocess_year_query(tmp: Path, repeats: int = 30) -> dict:
    """The same year written in-process; timed with the last month hot, then all compacted."""
    from tbpanel.store import ValueType, open_store
    store = open_store(tmp / "year", compaction_interval_s=0)
    ts = T0 + np.arange(YEAR_MIN, dtype=np.int64) * 60_000
    vals = 20 + np.sin(np.arange(YEAR_MIN) / 1440 * 6.283)
    for s in range(0, YEAR_MIN, 50_000):
        store.write_points([("dev", "temp", int(t), ValueType.DOUBLE, float(v))
                            for t, v in zip(ts[s:s + 50_000].tolist(), vals[s:s + 50_000].tolist())])
    end = int(ts[-1]) + 60_000
    last_month = int(np.datetime64("2023-12-01", "ms").astype(np.int64))
    out = {}
    for label, cutoff in (("last_month_hot", last_month), ("all_cold", end + 32 * 86_400_000)):
        store.compact(before_ts=cutoff)  # months ending before the cutoff move to Zarr
        store.close()
        store = open_store(tmp / "year", compaction_interval_s=0)
        t = time.perf_counter()
        res = store.query_agg("dev", ["temp"], T0, end, "AVG", 3_600_000)
        first = (time.perf_counter() - t) * 1000
        assert len(res["temp"]) == YEAR_MIN // 60
        warm = []
        for _ in range(repeats):
            t = time.perf_counter()
            store.query_agg("dev", ["temp"], T0, end, "AVG", 3_600_000)
            warm.append((time.perf_counter() - t) * 1000)
        out[label] = (first, warm)
    store.close()
    return out


def fmt(xs: list[float]) -> str:
    return f"median {statistics.median(xs):.2f} ms (min {min(xs):.2f}, max {max(xs):.2f}, n={len(xs)})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    lines = [f"# tbpanel ingest/query benchmark · {time.strftime('%Y-%m-%d %H:%M:%S')}",
             f"machine: {machine()}", f"command: {' '.join([Path(sys.executable).name] + sys.argv)}", ""]
    print("\n".join(lines), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        proc, url = start_server(tmp / "server")
        try:
            jwt, devices = login_and_devices(url, max(args.clients, 4) + 1)
            year_device = devices.pop()
            r = http_ingest(url, devices, args.clients, args.seconds, batch=100)
            lines.append(f"HTTP ingest, batched 100 points/request, {args.clients} clients: "
                         f"{r['points_per_s']:,.0f} points/s ({r['requests_per_s']:,.0f} req/s, errors {r['errors']})")
            print(lines[-1], flush=True)
            r = http_ingest(url, devices, args.clients, args.seconds, batch=1)
            lines.append(f"HTTP ingest, one small message/request, {args.clients} clients: "
                         f"{r['requests_per_s']:,.0f} requests/s (errors {r['errors']})")
            print(lines[-1], flush=True)
            load_year(url, year_device[1])
            q = year_query(url, jwt, year_device[0], repeats=5)
            lines.append(f"1 year of 1-minute data → 1h AVG over HTTP, still in the SQLite hot tier: {fmt(q['http_ms'])}")
            print(lines[-1], flush=True)
        finally:
            proc.terminate()
            proc.wait()
        # The server compacts closed months in the background; do it now, deterministically.
        from tbpanel.store import open_store
        with open_store(tmp / "server" / "telemetry", compaction_interval_s=0) as store:
            store.compact()
        proc, url = start_server(tmp / "server", init=False)
        try:
            jwt, _ = login_and_devices(url, 0)
            q = year_query(url, jwt, year_device[0])
            lines.append(f"1 year of 1-minute data → 1h AVG over HTTP, compacted into Zarr: {fmt(q['http_ms'])}")
            print(lines[-1], flush=True)
        finally:
            proc.terminate()
            proc.wait()
        w = inprocess_writes(tmp)
        lines.append(f"in-process store writes, batches of 10,000: {w:,.0f} points/s")
        print(lines[-1], flush=True)
        q = inprocess_year_query(tmp)
        for label, text in (("last_month_hot", "11 months in Zarr, the last month still in SQLite"),
                            ("all_cold", "all 12 months in Zarr")):
            first, warm = q[label]
            lines.append(f"1 year of 1-minute data → 1h AVG in-process, {text}: first query {first:.2f} ms, "
                         f"then {fmt(warm)}")
            print(lines[-1], flush=True)
    write_report(args.out, "ingest_query", lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
