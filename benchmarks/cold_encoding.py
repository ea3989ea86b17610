"""Cold-tier bytes per point and read speed: the encodings of ``store/encoding.py`` against
plain float64 (what generations held before it), lz4 and zstd.

    .venv/bin/python benchmarks/cold_encoding.py [--devices 20] [--days 31]

In process (no server): ``devices`` x 5 keys of 1-minute readings for one month, 3-decimal
values (a daily curve plus noise, as sensors report them, and one slow smooth key), written
through ``TelemetryStore.write_points``, compacted, then measured: bytes per point of the
month's cold generation on disk, and the median time of a full-month daily AVG over every
series from a cold start of the slice cache. Prints the machine and the command.
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
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from ingest_query import machine  # noqa: E402

from tbpanel.store import encoding, open_store  # noqa: E402
from tbpanel.store.values import ValueType  # noqa: E402

T0 = 1_704_067_200_000  # 2024-01-01 UTC
DAY = 86_400_000


def _points(devices: int, days: int):
    n = days * 1440
    ts = T0 + np.arange(n, dtype=np.int64) * 60_000
    rng = np.random.default_rng(7)
    for d in range(devices):
        for k in range(5):
            if k == 4:  # a slow, smooth key
                values = np.round(50 + 10 * np.sin(np.arange(n) / (7 * 1440) * 6.283 + d), 3)
            else:
                values = np.round(20 + 3 * np.sin(np.arange(n) / 1440 * 6.283 + d + k) + rng.normal(0, 0.3, n), 3)
            yield [(f"dev{d:04d}", f"key{k}", int(t), ValueType.DOUBLE, float(v)) for t, v in zip(ts, values)]


def _dir_bytes(path: Path) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def run(variant: str, devices: int, days: int) -> dict:
    compressor = "lz4" if variant.endswith("lz4") else "zstd"
    saved = encoding.encode_num, encoding.timestamp_filters
    if variant.startswith("plain"):  # what generations held before store/encoding.py
        encoding.encode_num = lambda v, c: (v, {"kind": "float64"}, [], encoding.blosc(c))  # type: ignore[assignment]
        encoding.timestamp_filters = lambda: []  # type: ignore[assignment]
    try:
        with (
            tempfile.TemporaryDirectory() as tmp,
            open_store(Path(tmp) / "data", compaction_interval_s=0, compressor=compressor) as store,
        ):
            total = 0
            for batch in _points(devices, days):
                total += store.write_points(batch)
            t = time.perf_counter()
            store.compact(before_ts=T0 + 400 * DAY)
            compact_s = time.perf_counter() - t
            cold = _dir_bytes(Path(tmp) / "data" / "cold")
            ids = [f"dev{d:04d}" for d in range(devices)]
            times = []
            for _ in range(5):
                store.cold.clear_cache()
                t = time.perf_counter()
                store.query(ids, None, T0, T0 + days * DAY, interval=DAY, agg="AVG")
                times.append(time.perf_counter() - t)
    finally:
        encoding.encode_num, encoding.timestamp_filters = saved
    return {
        "variant": variant,
        "points": total,
        "bytes_per_point": cold / total,
        "compact_s": compact_s,
        "query_ms": statistics.median(times) * 1e3,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=20)
    ap.add_argument("--days", type=int, default=31)
    args = ap.parse_args()
    print(f"machine: {machine()}")
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"data: {args.devices} devices x 5 keys x {args.days} days of 1-minute 3-decimal readings\n")
    print("| cold tier | points | bytes/point on disk | compaction s | month daily AVG, all series, cold cache ms |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for variant in ("plain float64, lz4", "plain float64, zstd", "encoded, lz4", "encoded, zstd"):
        r = run(variant, args.devices, args.days)
        print(
            f"| {variant} | {r['points']:,} | {r['bytes_per_point']:.3f} | {r['compact_s']:.2f} | {r['query_ms']:.1f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
