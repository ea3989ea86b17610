"""Memory bounds (issue 15 item 5): the store's caches are sized by ``tbpanel serve`` options
whose defaults are the store's, and the latest-values copy is columnar."""

from __future__ import annotations

import time

import numpy as np

from tbpanel import cli
from tbpanel.store import ValueType, open_store
from tbpanel.store.heap import release_free_heap, tune_heap
from tbpanel.store.hot import CACHE_KIB
from tbpanel.store.latest import LatestTable
from tbpanel.store.telemetry import COLD_CACHE_BYTES, HOT_CACHE_BYTES

V = ValueType


def test_serve_names_each_cache_with_the_stores_default():
    text = cli.build_parser()._subparsers._group_actions[0].choices["serve"].format_help()  # type: ignore[union-attr]
    for flag in ("--cold-cache-mib", "--hot-cache-mib", "--sqlite-cache-mib"):
        assert flag in text
    assert (cli.DEFAULT_COLD_CACHE_MIB << 20, cli.DEFAULT_HOT_CACHE_MIB << 20, cli.DEFAULT_SQLITE_CACHE_MIB << 10) == (
        COLD_CACHE_BYTES,
        HOT_CACHE_BYTES,
        CACHE_KIB,
    )
    args = cli.build_parser().parse_args(["serve", "--cold-cache-mib", "0", "--hot-cache-mib", "7"])
    assert (args.cold_cache_mib, args.hot_cache_mib, args.sqlite_cache_mib) == (0, 7, cli.DEFAULT_SQLITE_CACHE_MIB)


def test_the_store_takes_the_cache_sizes(tmp_path):
    with open_store(
        tmp_path / "s", compaction_interval_s=0, cache_bytes=3 << 20, hot_cache_bytes=0, sqlite_cache_kib=512
    ) as s:
        assert s.cold.cache.max_bytes == 3 << 20 and s._snapshots.hot_cache.max_bytes == 0
        conn = s._readers.get()
        assert conn.execute("PRAGMA cache_size").fetchone()[0] == -512
        s.write_points([("d", "k", 1, int(V.LONG), 5)])
        assert s.latest("d") == {"k": (1, V.LONG, 5)}


def test_latest_values_are_columns_with_slots_reused(tmp_path):
    table = LatestTable(capacity=2)
    for i in range(100):
        table.put("e", f"k{99 - i:02d}", i, int(V.DOUBLE), i / 2)  # out of order: sorted once, on read
    table.put("e", "k00", 50, int(V.STR), "text", newer_only=True)  # older than 99: kept
    table.put("e", "k01", 98, int(V.BOOL), True, newer_only=True)
    assert isinstance(table.ts, np.ndarray) and len(table) == 100 and table.nbytes() >= 100 * 25
    table.sort(["e"])
    got = table.answer(["e", "none"], None)
    assert list(got["e"])[:3] == ["k00", "k01", "k02"] and got["none"] == {}
    assert got["e"]["k00"] == (99, V.DOUBLE, 49.5) and got["e"]["k01"] == (98, V.BOOL, True)
    table.pop("e", "k05")
    table.put("f", "x", 1, int(V.JSON), "[1]")
    assert len(table) == 100 and table.answer(["f"], ["x", "y"]) == {"f": {"x": (1, V.JSON, "[1]")}}
    table.drop("e")
    assert len(table) == 1 and table.answer(["e"], None) == {"e": {}}


def test_heap_helpers_run():
    assert tune_heap() in (True, False)
    release_free_heap()


def test_paused_collector_turns_it_back_on_only_if_it_was_on():
    import gc

    from tbpanel.store.heap import PausedCollector

    assert gc.isenabled()
    with PausedCollector():
        assert not gc.isenabled()
        with PausedCollector():  # nested (or another thread's): the outer one re-enables
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_background_rounds_leave_a_month_alone_while_it_is_being_written(tmp_path, monkeypatch):
    """The quiet rule (compaction.QUIET_S): a month is compacted by the background rounds only
    once its write counter stayed put between two looks at least QUIET_S apart."""
    from tbpanel.store import compaction
    from tbpanel.store.times import month_of

    monkeypatch.setattr(compaction, "QUIET_S", 0.3)
    jan = 1_704_067_200_000
    with open_store(tmp_path / "s", compaction_interval_s=0) as s:
        c = s._compactor
        c._quiet_s = compaction.QUIET_S
        m = month_of(jan)
        s.write_points([("d", "k", jan, int(V.DOUBLE), 1.0)])
        assert c._settled([m]) == []  # first look: remembered
        s.write_points([("d", "k", jan + 1, int(V.DOUBLE), 2.0)])
        assert c._settled([m]) == []  # written since: still busy
        assert c._settled([m]) == []  # quiet, but not for QUIET_S yet
        time.sleep(0.35)
        assert c._settled([m]) == [m] and c._seen == {}
        assert s.compact()["partitions"] == 1  # an explicit compact() never waits
