"""Resource faults on a real server: full disk, read-only storage, a file-size limit.

* **Full disk** is real: the data directory is a small tmpfs filled to ENOSPC with a ballast
  file. Writes then get 507 in ThingsBoard's error shape, reads keep working, the rejected
  batch stores nothing, the compactor neither crashes nor leaves partial generations, and once
  the ballast is gone the same request succeeds; after a restart everything acknowledged is
  there exactly once and every database passes ``PRAGMA integrity_check``.
* **Read-only** is real too, but the kernel refuses to remount a file system read-only while
  files on it are open for writing (EBUSY), so a running server's SQLite files cannot be
  flipped; that only happens when the kernel itself forces read-only after I/O errors. Tested
  instead: the cold tier (no file held open) as a read-only bind mount while the server runs
  (compaction postponed, ingest unaffected, resumes when writable), and starting on a
  read-only data directory (a clear error, no traceback).
* **File-size limit** (RLIMIT_FSIZE lowered on the running server with prlimit; EFBIG, the way
  a quota fails) needs no mount, so it also runs where mounting is not permitted; an MQTT 5
  QoS 1 publish then gets PUBACK reason 0x97 (quota exceeded) instead of success.

Mount-based tests skip, saying why, where the process may not mount (no CAP_SYS_ADMIN).
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tbpanel.transports import mqtt_codec as c
from tests.helpers import ROOT, Api, ServerProcess, cli
from tests.helpers.mqtt import RawClient

EMAIL, PASSWORD = "faults@tbpanel.test", "faults-pass-1"
OLD = 1_704_067_200_000  # 2024-01-01: closed months, so the compactor moves them to the cold tier
NO_TRANSPORTS = ("--mqtt-port", "-1", "--coap-port", "-1")


@contextlib.contextmanager
def mounted(target: Path, *args: str):
    target.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", *args, str(target)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount here (needs root with CAP_SYS_ADMIN): {r.stderr.strip()}")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


def server_on(data: Path, *extra: str) -> tuple[ServerProcess, Api, str, str]:
    cli("init", "--data", str(data), "--admin-email", EMAIL, "--admin-password", PASSWORD)
    server = ServerProcess(data, extra=(*NO_TRANSPORTS, *extra)).start()
    api = Api.login(server.url, EMAIL, PASSWORD)
    did = api.post("/api/device", json={"name": "meter"}).json()["id"]["id"]
    return server, api, did, api.get(f"/api/device/{did}/credentials").json()["credentialsId"]


def batch(i: int, n: int = 2000) -> list[dict]:
    """Batch ``i``: n points an hour apart from 2024 on, value = their index (checkable)."""
    return [{"ts": OLD + (i * n + j) * 3_600_000 // 10, "values": {"v": i * n + j}} for j in range(n)]


def stored(api: Api, did: str) -> dict[int, int]:
    r = api.get(
        f"/api/plugins/telemetry/DEVICE/{did}/values/timeseries",
        params=dict(
            keys="v", startTs=0, endTs=4_000_000_000_000, limit=10_000_000, orderBy="ASC", useStrictDataTypes="true"
        ),
    )
    assert r.status_code == 200, r.text
    points = r.json().get("v", [])
    ts = [p["ts"] for p in points]
    assert ts == sorted(set(ts)), "duplicate points"
    return {p["ts"]: p["value"] for p in points}


def assert_holds(values: dict[int, int], acked: list[int], rejected: list[int] = ()) -> None:
    for i in acked:
        for p in batch(i):
            assert values.get(p["ts"]) == p["values"]["v"], f"acknowledged batch {i} lost or altered"
    for i in rejected:
        assert not any(p["ts"] in values for p in batch(i)), f"rejected batch {i} was (partly) stored"


def integrity_ok(data: Path) -> None:
    for name in ("telemetry/telemetry.sqlite", "analytics.sqlite", "entities.sqlite"):
        conn = sqlite3.connect(data / name)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok", name
        finally:
            conn.close()


def assert_507(r: requests.Response, words: str) -> None:
    assert r.status_code == 507, r.text
    body = r.json()
    assert body["status"] == 507 and body["errorCode"] == 2 and isinstance(body["timestamp"], int)
    assert words in body["message"] and "nothing was stored" in body["message"], body


def fill(path: Path) -> None:
    """Write a ballast file until the file system says ENOSPC (down to the last 4 KiB block)."""
    with open(path, "wb", buffering=0) as f:
        for size in (1 << 20, 1 << 12):
            try:
                while True:
                    f.write(b"\xa5" * size)
            except OSError as exc:
                assert exc.errno == 28, exc


def post_until(
    url: str, token: str, first: int, status: int, tries: int = 60
) -> tuple[list[int], int, requests.Response]:
    """Post batches first, first+1, ... until one gets ``status``; the ones before got 200."""
    acked = []
    for i in range(first, first + tries):
        r = requests.post(f"{url}/api/v1/{token}/telemetry", json=batch(i), timeout=60)
        if r.status_code == status:
            return acked, i, r
        assert r.status_code == 200, r.text
        acked.append(i)
    raise AssertionError(f"no {status} after {tries} batches")


def test_full_disk_answers_507_keeps_reading_and_recovers(tmp_path):
    with mounted(tmp_path / "disk", "-t", "tmpfs", "-o", "size=40m", "tmpfs") as disk:
        data = disk / "data"
        server, api, did, token = server_on(data, "--compaction-interval", "0.2")
        try:
            acked = [
                i
                for i in range(5)
                if requests.post(f"{server.url}/api/v1/{token}/telemetry", json=batch(i)).status_code == 200
            ]
            assert acked == list(range(5))
            fill(disk / "ballast")
            mark = len(server.output)
            more, rejected, r = post_until(server.url, token, 5, 507)
            acked += more
            assert_507(r, "no space left")
            assert_holds(stored(api, did), acked, [rejected])  # reads still answer, the 507 stored nothing
            time.sleep(1)  # the compactor meets the full disk too (every 0.2 s)
            r = api.post("/api/device", json={"name": "new-device-while-full"})
            assert r.status_code in (200, 507), r.text  # entities may still fit into free pages
            if r.status_code == 507:
                assert_507(r, "no space left")
            assert api.get("/api/tenant/devices?pageSize=10&page=0").status_code == 200
            log = "".join(server.output[mark:])
            assert "Traceback" not in log and "storage refused a write" in log, log

            os.unlink(disk / "ballast")  # space returns: the very same request now succeeds
            r = requests.post(f"{server.url}/api/v1/{token}/telemetry", json=batch(rejected), timeout=60)
            assert r.status_code == 200, r.text
            acked.append(rejected)
            deadline = time.time() + 60  # and the compactor catches up: no hot rows left in 2024
            while time.time() < deadline:
                conn = sqlite3.connect(f"file:{data / 'telemetry' / 'telemetry.sqlite'}?mode=ro", uri=True)
                hot = conn.execute("SELECT COUNT(*) FROM month_state WHERE hot = 1 AND month < 660").fetchone()[0]
                conn.close()
                if hot == 0:
                    break
                time.sleep(0.2)
            assert hot == 0, "compaction did not resume after the disk had space again"
        finally:
            server.stop()
        integrity_ok(data)
        server = ServerProcess(data, extra=NO_TRANSPORTS).start()
        try:
            api = Api.login(server.url, EMAIL, PASSWORD)
            values = stored(api, did)
            assert_holds(values, acked)
            assert len(values) == len(acked) * 2000
        finally:
            server.stop()


def test_read_only_cold_tier_postpones_compaction_without_losing_points(tmp_path):
    data = tmp_path / "data"
    server, api, did, token = server_on(data, "--compaction-interval", "0.2")
    cold = data / "telemetry" / "cold"
    cold.mkdir(parents=True, exist_ok=True)
    try:
        with mounted(cold, "--bind", str(cold)):
            r = subprocess.run(["mount", "-o", "remount,bind,ro", str(cold)], capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
            mark = len(server.output)
            for i in range(3):
                assert requests.post(f"{server.url}/api/v1/{token}/telemetry", json=batch(i)).status_code == 200
            deadline = time.time() + 30
            while "compaction postponed" not in "".join(server.output[mark:]) and time.time() < deadline:
                time.sleep(0.1)
            log = "".join(server.output[mark:])
            assert "compaction postponed: the server's storage is read-only" in log and "Traceback" not in log, log
            assert_holds(stored(api, did), [0, 1, 2])
        deadline = time.time() + 60  # writable again: the months reach the cold tier
        while time.time() < deadline and not list(cold.glob("2024-*/g*/zarr.json")):
            time.sleep(0.2)
        assert list(cold.glob("2024-*/g*/zarr.json")), "compaction did not resume"
        assert_holds(stored(api, did), [0, 1, 2])
    finally:
        server.stop()
    integrity_ok(data)


def test_read_only_data_directory_is_refused_with_a_clear_message(tmp_path):
    with mounted(tmp_path / "disk", "-t", "tmpfs", "-o", "size=16m", "tmpfs") as disk:
        cli("init", "--data", str(disk / "data"), "--admin-email", EMAIL, "--admin-password", PASSWORD)
        r = subprocess.run(["mount", "-o", "remount,ro", str(disk)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        r = subprocess.run(
            [sys.executable, "-m", "tbpanel.cli", "serve", "--data", str(disk / "data"), "--port", "0", *NO_TRANSPORTS],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 1, r.stdout + r.stderr
        assert "not writable" in r.stderr and "Read-only file system" in r.stderr and "Traceback" not in r.stderr, (
            r.stderr
        )


def test_file_size_limit_answers_507_and_recovers_when_lifted(tmp_path):
    data = tmp_path / "data"
    server, api, did, token = server_on(data, "--compaction-interval", "0", "--mqtt-port", "0")
    pid = server.proc.pid
    try:
        acked = [
            i
            for i in range(3)
            if requests.post(f"{server.url}/api/v1/{token}/telemetry", json=batch(i)).status_code == 200
        ]
        limit = max(p.stat().st_size for p in (data / "telemetry").glob("telemetry.sqlite*")) + (64 << 10)
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
        mark = len(server.output)
        more, rejected, r = post_until(server.url, token, 3, 507)
        acked += more
        assert_507(r, "refused a write")
        mqtt = RawClient(server.mqtt_port, c.MQTT_5)  # MQTT 5 QoS 1: no success PUBACK, "quota exceeded"
        assert mqtt.connect(token) == 0
        mqtt.publish("v1/devices/me/telemetry", json.dumps(batch(rejected)).encode(), packet_id=9)
        assert mqtt.puback() == (9, c.V5_QUOTA_EXCEEDED)
        mqtt.close()
        assert_holds(stored(api, did), acked, [rejected])
        assert "Traceback" not in "".join(server.output[mark:])
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        r = requests.post(f"{server.url}/api/v1/{token}/telemetry", json=batch(rejected), timeout=60)
        assert r.status_code == 200, r.text
        acked.append(rejected)
        assert_holds(stored(api, did), acked)
    finally:
        server.stop()
    integrity_ok(data)
    server = ServerProcess(data, extra=NO_TRANSPORTS).start()
    try:
        values = stored(Api.login(server.url, EMAIL, PASSWORD), did)
        assert_holds(values, acked)
        assert len(values) == len(acked) * 2000
    finally:
        server.stop()
