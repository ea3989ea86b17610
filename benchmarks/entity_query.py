"""Latest values of many devices: one entity data query vs one REST call per device.

For N devices (default 1,000 and 10,000) × 5 keys, against a real ``tbpanel serve`` on a
throwaway data directory:

  1. ``POST /api/entitiesQuery/find`` (deviceType filter, 5 TIME_SERIES latestValues, sorted
     by name), pages of 1,000: one request per page;
  2. ``GET /api/plugins/telemetry/DEVICE/{id}/values/timeseries?keys=...`` once per device
     (what a script does without the entity data query), over one keep-alive connection.

The devices and their points are written in-process before the server starts (one
transaction each), so the timings are only the reads. Both answers are checked to agree.

Usage: .venv/bin/python benchmarks/entity_query.py [--devices 1000 10000] [--repeat 3] [--per-device-sample 1000] [--no-rpc]
Then (unless --no-rpc) the two-way RPC round trip over MQTT, 100 devices: benchmarks/rpc_roundtrip.py.
Goal (issue 16): 1,000 devices × 5 keys in milliseconds, not seconds.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from ingest_query import init_data, machine, request, start_server  # noqa: E402
from report import write_report  # noqa: E402

from tbpanel.platform import Platform  # noqa: E402
from tbpanel.store import ValueType  # noqa: E402

KEYS = ["temperature", "humidity", "pressure", "battery", "status"]
T0 = 1_735_689_600_000
PAGE = 1000


def populate(data: Path, sizes: list[int]) -> dict[int, list[str]]:
    """``sizes[i]`` devices of type ``t<size>`` with one latest value per key, in-process."""
    platform = Platform(data, compaction_interval_s=0)
    try:
        tenant = platform.registry.list_tenants()[0]
        out = {}
        for n in sizes:
            with platform.registry.transaction():
                ids = [platform.registry.save_device(tenant.id, f"b{n}-{i:05d}", type=f"t{n}").id for i in range(n)]
            points = []
            for i, d in enumerate(ids):
                points += [
                    (d, "temperature", T0 + i, ValueType.DOUBLE, 20 + i / 100),
                    (d, "humidity", T0 + i, ValueType.LONG, i % 100),
                    (d, "pressure", T0 + i, ValueType.DOUBLE, 1013.25),
                    (d, "battery", T0 + i, ValueType.LONG, 90),
                    (d, "status", T0 + i, ValueType.STR, "ok" if i % 7 else "warn"),
                ]
            platform.store.write_points(points)
            out[n] = ids
        return out
    finally:
        platform.close()


def entity_query(conn: http.client.HTTPConnection, auth: dict, n: int) -> dict[str, dict[str, str]]:
    """Every device's latest values through /api/entitiesQuery/find, pages of 1,000."""
    out: dict[str, dict[str, str]] = {}
    page = 0
    while True:
        body = {
            "entityFilter": {"type": "deviceType", "deviceTypes": [f"t{n}"]},
            "pageLink": {
                "pageSize": PAGE,
                "page": page,
                "sortOrder": {"key": {"type": "ENTITY_FIELD", "key": "name"}, "direction": "ASC"},
            },
            "entityFields": [{"type": "ENTITY_FIELD", "key": "name"}],
            "latestValues": [{"type": "TIME_SERIES", "key": k} for k in KEYS],
        }
        status, data = request(conn, "POST", "/api/entitiesQuery/find", json.dumps(body), auth)
        assert status == 200, data[:300]
        answer = json.loads(data)
        for e in answer["data"]:
            out[e["entityId"]["id"]] = {k: v["value"] for k, v in e["latest"]["TIME_SERIES"].items()}
        if not answer["hasNext"]:
            return out
        page += 1


def per_device(conn: http.client.HTTPConnection, auth: dict, ids: list[str]) -> dict[str, dict[str, str]]:
    out = {}
    keys = ",".join(KEYS)
    for d in ids:
        status, data = request(
            conn, "GET", f"/api/plugins/telemetry/DEVICE/{d}/values/timeseries?keys={keys}", None, auth
        )
        assert status == 200, data[:300]
        out[d] = {k: v[0]["value"] for k, v in json.loads(data).items()}
    return out


def same(a: dict[str, dict[str, str]], b: dict[str, dict[str, str]]) -> bool:
    """The same values (a whole double is "20" in the entity query, "20.0" per device: as
    ThingsBoard answers them)."""

    def norm(v: str) -> object:
        try:
            return float(v)
        except ValueError:
            return v

    return a.keys() == b.keys() and all(
        {k: norm(v) for k, v in a[d].items()} == {k: norm(v) for k, v in b[d].items()} for d in a
    )


def timed(fn, *args) -> tuple[float, object]:
    t = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - t, result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--per-device-sample",
        type=int,
        default=1000,
        help="per-device REST calls measured at most (more devices: extrapolated from this sample)",
    )
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--no-rpc", action="store_true", help="skip the RPC round trip (benchmarks/rpc_roundtrip.py)")
    args = ap.parse_args()
    lines = [
        f"# tbpanel entity data query vs per-device latest reads · {time.strftime('%Y-%m-%d %H:%M:%S')}",
        f"machine: {machine()}",
        f"command: python benchmarks/entity_query.py {' '.join(sys.argv[1:])}",
        f"{len(KEYS)} keys per device, pages of {PAGE}, median of {args.repeat} runs (per-device: 1 run; "
        f"beyond {args.per_device_sample:,} devices an evenly spaced sample of {args.per_device_sample:,} is "
        "measured and its time extrapolated to all devices)",
        "",
        "| devices | entitiesQuery/find (requests) | per-device REST (requests) | speed-up |",
        "|---:|---:|---:|---:|",
    ]
    print("\n".join(lines), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "server"
        init_data(data)
        ids = populate(data, args.devices)
        proc, url = start_server(data, init=False)
        try:
            conn = http.client.HTTPConnection(url.split("//")[1], timeout=600)
            _, body = request(
                conn,
                "POST",
                "/api/auth/login",
                json.dumps({"username": "bench@tbpanel.test", "password": "bench-pass"}),
                {"Content-Type": "application/json"},
            )
            auth = {"X-Authorization": f"Bearer {json.loads(body)['token']}", "Content-Type": "application/json"}
            for n in args.devices:
                entity_query(conn, auth, n)  # warm-up
                runs = [timed(entity_query, conn, auth, n) for _ in range(args.repeat)]
                query_s = statistics.median(t for t, _ in runs)
                got = runs[0][1]
                sample = ids[n][:: -(-n // args.per_device_sample)] if n > args.per_device_sample else ids[n]
                slow_s, slow = timed(per_device, conn, auth, sample)
                assert same({d: got[d] for d in sample}, slow), "the two answers differ"
                assert len(got) == n
                measured = f"{n:,}"
                if len(sample) < n:  # the sample's time scaled to every device (each call costs the same)
                    slow_s *= n / len(sample)
                    measured = f"{n:,}; extrapolated from {len(sample):,} measured"
                row = (
                    f"| {n:,} | {query_s * 1000:,.0f} ms ({-(-n // PAGE)}) | {slow_s * 1000:,.0f} ms ({measured}) "
                    f"| {slow_s / query_s:,.0f}× |"
                )
                lines.append(row)
                print(row, flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    write_report(args.out, "entity_query", lines)
    if args.no_rpc:
        return 0
    # issue 16's benchmark also asks for the RPC round trip over MQTT with 100 connected devices
    import rpc_roundtrip

    return rpc_roundtrip.main(["--out", args.out])


if __name__ == "__main__":
    sys.exit(main())
