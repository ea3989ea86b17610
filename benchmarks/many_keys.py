"""One telemetry message with many *new* keys, and what it does to everyone else (issue 15, item 1).

For each size (2,000 / 4,000 / 20,000 new keys in one ``POST /api/v1/{token}/telemetry``, to a
fresh device each time) it prints how long the big POST took to be answered, and the latency of
1-point posts that another device sends back to back while the big one is in flight (how many
were answered before the big one, their median and worst latency). The server is a real
``tbpanel serve`` child process (tests/helpers/server.py); ``--max-keys-per-device`` is raised
above the largest size so the messages are stored, not refused.

Usage:  .venv/bin/python benchmarks/many_keys.py [--sizes 2000,4000,20000] [--timeout 120]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from ingest_query import machine  # noqa: E402

from tests.helpers.server import open_world  # noqa: E402


def big_body(n: int) -> bytes:
    """``n`` keys in no particular order (a sorted run would hide a re-sort per new key)."""
    order = random.Random(n).sample(range(n), n)
    return orjson.dumps({f"key_{i:06d}_{'x' * 4}": i * 0.5 for i in order})


def one_size(world, n: int, timeout: float) -> dict:
    _, big_token = world.new_device(f"many-{n}")
    _, small_token = world.new_device(f"small-{n}")
    body = big_body(n)
    url = world.url
    big: dict = {}

    def post_big() -> None:
        t0 = time.perf_counter()
        try:
            r = requests.post(f"{url}/api/v1/{big_token}/telemetry", data=body, timeout=timeout)
            big["status"] = r.status_code
        except requests.RequestException as exc:
            big["status"] = type(exc).__name__
        big["s"] = time.perf_counter() - t0
        big["done"] = time.perf_counter()

    small = requests.Session()
    small.post(f"{url}/api/v1/{small_token}/telemetry", json={"warm": 1}, timeout=30)
    thread = threading.Thread(target=post_big)
    thread.start()
    lat: list[float] = []
    answered_before = 0
    i = 0
    while thread.is_alive() and i < 100_000:
        t0 = time.perf_counter()
        try:
            r = small.post(f"{url}/api/v1/{small_token}/telemetry", json={"t": i}, timeout=timeout)
            ok = r.status_code == 200
        except requests.RequestException:
            ok = False
        t1 = time.perf_counter()
        if ok:
            lat.append(t1 - t0)
            if "done" not in big:
                answered_before += 1
        i += 1
    thread.join()
    keys = world.admin.get(f"/api/plugins/telemetry/DEVICE/{world.devices_by_token(big_token)}/keys/timeseries")
    return {
        "keys": n,
        "body_kb": len(body) / 1024,
        "status": big["status"],
        "big_s": big["s"],
        "small_posts": len(lat),
        "small_before_big": answered_before,
        "small_median_ms": statistics.median(lat) * 1e3 if lat else float("nan"),
        "small_max_ms": max(lat) * 1e3 if lat else float("nan"),
        "stored_keys": len(keys.json()) if keys.status_code == 200 else keys.status_code,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="2000,4000,20000")
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument(
        "--server-args", default=None, help="extra `tbpanel serve` arguments (default: raise the key limit)"
    )
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"machine: {machine()}")
    print(f"command: {' '.join([sys.executable, *sys.argv])}")
    with tempfile.TemporaryDirectory(prefix="tbpanel-many-keys-") as tmp:
        extra = (
            ("--max-keys-per-device", str(max(sizes) + 10)) if args.server_args is None else args.server_args.split()
        )
        world = open_world(Path(tmp) / "data", tuple(extra))
        ids: dict[str, str] = {}
        new_device = world.new_device

        def remember(name: str, type: str = "sensor") -> tuple[str, str]:
            did, token = new_device(name, type)
            ids[token] = did
            return did, token

        world.new_device = remember  # type: ignore[method-assign]
        world.devices_by_token = ids.__getitem__  # type: ignore[attr-defined]
        try:
            print(
                f"{'new keys':>9} {'body KB':>8} {'status':>6} {'big POST s':>10} "
                f"{'1-pt posts':>10} {'before big':>10} {'median ms':>9} {'max ms':>8} {'stored':>7}"
            )
            for n in sizes:
                r = one_size(world, n, args.timeout)
                print(
                    f"{r['keys']:>9} {r['body_kb']:>8.0f} {r['status']!s:>6} {r['big_s']:>10.3f} "
                    f"{r['small_posts']:>10} {r['small_before_big']:>10} {r['small_median_ms']:>9.1f} "
                    f"{r['small_max_ms']:>8.1f} {r['stored_keys']!s:>7}",
                    flush=True,
                )
        finally:
            world.server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
