"""Side by side on this machine: tbpanel versus PostgreSQL with ThingsBoard's ts_kv schema (issue 9).

Starts a throw-away PostgreSQL (Debian's package: ``apt-get install -y postgresql``) with
initdb/pg_ctl in a temporary directory on a loopback port (as user ``postgres`` when run as
root), creates ThingsBoard's schema (``ts_kv`` range-partitioned by month on ``ts`` with primary
key ``(entity_id, key, ts)``, ``key_dictionary``, ``ts_kv_latest`` keyed ``(entity_id, key)``)
and runs the same workloads on both systems, in the same run:

  ingest  D devices x K keys x S timestamps (N = D*K*S DOUBLE points), batches of --batch:
          PostgreSQL as ThingsBoard writes it: batched ``INSERT ... ON CONFLICT DO UPDATE`` into
            ts_kv plus the ts_kv_latest upsert, --pg-threads connections (ThingsBoard's default
            ts batch threads: 3), one COMMIT per batch;
          PostgreSQL ``COPY`` into ts_kv (fastest path; no latest table, no upsert);
          tbpanel in-process: ``open_store(path).write_points(batch)`` (synchronous=FULL);
          tbpanel HTTP device API: ``tbpanel serve``, --clients processes POSTing ~100 points
            per request to /api/v1/{token}/telemetry (every 200 is a durable write).
          PostgreSQL runs with fsync=on, synchronous_commit=on (durable as well).
  queries (one year of 1-minute data for one key; --fleet-days of it for 100 devices; the
          latest values of K keys for 1,000 devices); tbpanel after ``store.compact(before_ts=...)``
          so the historical months are in the Zarr cold tier:
          raw range query, newest 100 (ORDER BY ts DESC LIMIT 100 / store.query_raw);
          1-hour AVG over the year, one key (GROUP BY bucket / store.query_agg);
          the same for 100 devices (one SQL query with entity_id = ANY / 100 store.query_agg calls);
          latest values for 1,000 devices (ts_kv_latest / one store.latest_many call).
  disk    bytes per stored point (PostgreSQL: pg_total_relation_size of the ts_kv partitions,
          indexes included; tbpanel: the size of its data directory).

Prints one table (median, min-max over --repeat runs, tbpanel/PostgreSQL ratio), the machine
and the command, and writes it to benchmarks/results/vs_postgres-<timestamp>.md.

Usage:
    .venv/bin/pip install 'psycopg[binary]'        # or: pip install -e '.[bench]'
    .venv/bin/python benchmarks/vs_postgres.py [--devices 100] [--keys 10] [--steps 500]
        [--batch 10000] [--repeat 3] [--query-repeat 20] [--fleet-days 30] [--clients 4]
Full sizes (a year of 1-minute data for all 100 fleet devices, 52.6 M points; takes long):
    .venv/bin/python benchmarks/vs_postgres.py --steps 1000 --fleet-days 365 --repeat 5
"""

from __future__ import annotations

import argparse
import glob
import http.client
import json
import multiprocessing as mp
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from ingest_query import login_and_devices, machine, request, start_server  # noqa: E402

from tbpanel.store import ValueType, open_store  # noqa: E402

INSTALL = "PostgreSQL server binaries not found: install Debian's package with `apt-get install -y postgresql`"
T0 = 1_672_531_200_000  # 2023-01-01T00:00Z
MIN = 60_000
HOUR = 3_600_000
YEAR_MIN = 525_600


# --------------------------------------------------------------------------- PostgreSQL server
class Postgres:
    """A throw-away cluster: initdb in a temp dir, pg_ctl start on 127.0.0.1:<free port>."""

    def __init__(self, base: Path):
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
        if not bins:
            raise SystemExit(INSTALL)
        self.bin = Path(bins[-1]).parent
        self.dir = base / "pg"
        self.dir.mkdir()
        self.prefix: list[str] = []
        if os.geteuid() == 0:  # initdb refuses root: run the server as the package's user
            self.prefix = ["runuser", "-u", "postgres", "--"]
            shutil.chown(base, "postgres")
            shutil.chown(self.dir, "postgres")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._run(
            "initdb", "-D", str(self.dir / "data"), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-instructions"
        )
        # fsync and synchronous_commit stay on (durable, like tbpanel's synchronous=FULL);
        # memory and WAL sized as a tuned ThingsBoard node would be.
        opts = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -k {self.dir} -c shared_buffers=1GB "
            f"-c max_wal_size=4GB -c checkpoint_timeout=30min -c work_mem=64MB"
        )
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-l", str(self.dir / "log"), "-w", "-o", opts, "start")
        self.version = subprocess.run(
            [str(self.bin / "postgres"), "--version"], capture_output=True, text=True
        ).stdout.strip()

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(self.prefix + [str(self.bin / tool), *args], check=True, capture_output=True)

    def connect(self):
        import psycopg

        return psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=False)

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop")
        except subprocess.CalledProcessError:
            pass


def month_starts(lo: int, hi: int) -> list[int]:
    d = datetime.fromtimestamp(lo / 1000, UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    out = []
    while int(d.timestamp() * 1000) <= hi:
        out.append(int(d.timestamp() * 1000))
        d = d.replace(year=d.year + (d.month == 12), month=d.month % 12 + 1)
    out.append(int(d.timestamp() * 1000))
    return out


def create_schema(conn, lo: int, hi: int) -> None:
    """ThingsBoard's SQL time-series schema (schema-ts-psql.sql) with monthly partitions."""
    with conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS ts_kv, ts_kv_latest, key_dictionary CASCADE")
        cur.execute("""CREATE TABLE ts_kv (entity_id uuid NOT NULL, key int NOT NULL, ts bigint NOT NULL,
            bool_v boolean, str_v varchar(10000000), long_v bigint, dbl_v double precision, json_v json,
            CONSTRAINT ts_kv_pkey PRIMARY KEY (entity_id, key, ts)) PARTITION BY RANGE (ts)""")
        starts = month_starts(lo, hi)
        for a, b in zip(starts, starts[1:]):
            name = datetime.fromtimestamp(a / 1000, UTC).strftime("ts_kv_%Y_%m")
            cur.execute(f"CREATE TABLE {name} PARTITION OF ts_kv FOR VALUES FROM ({a}) TO ({b})")
        cur.execute("""CREATE TABLE key_dictionary (key varchar(255) NOT NULL, key_id serial UNIQUE,
            CONSTRAINT key_dictionary_id_pkey PRIMARY KEY (key))""")
        cur.execute("""CREATE TABLE ts_kv_latest (entity_id uuid NOT NULL, key int NOT NULL, ts bigint NOT NULL,
            bool_v boolean, str_v varchar(10000000), long_v bigint, dbl_v double precision, json_v json,
            CONSTRAINT ts_kv_latest_pkey PRIMARY KEY (entity_id, key))""")
    conn.commit()


def key_ids(conn, keys: list[str]) -> dict[str, int]:
    with conn.cursor() as cur:
        for k in keys:
            cur.execute("INSERT INTO key_dictionary (key) VALUES (%s) ON CONFLICT DO NOTHING", (k,))
        cur.execute("SELECT key, key_id FROM key_dictionary")
        out = dict(cur.fetchall())
    conn.commit()
    return out


def reset_ts(conn) -> None:
    with conn.cursor() as cur:
        cur.execute("TRUNCATE ts_kv, ts_kv_latest")
    conn.commit()


INSERT_TS = (
    "INSERT INTO ts_kv (entity_id, key, ts, bool_v, str_v, long_v, dbl_v, json_v) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, cast(%s AS json)) ON CONFLICT (entity_id, key, ts) DO UPDATE SET "
    "bool_v = EXCLUDED.bool_v, str_v = EXCLUDED.str_v, long_v = EXCLUDED.long_v, "
    "dbl_v = EXCLUDED.dbl_v, json_v = EXCLUDED.json_v"
)
INSERT_LATEST = (
    "INSERT INTO ts_kv_latest (entity_id, key, ts, bool_v, str_v, long_v, dbl_v, json_v) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, cast(%s AS json)) ON CONFLICT (entity_id, key) DO UPDATE SET "
    "ts = EXCLUDED.ts, bool_v = EXCLUDED.bool_v, str_v = EXCLUDED.str_v, long_v = EXCLUDED.long_v, "
    "dbl_v = EXCLUDED.dbl_v, json_v = EXCLUDED.json_v"
)


def pg_insert_batches(pg: Postgres, batches: list[list[tuple]], threads: int) -> float:
    """ThingsBoard's JDBC batch: executemany of the upsert (psycopg pipelines it), latest upsert
    of the batch's newest value per series, COMMIT; ``threads`` connections take turns."""
    conns = [pg.connect() for _ in range(threads)]
    q: list[list[tuple]] = list(batches)
    lock = threading.Lock()

    def worker(conn):
        while True:
            with lock:
                if not q:
                    return
                b = q.pop(0)
            rows = [(e, k, ts, None, None, None, v, None) for e, k, ts, v in b]
            newest = {}
            for e, k, ts, v in b:
                newest[(e, k)] = (e, k, ts, None, None, None, v, None)
            with conn.cursor() as cur:
                cur.executemany(INSERT_TS, rows)
                cur.executemany(INSERT_LATEST, sorted(newest.values(), key=lambda r: (str(r[0]), r[1])))
            conn.commit()

    t = time.perf_counter()
    with ThreadPoolExecutor(threads) as ex:
        list(ex.map(worker, conns))
    dt = time.perf_counter() - t
    for c in conns:
        c.close()
    return dt


def pg_copy(conn, rows, batch: int) -> float:
    """COPY ... FROM STDIN (binary) per batch, one COMMIT per batch."""
    t = time.perf_counter()
    with conn.cursor() as cur:
        for i in range(0, len(rows), batch):
            with cur.copy("COPY ts_kv (entity_id, key, ts, dbl_v) FROM STDIN (FORMAT BINARY)") as cp:
                cp.set_types(["uuid", "int4", "int8", "float8"])
                for r in rows[i : i + batch]:
                    cp.write_row(r)
            conn.commit()
    return time.perf_counter() - t


def pg_rel_bytes(conn, table: str) -> int:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0) FROM pg_inherits WHERE inhparent = %s::regclass",
            (table,),
        )
        return int(cur.fetchone()[0])


def dir_bytes(path: Path) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


# --------------------------------------------------------------------------- workloads
def ingest_points(devices: list[uuid.UUID], keys: int, steps: int, t0: int):
    """Arrival order: timestamp by timestamp, every device, every key (as devices report)."""
    out = []
    for s in range(steps):
        ts = t0 + s * 1000
        for d, e in enumerate(devices):
            for k in range(keys):
                out.append((e, k, ts, float(d + k + s) * 0.5))
    return out


def _http_client(args) -> tuple[int, float]:
    host, tokens, keys, steps, t0, per_req = args
    conn = http.client.HTTPConnection(host)
    headers = {"Content-Type": "application/json"}
    ts_per_req = max(1, per_req // keys)
    sent = 0
    bodies = []
    for s0 in range(0, steps, ts_per_req):
        for d, tok in tokens:
            body = json.dumps(
                [
                    {"ts": t0 + s * 1000, "values": {f"key{k}": float(d + k + s) * 0.5 for k in range(keys)}}
                    for s in range(s0, min(steps, s0 + ts_per_req))
                ]
            ).encode()
            bodies.append((tok, body, keys * (min(steps, s0 + ts_per_req) - s0)))
    t = time.perf_counter()
    for tok, body, n in bodies:
        status, _ = request(conn, "POST", f"/api/v1/{tok}/telemetry", body, headers)
        if status != 200:
            raise RuntimeError(f"HTTP {status}")
        sent += n
    return sent, time.perf_counter() - t


def stats(xs: list[float]) -> tuple[float, float, float]:
    return statistics.median(xs), min(xs), max(xs)


def timed(fn, repeat: int) -> list[float]:
    fn()  # warm-up (caches, plans)
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=100, help="ingest: devices")
    ap.add_argument("--keys", type=int, default=10, help="ingest and latest: keys per device")
    ap.add_argument("--steps", type=int, default=500, help="ingest: timestamps per series")
    ap.add_argument("--batch", type=int, default=10_000, help="points per batch/transaction (ThingsBoard: 10,000)")
    ap.add_argument("--pg-threads", type=int, default=3, help="PostgreSQL writer connections (ThingsBoard: 3)")
    ap.add_argument("--clients", type=int, default=4, help="HTTP client processes (same machine)")
    ap.add_argument("--repeat", type=int, default=3, help="ingest runs per system")
    ap.add_argument("--query-repeat", type=int, default=20, help="timed runs per query (after one warm-up)")
    ap.add_argument("--fleet", type=int, default=100, help="devices in the fleet AVG query")
    ap.add_argument("--fleet-days", type=int, default=30, help="days of 1-minute data per fleet device (365: full)")
    ap.add_argument("--latest-devices", type=int, default=1000)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    try:
        import psycopg
    except ImportError:
        raise SystemExit(
            "psycopg missing: .venv/bin/pip install 'psycopg[binary]'  (or pip install -e '.[bench]')"
        ) from None
    if not glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        raise SystemExit(INSTALL)

    n = args.devices * args.keys * args.steps
    command = " ".join([".venv/bin/python"] + [os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:])
    rows_out: list[tuple[str, str, str, str]] = []  # what, tbpanel, postgres, ratio
    notes: list[str] = []

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    def rate_row(what, tb: list[float], pg: list[float], unit="points/s"):
        tm, tlo, thi = stats(tb)
        pm, plo, phi = stats(pg)
        rows_out.append(
            (
                what,
                f"{tm:,.0f} {unit} ({tlo:,.0f}–{thi:,.0f})",
                f"{pm:,.0f} {unit} ({plo:,.0f}–{phi:,.0f})",
                f"**{tm / pm:.1f}×**",
            )
        )
        log(f"{what}: tbpanel {rows_out[-1][1]} · PostgreSQL {rows_out[-1][2]} · {rows_out[-1][3]}")

    def ms_row(what, tb: list[float], pg: list[float]):
        tm, tlo, thi = stats(tb)
        pm, plo, phi = stats(pg)
        rows_out.append(
            (
                what,
                f"{tm:.2f} ms ({tlo:.2f}–{thi:.2f})",
                f"{pm:.2f} ms ({plo:.2f}–{phi:.2f})",
                f"**{tm / pm:.2f}** ({pm / tm:.1f}× faster)" if tm < pm else f"**{tm / pm:.2f}** (slower)",
            )
        )
        log(f"{what}: tbpanel {rows_out[-1][1]} · PostgreSQL {rows_out[-1][2]} · {rows_out[-1][3]}")

    load_before = os.getloadavg()
    base = Path(tempfile.mkdtemp(prefix="tbpanel-vs-pg-"))
    pg = None
    try:
        pg = Postgres(base)
        log(f"{pg.version} on 127.0.0.1:{pg.port} in {pg.dir}")
        conn = pg.connect()
        with conn.cursor() as cur:
            cur.execute("SHOW shared_buffers")
            sb = cur.fetchone()[0]
            cur.execute("SHOW synchronous_commit")
            sc = cur.fetchone()[0]
            cur.execute("SHOW fsync")
            fs = cur.fetchone()[0]
        conn.commit()
        notes.append(
            f"PostgreSQL settings: fsync={fs}, synchronous_commit={sc}, shared_buffers={sb}, "
            f"max_wal_size=4GB, work_mem=64MB; client psycopg {psycopg.__version__} over TCP loopback."
        )
        fleet_min = args.fleet_days * 1440
        hi = T0 + max(YEAR_MIN, fleet_min) * MIN + 10 * 86_400_000 * args.repeat + args.steps * 1000 * (args.repeat + 2)
        create_schema(conn, T0, hi)
        kid = key_ids(conn, [f"key{k}" for k in range(args.keys)] + ["temp"])

        # ---------------------------------------------------------------- ingest
        devices = [uuid.uuid4() for _ in range(args.devices)]
        pts = ingest_points(devices, args.keys, args.steps, T0)
        pg_batches = [
            [(e, kid[f"key{k}"], ts, v) for e, k, ts, v in pts[i : i + args.batch]] for i in range(0, n, args.batch)
        ]
        tb_batches = [
            [(str(e), f"key{k}", ts, ValueType.DOUBLE, v) for e, k, ts, v in pts[i : i + args.batch]]
            for i in range(0, n, args.batch)
        ]
        copy_rows = [r for b in pg_batches for r in b]
        log(
            f"ingest: {args.devices} devices × {args.keys} keys × {args.steps} timestamps = {n:,} points, "
            f"batches of {args.batch:,}, {args.repeat} runs each"
        )

        ins, cp, tbw = [], [], []
        pg_bytes = tb_bytes = 0
        for r in range(args.repeat):
            reset_ts(conn)
            ins.append(n / pg_insert_batches(pg, pg_batches, args.pg_threads))
            pg_bytes = pg_rel_bytes(conn, "ts_kv")
            reset_ts(conn)
            cp.append(n / pg_copy(conn, copy_rows, args.batch))
            path = base / f"tb-ingest-{r}"
            store = open_store(path, compaction_interval_s=0, synchronous="FULL")
            t = time.perf_counter()
            for b in tb_batches:
                store.write_points(b)
            tbw.append(n / (time.perf_counter() - t))
            store.close()
            tb_bytes = dir_bytes(path)
            shutil.rmtree(path)
            log(
                f"  run {r + 1}: INSERT..ON CONFLICT {ins[-1]:,.0f} · COPY {cp[-1]:,.0f} · "
                f"tbpanel write_points {tbw[-1]:,.0f} points/s"
            )
        reset_ts(conn)
        rate_row(
            f"ingest in-process (tbpanel write_points) vs ThingsBoard-style batched INSERT … ON CONFLICT "
            f"+ latest, {args.pg_threads} connections",
            tbw,
            ins,
        )
        rate_row("ingest in-process (tbpanel write_points) vs PostgreSQL COPY (ts_kv only)", tbw, cp)

        # HTTP device API
        srv, url = start_server(base / "server")
        try:
            _, devs = login_and_devices(url, args.devices)
            host = url.split("//")[1]
            http_rates = []
            for r in range(args.repeat):
                t0 = T0 + (r + 1) * 10 * 86_400_000
                groups = [[(d, devs[d][1]) for d in range(c, args.devices, args.clients)] for c in range(args.clients)]
                with mp.Pool(args.clients) as pool:
                    t = time.perf_counter()
                    res = pool.map(_http_client, [(host, g, args.keys, args.steps, t0, 100) for g in groups])
                    dt = time.perf_counter() - t
                http_rates.append(sum(x[0] for x in res) / dt)
                log(f"  run {r + 1}: HTTP device API {http_rates[-1]:,.0f} points/s")
        finally:
            srv.terminate()
            srv.wait()
        rate_row(
            f"ingest over HTTP (tbpanel device API, {args.clients} client processes, ~100 points/request) "
            f"vs ThingsBoard-style INSERT",
            http_rates,
            ins,
        )
        notes.append(
            "HTTP rate: wall time of the POSTs, bodies pre-encoded, client processes on the same cores "
            "as the server. The PostgreSQL INSERT rate is the database alone (no ThingsBoard transport, "
            "queue or JSON parsing in front of it), so it is an upper bound for ThingsBoard on this "
            "machine; ThingsBoard publishes ~15k points/s on 2 vCPUs (PostgreSQL at 95% CPU)."
        )
        notes.append(f"Ingest: every run starts from empty tables / a new store directory; {args.repeat} runs.")

        # ---------------------------------------------------------------- query data
        log(
            f"query data: 1 year of 1-minute data for one key; {args.fleet} devices × {args.fleet_days} days; "
            f"latest of {args.keys} keys for {args.latest_devices} devices"
        )
        year_dev = uuid.uuid4()
        fleet = [year_dev] + [uuid.uuid4() for _ in range(args.fleet - 1)]
        latest_devs = [uuid.uuid4() for _ in range(args.latest_devices)]
        rng = np.random.default_rng(0)
        tb_path = base / "tb-query"
        store = open_store(tb_path, compaction_interval_s=0, synchronous="FULL")
        total_q = 0
        t_pg = t_tb = 0.0
        temp = kid["temp"]

        def load(dev, nmin):
            nonlocal total_q, t_pg, t_tb
            ts = (T0 + np.arange(nmin, dtype=np.int64) * MIN).tolist()
            vals = (20 + 10 * np.sin(np.arange(nmin) / 1440 * 2 * np.pi) + rng.normal(0, 1, nmin)).tolist()
            for i in range(0, nmin, 50_000):
                t = time.perf_counter()
                with (
                    conn.cursor() as cur,
                    cur.copy("COPY ts_kv (entity_id, key, ts, dbl_v) FROM STDIN (FORMAT BINARY)") as c,
                ):
                    c.set_types(["uuid", "int4", "int8", "float8"])
                    for a, b in zip(ts[i : i + 50_000], vals[i : i + 50_000]):
                        c.write_row((dev, temp, a, b))
                conn.commit()
                t_pg += time.perf_counter() - t
                t = time.perf_counter()
                store.write_points(
                    [
                        (str(dev), "temp", a, ValueType.DOUBLE, b)
                        for a, b in zip(ts[i : i + 50_000], vals[i : i + 50_000])
                    ]
                )
                t_tb += time.perf_counter() - t
            total_q += nmin

        load(year_dev, YEAR_MIN)
        for dev in fleet[1:]:
            load(dev, fleet_min)
        # latest values: 3 timestamps per series, ts_kv and ts_kv_latest (PostgreSQL), one store (tbpanel)
        lrows, lpts = [], []
        for s in range(3):
            ts = T0 + 100 * 86_400_000 + s * MIN
            for d, dev in enumerate(latest_devs):
                for k in range(args.keys):
                    v = float(d * 0.1 + k + s)
                    lrows.append((dev, kid[f"key{k}"], ts, v))
                    lpts.append((str(dev), f"key{k}", ts, ValueType.DOUBLE, v))
        with conn.cursor() as cur:
            with cur.copy("COPY ts_kv (entity_id, key, ts, dbl_v) FROM STDIN (FORMAT BINARY)") as c:
                c.set_types(["uuid", "int4", "int8", "float8"])
                for r in lrows:
                    c.write_row(r)
            newest = {(e, k): (e, k, ts, None, None, None, v, None) for e, k, ts, v in lrows}
            cur.executemany(INSERT_LATEST, list(newest.values()))
            # ts_kv_latest also for the year and fleet series (ThingsBoard keeps it for every series)
            cur.execute(
                "INSERT INTO ts_kv_latest (entity_id, key, ts, dbl_v) SELECT DISTINCT ON (entity_id, key) "
                "entity_id, key, ts, dbl_v FROM ts_kv WHERE key = %s ORDER BY entity_id, key, ts DESC",
                (temp,),
            )
        conn.commit()
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("VACUUM ANALYZE ts_kv")
            cur.execute("VACUUM ANALYZE ts_kv_latest")
        conn.autocommit = False
        store.write_points(lpts)
        total_q += len(lrows)
        log(f"  loaded {total_q:,} points: PostgreSQL COPY {t_pg:.1f} s, tbpanel write_points {t_tb:.1f} s")
        hot_bytes = dir_bytes(tb_path)
        t = time.perf_counter()
        cst = store.compact(before_ts=hi + 32 * 86_400_000)
        t_compact = time.perf_counter() - t
        store.close()
        store = open_store(tb_path, compaction_interval_s=0)
        log(f"  tbpanel compact: {cst['partitions']} partitions, {cst['points_moved']:,} points in {t_compact:.1f} s")
        notes.append(
            f"Query data loaded into both ({total_q:,} points; PostgreSQL COPY {t_pg:.1f} s, tbpanel "
            f"write_points {t_tb:.1f} s), then tbpanel `store.compact(before_ts=...)` moved every "
            f"(historical) month to the Zarr cold tier ({t_compact:.1f} s) and the store was reopened; "
            f"PostgreSQL got VACUUM ANALYZE. Each query: one warm-up, then {args.query_repeat} timed runs."
        )

        # ---------------------------------------------------------------- queries
        end = T0 + YEAR_MIN * MIN
        fleet_end = T0 + fleet_min * MIN
        yd = str(year_dev)

        def pg_q(sql, params):
            def f():
                with conn.cursor() as cur:
                    cur.execute(sql, params)
                    r = cur.fetchall()
                conn.commit()
                return r

            return f

        raw_sql = (
            "SELECT ts, dbl_v FROM ts_kv WHERE entity_id = %s AND key = %s AND ts >= %s AND ts < %s "
            "ORDER BY ts DESC LIMIT 100"
        )
        assert len(pg_q(raw_sql, (year_dev, temp, T0, end))()) == 100
        assert len(store.query_raw(yd, ["temp"], T0, end, limit=100, order="DESC")["temp"]) == 100
        ms_row(
            "raw range query, one key over a year, newest 100 (ORDER BY ts DESC LIMIT 100)",
            timed(lambda: store.query_raw(yd, ["temp"], T0, end, limit=100, order="DESC"), args.query_repeat),
            timed(pg_q(raw_sql, (year_dev, temp, T0, end)), args.query_repeat),
        )

        agg_sql = (
            "SELECT %s + (ts - %s) / %s * %s AS b, avg(dbl_v), count(*) FROM ts_kv WHERE entity_id = %s "
            "AND key = %s AND ts >= %s AND ts < %s GROUP BY b ORDER BY b"
        )
        p = (T0, T0, HOUR, HOUR, year_dev, temp, T0, end)
        got_pg = pg_q(agg_sql, p)()
        got_tb = store.query_agg(yd, ["temp"], T0, end, "AVG", HOUR)["temp"]
        assert len(got_pg) == len(got_tb) == YEAR_MIN // 60
        assert np.allclose([r[1] for r in got_pg], [r[2] for r in got_tb])
        ms_row(
            "1-hour AVG over 1 year of 1-minute data, one key (525,600 → 8,760 buckets)",
            timed(lambda: store.query_agg(yd, ["temp"], T0, end, "AVG", HOUR), args.query_repeat),
            timed(pg_q(agg_sql, p), args.query_repeat),
        )

        fleet_sql = (
            "SELECT entity_id, %s + (ts - %s) / %s * %s AS b, avg(dbl_v), count(*) FROM ts_kv "
            "WHERE entity_id = ANY(%s) AND key = %s AND ts >= %s AND ts < %s GROUP BY entity_id, b "
            "ORDER BY entity_id, b"
        )
        fp = (T0, T0, HOUR, HOUR, fleet, temp, T0, fleet_end)
        fs_ = [str(d) for d in fleet]

        def tb_fleet():
            return [store.query_agg(d, ["temp"], T0, fleet_end, "AVG", HOUR) for d in fs_]

        assert len(pg_q(fleet_sql, fp)()) == sum(len(r["temp"]) for r in tb_fleet()) == args.fleet * fleet_min // 60
        ms_row(
            f"1-hour AVG, {args.fleet} devices × {args.fleet_days} days of 1-minute data "
            f"({args.fleet * fleet_min:,} points; tbpanel: {args.fleet} query_agg calls, PostgreSQL: one query)",
            timed(tb_fleet, max(3, args.query_repeat // 4)),
            timed(pg_q(fleet_sql, fp), max(3, args.query_repeat // 4)),
        )

        latest_sql = (
            "SELECT l.entity_id, d.key, l.ts, l.dbl_v FROM ts_kv_latest l JOIN key_dictionary d "
            "ON d.key_id = l.key WHERE l.entity_id = ANY(%s)"
        )
        ls_ = [str(d) for d in latest_devs]

        def tb_latest():
            return store.latest_many(ls_)

        got = tb_latest()
        assert got == {d: store.latest(d) for d in ls_}
        assert (
            len(pg_q(latest_sql, (latest_devs,))())
            == sum(len(x) for x in got.values())
            == args.latest_devices * args.keys
        )
        ms_row(
            f"latest values, {args.latest_devices:,} devices × {args.keys} keys (tbpanel: one "
            f"store.latest_many call, PostgreSQL: one query on ts_kv_latest)",
            timed(tb_latest, max(3, args.query_repeat // 4)),
            timed(pg_q(latest_sql, (latest_devs,)), max(3, args.query_repeat // 4)),
        )

        # ---------------------------------------------------------------- disk
        pg_q_bytes = pg_rel_bytes(conn, "ts_kv")
        with conn.cursor() as cur:
            cur.execute("SELECT pg_total_relation_size('ts_kv_latest')")
            pg_latest_bytes = int(cur.fetchone()[0])
        conn.commit()
        store.close()
        tb_q_bytes = dir_bytes(tb_path)

        def bytes_row(what, tb, pgb, pts_):
            a, b = tb / pts_, pgb / pts_
            rows_out.append(
                (
                    what,
                    f"{a:.1f} B/point",
                    f"{b:.1f} B/point",
                    f"**{a / b:.2f}** ({b / a:.1f}× smaller)" if a < b else f"**{a / b:.2f}**",
                )
            )
            log(f"{what}: {rows_out[-1][1:]}")

        bytes_row(
            f"disk, query data ({total_q:,} points; tbpanel compacted into Zarr; PostgreSQL ts_kv "
            f"partitions + primary-key indexes)",
            tb_q_bytes,
            pg_q_bytes,
            total_q,
        )
        bytes_row(f"disk, ingest data ({n:,} points; tbpanel hot tier = SQLite, not compacted)", tb_bytes, pg_bytes, n)
        notes.append(
            f"Disk: ts_kv_latest adds {pg_latest_bytes / 2**20:.1f} MiB on PostgreSQL (not counted); "
            f"tbpanel's whole data directory is counted (before compaction it was "
            f"{hot_bytes / total_q:.1f} B/point for the query data)."
        )
        conn.close()
    finally:
        if pg is not None:
            pg.stop()
        shutil.rmtree(base, ignore_errors=True)

    # ---------------------------------------------------------------- report
    import psycopg as _p

    os.getloadavg()
    up = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    head = [
        f"# tbpanel vs PostgreSQL (ThingsBoard ts_kv) · {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        "",
        f"machine: {machine()} · {pg.version if pg else '?'} · psycopg {_p.__version__}",
        f"load average before {load_before[0]:.2f}/{load_before[1]:.2f}/{load_before[2]:.2f}, after: {up}",
        f"command: `{command}`",
        "",
        "Rates: median (min–max) over runs; times: median (min–max); ratio = tbpanel / PostgreSQL "
        "(> 1 is better for rates, < 1 is better for times and bytes).",
        "",
        "| workload | tbpanel | PostgreSQL (ts_kv) | tbpanel/PostgreSQL |",
        "| --- | --- | --- | --- |",
    ]
    table = [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows_out]
    text = "\n".join(head + table + [""] + [f"- {x}" for x in notes]) + "\n"
    print("\n" + text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"vs_postgres-{time.strftime('%Y%m%d-%H%M%S')}.md"
    path.write_text(text)
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
