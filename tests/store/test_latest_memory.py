"""Latest values answered from memory (tbpanel.store.latest) always equal the SQL ``latest``
table: after random writes (out of order, equal timestamps, every value type), deletes,
delete_entity, compaction, reopening and writes by another store instance on the same
files; and readers on other threads never see a value older than what was acknowledged
before they asked, nor one that was never written.

Real store files in a temporary directory; the reference is a separate SQLite connection.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import threading

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tbpanel.store import ValueType, open_store
from tbpanel.store.hot import db_path, py_value
from tbpanel.store.latest import LatestValues

V = ValueType
JAN = 1_704_067_200_000  # 2024-01-01T00:00Z
DAY = 86_400_000
FAR = 4_102_444_800_000
ENTITIES = ["a", "b", "c"]
KEYS = ["k0", "k1", "k2"]


def sql_latest(path) -> dict[str, dict[str, tuple]]:
    """The ``latest`` table read directly, as ``entity -> {key: (ts, vtype, value)}``."""
    conn = sqlite3.connect(db_path(str(path)))
    try:
        out: dict[str, dict[str, tuple]] = {}
        for e, k, ts, t, v in conn.execute(
            "SELECT s.entity, s.key, l.ts, l.t, l.v FROM series s JOIN latest l ON l.series = s.id "
            "WHERE l.ts IS NOT NULL ORDER BY s.entity, s.key"
        ):
            out.setdefault(e, {})[k] = (ts, t, py_value(t, v))
        return out
    finally:
        conn.close()


def typed(answer: dict) -> dict:
    """Compare values with their Python types (True == 1 == 1.0 otherwise)."""
    return {e: [(k, ts, t, type(v).__name__, v) for k, (ts, t, v) in d.items()] for e, d in answer.items()}


def db_version(path) -> int:
    conn = sqlite3.connect(db_path(str(path)))
    try:
        return conn.execute("SELECT n FROM latest_version").fetchone()[0]
    finally:
        conn.close()


values = st.one_of(
    st.tuples(st.just(V.BOOL), st.booleans()),
    st.tuples(st.just(V.LONG), st.integers(-(2**63), 2**63 - 1)),
    st.tuples(st.just(V.DOUBLE), st.floats(allow_nan=False, allow_infinity=False)),
    st.tuples(st.just(V.STR), st.text(st.characters(exclude_categories=["Cs"]), max_size=5)),
    st.tuples(st.just(V.JSON), st.sampled_from(['{"a": 1}', "[]", "null"])),
)
# few distinct timestamps over four months: equal and out-of-order timestamps are common,
# and compaction has closed months to move
timestamps = st.builds(lambda m, s: JAN + m * 31 * DAY + s, st.integers(0, 3), st.integers(0, 4))
points = st.lists(
    st.tuples(st.sampled_from(ENTITIES), st.sampled_from(KEYS), timestamps, values), min_size=1, max_size=12
)


class LatestMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="tbp-latest-")
        self.store = open_store(self.dir, compaction_interval_s=0)
        self.foreign = False  # another instance wrote since this one's copy was last current

    def teardown(self):
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule(pts=points)
    def write(self, pts):
        self.store.write_points([(e, k, ts, vt, v) for e, k, ts, (vt, v) in pts])

    @rule(
        entity=st.sampled_from(ENTITIES),
        keys=st.none() | st.lists(st.sampled_from(KEYS), min_size=1),
        start=timestamps,
        span=st.integers(1, 70 * DAY),
        delete_latest=st.booleans(),
        rewrite=st.booleans(),
    )
    def delete(self, entity, keys, start, span, delete_latest, rewrite):
        self.store.delete(
            entity, keys, start, start + span, delete_latest=delete_latest, rewrite_latest_if_deleted=rewrite
        )

    @rule(entity=st.sampled_from(ENTITIES))
    def delete_entity(self, entity):
        self.store.delete_entity(entity)

    @rule(before=st.sampled_from([JAN + 40 * DAY, FAR]))
    def compact(self, before):
        self.store.compact(before_ts=before)

    @rule()
    def reopen(self):
        self.store.close()
        self.store = open_store(self.dir, compaction_interval_s=0)
        self.foreign = False

    @rule(pts=points)
    def write_from_another_instance(self, pts):
        with open_store(self.dir, compaction_interval_s=0) as other:
            other.write_points([(e, k, ts, vt, v) for e, k, ts, (vt, v) in pts])
        self.foreign = True

    @precondition(lambda self: self.foreign)
    @rule()
    def read_after_foreign_write(self):
        # the copy is behind (or stale): the answer still comes from SQL, correct and fresh
        assert typed(self.store.latest_many(ENTITIES)) == typed({e: sql_latest(self.dir).get(e, {}) for e in ENTITIES})

    @invariant()
    def memory_equals_sql(self):
        truth = {e: sql_latest(self.dir).get(e, {}) for e in ENTITIES}
        assert typed(self.store.latest_many(ENTITIES)) == typed(truth)
        for e in ENTITIES:
            assert typed({e: self.store.latest(e, ["k1", "k0"])}) == typed(
                {e: {k: v for k, v in truth[e].items() if k in ("k0", "k1")}}
            )
        mem = self.store._latest.read(db_version(self.dir), ENTITIES, None)
        if not self.foreign:
            assert mem is not None, "the in-memory copy should be current"
        if mem is not None:
            assert typed(mem) == typed(truth)


LatestMachine.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_latest_in_memory_matches_sql = LatestMachine.TestCase


def test_copy_goes_stale_on_a_missed_commit_and_reloads(tmp_path):
    with open_store(tmp_path / "d", compaction_interval_s=0) as s:
        s.write_points([("a", "t", JAN, V.DOUBLE, 1.0)])
        with open_store(tmp_path / "d", compaction_interval_s=0) as other:
            other.write_points([("a", "t", JAN + 5, V.DOUBLE, 5.0), ("b", "t", JAN, V.LONG, 3)])
            # the first instance is behind: it reads SQL and sees the other's writes
            assert not s._latest.stale
            assert s.latest_many(["a", "b"]) == {"a": {"t": (JAN + 5, V.DOUBLE, 5.0)}, "b": {"t": (JAN, V.LONG, 3)}}
            # its own next commit reveals the gap: stale until the next read reloads it
            s.write_points([("a", "h", JAN, V.BOOL, True)])
            assert s._latest.stale
            want = {"a": {"h": (JAN, V.BOOL, True), "t": (JAN + 5, V.DOUBLE, 5.0)}, "b": {"t": (JAN, V.LONG, 3)}}
            assert s.latest_many(["a", "b"]) == want
            assert not s._latest.stale
            assert s._latest.read(db_version(tmp_path / "d"), ["a", "b"], None) == want
            # a second instance that never writes stays correct through SQL
            s.write_points([("b", "t", JAN + 1, V.LONG, 4)])
            assert other.latest("b") == {"t": (JAN + 1, V.LONG, 4)}
            s.delete_entity("b")
            assert other.latest_many(["b"]) == {"b": {}}


def test_install_never_puts_back_a_snapshot_older_than_a_reported_commit():
    lv = LatestValues()
    lv.load(5, {"a": {"t": (1, V.LONG, 1)}})
    lv.written(7, [("a", "t", 2, V.LONG, 2)])  # commit 6 was someone else's: stale
    assert lv.stale and lv.read(7, ["a"], None) is None
    snap6 = {"a": {"t": (1, V.LONG, 6)}}
    lv.written(8, [("a", "t", 3, V.LONG, 3)])  # this instance committed after that snapshot
    assert not lv.install(7, snap6) and lv.stale
    snap8 = {"a": {"t": (3, V.LONG, 3)}}
    assert lv.install(8, snap8)
    assert lv.read(8, ["a"], None) == {"a": {"t": (3, V.LONG, 3)}}
    assert lv.read(9, ["a"], None) is None  # the database is newer than the copy
    lv.written(8, [("a", "t", 3, V.LONG, 99)])  # already part of the snapshot: skipped
    lv.written(9, [("a", "t", 2, V.LONG, 2), ("a", "s", 9, V.STR, "x")])  # older ts: kept
    assert lv.read(9, ["a"], None) == {"a": {"s": (9, V.STR, "x"), "t": (3, V.LONG, 3)}}
    assert list(lv.read(9, ["a"], None)["a"]) == ["s", "t"]  # keys stay sorted
    lv.written(10, [("a", "t", 3, V.LONG, 10)])  # equal ts replaces
    lv.changed(11, "a", {"s": None})
    lv.dropped(12, "zz")
    assert lv.read(12, ["a", "zz"], ["t", "s"]) == {"a": {"t": (3, V.LONG, 10)}, "zz": {}}


def test_concurrent_writers_and_readers_see_only_written_values_never_older_than_acked(tmp_path):
    """Three writer threads (two on this instance, one on a second instance: SQL fallback and
    reloads happen too) write increasing and, now and then, older timestamps; value = ts.
    Readers check each answer: a value that was written (value matches ts, and ts not above
    what was submitted), never older than what was acknowledged before the read began."""
    path = tmp_path / "d"
    main = open_store(path, compaction_interval_s=0)
    other = open_store(path, compaction_interval_s=0)
    series = {w: [(f"w{w}-{d}", f"k{k}") for d in range(4) for k in range(3)] for w in range(3)}
    lock = threading.Lock()
    submitted: dict[tuple[str, str], int] = {}
    acked: dict[tuple[str, str], int] = {}
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer(w, store):
        try:
            for step in range(1, 120):
                ts = JAN + step * 10
                pts = []
                for i, (e, k) in enumerate(series[w]):
                    t = ts - 5 if (step + i) % 7 == 0 else ts  # sometimes an older point
                    pts.append((e, k, t, V.DOUBLE, float(t)))
                with lock:
                    for e, k, t, _vt, _v in pts:
                        submitted[(e, k)] = max(submitted.get((e, k), 0), t)
                store.write_points(pts)
                with lock:
                    for e, k, t, _vt, _v in pts:
                        acked[(e, k)] = max(acked.get((e, k), 0), t)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    ents = sorted({e for w in series for e, _ in series[w]})

    def reader(store):
        try:
            n = 0
            while not stop.is_set() or n < 3:
                n += 1
                with lock:
                    before = dict(acked)
                got = store.latest_many(ents)
                with lock:
                    after = dict(submitted)
                for (e, k), ts in before.items():
                    assert k in got[e] and got[e][k][0] >= ts, (e, k, got[e].get(k), ts)
                for e, d in got.items():
                    for k, (ts, vt, v) in d.items():
                        assert vt == V.DOUBLE and v == float(ts), (e, k, ts, v)
                        assert ts <= after[(e, k)], (e, k, ts, after[(e, k)])
        except BaseException as exc:
            errors.append(exc)

    writers = [
        threading.Thread(target=writer, args=(0, main)),
        threading.Thread(target=writer, args=(1, main)),
        threading.Thread(target=writer, args=(2, other)),
    ]
    readers = [
        threading.Thread(target=reader, args=(main,)),
        threading.Thread(target=reader, args=(main,)),
        threading.Thread(target=reader, args=(other,)),
    ]
    try:
        for t in writers + readers:
            t.start()
        for t in writers:
            t.join(timeout=120)
        stop.set()
        for t in readers:
            t.join(timeout=120)
        assert not errors, errors[0]
        final = sql_latest(path)
        assert main.latest_many(ents) == {e: final.get(e, {}) for e in ents}
        assert other.latest_many(ents) == {e: final.get(e, {}) for e in ents}
    finally:
        stop.set()
        main.close()
        other.close()
