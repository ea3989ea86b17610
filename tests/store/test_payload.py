"""Payload parsing and typing: ThingsBoard's rules, tbpanel's clearer errors."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tbpanel.store.payload import MAX_KEY_LENGTH, TS_MAX, PayloadError, parse_attributes, parse_telemetry, parse_ts
from tbpanel.store.values import ValueType, classify, to_strict, to_wire_string

SERVER_TS = 1_700_000_000_000


@pytest.mark.parametrize(
    "raw, expected",
    [
        (True, (ValueType.BOOL, True)),
        (False, (ValueType.BOOL, False)),
        (7, (ValueType.LONG, 7)),
        (-(2**63), (ValueType.LONG, -(2**63))),
        (2**63 - 1, (ValueType.LONG, 2**63 - 1)),
        (2.5, (ValueType.DOUBLE, 2.5)),
        (42.0, (ValueType.DOUBLE, 42.0)),
        ("42", (ValueType.LONG, 42)),
        ("-3", (ValueType.LONG, -3)),
        ("4.25", (ValueType.DOUBLE, 4.25)),
        ("1e3", (ValueType.DOUBLE, 1000.0)),
        ("abc", (ValueType.STR, "abc")),
        ("", (ValueType.STR, "")),
        (" 42", (ValueType.STR, " 42")),
        ("nan", (ValueType.STR, "nan")),
        ("inf", (ValueType.STR, "inf")),
        ("99999999999999999999", (ValueType.STR, "99999999999999999999")),
        ({"a": [1, None]}, (ValueType.JSON, '{"a":[1,null]}')),
        ([1, 2], (ValueType.JSON, "[1,2]")),
    ],
)
def test_classify(raw, expected):
    assert classify(raw) == expected


def test_classify_null_is_skipped_and_bad_values_raise():
    assert classify(None) is None
    for bad in (2**63, -(2**63) - 1, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            classify(bad)


@pytest.mark.parametrize(
    "vtype, value, text, strict",
    [
        (ValueType.BOOL, True, "true", True),
        (ValueType.LONG, 73, "73", 73),
        (ValueType.DOUBLE, 42.0, "42.0", 42.0),
        (ValueType.DOUBLE, 21.5, "21.5", 21.5),
        (ValueType.STR, "x", "x", "x"),
        (ValueType.JSON, '{"a":1}', '{"a":1}', '{"a":1}'),
    ],
)
def test_wire_rendering(vtype, value, text, strict):
    assert to_wire_string(vtype, value) == text
    assert to_strict(vtype, value) == strict


def test_shapes():
    assert parse_telemetry(b'{"a": 1}', SERVER_TS) == [(SERVER_TS, "a", ValueType.LONG, 1)]
    assert parse_telemetry(b'{"ts": 5, "values": {"a": 1}}', SERVER_TS) == [(5, "a", ValueType.LONG, 1)]
    assert parse_telemetry(b'[{"ts": 5, "values": {"a": 1}}, {"b": "x"}]', SERVER_TS) == [
        (5, "a", ValueType.LONG, 1),
        (SERVER_TS, "b", ValueType.STR, "x"),
    ]
    # "ts" without "values" is an ordinary key, "values" without "ts" too
    assert parse_telemetry(b'{"ts": 5}', SERVER_TS) == [(SERVER_TS, "ts", ValueType.LONG, 5)]
    assert parse_telemetry(b'{"values": {"a": 1}}', SERVER_TS) == [(SERVER_TS, "values", ValueType.JSON, '{"a":1}')]
    assert parse_telemetry(b"{}", SERVER_TS) == [] and parse_telemetry(b"[]", SERVER_TS) == []
    assert parse_attributes(b'{"fw": "v1.0"}', SERVER_TS) == [(SERVER_TS, "fw", ValueType.STR, "v1.0")]


@pytest.mark.parametrize(
    "body, words",
    [
        (b"{", "invalid json"),
        (b"\xff\xfe", "invalid json"),
        (b"[1]", "element 0"),
        (b"null", "null"),
        (b'{"ts": 1, "values": 3}', "values"),
        (b'{"ts": true, "values": {}}', "ts"),
        (b'{"ts": 1.5, "values": {}}', "ts"),
        (b'{"ts": -1, "values": {}}', "range"),
        (b'{"ts": %d, "values": {}}' % (TS_MAX + 1), "range"),
        (b'{"a": Infinity}', "invalid json"),
        (b'{"a": 1e400}', "invalid json"),
        (b'{"": 1}', "empty"),
        (b'{"a\\u0001": 1}', "control"),
        (b'{"%s": 1}' % (b"k" * (MAX_KEY_LENGTH + 1)), "longer"),
        (b'{"a": 18446744073709551615}', "64-bit"),
        (b'{"a": -99999999999999999999999}', "64-bit"),
        (b'{"_": [-9223372036854775809]}', "64-bit"),
        (b'{"j": {"x": 99999999999999999999}}', "64-bit"),
        (b"[" * 100_000 + b"]" * 100_000, "invalid json"),
    ],
)
def test_errors_name_the_problem(body, words):
    with pytest.raises(PayloadError) as err:
        parse_telemetry(body, SERVER_TS)
    assert words in str(err.value).lower()


def test_ts_forms():
    assert parse_ts(1634712287000) == 1634712287000
    assert parse_ts(1634712287000.0) == 1634712287000
    assert parse_ts("1634712287000") == 1634712287000


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
keys = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FFF), min_size=1, max_size=30)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(keys, json_values, max_size=8))
def test_flat_objects_round_trip(values):
    body = json.dumps(values).encode()
    points = parse_telemetry(body, SERVER_TS)
    assert [k for _, k, _, _ in points] == [k for k, v in values.items() if v is not None]
    for ts, key, vtype, value in points:
        raw = values[key]
        assert ts == SERVER_TS
        if isinstance(raw, bool):
            assert (vtype, value) == (ValueType.BOOL, raw)
        elif isinstance(raw, int):
            assert (vtype, value) == (ValueType.LONG, raw)
        elif isinstance(raw, float):
            assert vtype == ValueType.DOUBLE and value == raw
        elif isinstance(raw, (dict, list)):
            assert vtype == ValueType.JSON and json.loads(value) == raw
        else:
            assert vtype in (ValueType.STR, ValueType.LONG, ValueType.DOUBLE)
            if vtype == ValueType.STR:
                assert value == raw
            else:
                assert float(value) == float(raw)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, TS_MAX), st.dictionaries(keys, json_scalars, max_size=4)), max_size=6))
def test_timestamped_arrays(items):
    body = json.dumps([{"ts": ts, "values": v} for ts, v in items]).encode()
    points = parse_telemetry(body, SERVER_TS)
    expected = [(ts, k) for ts, v in items for k, x in v.items() if x is not None]
    assert [(ts, k) for ts, k, _, _ in points] == expected


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_never_crash(body):
    try:
        parse_telemetry(body, SERVER_TS)
    except PayloadError:
        pass
