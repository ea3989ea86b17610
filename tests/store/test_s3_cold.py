"""The cold tier on a real S3 API (``moto_server``, a child process): ingest, compaction, queries,
deletes, reopening, a SIGKILL in the middle of a compaction, the claim that keeps a second hot
tier from deleting the first one's months, and how many requests a month's query makes (counted
in the server's own access log)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys

import pytest

from tbpanel.store import ValueType, open_store
from tbpanel.store.object_store import ForeignColdTier
from tests.helpers.moto import HoldingProxy, MotoS3, count

V = ValueType
DAY = 86_400_000
JAN = 1_704_067_200_000  # 2024-01-01T00:00Z
FEB = 1_706_745_600_000
MAR = 1_709_251_200_000
FAR = 4_102_444_800_000
N = 20_000  # points per key the child writes: 2024-01-01 to 01-14, one a minute
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    server = MotoS3(tmp_path_factory.mktemp("moto")).start()
    yield server
    server.stop()


@pytest.fixture
def url(s3):
    return f"s3://{s3.bucket()}/fleet/cold"


def opened(path, url, s3, **kw):
    return open_store(path, cold_url=url, storage_options=s3.options, compaction_interval_s=0, **kw)


def all_raw(s, entity, keys):
    return s.query_raw(entity, keys, 0, FAR, limit=10**9, order="ASC")


def manifest(path) -> dict[str, int]:
    con = sqlite3.connect(os.path.join(path, "telemetry.sqlite"))
    try:
        return dict(con.execute("SELECT name, generation FROM cold_partitions"))
    finally:
        con.close()


def generations(s3, url) -> list[str]:
    """The generation prefixes at ``url`` as S3 lists them (``2024-01/g000001``, ...)."""
    fs = s3.filesystem()
    root = url.removeprefix("s3://")
    out = []
    for month in fs.ls(root, detail=False):
        if os.path.basename(month)[:2] == "20":
            out += [f"{os.path.basename(month)}/{os.path.basename(g)}" for g in fs.ls(month, detail=False)]
    return sorted(out)


TYPED_POINTS = (
    [(f"dev{d}", "temp", JAN + i * 3_600_000, V.DOUBLE, d + i / 8) for d in range(3) for i in range(24 * 45)]
    + [(f"dev{d}", "count", JAN + i * DAY, V.LONG, 2**62 + i) for d in range(3) for i in range(45)]
    + [("dev0", "on", JAN + i * DAY, V.BOOL, i % 2 == 0) for i in range(45)]
    + [("dev0", "name", JAN + DAY, V.STR, "héllo"), ("dev1", "cfg", FEB + DAY, V.JSON, '{"a":[1,{"b":null}]}')]
)
KEYS = ["temp", "count", "on", "name", "cfg"]


def test_ingest_compact_query_reopen(tmp_path, s3, url):
    """Every answer is the same before the compaction, after it (from S3) and after a reopen;
    the months are on S3 and not in the data directory."""
    path = tmp_path / "data"
    with opened(path, url, s3) as s:
        s.write_points(TYPED_POINTS)
        before = {d: all_raw(s, d, KEYS) for d in ("dev0", "dev1", "dev2")}
        agg = s.query_agg("dev1", ["temp"], JAN, MAR, "AVG", 7 * DAY)
        st = s.compact(before_ts=FAR)
        assert st["partitions"] == 2 and st["points_moved"] == len(TYPED_POINTS)
        assert generations(s3, url) == ["2024-01/g000001", "2024-02/g000001"]
        assert not os.path.exists(os.path.join(s.path, "cold"))
        s.cold.forget_all()  # answers from S3, not from decoded chunks kept from before
        assert {d: all_raw(s, d, KEYS) for d in ("dev0", "dev1", "dev2")} == before
        assert s.query_agg("dev1", ["temp"], JAN, MAR, "AVG", 7 * DAY) == agg
        ds = s.query(["dev0", "dev2"], ["temp"], start=JAN, end=MAR, interval="1d", agg="max")
        assert float(ds["temp"].sel(device="dev2").max()) == 2 + (24 * 45 - 1) / 8
    with opened(path, url, s3) as s:
        assert {d: all_raw(s, d, KEYS) for d in ("dev0", "dev1", "dev2")} == before
        assert s.latest("dev1")["cfg"] == (FEB + DAY, V.JSON, '{"a":[1,{"b":null}]}')
        assert s.stats()["points"] == len(TYPED_POINTS)


def test_late_points_and_deletes_rewrite_the_month_on_s3(tmp_path, s3, url):
    with opened(tmp_path / "data", url, s3) as s:
        s.write_points([("d", "k", JAN + i * DAY, V.LONG, i) for i in range(10)])
        s.compact(before_ts=FAR)
        s.write_points([("d", "k", JAN + 20 * DAY, V.LONG, 20), ("d", "k", JAN + 1 * DAY, V.LONG, 111)])
        assert s.delete("d", ["k"], JAN + 2 * DAY, JAN + 5 * DAY, delete_latest=False) == 3  # tombstone on cold
        want = [0, 111, 5, 6, 7, 8, 9, 20]
        assert [p[2] for p in all_raw(s, "d", ["k"])["k"]] == want
        st = s.compact(before_ts=FAR)
        assert st["tombstones_applied"] == 1 and st["points_moved"] == 2
        assert generations(s3, url) == ["2024-01/g000002"]  # the old generation is gone from S3
        s.cold.forget_all()
        assert [p[2] for p in all_raw(s, "d", ["k"])["k"]] == want
        assert s.query_agg("d", ["k"], JAN, FEB, "COUNT", None)["k"][0][2] == len(want)
        s.delete_entity("d")
        s.compact(before_ts=FAR)
        assert all_raw(s, "d", ["k"]) == {} and generations(s3, url) == []


def test_a_second_hot_tier_is_refused_and_deletes_nothing(tmp_path, s3, url):
    """``open_store`` of a URL from another data directory (or machine) would see every month
    as an orphan: it is refused before anything is written or removed."""
    with opened(tmp_path / "a", url, s3) as s:
        s.write_points([("d", "k", JAN + i * DAY, V.LONG, i) for i in range(40)])
        s.compact(before_ts=FAR)
        expect = all_raw(s, "d", ["k"])
    objects = sorted(s3.filesystem().find(url.removeprefix("s3://")))
    with pytest.raises(ForeignColdTier, match="another telemetry store"):
        opened(tmp_path / "b", url, s3)
    assert sorted(s3.filesystem().find(url.removeprefix("s3://"))) == objects
    with opened(tmp_path / "a", url, s3) as s:  # its own hot tier still opens it
        assert all_raw(s, "d", ["k"]) == expect


CHILD = f"""
import sys, json
sys.path.insert(0, {REPO!r})
from tbpanel.store import open_store
path, url, options, late = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4] == "late"
store = open_store(path, cold_url=url, storage_options=options, compaction_interval_s=0)
base = {JAN}
if late:  # 100 points overriding k0's first ones (-1.0) and 100 new ones between them
    store.write_points([("d", "k0", base + i * 60_000 + j * 30_000, 2, -1.0) for i in range(100) for j in (0, 1)])
else:
    store.write_points([("d", f"k{{k}}", base + i * 60_000, 2, float(i % 977) / 4) for k in range(4) for i in range({N})])
print("written", flush=True)
store.compact(before_ts={FAR})
print("compacted", flush=True)
"""


def compact_and_kill(path: str, url: str, s3: MotoS3, trigger: str, late: bool) -> None:
    """Run the child's write and compaction through a proxy that holds the second request whose
    line starts with ``trigger``, and SIGKILL the child as soon as it is held."""
    proxy = HoldingProxy(s3.port, trigger.encode())
    options = {**s3.options, "endpoint_url": proxy.endpoint}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, path, url, json.dumps(options), "late" if late else "fresh"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "written", proc.stderr.read()
        assert proxy.wait(60), "the child never made the request to hold"
        os.kill(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        assert "compacted" not in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        proxy.close()


def check_points(s, late: bool) -> None:
    """Every point of the child's writes exactly once, with its value."""
    s.cold.forget_all()
    for k in range(4):
        got = all_raw(s, "d", [f"k{k}"])[f"k{k}"]
        ts = [p[0] for p in got]
        extra = 100 if late and k == 0 else 0
        assert ts == sorted(set(ts)) and len(ts) == N + extra  # none lost, none twice
        assert got[1000 + extra] == (JAN + 1000 * 60_000, V.DOUBLE, float(1000 % 977) / 4)
        if extra:
            assert got[:200] == [(JAN + i * 30_000, V.DOUBLE, -1.0) for i in range(200)]
    assert s.stats()["points"] == 4 * N + (100 if late else 0)


def test_sigkill_during_compaction_loses_and_duplicates_nothing(tmp_path, s3, url):
    """Two kills, each at an exact step of a compaction on S3 (a proxy holds a request: no
    timing involved), and after each restart every point is there exactly once:

    1. while the month's new generation is uploading (its first object stored, not the second):
       a partial generation is left, the manifest never switched, the points are still hot;
       the open removes the orphan and the next compaction completes the month;
    2. after the switch, while the superseded generation is being deleted (a rewrite with late
       points): the open removes the rest of it."""
    path = str(tmp_path / "data")
    bucket_path = url.removeprefix("s3:/")  # /bucket/fleet/cold, as in a request line
    compact_and_kill(path, url, s3, f"PUT {bucket_path}/2024-01/g000001/", late=False)
    assert manifest(path) == {}  # the switch never committed
    assert generations(s3, url) == ["2024-01/g000001"]  # what the kill left: an orphan
    fs = s3.filesystem()
    assert not fs.exists(f"{bucket_path[1:]}/2024-01/g000001/zarr.json")  # the group metadata goes up last
    with opened(path, url, s3) as s:
        assert generations(s3, url) == []  # the orphan is removed at open
        counts = s.query_agg("d", None, JAN, FAR, "COUNT", None)
        assert {k: v[0][2] for k, v in counts.items()} == {f"k{k}": N for k in range(4)}
        st = s.compact(before_ts=FAR)
        assert st["points_moved"] == 4 * N and st["partitions"] == 1
        check_points(s, late=False)
    assert manifest(path) == {"2024-01": 1}

    bucket = bucket_path.split("/")[1]
    compact_and_kill(path, url, s3, f"POST /{bucket}?delete", late=True)  # the 2nd: g000001's arrays
    assert manifest(path) == {"2024-01": 2}  # switched
    assert generations(s3, url) == ["2024-01/g000001", "2024-01/g000002"]
    with opened(path, url, s3) as s:
        assert generations(s3, url) == ["2024-01/g000002"]
        check_points(s, late=True)
        assert s.compact(before_ts=FAR)["partitions"] == 0  # nothing was left hot


def test_a_month_query_is_a_few_large_gets(tmp_path, s3, url):
    """A month of 300 series (223,200 points) read back from S3: one GET for the generation's
    metadata and one per column chunk, whether the query asks for one series or all of them,
    and none once the chunks are decoded in the cache (a HEAD per query checks that the
    generation is still current)."""
    path = tmp_path / "data"
    points = [
        (f"dev{d:03d}", "temp", JAN + i * 3_600_000, V.DOUBLE, (i % 400) / 8) for d in range(300) for i in range(744)
    ]
    with opened(path, url, s3) as s:
        s.write_points(points)
        s.compact(before_ts=FEB)
    with opened(path, url, s3) as s:
        mark = len(s3.requests())
        one = all_raw(s, "dev007", ["temp"])["temp"]
        first = s3.requests_since(mark)
        mark += len(first)
        ds = s.query([f"dev{d:03d}" for d in range(300)], ["temp"], start=JAN, end=FEB, interval="1d", agg="avg")
        fleet = s3.requests_since(mark)
    assert len(one) == 744 and ds["temp"].shape[0] == 300
    # the generation's zarr.json (all arrays' metadata), then series, offsets, ts, t, num: one chunk each
    assert count(first) == {"GET": 6, "HEAD": 1}, first
    assert all("/2024-01/g000001/" in r.path for r in first)
    assert count(fleet) == {"HEAD": 1}, fleet  # 300 series, no GET: the decoded chunks are cached
