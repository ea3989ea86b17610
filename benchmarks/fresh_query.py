"""Fresh data versus compacted data: queries right after a backfill, before any compaction.

In-process, one run (issue 15 item 3):
  1. one year of 1-minute data for one key (525,600 points), written as a backfill in
     bodies of 5,000 points (what an HTTP backfill commits per request), then
     1-day AVG and 1-hour AVG over the year: all in the SQLite hot tier (nothing compacted),
     the last month hot (11 months compacted into Zarr), and everything compacted;
  2. a fleet backfill: 101 devices x 30 days of 1-minute data (4.4 M points, 1,000 points per
     write), then reading back every device's count (one query_agg COUNT each), hot and
     compacted.
Each query: the first call (cold caches), then the median of --repeat calls.

Usage:  .venv/bin/python benchmarks/fresh_query.py [--repeat 20]
To time another checkout's code with the same script: TBPANEL_SRC=/path/to/checkout ...
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, os.environ.get("TBPANEL_SRC", str(ROOT)))

from tbpanel.store import ValueType, open_store  # noqa: E402

T0 = 1_672_531_200_000  # 2023-01-01 UTC
MIN = 60_000
YEAR_MIN = 525_600
DEC = 1_701_388_800_000  # 2023-12-01
DAY = 86_400_000


def timed(fn, repeat: int) -> tuple[float, float]:
    t = time.perf_counter()
    fn()
    first = (time.perf_counter() - t) * 1000
    xs = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        xs.append((time.perf_counter() - t) * 1000)
    return first, statistics.median(xs)


def year(tmp: Path, repeat: int) -> list[str]:
    path = tmp / "year"
    store = open_store(path, compaction_interval_s=0)
    ts = T0 + np.arange(YEAR_MIN, dtype=np.int64) * MIN
    vals = np.round(20 + np.sin(np.arange(YEAR_MIN) / 1440 * 6.283), 3)
    t = time.perf_counter()
    for s in range(0, YEAR_MIN, 5000):
        store.write_points(
            [
                ("dev", "temp", a, int(ValueType.DOUBLE), v)
                for a, v in zip(ts[s : s + 5000].tolist(), vals[s : s + 5000].tolist())
            ]
        )
    lines = [f"backfill of 525,600 points in 5,000-point writes: {time.perf_counter() - t:.1f} s"]
    end = int(ts[-1]) + MIN
    for label, cutoff in (
        ("all hot (nothing compacted)", None),
        ("last month hot", DEC),
        ("all compacted", end + 32 * DAY),
    ):
        if cutoff is not None:
            store.compact(before_ts=cutoff)
        store.close()
        store = open_store(path, compaction_interval_s=0)
        for agg_name, interval in (("1-day AVG", DAY), ("1-hour AVG", 3_600_000)):
            res = store.query_agg("dev", ["temp"], T0, end, "AVG", interval)
            assert len(res["temp"]) == YEAR_MIN * MIN // interval
            first, med = timed(lambda iv=interval, s=store: s.query_agg("dev", ["temp"], T0, end, "AVG", iv), repeat)
            lines.append(f"1 year -> {agg_name}, {label}: first {first:.2f} ms, then median {med:.2f} ms")
            print(lines[-1], flush=True)
    store.close()
    return lines


def fleet(tmp: Path, repeat: int) -> list[str]:
    path = tmp / "fleet"
    store = open_store(path, compaction_interval_s=0)
    n = 30 * 1440
    ts = (T0 + np.arange(n, dtype=np.int64) * MIN).tolist()
    t = time.perf_counter()
    for d in range(101):
        for s in range(0, n, 1000):
            store.write_points([(f"dev{d}", "v", a, int(ValueType.DOUBLE), float(d)) for a in ts[s : s + 1000]])
    lines = [
        f"fleet backfill, 101 devices x 30 days (4,363,200 points, 1,000-point writes): {time.perf_counter() - t:.1f} s"
    ]
    end = ts[-1] + MIN

    def counts() -> None:
        got = [store.query_agg(f"dev{d}", ["v"], T0, end, "COUNT", 40 * DAY)["v"][0][2] for d in range(101)]
        assert got == [n] * 101

    for label in ("all hot", "all compacted"):
        if label == "all compacted":
            store.compact(before_ts=end + 32 * DAY)
        store.close()
        store = open_store(path, compaction_interval_s=0)
        first, med = timed(counts, max(3, repeat // 4))
        lines.append(
            f"counts of 101 devices (one COUNT query each), {label}: first {first:.1f} ms, then median {med:.1f} ms"
        )
        print(lines[-1], flush=True)
    store.close()
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--skip-fleet", action="store_true")
    args = ap.parse_args()
    print(f"code: {os.environ.get('TBPANEL_SRC', str(ROOT))}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        year(Path(tmp), args.repeat)
        if not args.skip_fleet:
            fleet(Path(tmp), args.repeat)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
