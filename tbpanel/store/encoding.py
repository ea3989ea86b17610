"""How each cold-tier array is encoded on disk: chosen per array, always lossless.

A cold generation is written once and read many times, so the writer can afford to try a few
encodings and keep the smallest:

- ``ts`` (sorted by series, then time): delta-of-delta, so a regular interval becomes a run
  of zeros, then Blosc (zstd by default) with byte shuffle.
- ``num`` (float64): telemetry is mostly short decimals (``21.537``). When *every* value of
  the array survives ``round(x * 10**k) / 10**k`` bit for bit (for the smallest such ``k`` up
  to :data:`MAX_DECIMALS`), the array is stored as those int64s instead, with or without a
  delta filter and byte or bit shuffle, whichever compresses smaller (slow curves like deltas, noisy ones do not).
  ``-0.0`` and a text row's NaN are stored as two reserved integers (a random walk around
  zero rounds to ``-0.0``: one such value made a whole month float64, 4.2 instead of ~0.7 B a
  point). Anything else (``0.1 + 0.2``, ``1e308``, subnormals, other NaNs) keeps the float64
  array as it is. The choice is recorded in the generation's attributes
  (``encodings``), so a reader never guesses, and generations written before this module
  (no ``encodings``) read exactly as before.
- ``t``, ``lng`` and the index: Blosc with byte shuffle (mostly constant or zero).

The figures behind these choices (bytes per point, one month of 50 series at 1-minute steps):
today's Blosc lz4 stored timestamps at 0.14 B, delta-of-delta + zstd at 0.003 B; noisy
3-decimal values 6.5 B as float64, 1.5 B as scaled integers; a smooth curve 1.0 B → 0.12 B.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import numpy.typing as npt
from numcodecs import Blosc
from zarr.codecs import BloscCodec
from zarr.codecs.numcodecs import Delta

# numcodecs filters are Zarr-Python's extension to the v3 spec (other readers may not know
# them); said once here rather than on every array opened
warnings.filterwarnings("ignore", message="Numcodecs codecs are not in the Zarr version 3 specification")

#: the most decimal places a value may have to be stored as a scaled integer
MAX_DECIMALS = 9
#: integers above this are not exact in float64, so scaling must stay below it
_EXACT = float(2**53)

#: at most this many values are compressed to compare candidates (one chunk's worth)
_SAMPLE = 1 << 20

#: scaled integers that stand for the two floats a decimal cannot carry, so that one of them
#: does not make a whole month float64: ``-0.0`` (a sensor's value rounded to zero from below)
#: and the NaN of a text row. Far outside the scaled range (below ``-2**53``), so no value is
#: ever taken for one; other NaNs (other bit patterns) keep the array float64.
NEG_ZERO = np.iinfo(np.int64).min
NAN = NEG_ZERO + 1
_NEG_ZERO_BITS = np.float64(-0.0).view(np.int64)
_NAN_BITS = np.float64(np.nan).view(np.int64)


def blosc(cname: str, shuffle: str = "shuffle") -> BloscCodec:
    """The Blosc codec every cold array ends with (``cname``: "zstd" or "lz4")."""
    return BloscCodec(cname=cname, clevel=5, shuffle=shuffle)  # type: ignore[arg-type]  # checked by ColdTier


def decimal_places(values: npt.NDArray[np.float64]) -> int | None:
    """The smallest ``k`` for which every value is exactly ``round(x * 10**k) / 10**k``, or None."""
    if len(values) == 0:
        return 0
    if not np.isfinite(values).all():
        return None
    bits = values.view(np.int64)
    for k in range(MAX_DECIMALS + 1):
        scaled = np.round(values * 10.0**k)
        if np.abs(scaled).max() >= _EXACT:
            return None
        if np.array_equal(decode_decimals(scaled.astype(np.int64), k).view(np.int64), bits):
            return k
    return None


def decode_decimals(ints: npt.NDArray[np.int64], k: int) -> npt.NDArray[np.float64]:
    """Scaled integers back to their float64 values (the one expression the writer checked)."""
    return ints.astype(np.float64) / 10.0**k


def _size(arr: np.ndarray, cname: str, shuffle: str, delta: bool) -> int:
    sample = arr[:_SAMPLE]
    if delta:
        sample = np.diff(sample, prepend=sample[:1] * 0)
    codec = Blosc(cname=cname, clevel=5, shuffle=Blosc.BITSHUFFLE if shuffle == "bitshuffle" else Blosc.SHUFFLE)
    return len(codec.encode(np.ascontiguousarray(sample)))


def encode_num(values: npt.NDArray[np.float64], cname: str) -> tuple[np.ndarray, dict[str, Any], list[Any], BloscCodec]:
    """``(array to store, its encoding record, filters, compressor)`` for the ``num`` column.

    ``-0.0`` and text rows' NaN become the :data:`NEG_ZERO` / :data:`NAN` integers (the record
    says ``"specials": true``) rather than sending the whole array back to float64."""
    bits = values.view(np.int64)
    neg_zero, nan = bits == _NEG_ZERO_BITS, bits == _NAN_BITS
    special = neg_zero | nan
    any_special = bool(special.any())
    k = decimal_places(values[~special] if any_special else values)
    if k is None:
        return values, {"kind": "float64"}, [], blosc(cname)
    ints = np.round(np.where(special, 0.0, values) * 10.0**k).astype(np.int64)
    if any_special:
        ints[neg_zero] = NEG_ZERO
        ints[nan] = NAN
    options = [
        (_size(ints, cname, shuffle, delta), shuffle, delta)
        for shuffle in ("shuffle", "bitshuffle")
        for delta in (False, True)
    ]
    _, shuffle, delta = min(options)
    filters = [Delta(dtype="int64")] if delta else []
    record = {"kind": "decimal", "decimals": k, "delta": delta, "shuffle": shuffle}
    if any_special:
        record["specials"] = True
    return ints, record, filters, blosc(cname, shuffle)


def timestamp_filters() -> list[Any]:
    """Delta of delta: regular sampling becomes zeros."""
    return [Delta(dtype="int64"), Delta(dtype="int64")]


def decode(col: str, raw: np.ndarray, encodings: dict[str, Any]) -> np.ndarray:
    """A stored slice of column ``col`` as the values it holds (float64 for ``num``)."""
    record = encodings.get(col)
    if record is not None and record.get("kind") == "decimal":
        ints = np.asarray(raw, dtype=np.int64)
        out = decode_decimals(ints, int(record["decimals"]))
        if record.get("specials"):
            out[ints == NEG_ZERO] = -0.0
            out[ints == NAN] = np.nan
        return out
    return raw
