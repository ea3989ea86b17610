"""``-0.0`` and a text row's NaN among short decimals (store/encoding.py's reserved integers):
bit-exact through a real Zarr generation with and without the delta filter, any slice, and one
such value no longer sends a whole month to float64 (a random walk around zero rounds to -0.0)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tbpanel.store import encoding
from tests.store.test_encoding import _bits, _generation

OTHER_NAN = np.array([0x7FF8000000000001], np.int64).view(np.float64)[0]  # not a text row's NaN


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.integers(-(10**6), 10**6).map(lambda i: i / 100) | st.sampled_from([-0.0, float("nan"), 0.0]),
        min_size=1,
        max_size=300,
    )
)
def test_specials_among_decimals_round_trip_bit_for_bit(tmp_path_factory, values):
    num = np.array(values, np.float64)
    part = _generation(tmp_path_factory.mktemp("spec"), num)
    assert part.encodings["num"]["kind"] == "decimal"
    assert _bits(part.read_all()["num"]) == _bits(num)
    lo, hi = len(num) // 3, max(len(num) // 3 + 1, 2 * len(num) // 3)
    assert _bits(part.read("num", lo, hi)) == _bits(num[lo:hi])


def test_a_random_walk_through_zero_stays_decimal_and_small(tmp_path):
    rng = np.random.default_rng(10_009)  # benchmarks/vs_peers.py's fleet device 9
    walk = np.round(20 + np.cumsum(rng.normal(0, 0.05, 43_200)), 2)  # crosses zero: some -0.0
    assert (walk.view(np.int64) == np.float64(-0.0).view(np.int64)).any()
    assert encoding.decimal_places(walk) is None  # the sign of -0.0 is still no decimal
    ints, record, _filters, _codec = encoding.encode_num(walk, "zstd")
    assert record["kind"] == "decimal" and record["decimals"] == 2 and record["specials"] is True
    assert (ints == encoding.NEG_ZERO).sum() == (walk.view(np.int64) == np.float64(-0.0).view(np.int64)).sum()
    part = _generation(tmp_path, walk)
    assert _bits(part.read("num", 0, len(walk))) == _bits(walk)
    for k in range(0, len(walk), 9_000):
        assert _bits(part.read("num", k, k + 4_000)) == _bits(walk[k : k + 4_000])


def test_without_specials_the_record_is_unchanged_and_other_nans_stay_float64():
    assert "specials" not in encoding.encode_num(np.array([1.25, 2.5]), "zstd")[1]
    assert encoding.encode_num(np.array([1.25, OTHER_NAN, -0.0]), "zstd")[1] == {"kind": "float64"}
    assert encoding.encode_num(np.array([1.25, 1 / 3, -0.0]), "zstd")[1] == {"kind": "float64"}
