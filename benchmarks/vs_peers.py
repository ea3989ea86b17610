"""tbpanel beside VictoriaMetrics and InfluxDB on this machine: the same points, one run (issue 15).

Installs nothing itself. The peers are Debian's packages::

    apt-get install -y victoria-metrics influxdb      # bookworm: VictoriaMetrics 1.79, InfluxDB 1.6

Each system runs as a child process on a free loopback port with a throw-away directory:
tbpanel as ``tbpanel serve``, VictoriaMetrics as ``victoria-metrics -storageDataPath``, InfluxDB as
``influxd -config`` (a generated file: WAL fsync before every ack, its default). A separate client
process feeds all three the same points over HTTP, tbpanel through its device API
(``POST /api/v1/{token}/telemetry``, one device per request), the peers through the InfluxDB
line protocol (``POST /write``, a tag ``device`` per line), with the request bodies made before
the clock starts and ``--connections`` keep-alive connections in parallel:

  batch ~100     D devices x 5 keys x 20 one-minute timestamps per request (100 points)
  batch ~10,000  100 devices x 1 key x --fleet-days of one-minute data, 10,000 points per request
  year           one key, one year of one-minute data (525,600 points, 10,000 per request)

The year's 1-hour AVG is timed once right after its ingest. Then, after each system has
settled (tbpanel compacts the closed months, VictoriaMetrics is flushed and merged, InfluxDB's
cold shards are compacted; each data directory's size is polled until it stays put): disk bytes per point, RSS (peak during the run from VmHWM, idle after it),
the year's 1-hour AVG over HTTP, the 100-device x --fleet-days hourly AVG over HTTP in one
request, the latest values of the D devices x 5 keys, and one message carrying 20,000 new keys
for a new device while another device keeps posting one point every 20 ms (the slowest of those
answers is reported beside it). **Server CPU per point** comes from /proc (user + system time of
the server process over the phase): the sturdy figure on a machine shared with other work.

Durability, as each system promises it: tbpanel answers 200 once the points are on disk
(SQLite WAL, synchronous=FULL, group commit); InfluxDB 1.6 fsyncs its WAL before answering
(``wal-fsync-delay = 0s``); VictoriaMetrics answers before the data reaches disk (it buffers
about a second in memory).

Usage::

    .venv/bin/python benchmarks/vs_peers.py [--devices 1000] [--fleet-days 30] [--repeat 10]
        [--connections 4] [--only tbpanel victoria influx]

Quick look: ``--devices 200 --fleet-days 3 --repeat 3``. Prints one table, the machine and the
command, and writes it to ``benchmarks/results/vs_peers-<timestamp>.md``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from ingest_query import cpu_seconds, login_and_devices, machine, request, start_server  # noqa: E402
from report import write_report  # noqa: E402

from tbpanel.server import free_port  # noqa: E402

T0 = 1_672_531_200_000  # 2023-01-01T00:00Z: closed months, so tbpanel compacts them while settling
MIN = 60_000
HOUR = 3_600_000
YEAR_MIN = 525_600
KEYS = ("k0", "k1", "k2", "k3", "k4")
NEW_KEYS = 20_000
INSTALL = "{} not found: install Debian's packages with `apt-get install -y victoria-metrics influxdb`"


# ----------------------------------------------------------------------------------- the data
def values(seed: int, n: int) -> np.ndarray:
    """Short decimals like a sensor's (two places), the same for every system."""
    rng = np.random.default_rng(seed)
    return np.round(20 + np.cumsum(rng.normal(0, 0.05, n)), 2)


def small_batches(devices: int) -> list[tuple[int, int, dict[str, np.ndarray]]]:
    """(device index, first ts, {key: 20 values}): 100 points per request, 3 per device."""
    out = []
    for d in range(devices):
        for r in range(3):
            first = T0 + r * 20 * MIN
            out.append((d, first, {k: values(d * 97 + r * 7 + i, 20) for i, k in enumerate(KEYS)}))
    return out


def tb_body(first: int, series: dict[str, np.ndarray]) -> bytes:
    n = len(next(iter(series.values())))
    rows = [{"ts": first + i * MIN, "values": {k: float(v[i]) for k, v in series.items()}} for i in range(n)]
    return json.dumps(rows, separators=(",", ":")).encode()


def line_body(measurement: str, device: str, first: int, series: dict[str, np.ndarray]) -> bytes:
    n = len(next(iter(series.values())))
    lines = []
    for i in range(n):
        fields = ",".join(f"{k}={float(v[i])!r}" for k, v in series.items())
        lines.append(f"{measurement},device={device} {fields} {first + i * MIN}")
    return ("\n".join(lines) + "\n").encode()


# ---------------------------------------------------------------------------------- the peers
def rss(pid: int) -> tuple[float, float]:
    """(current, peak) resident set of a process in MiB."""
    got = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            got[line.split(":")[0]] = int(line.split()[1]) / 1024
    return got.get("VmRSS", float("nan")), got.get("VmHWM", float("nan"))


def dir_bytes(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.stat(os.path.join(root, f)).st_blocks * 512
            except FileNotFoundError:
                pass
    return total


def wait_http(host: str, path: str, proc: subprocess.Popen, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection(host, timeout=2)
            status, _ = request(conn, "GET", path)
            if status < 500:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not answer on {host}{path}")


class System:
    """One server under test: started, fed, queried, measured, stopped."""

    name = ""
    durability = ""

    def __init__(self, tmp: Path):
        self.dir = tmp / self.name
        self.dir.mkdir(parents=True)
        self.proc: subprocess.Popen | None = None
        self.host = ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def get(self, path: str) -> bytes:
        conn = http.client.HTTPConnection(self.host, timeout=300)
        status, data = request(conn, "GET", path)
        if status != 200:
            raise RuntimeError(f"{self.name} GET {path[:120]} -> {status}: {data[:300]!r}")
        return data

    settle_poll_s = 2.0

    def settle(self) -> None:
        """Wait until the data directory stops changing (the background work is done)."""
        last, stable, deadline = -1, 0, time.monotonic() + 600
        while time.monotonic() < deadline and stable < 3:
            time.sleep(self.settle_poll_s)
            size = dir_bytes(self.dir)
            stable = stable + 1 if size == last else 0
            last = size


class Tbpanel(System):
    name = "tbpanel"
    durability = "fsync before ack (SQLite WAL, synchronous=FULL, group commit)"
    settle_poll_s = 10.0  # twice the compaction interval: a month being compacted moves the size
    #: more ``tbpanel serve`` options (benchmarks/ingest_cpu.py --serve-arg)
    serve_args: tuple[str, ...] = ()

    def start(self, devices: int, fleet: int) -> None:
        # the 20,000-key message needs a key limit above it (the default, 10,000, refuses it)
        extra = ["--compaction-interval", "5", "--max-keys-per-device", str(NEW_KEYS + 100), "--mqtt-port", "-1"]
        self.proc, url = start_server(self.dir, extra=[*extra, "--coap-port", "-1", *self.serve_args])
        self.host = url.split("//")[1]
        names = [(f"dev-{i}", "bench") for i in range(devices)]
        names += [(f"fleet-{i}", "fleet") for i in range(fleet)] + [
            ("year", "year"),
            ("other", "other"),
            ("many", "many"),
        ]
        self.jwt, made = login_and_devices(url, len(names), names)
        self.ids = {name: did for (name, _t), (did, _tok) in zip(names, made)}
        self.tokens = {name: tok for (name, _t), (_did, tok) in zip(names, made)}
        self.auth = {"X-Authorization": f"Bearer {self.jwt}", "Content-Type": "application/json"}

    def target(self, device: str) -> str:
        return f"/api/v1/{self.tokens[device]}/telemetry"

    def body(self, measurement: str, device: str, first: int, series: dict[str, np.ndarray]) -> bytes:
        return tb_body(first, series)

    def post_new_keys(self, device: str, body_keys: dict[str, float]) -> int:
        conn = http.client.HTTPConnection(self.host, timeout=300)
        status, _ = request(
            conn, "POST", self.target(device), json.dumps(body_keys), {"Content-Type": "application/json"}
        )
        return status

    def year_query(self) -> int:
        q = urllib.parse.urlencode(
            {"keys": "y", "startTs": T0, "endTs": T0 + YEAR_MIN * MIN, "agg": "AVG", "interval": HOUR, "limit": 100000}
        )
        data = self.authed("GET", f"/api/plugins/telemetry/DEVICE/{self.ids['year']}/values/timeseries?{q}")
        return len(json.loads(data)["y"])

    def fleet_query(self, fleet: int, days: int) -> int:
        body = {
            "deviceIds": [self.ids[f"fleet-{i}"] for i in range(fleet)],
            "keys": ["f"],
            "startTs": T0,
            "endTs": T0 + days * 1440 * MIN,
            "agg": "AVG",
            "interval": HOUR,
        }
        data = self.authed("POST", "/api/tbpanel/telemetry/query", json.dumps(body))
        return sum(len(s["ts"]) for s in json.loads(data)["series"])

    def latest(self, devices: int) -> int:
        got, page = 0, 0
        while True:
            body = {
                "entityFilter": {"type": "deviceType", "deviceTypes": ["bench"]},
                "pageLink": {"pageSize": 1000, "page": page},
                "entityFields": [{"type": "ENTITY_FIELD", "key": "name"}],
                "latestValues": [{"type": "TIME_SERIES", "key": k} for k in KEYS],
            }
            answer = json.loads(self.authed("POST", "/api/entitiesQuery/find", json.dumps(body)))
            got += sum(1 for e in answer["data"] for v in e["latest"]["TIME_SERIES"].values() if v.get("value"))
            if not answer["hasNext"]:
                return got
            page += 1

    def authed(self, method: str, path: str, body: str | None = None) -> bytes:
        conn = http.client.HTTPConnection(self.host, timeout=300)
        status, data = request(conn, method, path, body, self.auth)
        if status != 200:
            raise RuntimeError(f"tbpanel {method} {path[:100]} -> {status}: {data[:300]!r}")
        return data


class LineProtocol(System):
    """What VictoriaMetrics and InfluxDB share: the line-protocol write."""

    write_path = ""

    @staticmethod
    def binary(name: str) -> str:
        """The peer's executable, or the install hint (this script installs nothing)."""
        exe = shutil.which(name)
        if exe is None:
            raise SystemExit(INSTALL.format(name))
        return exe

    def target(self, device: str) -> str:
        return self.write_path

    def body(self, measurement: str, device: str, first: int, series: dict[str, np.ndarray]) -> bytes:
        return line_body(measurement, device, first, series)

    def post_new_keys(self, device: str, body_keys: dict[str, float]) -> int:
        fields = ",".join(f"{k}={v!r}" for k, v in body_keys.items())
        line = f"many,device={device} {fields} {T0}\n".encode()
        conn = http.client.HTTPConnection(self.host, timeout=300)
        status, _ = request(conn, "POST", self.write_path, line)
        return 200 if status in (200, 204) else status


class Victoria(LineProtocol):
    name = "VictoriaMetrics"
    durability = "acknowledges before the data is on disk (~1 s in memory)"
    write_path = "/write?precision=ms"

    def start(self, devices: int, fleet: int) -> None:
        exe = self.binary("victoria-metrics")
        port = free_port()
        self.host = f"127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [
                exe,
                f"-storageDataPath={self.dir}",
                f"-httpListenAddr=127.0.0.1:{port}",
                "-retentionPeriod=100y",
                "-search.disableCache",
                "-search.latencyOffset=0s",
                "-loggerLevel=ERROR",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_http(self.host, "/health", self.proc, "victoria-metrics")

    def settle(self) -> None:
        self.get("/internal/force_flush")
        self.get("/internal/force_merge")
        super().settle()

    def _range(self, query: str, start: int, end: int) -> list:
        q = urllib.parse.urlencode({"query": query, "start": start / 1000, "end": end / 1000, "step": "3600s"})
        return json.loads(self.get(f"/api/v1/query_range?{q}"))["data"]["result"]

    def year_query(self) -> int:
        # the 1-hour window ending at each step: the same buckets as the others' GROUP BY hour
        res = self._range('avg_over_time(year_y{device="year"}[1h])', T0 + HOUR, T0 + YEAR_MIN * MIN)
        return sum(len(r["values"]) for r in res)

    def fleet_query(self, fleet: int, days: int) -> int:
        res = self._range("avg_over_time(fleet_f[1h])", T0 + HOUR, T0 + days * 1440 * MIN)
        return sum(len(r["values"]) for r in res)

    def latest(self, devices: int) -> int:
        q = urllib.parse.urlencode({"query": 'last_over_time({__name__=~"bench_k[0-4]"}[3650d])'})
        return len(json.loads(self.get(f"/api/v1/query?{q}"))["data"]["result"])


class Influx(LineProtocol):
    name = "InfluxDB"
    durability = "fsync of its WAL before ack (wal-fsync-delay 0s)"
    write_path = "/write?db=bench&precision=ms"

    def start(self, devices: int, fleet: int) -> None:
        exe = self.binary("influxd")
        port, rpc = free_port(), free_port()
        self.host = f"127.0.0.1:{port}"
        conf = self.dir / "influxdb.conf"
        conf.write_text(
            f'reporting-disabled = true\nbind-address = "127.0.0.1:{rpc}"\n'
            f'[meta]\n  dir = "{self.dir}/meta"\n'
            f'[data]\n  dir = "{self.dir}/data"\n  wal-dir = "{self.dir}/wal"\n  wal-fsync-delay = "0s"\n'
            "  query-log-enabled = false\n  max-series-per-database = 0\n  max-values-per-tag = 0\n"
            '  cache-snapshot-write-cold-duration = "5s"\n  compact-full-write-cold-duration = "10s"\n'
            "[monitor]\n  store-enabled = false\n"
            f'[http]\n  bind-address = "127.0.0.1:{port}"\n  log-enabled = false\n  max-body-size = 0\n'
            "[continuous_queries]\n  enabled = false\n"
        )
        self.proc = subprocess.Popen([exe, "-config", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_http(self.host, "/ping", self.proc, "influxd")
        conn = http.client.HTTPConnection(self.host, timeout=30)
        status, data = request(conn, "POST", "/query?q=" + urllib.parse.quote("CREATE DATABASE bench"))
        if status != 200:
            raise RuntimeError(f"influxd CREATE DATABASE -> {status}: {data[:200]!r}")

    def _select(self, q: str) -> list:
        data = json.loads(self.get("/query?db=bench&epoch=ms&q=" + urllib.parse.quote(q)))
        return data["results"][0].get("series", [])

    def year_query(self) -> int:
        q = f"SELECT mean(y) FROM year WHERE time >= {T0}ms AND time < {T0 + YEAR_MIN * MIN}ms GROUP BY time(1h)"
        return sum(len(s["values"]) for s in self._select(q))

    def fleet_query(self, fleet: int, days: int) -> int:
        end = T0 + days * 1440 * MIN
        q = f"SELECT mean(f) FROM fleet WHERE time >= {T0}ms AND time < {end}ms GROUP BY time(1h), device"
        return sum(len(s["values"]) for s in self._select(q))

    def latest(self, devices: int) -> int:
        return sum(len(s["values"][0]) - 1 for s in self._select("SELECT last(*) FROM bench GROUP BY device"))


SYSTEMS = {"tbpanel": Tbpanel, "victoria": Victoria, "influx": Influx}


# ---------------------------------------------------------------------------------- the client
def _feed(host: str, requests: list[tuple[str, bytes]], connections: int, ready, results) -> None:
    """A client process: ``connections`` threads, each with one keep-alive connection."""
    errors: list[str] = []
    share = [requests[i::connections] for i in range(connections)]

    def run(part: list[tuple[str, bytes]]) -> None:
        conn = http.client.HTTPConnection(host, timeout=300)
        for path, body in part:
            conn.request("POST", path, body=body, headers={"Content-Type": "text/plain"})
            resp = conn.getresponse()
            data = resp.read()
            if resp.status not in (200, 204):
                errors.append(f"{resp.status} {data[:200]!r}")

    threads = [threading.Thread(target=run, args=(p,)) for p in share]
    ready.wait()
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    results.put((time.perf_counter() - t, errors[:3], len(errors)))


def feed(system: System, requests: list[tuple[str, bytes]], points: int, connections: int) -> dict:
    """Send prepared requests from a separate process; the server's CPU over the phase from /proc."""
    ready, results = mp.Barrier(2), mp.Queue()
    client = mp.Process(target=_feed, args=(system.host, requests, connections, ready, results))
    client.start()
    cpu0 = cpu_seconds(system.pid)
    ready.wait()
    elapsed, sample, errors = results.get()
    cpu = cpu_seconds(system.pid) - cpu0
    client.join()
    if errors:
        raise RuntimeError(f"{system.name}: {errors} failed writes, e.g. {sample}")
    return {"points_per_s": points / elapsed, "cpu_us_per_point": cpu / points * 1e6, "seconds": elapsed}


def timed(fn, repeat: int) -> tuple[float, object]:
    """Median wall milliseconds of ``fn()`` over ``repeat`` runs (after one warm-up) and its answer."""
    answer = fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), answer


def many_new_keys(system: System) -> dict:
    """One message with NEW_KEYS new keys while another device posts a point every 20 ms."""
    body = {f"n{i:05d}": float(i % 97) for i in range(NEW_KEYS)}
    stop, worst = threading.Event(), [0.0]

    def other() -> None:
        conn = http.client.HTTPConnection(system.host, timeout=120)
        i = 0
        while not stop.is_set():
            one = system.body("other", "other", T0 + i * MIN, {"o": np.array([float(i)])})
            t = time.perf_counter()
            request(conn, "POST", system.target("other"), one, {"Content-Type": "text/plain"})
            worst[0] = max(worst[0], time.perf_counter() - t)
            i += 1
            time.sleep(0.02)

    poster = threading.Thread(target=other)
    poster.start()
    time.sleep(0.3)
    t = time.perf_counter()
    status = system.post_new_keys("many", body)
    elapsed = time.perf_counter() - t
    time.sleep(0.3)
    stop.set()
    poster.join()
    return {"status": status, "seconds": elapsed, "other_worst_ms": worst[0] * 1000}


# ------------------------------------------------------------------------------------ the run
def run_system(cls, tmp: Path, args) -> dict:
    system = cls(tmp)
    fleet, days = 100, args.fleet_days
    try:
        system.start(args.devices, fleet)
        out: dict = {"durability": system.durability}
        small = [
            (system.target(f"dev-{d}"), system.body("bench", f"dev-{d}", first, s))
            for d, first, s in small_batches(args.devices)
        ]
        out["batch100"] = feed(system, small, len(small) * 100, args.connections)
        big = []
        per = 10_000
        for i in range(fleet):
            v = values(10_000 + i, days * 1440)
            for j in range(0, len(v), per):
                big.append(
                    (
                        system.target(f"fleet-{i}"),
                        system.body("fleet", f"fleet-{i}", T0 + j * MIN, {"f": v[j : j + per]}),
                    )
                )
        out["batch10k"] = feed(system, big, fleet * days * 1440, args.connections)
        year = values(7, YEAR_MIN)
        yreq = [
            (system.target("year"), system.body("year", "year", T0 + j * MIN, {"y": year[j : j + per]}))
            for j in range(0, YEAR_MIN, per)
        ]
        out["year_ingest"] = feed(system, yreq, YEAR_MIN, args.connections)
        points = len(small) * 100 + fleet * days * 1440 + YEAR_MIN
        out["rss_peak_mib"] = rss(system.pid)[1]
        out["year_fresh_ms"], out["year_fresh_buckets"] = timed(system.year_query, 1)  # before background work
        system.settle()
        out["disk_bytes_per_point"] = dir_bytes(system.dir) / points
        out["rss_idle_mib"] = rss(system.pid)[0]
        out["year_ms"], out["year_buckets"] = timed(system.year_query, args.repeat)
        out["fleet_ms"], out["fleet_buckets"] = timed(lambda: system.fleet_query(fleet, days), args.repeat)
        out["latest_ms"], out["latest_values"] = timed(lambda: system.latest(args.devices), args.repeat)
        out["many_keys"] = many_new_keys(system)
        out["points"] = points
        return out
    finally:
        system.stop()


def table(results: dict[str, dict], args) -> list[str]:
    names = list(results)
    rows = [
        ("points/s, ~100 points/request", lambda r: f"{r['batch100']['points_per_s']:,.0f}"),
        ("server CPU per point, ~100 points/request", lambda r: f"{r['batch100']['cpu_us_per_point']:.2f} µs"),
        ("points/s, ~10,000 points/request", lambda r: f"{r['batch10k']['points_per_s']:,.0f}"),
        ("server CPU per point, ~10,000 points/request", lambda r: f"{r['batch10k']['cpu_us_per_point']:.2f} µs"),
        ("disk per point after settling", lambda r: f"{r['disk_bytes_per_point']:.2f} B"),
        ("RSS peak / idle", lambda r: f"{r['rss_peak_mib']:,.0f} / {r['rss_idle_mib']:,.0f} MiB"),
        (
            "1 year → 1 h AVG over HTTP, right after its ingest",
            lambda r: f"{r['year_fresh_ms']:.1f} ms ({r['year_fresh_buckets']} buckets)",
        ),
        ("1 year → 1 h AVG over HTTP, settled", lambda r: f"{r['year_ms']:.1f} ms ({r['year_buckets']} buckets)"),
        (
            f"100 devices × {args.fleet_days} days → 1 h AVG over HTTP",
            lambda r: f"{r['fleet_ms']:.1f} ms ({r['fleet_buckets']} buckets)",
        ),
        (
            f"latest values, {args.devices} devices × 5 keys",
            lambda r: f"{r['latest_ms']:.1f} ms ({r['latest_values']})",
        ),
        (
            f"{NEW_KEYS:,} new keys in one message (other device's slowest 1-point post)",
            lambda r: (
                f"{r['many_keys']['seconds']:.2f} s ({r['many_keys']['other_worst_ms']:.0f} ms)"
                + ("" if r["many_keys"]["status"] == 200 else f" answer {r['many_keys']['status']}")
            ),
        ),
        ("durability", lambda r: r["durability"]),
    ]
    lines = ["| workload | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
    for label, cell in rows:
        lines.append(f"| {label} | " + " | ".join(cell(results[n]) for n in names) + " |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--fleet-days", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--only", nargs="+", choices=sorted(SYSTEMS), default=list(SYSTEMS))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="tbpanel-vs-peers-") as tmp:
        for key in args.only:
            cls = SYSTEMS[key]
            print(f"{cls.name} …", flush=True)
            results[cls.name] = run_system(cls, Path(tmp), args)
    lines = [
        "# tbpanel vs VictoriaMetrics vs InfluxDB",
        "",
        f"machine: {machine()}",
        f"command: {' '.join([Path(sys.executable).name, *sys.argv])}",
        f"load average at the end: {os.getloadavg()[0]:.1f}",
        "",
        *table(results, args),
    ]
    print("\n".join(lines))
    write_report(args.out, "vs_peers", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
