"""Cold-tier encodings (store/encoding.py): bit-exact round trips on random and adversarial
floats through a real Zarr generation, the per-array choice, and old generations still read."""

from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st

from tbpanel.store import encoding, open_store
from tbpanel.store.cold import ColdTier
from tbpanel.store.values import ValueType as V

JAN = 1_704_067_200_000  # 2024-01-01 UTC
FAR = 4_102_444_800_000
ADVERSARIAL = [
    -0.0,
    0.0,
    1e308,
    -1e308,
    5e-324,  # the smallest subnormal
    2.2250738585072014e-308,
    0.1 + 0.2,
    1 / 3,
    2.0**53,
    2.0**53 + 2,
    123456789.123,
    -7.25,
    float(np.nextafter(1.0, 2.0)),
]


def _generation(tmp_path, num: np.ndarray, ts: np.ndarray | None = None, compressor: str = "zstd"):
    n = len(num)
    cold = ColdTier(str(tmp_path / "cold"), compressor=compressor)
    ts = ts if ts is not None else JAN + np.arange(n, dtype=np.int64) * 60_000
    cols = {"ts": ts, "t": np.full(n, int(V.DOUBLE), np.int8), "num": num, "lng": np.zeros(n, np.int64), "txt": None}
    cold.write_generation("2024-01", 1, cols, np.array([1], np.int64), np.array([0, n], np.int64))
    return cold.open("2024-01", 1)


def _bits(a: np.ndarray) -> list[int]:
    return np.asarray(a, np.float64).view(np.int64).tolist()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(allow_nan=False, allow_infinity=False, width=64), min_size=1, max_size=300)
    | st.lists(st.integers(-(10**12), 10**12).map(lambda i: i / 1000), min_size=1, max_size=300)
    | st.lists(st.sampled_from(ADVERSARIAL), min_size=1, max_size=50)
)
def test_values_round_trip_bit_for_bit(tmp_path_factory, values):
    num = np.array(values, np.float64)
    part = _generation(tmp_path_factory.mktemp("enc"), num)
    assert _bits(part.read("num", 0, len(num))) == _bits(num)
    assert _bits(part.read_all()["num"]) == _bits(num)
    lo, hi = len(num) // 3, max(len(num) // 3 + 1, 2 * len(num) // 3)
    assert _bits(part.read("num", lo, hi)) == _bits(num[lo:hi])


@pytest.mark.parametrize("value", ADVERSARIAL)
def test_each_adversarial_value_alone_and_among_decimals(tmp_path, value):
    num = np.array([21.5, 21.537, value, 19.0], np.float64)
    part = _generation(tmp_path, num)
    assert _bits(part.read("num", 0, 4)) == _bits(num)


def test_short_decimals_become_scaled_integers_and_the_rest_stays_float64(tmp_path):
    assert encoding.decimal_places(np.array([21.537, 20.0, -3.1])) == 3
    assert encoding.decimal_places(np.array([1.0, 2.0])) == 0
    assert encoding.decimal_places(np.array([0.1 + 0.2])) is None  # 0.30000000000000004
    assert encoding.decimal_places(np.array([-0.0])) is None  # the sign would be lost
    assert encoding.decimal_places(np.array([np.nan])) is None  # a text row's NaN
    assert encoding.decimal_places(np.array([1e308])) is None
    smooth = np.round(20 + np.sin(np.arange(20_000) / 1440 * 6.283), 3)
    part = _generation(tmp_path / "a", smooth)
    assert part.encodings["num"]["kind"] == "decimal" and part.encodings["num"]["decimals"] == 3
    assert part.encodings["ts"] == {"kind": "delta-of-delta"}
    noise = np.random.default_rng(3).normal(0, 1, 5_000)
    assert _generation(tmp_path / "b", noise).encodings["num"] == {"kind": "float64"}


def test_smaller_on_disk_than_plain_float64(tmp_path):
    """The point of it: a month of 3-decimal readings at 1-minute steps (the bytes are
    reported, not bounded: the codec's exact output is zstd's business)."""
    rng = np.random.default_rng(5)
    n = 43_200
    noisy = np.round(20 + 3 * np.sin(np.arange(n) / 1440 * 6.283) + rng.normal(0, 0.3, n), 3)
    part = _generation(tmp_path / "new", noisy)
    plain = zarr.create_array(
        zarr.storage.LocalStore(str(tmp_path / "plain")), data=noisy, chunks=(n,), compressors=[encoding.blosc("lz4")]
    )
    assert np.array_equal(plain[:], noisy)

    def size(path: str) -> int:
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs if f != "zarr.json")

    new = size(str(tmp_path / "new" / "cold" / "2024-01" / "g000001" / "num"))
    old = size(str(tmp_path / "plain"))
    assert new < old / 2, (new, old)
    assert _bits(part.read("num", 0, n)) == _bits(noisy)


def test_timestamps_with_irregular_steps_and_series_boundaries(tmp_path):
    ts = np.array([JAN, JAN + 1, JAN + 60_000, JAN + 10**9, JAN - 5, JAN, JAN + 7], np.int64)  # two series
    part = _generation(tmp_path, np.arange(7, dtype=np.float64), ts=ts)
    assert part.read("ts", 0, 7).tolist() == ts.tolist()
    assert part.read("ts", 3, 6).tolist() == ts[3:6].tolist()


def test_generations_written_before_encodings_still_read(tmp_path):
    """A generation from before store/encoding.py (plain float64, no ``encodings`` attribute)."""
    with open_store(tmp_path / "data", compaction_interval_s=0) as s:
        s.write_points([("d", "k", JAN + i * 60_000, V.DOUBLE, 0.1 * i) for i in range(100)])
        s.compact(before_ts=FAR)
        expect = s.query_raw("d", ["k"], 0, FAR, limit=1000)
    root = tmp_path / "data" / "cold" / "2024-01"
    gen = next(p for p in root.iterdir() if p.name.startswith("g"))
    group = zarr.open_group(zarr.storage.LocalStore(str(gen)), mode="r+", zarr_format=3)
    values = np.asarray(encoding.decode("num", group["num"][:], dict(group.attrs["encodings"])), np.float64)
    del group["num"]
    group.create_array(
        "num",
        data=values,
        chunks=(len(values),),
        compressors=[encoding.blosc("lz4")],
        chunk_key_encoding={"name": "default", "separator": "."},
    )
    attrs = dict(group.attrs)
    attrs.pop("encodings")
    meta = json.loads((gen / "zarr.json").read_text())
    meta["attributes"] = attrs
    (gen / "zarr.json").write_text(json.dumps(meta))
    with open_store(tmp_path / "data", compaction_interval_s=0) as s:
        got = s.query_raw("d", ["k"], 0, FAR, limit=1000)
    assert got == expect and len(got["k"]) == 100
    values = [p[-1] for p in sorted(got["k"])]
    assert [struct.pack("<d", v) for v in values] == [struct.pack("<d", 0.1 * i) for i in range(100)]
