"""Anomaly model speed through the product (store → service → task runner).

  1. build: N devices × D days of 1-minute data (default 100 × 90), one key, fixed 1-hour segments
     and the default (sliding, auto) segmentation;
  2. one refresh run over M devices (default 1,000; the trained ones and untrained ones of the
     same profile) × one new day.

Data is written in-process and compacted into the Zarr tier first (historical data), so the
timings are the model work plus reading from the store, as a server would do them.

Usage: .venv/bin/python benchmarks/anomaly_speed.py [--devices 100] [--days 90] [--refresh-devices 1000]
Goals (../shared/design.md): build ≤ 30 s, refresh run ≤ 10 s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from ingest_query import machine  # noqa: E402
from report import write_report  # noqa: E402

from tbpanel.anomaly.config import ModelConfig  # noqa: E402
from tbpanel.platform import Platform  # noqa: E402
from tbpanel.store import ValueType  # noqa: E402

MIN, DAY = 60_000, 86_400_000
T0 = 1_735_689_600_000  # 2025-01-01 UTC


def values(seed: int, ts: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 10 + 2 * np.sin(2 * np.pi * (ts % DAY) / DAY + seed) + rng.normal(0, 0.2, len(ts))


def write(platform: Platform, device: str, seed: int, start: int, end: int) -> int:
    ts = np.arange(start, end, MIN, dtype=np.int64)
    v = values(seed, ts)
    return platform.store.write_points(
        [(device, "load", int(t), ValueType.DOUBLE, float(x)) for t, x in zip(ts.tolist(), v.tolist())]
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--refresh-devices", type=int, default=1000)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    lines = [
        f"# tbpanel anomaly speed · {time.strftime('%Y-%m-%d %H:%M:%S')}",
        f"machine: {machine()}",
        f"command: python benchmarks/anomaly_speed.py {' '.join(sys.argv[1:])}",
        "",
    ]
    print("\n".join(lines), flush=True)
    train_end = T0 + args.days * DAY
    with tempfile.TemporaryDirectory() as tmp:
        platform = Platform(tmp, compaction_interval_s=0)
        try:
            tenant = platform.registry.create_tenant("bench")
            devices = [
                platform.registry.save_device(tenant.id, f"m{i}", type="meter").id
                for i in range(max(args.devices, args.refresh_devices))
            ]
            t = time.perf_counter()
            n = sum(write(platform, d, i, T0, train_end) for i, d in enumerate(devices[: args.devices]))
            n += sum(
                write(platform, d, i, train_end - DAY, train_end)
                for i, d in enumerate(devices[args.devices : args.refresh_devices], start=args.devices)
            )
            platform.store.compact(before_ts=train_end + 40 * DAY)
            lines.append(f"data: {n:,} points written and compacted in {time.perf_counter() - t:.1f} s")
            print(lines[-1], flush=True)
            for label, extra in (
                ("fixed 1 h segments", {"window": "fixed", "segment_ms": 3_600_000}),
                ("defaults (sliding, auto segment)", {}),
            ):
                cfg = ModelConfig(
                    name=label,
                    device_type="meter",
                    fields=["load"],
                    items=devices[: args.devices],
                    train_start=T0,
                    train_end=train_end,
                    **extra,
                )
                model = platform.anomaly.create_model(tenant.id, cfg)
                t = time.perf_counter()
                task = platform.tasks.wait(platform.anomaly.build(model.id).id)
                build_s = time.perf_counter() - t
                assert task.status == "DONE", task.message
                lines.append(
                    f"build, {args.devices} devices × {args.days} days, {label}: {build_s:.1f} s "
                    f"({task.result['segments']:,} segments, {task.result['clusters']} clusters)"
                )
                print(lines[-1], flush=True)
            # one new day for every device of the profile, then one refresh run (all devices)
            t = time.perf_counter()
            for i, d in enumerate(devices[: args.refresh_devices]):
                write(platform, d, i, train_end, train_end + DAY)
            lines.append(f"new day for {args.refresh_devices} devices written in {time.perf_counter() - t:.1f} s")
            print(lines[-1], flush=True)
            platform.anomaly.set_refresh(model.id, {"enabled": True, "items": []})
            t = time.perf_counter()
            task = platform.tasks.wait(platform.anomaly.refresh_now(model.id, train_end + DAY).id)
            refresh_s = time.perf_counter() - t
            assert task.status == "DONE", task.message
            lines.append(
                f"refresh run, {args.refresh_devices} devices × 1 new day: {refresh_s:.1f} s "
                f"({task.result['segments']:,} segments, {task.result['created']} new anomalies)"
            )
            print(lines[-1], flush=True)
        finally:
            platform.close()
    write_report(args.out, "anomaly_speed", lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
