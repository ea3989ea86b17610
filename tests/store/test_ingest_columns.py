"""The columnar ingest path (store/ingest.py) against the old parser, its oracle.

On random payloads -- every ThingsBoard typing corner: ints vs floats, booleans, numeric and
other strings, JSON values, ``{"ts", "values"}`` objects and arrays of them, bad types, bad
timestamps and keys, NaN/Infinity literals, integers beyond 64 bits, deep nesting -- the
columnar path must accept exactly what ``parse_telemetry`` + ``payload_points`` accept, with
the same typed points (types of the Python values included), and refuse the rest with the
same exception class and message. Then a columnar batch is written and read back like tuples.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tbpanel.store import open_store
from tbpanel.store.ingest import PointColumns, columns_of_points, telemetry_columns
from tbpanel.store.limits import TooManyPoints, telemetry_points
from tbpanel.store.payload import MAX_JSON_DEPTH, MAX_KEY_LENGTH, TS_MAX, parse_telemetry
from tbpanel.store.validate import payload_points

SERVER_TS = 1_700_000_000_000

keys = st.one_of(
    st.sampled_from(["t", "temp", "k0", "k1", "°C", "a b", "x" * MAX_KEY_LENGTH]),
    st.sampled_from(["", "x" * (MAX_KEY_LENGTH + 1), "bad\nkey", "tab\tkey"]),  # refused
    st.text(max_size=6),
)
numeric_strings = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from([" 42", "42 ", "+7", "-0", "1e3", "0x10", "nan", "inf", "", "abc", "1_000", "٣"]),
)
scalars = st.one_of(
    st.booleans(),
    st.integers(-(2**64), 2**64),  # some beyond 64 bits
    st.floats(allow_nan=False, allow_infinity=False),
    st.none(),
    numeric_strings,
    st.text(max_size=8),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=6,
)
value_objects = st.dictionaries(keys, json_values, max_size=6)
stamps = st.one_of(
    st.integers(-5, TS_MAX + 5),
    st.sampled_from([0, TS_MAX, 1.0e12, 1.5, "1700000000000", "17x", True, None, [1]]),
)
timestamped = st.builds(lambda ts, v: {"ts": ts, "values": v}, stamps, value_objects | json_values)
objects = st.one_of(value_objects, timestamped)
bodies = st.one_of(objects, st.lists(objects | scalars, max_size=5), scalars)


def outcome(fn):
    try:
        points = fn()
    except ValueError as exc:  # PayloadError is a ValueError; validate_points raises ValueError
        return ("error", type(exc).__name__, str(exc))
    return ("points", [(p, [type(x) for x in p]) for p in points])


def old_path(entity, body):
    return payload_points(entity, parse_telemetry(body, SERVER_TS))


def same(entity, body):
    expected = outcome(lambda: old_path(entity, body))
    got = outcome(lambda: list(telemetry_columns(entity, body, SERVER_TS)))
    assert got == expected


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies)
def test_decoded_bodies_are_typed_and_refused_like_the_old_parser(body):
    same("dev", body)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies)
def test_raw_bodies_are_typed_and_refused_like_the_old_parser(body):
    try:
        raw = json.dumps(body).encode()
    except ValueError:
        return
    same("dev", raw)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a": NaN}',
        b'{"a": Infinity}',
        b'{"a": -Infinity}',
        b'{"a": 1e400}',
        b'{"a": 9223372036854775807, "b": -9223372036854775808}',
        b'{"a": 9223372036854775808}',
        b'{"a": [99999999999999999999]}',
        b'{"a": "\\ud800"}',
        b'[{"ts": 1, "values": {"a": 1}}, {"ts": -1, "values": {"a": 1}}]',
        b'[{"ts": 1, "values": {"a": "x"}}, 3]',
        b'{"ts": 5, "values": 7}',
        b'{"ts": 5, "other": 7}',
        b'{"ts": "5", "values": {"a": true}}',
        b'{"a": {"b": ' * 300 + b"1" + b"}" * 600,
        b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1),
        b'{"a": "12", "b": "1.5", "c": " 1", "d": "x", "e": null, "f": false, "g": 3, "h": 2.0}',
        b"",
        b"nul",
        b'"text"',
        b"[]",
        b"{}",
    ],
)
def test_corners_are_typed_and_refused_like_the_old_parser(raw):
    same("dev", raw)


def test_entity_is_checked_like_the_old_path():
    same("", b'{"a": 1}')


def test_the_point_limit_is_checked_between_parsing_and_validation():
    with pytest.raises(TooManyPoints):
        telemetry_points("dev", json.dumps({f"k{i}": i for i in range(11)}).encode(), SERVER_TS, 10)
    assert len(telemetry_points("dev", json.dumps({f"k{i}": i for i in range(10)}).encode(), SERVER_TS, 10)) == 10


def test_a_columnar_batch_is_stored_like_its_tuples(tmp_path):
    body = json.dumps(
        [
            {
                "ts": 1_000 + i,
                "values": {"d": i / 4, "l": i, "b": i % 2 == 0, "s": f"s{i}", "n": str(i), "j": {"i": [i]}},
            }
            for i in range(100)  # 100 points per series: written as blocks
        ]
        + [{"ts": 5_000, "values": {"few": 1.5, "d": 2.5}}]  # rows
    ).encode()
    cols = telemetry_columns("dev", body, SERVER_TS)
    assert isinstance(cols, PointColumns)
    tuples = old_path("dev", body)
    assert list(columns_of_points("dev", tuples)) == list(tuples)
    with (
        open_store(tmp_path / "a", compaction_interval_s=0) as a,
        open_store(tmp_path / "b", compaction_interval_s=0) as b,
    ):
        seen = []
        a.committed.connect(lambda pts: seen.extend(pts))
        assert a.write_points(cols) == len(tuples)
        assert seen == list(tuples)
        b.write_points(tuples)
        got_a = a.query_raw("dev", None, 0, 10**6, limit=10**6, order="ASC")
        got_b = b.query_raw("dev", None, 0, 10**6, limit=10**6, order="ASC")
        assert got_a == got_b and sorted(got_a) == ["b", "d", "few", "j", "l", "n", "s"]
        assert [type(v) for _, _, v in got_a["b"]] == [bool] * 100
        assert a.latest("dev") == b.latest("dev")
        assert np.array_equal(
            a.numeric_arrays("dev", "d", 0, 10**6)["d"][1], b.numeric_arrays("dev", "d", 0, 10**6)["d"][1]
        )
