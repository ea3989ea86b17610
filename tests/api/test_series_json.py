"""The column-wise ThingsBoard series JSON is byte for byte the per-point rendering it replaced
(the oracle below: a dict per point, ``to_wire_string``/``to_strict``, orjson)."""

from __future__ import annotations

import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from tbpanel.api.series_json import series_answer
from tbpanel.store.fleet_query import SeriesColumns
from tbpanel.store.values import ValueType, to_strict, to_wire_string

ODD_DOUBLES = [0.0, -0.0, 0.1 + 0.2, 1e308, -1e308, 5e-324, 2.2250738585072014e-308, 1e-5, 9.99e-5, 1e-4, 1e15, 1e16]
ODD_DOUBLES += [1e17, 123456789012345678.0, float("inf"), float("-inf"), float("nan"), 20.0, -3.0, 20.51]


def oracle(columns: list[SeriesColumns], strict: bool, descending: bool) -> bytes:
    conv = to_strict if strict else to_wire_string
    out = {}
    for c in columns:
        rows = []
        for i in range(len(c.ts)):
            t = int(c.vtype[i])
            v = (
                bool(c.num[i])
                if t == ValueType.BOOL
                else int(c.lng[i])
                if t == ValueType.LONG
                else float(c.num[i])
                if t == ValueType.DOUBLE
                else c.txt[i]
            )
            rows.append({"ts": int(c.ts[i]), "value": conv(t, v)})
        out[c.key] = rows[::-1] if descending else rows
    return orjson.dumps(out)


def column(key: str, kinds: list[int], doubles: list[float], longs: list[int], texts: list[str]) -> SeriesColumns:
    n = len(kinds)
    num = np.array([doubles[i % len(doubles)] if doubles else 1.5 for i in range(n)], np.float64)
    lng = np.array([longs[i % len(longs)] if longs else 7 for i in range(n)], np.int64)
    vtype = np.array(kinds, np.int8)
    num = np.where(vtype == ValueType.LONG, lng.astype(np.float64), num)
    num = np.where(vtype == ValueType.BOOL, (lng % 2).astype(np.float64), num)
    has_text = bool((vtype > ValueType.DOUBLE).any())
    txt = np.array([texts[i % len(texts)] if texts else "t" for i in range(n)], object) if has_text else None
    ts = np.cumsum(np.arange(1, n + 1, dtype=np.int64)) + 1_672_531_200_000
    return SeriesColumns("dev", key, ts, vtype, num, lng, txt)


doubles = st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(ODD_DOUBLES)), max_size=8)
longs = st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=8)
texts = st.lists(st.text(max_size=12), max_size=4)
one_kind = st.sampled_from([int(ValueType.BOOL), int(ValueType.LONG), int(ValueType.DOUBLE)])
any_kind = st.sampled_from([int(t) for t in ValueType])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.one_of(one_kind.flatmap(lambda k: st.lists(st.just(k), max_size=40)), st.lists(any_kind, max_size=12)),
            doubles,
            longs,
            texts,
        ),
        max_size=3,
    ),
    st.booleans(),
    st.booleans(),
)
def test_column_json_is_the_per_point_json(specs, strict, descending):
    columns = [column(f"k{i}", *spec) for i, spec in enumerate(specs)]
    assert series_answer(columns, strict=strict, descending=descending) == oracle(columns, strict, descending)


def test_every_odd_double_renders_as_before():
    c = column("x", [int(ValueType.DOUBLE)] * len(ODD_DOUBLES), ODD_DOUBLES, [], [])
    for strict in (False, True):
        assert series_answer([c], strict=strict) == oracle([c], strict, False)
    assert orjson.loads(series_answer([c]))["x"][0] == {"ts": int(c.ts[0]), "value": "0.0"}


def test_no_series_and_empty_series():
    assert series_answer([]) == b"{}"
    empty = SeriesColumns("dev", "k", *(np.empty(0, d) for d in (np.int64, np.int8, np.float64, np.int64)), None)
    assert series_answer([empty]) == b'{"k":[]}'
