"""In-process benchmark of the telemetry store (tbpanel.store), no server involved.

Measures on this machine:
  1. Write throughput, durable (synchronous=FULL unless --synchronous says otherwise):
     a. one thread calling ``write_points`` with batches of --batch points (each call waits
        for its own commit);
     b. --threads threads each keeping --inflight ``submit`` futures in flight, so the writer
        thread's group commit merges their batches (what the HTTP ingest path looks like).
  2. 1 year of 1-minute data for one key (525,600 DOUBLE points) written, compacted into the
     Zarr cold tier, store reopened; then the 1-hour AVG over the whole year (8,760 buckets):
     - first query after open (nothing cached: Zarr metadata, partition indexes, chunks),
     - with array handles/indexes cached but decoded slices dropped,
     - warm (median / p95 of --repeat runs) for ``query_agg`` (list of tuples),
       ``query_agg_arrays`` (numpy) and ``query`` (xarray.Dataset),
     - the same AVG over one month still in the hot (SQLite) tier, for comparison.

Usage:
    .venv/bin/python benchmarks/store_inprocess.py [--devices 1000] [--keys 10] [--steps 30]
        [--batch 10000] [--threads 4] [--inflight 4] [--synchronous FULL] [--repeat 200]
        [--data DIR] [--json FILE]

Goals (../shared/design.md): writes >= 5x PostgreSQL with ThingsBoard's ts_kv schema
(think >= 200k points/s in batches); year query <= 5 ms in-process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tbpanel.store import ValueType, open_store  # noqa: E402

YEAR_MIN = 525_600
T0 = 1_672_531_200_000  # 2023-01-01T00:00Z
HOUR = 3_600_000


def machine_facts() -> dict:
    import numcodecs
    import xarray
    import zarr

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cpu = "?"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "host": platform.node(),
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "zarr": zarr.__version__,
        "numcodecs": numcodecs.__version__,
        "xarray": xarray.__version__,
        "sqlite": sqlite3.sqlite_version,
        "load_avg": os.getloadavg(),
        "command": " ".join([sys.executable, *sys.argv]),
    }


def timed(fn, repeat: int) -> dict:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return {"median_ms": statistics.median(times), "p95_ms": times[int(0.95 * (len(times) - 1))], "min_ms": times[0]}


def bench_writes(base: Path, args) -> dict:
    out = {}
    n_series = args.devices * args.keys

    def points(step_lo, step_hi):
        pts = []
        for step in range(step_lo, step_hi):
            ts = T0 + step * 60_000
            for d in range(args.devices):
                dev = f"device-{d:05d}"
                for k in range(args.keys):
                    pts.append((dev, f"key{k}", ts, ValueType.DOUBLE, float(d + k + step)))
        return pts

    # a. sequential write_points
    all_pts = points(0, args.steps)
    batches = [all_pts[i : i + args.batch] for i in range(0, len(all_pts), args.batch)]
    with open_store(base / "seq", compaction_interval_s=0, synchronous=args.synchronous) as store:
        t = time.perf_counter()
        for b in batches:
            store.write_points(b)
        dt = time.perf_counter() - t
        assert store.stats()["points"] == len(all_pts)
    out["sequential"] = {
        "points": len(all_pts),
        "seconds": dt,
        "points_per_s": len(all_pts) / dt,
        "batch": args.batch,
        "series": n_series,
    }

    # b. concurrent submitters, group commit
    per_thread = [batches[i :: args.threads] for i in range(args.threads)]
    with open_store(base / "conc", compaction_interval_s=0, synchronous=args.synchronous) as store:

        def producer(my_batches):
            inflight = []
            for b in my_batches:
                inflight.append(store.submit(b))
                if len(inflight) >= args.inflight:
                    inflight.pop(0).result()
            for f in inflight:
                f.result()

        threads = [threading.Thread(target=producer, args=(pb,)) for pb in per_thread]
        t = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        dt = time.perf_counter() - t
        assert store.stats()["points"] == len(all_pts)
    out["concurrent"] = {
        "points": len(all_pts),
        "seconds": dt,
        "points_per_s": len(all_pts) / dt,
        "batch": args.batch,
        "threads": args.threads,
        "inflight": args.inflight,
    }
    return out


def bench_year(base: Path, args) -> dict:
    path = base / "year"
    ts = T0 + np.arange(YEAR_MIN, dtype=np.int64) * 60_000
    vals = 20 + 10 * np.sin(np.arange(YEAR_MIN) / 1440 * 2 * np.pi) + np.random.default_rng(0).normal(0, 1, YEAR_MIN)
    end = int(ts[-1]) + 1
    res = {}
    with open_store(path, compaction_interval_s=0, synchronous=args.synchronous) as store:
        t = time.perf_counter()
        for i in range(0, YEAR_MIN, 10_000):
            store.write_points(
                [
                    ("dev", "temp", int(a), ValueType.DOUBLE, float(b))
                    for a, b in zip(ts[i : i + 10_000].tolist(), vals[i : i + 10_000].tolist())
                ]
            )
        res["write_seconds"] = time.perf_counter() - t
        month_start, month_end = T0 + 31 * 24 * HOUR, T0 + 59 * 24 * HOUR  # February: hot now
        res["hot_month_avg"] = timed(lambda: store.query_agg("dev", ["temp"], month_start, month_end, "AVG", HOUR), 5)
        t = time.perf_counter()
        st = store.compact(before_ts=end + 32 * 24 * HOUR)
        res["compact_seconds"] = time.perf_counter() - t
        res["compact"] = st
    files = sum(len(f) for _, _, f in os.walk(path))
    cold_bytes = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path / "cold") for f in fs)
    res["files"] = files
    res["cold_bytes"] = cold_bytes

    with open_store(path, compaction_interval_s=0) as store:
        q = lambda: store.query_agg("dev", ["temp"], T0, end, "AVG", HOUR)  # noqa: E731
        t = time.perf_counter()
        first = q()
        res["first_query_after_open_ms"] = (time.perf_counter() - t) * 1000
        assert len(first["temp"]) == 8760
        want = vals.reshape(-1, 60).mean(axis=1)
        got = np.array([v for _, _, v in first["temp"]])
        assert np.allclose(got, want), "wrong answer"

        def dropped():
            store.cold.clear_cache()
            q()

        res["slices_dropped"] = timed(dropped, 10)
        q()
        res["warm_query_agg"] = timed(q, args.repeat)
        res["warm_query_agg_arrays"] = timed(
            lambda: store.query_agg_arrays("dev", ["temp"], T0, end, "AVG", HOUR), args.repeat
        )
        res["warm_query_xarray"] = timed(
            lambda: store.query(["dev"], ["temp"], T0, end, interval=HOUR, agg="avg"), max(10, args.repeat // 4)
        )
        res["warm_raw_100_desc"] = timed(lambda: store.query_raw("dev", ["temp"], T0, end), args.repeat)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--keys", type=int, default=10)
    ap.add_argument("--steps", type=int, default=30, help="timestamps per series")
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--inflight", type=int, default=4)
    ap.add_argument("--synchronous", default="FULL", choices=["OFF", "NORMAL", "FULL", "EXTRA"])
    ap.add_argument("--repeat", type=int, default=200)
    ap.add_argument("--data", help="directory for the stores (default: a temporary directory)")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()

    facts = machine_facts()
    print("machine:", " · ".join(f"{k} {v}" for k, v in facts.items() if k != "command"))
    print("command:", facts["command"])
    base = Path(args.data) if args.data else Path(tempfile.mkdtemp(prefix="tbpanel-store-bench-"))
    base.mkdir(parents=True, exist_ok=True)
    try:
        w = bench_writes(base, args)
        print(f"writes ({args.synchronous}), {w['sequential']['series']:,} series:")
        print(
            f"  sequential write_points, batches of {args.batch:,}: "
            f"{w['sequential']['points_per_s']:,.0f} points/s ({w['sequential']['points']:,} points)"
        )
        print(
            f"  {args.threads} threads x {args.inflight} submits in flight (group commit): "
            f"{w['concurrent']['points_per_s']:,.0f} points/s"
        )
        y = bench_year(base, args)
        print("1 year of 1-minute data, one key (525,600 points), 1-hour AVG (8,760 buckets):")
        print(
            f"  written in {y['write_seconds']:.2f} s ({YEAR_MIN / y['write_seconds']:,.0f} points/s), "
            f"compacted in {y['compact_seconds']:.2f} s into {y['compact']['partitions']} partitions, "
            f"{y['files']} files, cold tier {y['cold_bytes'] / 2**20:.1f} MiB"
        )
        print(f"  first query after open (cold cache):   {y['first_query_after_open_ms']:8.2f} ms")
        print(f"  decoded slices dropped (handles kept):  {y['slices_dropped']['median_ms']:8.2f} ms median")
        for k, label in [
            ("warm_query_agg", "warm query_agg (list of tuples)"),
            ("warm_query_agg_arrays", "warm query_agg_arrays (numpy)"),
            ("warm_query_xarray", "warm query() -> xarray.Dataset"),
            ("warm_raw_100_desc", "warm query_raw, newest 100"),
        ]:
            print(f"  {label:<38} {y[k]['median_ms']:8.2f} ms median, {y[k]['p95_ms']:.2f} ms p95")
        print(f"  (one month still in the hot SQLite tier, 1h AVG: {y['hot_month_avg']['median_ms']:.1f} ms)")
        if args.json:
            Path(args.json).write_text(json.dumps({"machine": facts, "writes": w, "year": y}, indent=2))
    finally:
        if not args.data:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
