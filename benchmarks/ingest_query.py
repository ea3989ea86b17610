"""Ingest and query speed of tbpanel on this machine (issue: foundation benchmark).

Measures, in one run:
  1. HTTP ingest, batched: N client processes each POSTing ~100 points per request
     (keep-alive connections) to /api/v1/{token}/telemetry; every 200 is a durable write.
  2. HTTP ingest, one small message per request.
  3. In-process store writes (TelemetryStore.write_points, batches of 10,000).
  4. 1 year of 1-minute data for one key → 1-hour AVG: in-process (cold cache and warm) and
     over HTTP (/values/timeseries?agg=AVG&interval=3600000).

Usage:  .venv/bin/python benchmarks/ingest_query.py [--seconds 10] [--clients 4] [--connections 1,16] [--repeat 1]
            [--http-only] [--profile benchmarks/results/profiles] [--out benchmarks/results]
Each client process runs ``--connections`` keep-alive connections (asyncio), each with one
request in flight: 4 × 1 is four devices posting back to back, 4 × 16 sixty-four. Request
bodies are encoded before the clock starts; each HTTP line also gives the server
process's own CPU use (cores busy, CPU µs per request) from /proc, since the clients share
its cores. ``--profile`` runs each HTTP workload once more under py-spy (collapsed stacks
and an SVG flame graph; summarise them with benchmarks/profile_summary.py).
Targets (../shared/design.md): ≥150k points/s batched HTTP, ≥5k req/s small messages,
≤5 ms in-process / ≤20 ms HTTP for the year query.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import multiprocessing as mp
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from report import write_report  # noqa: E402

YEAR_MIN = 525_600
T0 = 1_672_531_200_000  # 2023-01-01 UTC


def machine() -> str:
    import numpy  # noqa: E401
    import tornado
    import zarr

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cpu = "?"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (
        f"{platform.node()} · {os.cpu_count()} cores ({cpu}) · {mem:.1f} GiB · Python {platform.python_version()}"
        f" · numpy {numpy.__version__} · zarr {zarr.__version__} · tornado {tornado.version}"
    )


def init_data(data: Path) -> None:
    """``tbpanel init`` with the benchmarks' admin login."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "tbpanel.cli",
            "init",
            "--data",
            str(data),
            "--admin-email",
            "bench@tbpanel.test",
            "--admin-password",
            "bench-pass",
        ],
        check=True,
        capture_output=True,
    )


def start_server(
    data: Path, init: bool = True, extra: Sequence[str] = (), seen: list[str] | None = None
) -> tuple[subprocess.Popen, str]:
    """``tbpanel serve`` on a free port (``extra``: more serve options); (process, base URL).
    ``seen`` collects the lines the server printed while starting (e.g. its MQTT port)."""
    if init:
        init_data(data)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tbpanel.cli",
            "serve",
            "--data",
            str(data),
            "--port",
            "0",
            "--log-level",
            "WARNING",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    for line in proc.stdout:
        if seen is not None:
            seen.append(line)
        if "tbpanel serving at" in line:
            return proc, line.split("tbpanel serving at", 1)[1].strip().rstrip("/")
    raise RuntimeError("server did not start")


def request(conn: http.client.HTTPConnection, method: str, path: str, body=None, headers=None):
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    return resp.status, data


def login_and_devices(
    url: str, n: int, names: Sequence[tuple[str, str]] | None = None
) -> tuple[str, list[tuple[str, str]]]:
    """Sign in as the benchmark admin and create ``n`` devices (or the given (name, type)
    pairs); the JWT and each device's (id, access token)."""
    host = url.split("//")[1]
    conn = http.client.HTTPConnection(host)
    _, data = request(
        conn,
        "POST",
        "/api/auth/login",
        json.dumps({"username": "bench@tbpanel.test", "password": "bench-pass"}),
        {"Content-Type": "application/json"},
    )
    jwt = json.loads(data)["token"]
    auth = {"X-Authorization": f"Bearer {jwt}", "Content-Type": "application/json"}
    devices = []
    for name, dtype in names or [(f"bench-{i}-{time.time_ns()}", "bench") for i in range(n)]:
        _, data = request(conn, "POST", "/api/device", json.dumps({"name": name, "type": dtype}), auth)
        did = json.loads(data)["id"]["id"]
        _, data = request(conn, "GET", f"/api/device/{did}/credentials", None, auth)
        devices.append((did, json.loads(data)["credentialsId"]))
    return jwt, devices


def _bodies(worker: int, batch: int, count: int) -> list[tuple[bytes, int]]:
    """Request bodies, encoded before the clock starts (the clients share the server's cores)."""
    if batch == 1:
        return [(b'{"temperature": %d.5}' % (i % 100), 1) for i in range(count)]
    base = T0 + worker * 10**10
    return [
        (
            json.dumps(
                [{"ts": base + (i * batch + j) * 1000, "values": {"v": j, "w": i * 0.5}} for j in range(batch // 2)]
            ).encode(),
            batch // 2 * 2,
        )
        for i in range(count)
    ]


async def _connection(
    host: str,
    port: int,
    path: str,
    bodies: list[tuple[bytes, int]],
    first: int,
    step: int,
    deadline: float,
    tally: list[int],
) -> None:
    """One keep-alive connection sending pre-encoded POSTs one after another until ``deadline``."""
    reader, writer = await asyncio.open_connection(host, port)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
    ).encode()
    i = first
    try:
        while time.perf_counter() < deadline:
            body, points = bodies[i % len(bodies)]
            writer.write(head % len(body) + body)
            status_line = await reader.readuntil(b"\r\n")
            headers = await reader.readuntil(b"\r\n\r\n")
            length = next(
                (int(h.split(b":", 1)[1]) for h in headers.split(b"\r\n") if h.lower().startswith(b"content-length:")),
                0,
            )
            if length:
                await reader.readexactly(length)
            if status_line.split(b" ", 2)[1] == b"200":
                tally[0] += 1
                tally[1] += points
            else:
                tally[2] += 1
            i += step
    finally:
        writer.close()


def _client(args, ready, results) -> None:
    """A client process: ``connections`` concurrent keep-alive connections (asyncio, so the
    load generator costs little of the CPU it shares with the server). Bodies are made
    first; the clock starts when every client has passed the ``ready`` barrier."""
    host, token, worker, seconds, batch, connections = args
    # enough distinct bodies for ~3,000 requests/s per process (batched) before they repeat
    bodies = _bodies(worker, batch, 1000 if batch == 1 else int(seconds * 3000))
    name, port = host.rsplit(":", 1)
    tally = [0, 0, 0]  # requests ok, points, errors

    async def run() -> None:
        deadline = time.perf_counter() + seconds
        await asyncio.gather(
            *(
                _connection(name, int(port), f"/api/v1/{token}/telemetry", bodies, c, connections, deadline, tally)
                for c in range(connections)
            )
        )

    ready.wait()
    asyncio.run(run())
    results.put((tally[1], tally[0], tally[2]))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def http_ingest(
    url: str,
    devices,
    clients: int,
    seconds: float,
    batch: int,
    server_pid: int | None = None,
    profile: Path | None = None,
    connections: int = 1,
) -> dict:
    """``clients`` processes POSTing for ``seconds``; with ``profile``, py-spy samples the server
    meanwhile (raw collapsed stacks + an SVG flame graph; the rate is then not representative)."""
    host = url.split("//")[1]
    spy = []
    if profile is not None:
        profile.mkdir(parents=True, exist_ok=True)
        py_spy = str(Path(sys.executable).with_name("py-spy"))
        # every sampled stack (threads waiting in C calls such as COMMIT's fsync included), and
        # only the stacks holding the GIL (where the Python CPU time goes), also as a flame graph
        for extra, fmt_, name in (
            ([], "raw", "wall.txt"),
            (["--gil"], "raw", "gil.txt"),
            (["--gil"], "flamegraph", "gil.svg"),
        ):
            spy.append(
                subprocess.Popen(
                    [
                        py_spy,
                        "record",
                        "--pid",
                        str(server_pid),
                        "--rate",
                        "100",
                        "--nonblocking",
                        "--threads",
                        *extra,
                        "--format",
                        fmt_,
                        "--output",
                        str(profile / f"ingest-batch{batch}-{name}"),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        time.sleep(1.0)  # let py-spy attach
    ready, queue = mp.Barrier(clients + 1), mp.Queue()
    procs = [
        mp.Process(
            target=_client, args=((host, devices[w % len(devices)][1], w, seconds, batch, connections), ready, queue)
        )
        for w in range(clients)
    ]
    for p in procs:
        p.start()
    ready.wait()  # every client has its bodies: the clock starts now
    cpu0 = cpu_seconds(server_pid) if server_pid else 0.0
    t = time.perf_counter()
    results = [queue.get() for _ in procs]
    elapsed = time.perf_counter() - t
    cpu = (cpu_seconds(server_pid) - cpu0) if server_pid else float("nan")
    for p in procs:
        p.join()
    for p in spy:  # py-spy writes its output when interrupted
        p.send_signal(signal.SIGINT)
        p.wait()
    points = sum(r[0] for r in results)
    reqs = sum(r[1] for r in results)
    return {
        "points_per_s": points / elapsed,
        "requests_per_s": reqs / elapsed,
        "errors": sum(r[2] for r in results),
        "elapsed_s": elapsed,
        "server_cores": cpu / elapsed,
        "server_us_per_request": cpu / max(reqs, 1) * 1e6,
    }


def inprocess_writes(tmp: Path, total: int = 1_000_000, batch: int = 10_000) -> float:
    from tbpanel.store import ValueType, open_store

    store = open_store(tmp / "inproc", compaction_interval_s=0)
    ts = T0 + np.arange(total, dtype=np.int64) * 1000
    batches = []
    for s in range(0, total, batch):
        batches.append(
            [
                (f"dev-{(s // batch) % 100}", "v", int(t), ValueType.DOUBLE, float(t % 97))
                for t in ts[s : s + batch].tolist()
            ]
        )
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
        body = json.dumps(
            [
                {"ts": T0 + (start + i) * 60_000, "values": {"temp": round(20 + np.sin((start + i) / 1440 * 6.283), 3)}}
                for i in range(min(5000, YEAR_MIN - start))
            ]
        )
        status, _ = request(conn, "POST", f"/api/v1/{token}/telemetry", body, {"Content-Type": "application/json"})
        assert status == 200


def year_query(url: str, jwt: str, device_id: str, repeats: int = 30) -> dict:
    """Times the 1h AVG over the year through /values/timeseries."""
    host = url.split("//")[1]
    conn = http.client.HTTPConnection(host)
    end = T0 + YEAR_MIN * 60_000
    path = (
        f"/api/plugins/telemetry/DEVICE/{device_id}/values/timeseries?keys=temp&startTs={T0}&endTs={end}"
        f"&agg=AVG&interval=3600000"
    )
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
        store.write_points(
            [
                ("dev", "temp", int(t), ValueType.DOUBLE, float(v))
                for t, v in zip(ts[s : s + 50_000].tolist(), vals[s : s + 50_000].tolist())
            ]
        )
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


def summarize(runs: list[dict], batch: int) -> str:
    """Median (min–max) of the rates over runs, with the server's own CPU use."""

    def med(key, f="{:,.0f}"):
        xs = [r[key] for r in runs]
        text = f.format(statistics.median(xs))
        return text if len(xs) == 1 else f"{text} ({f.format(min(xs))}–{f.format(max(xs))})"

    head = (
        f"{med('points_per_s')} points/s, {med('requests_per_s')} req/s"
        if batch > 1
        else f"{med('requests_per_s')} requests/s"
    )
    return (
        f"{head}, errors {sum(r['errors'] for r in runs)}; server process {med('server_cores', '{:.2f}')} "
        f"cores busy, {med('server_us_per_request')} µs CPU/request (n={len(runs)})"
    )


def fmt(xs: list[float]) -> str:
    return f"median {statistics.median(xs):.2f} ms (min {min(xs):.2f}, max {max(xs):.2f}, n={len(xs)})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument(
        "--connections",
        default="1,16",
        help="keep-alive connections per client process, one run set per value (comma-separated)",
    )
    ap.add_argument("--repeat", type=int, default=1, help="runs of each HTTP workload (median, min–max)")
    ap.add_argument("--http-only", action="store_true", help="only the two HTTP ingest workloads")
    ap.add_argument(
        "--profile",
        default=None,
        help="directory: after the timed runs, one more run of each HTTP workload under py-spy",
    )
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    lines = [
        f"# tbpanel ingest/query benchmark · {time.strftime('%Y-%m-%d %H:%M:%S')}",
        f"machine: {machine()}",
        f"command: {' '.join([Path(sys.executable).name] + sys.argv)}",
        "",
    ]
    print("\n".join(lines), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        proc, url = start_server(tmp / "server")
        try:
            jwt, devices = login_and_devices(url, max(args.clients, 4) + 1)
            year_device = devices.pop()
            conns = [int(c) for c in args.connections.split(",")]
            for batch, label in ((100, "batched 100 points/request"), (1, "one small message/request")):
                for c in conns:
                    runs = [
                        http_ingest(url, devices, args.clients, args.seconds, batch, proc.pid, connections=c)
                        for _ in range(args.repeat)
                    ]
                    lines.append(
                        f"HTTP ingest, {label}, {args.clients} client processes × {c} connection"
                        f"{'s' if c > 1 else ''}: " + summarize(runs, batch)
                    )
                    print(lines[-1], flush=True)
                if args.profile:
                    http_ingest(
                        url,
                        devices,
                        args.clients,
                        args.seconds,
                        batch,
                        proc.pid,
                        Path(args.profile),
                        connections=max(conns),
                    )
            if args.http_only:
                write_report(args.out, "ingest_http", lines)
                return 0
            load_year(url, year_device[1])
            q = year_query(url, jwt, year_device[0], repeats=5)
            lines.append(
                f"1 year of 1-minute data → 1h AVG over HTTP, still in the SQLite hot tier: {fmt(q['http_ms'])}"
            )
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
        for label, text in (
            ("last_month_hot", "11 months in Zarr, the last month still in SQLite"),
            ("all_cold", "all 12 months in Zarr"),
        ):
            first, warm = q[label]
            lines.append(
                f"1 year of 1-minute data → 1h AVG in-process, {text}: first query {first:.2f} ms, then {fmt(warm)}"
            )
            print(lines[-1], flush=True)
    write_report(args.out, "ingest_query", lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
