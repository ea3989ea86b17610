"""Vectorised aggregation of one series into time buckets.

Bucket edges come from :mod:`tbpanel.store.buckets`; points are located in the buckets with
``numpy.searchsorted`` and reduced with ``numpy.<ufunc>.reduceat`` over the non-empty buckets
only (no Python loop over points, no pandas).

Result rules (ThingsBoard's, made precise):

* **COUNT** counts every value of any type (bool, long, double, string, JSON) → ``LONG``.
* **AVG** averages the numeric values (long and double) → always ``DOUBLE``.
* **SUM** sums the numeric values → ``LONG`` (exact 64-bit integer arithmetic) when every
  input of the bucket is a long, else ``DOUBLE``. A long sum that does not fit in 64 bits is
  returned as a ``DOUBLE``.
* **MIN / MAX** over the numeric values → ``LONG`` (exact) when every numeric input of the
  bucket is a long, else ``DOUBLE``. A bucket with no numeric value but with strings gets the
  lexicographic (code point order) minimum/maximum of its strings → ``STR``.
* Booleans and JSON values are ignored by MIN, MAX, AVG and SUM (they are counted by COUNT).
* A bucket with nothing to aggregate is omitted; results ascend in time and each bucket's ts
  is its midpoint ``start + (end - start) // 2``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, overload

import numpy as np

from .buckets import QueryError, bucket_midpoints
from .values import ValueType

AGGREGATIONS = ("MIN", "MAX", "AVG", "SUM", "COUNT")
#: what the API and pages offer: no aggregation (raw points) or one of the above
AGGS = ("NONE", *AGGREGATIONS)

_BOOL, _LONG, _DOUBLE, _STR = (int(ValueType.BOOL), int(ValueType.LONG), int(ValueType.DOUBLE), int(ValueType.STR))
_BIG = 2.0**62  # float sums beyond this are re-checked with exact integers


@overload
def normalize_agg(agg: str | None, allow_none: Literal[False] = False) -> str: ...
@overload
def normalize_agg(agg: str | None, allow_none: bool) -> str | None: ...
def normalize_agg(agg: str | None, allow_none: bool = False) -> str | None:
    """Upper-case aggregation name; ``None``/"NONE" allowed only when ``allow_none``."""
    if agg is None or (isinstance(agg, str) and agg.upper() == "NONE"):
        if allow_none:
            return None
        raise QueryError("agg NONE means a raw query; use one of MIN, MAX, AVG, SUM, COUNT to aggregate")
    if not isinstance(agg, str) or agg.upper() not in AGGREGATIONS:
        raise QueryError(f"unknown agg {agg!r}; expected one of MIN, MAX, AVG, SUM, COUNT, NONE")
    return agg.upper()


@dataclass
class AggResult:
    """Non-empty buckets of one series: midpoint ts, result type and value per bucket.

    ``fval`` holds every numeric result as float64 (NaN for string results); ``ival`` the
    exact integer for LONG results; ``sval`` the strings of STR results (``None`` if there
    are none).
    """

    ts: np.ndarray
    vtype: np.ndarray
    fval: np.ndarray
    ival: np.ndarray
    sval: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ts)

    def values(self) -> np.ndarray:
        """Python values (int for LONG, float for DOUBLE, str for STR) as an object array."""
        out = self.fval.astype(object)
        is_long = self.vtype == _LONG
        if is_long.any():
            out[is_long] = self.ival[is_long].astype(object)
        if self.sval is not None:
            is_str = self.vtype == _STR
            out[is_str] = self.sval[is_str]
        return out

    def to_list(self) -> list[tuple[int, int, object]]:
        return list(zip(self.ts.tolist(), self.vtype.tolist(), self.values().tolist()))


def _empty() -> AggResult:
    return AggResult(np.empty(0, np.int64), np.empty(0, np.int8), np.empty(0, np.float64), np.empty(0, np.int64))


def aggregate(agg: str, edges: np.ndarray, ts: np.ndarray, column: Callable[[str], np.ndarray]) -> AggResult:
    """Aggregate one series (``ts`` sorted ascending) into the buckets given by ``edges``.

    ``column(name)`` returns the aligned column ``"t"`` (int8 type codes), ``"num"``
    (float64), ``"lng"`` (int64) or ``"txt"`` (object strings); it is called only for the
    columns the aggregation needs, so callers can load them lazily.
    """
    agg = normalize_agg(agg)
    nb = len(edges) - 1
    if nb <= 0 or len(ts) == 0:
        return _empty()
    mids = bucket_midpoints(edges)
    if agg == "COUNT":
        idx = np.searchsorted(ts, edges)
        cnt = np.diff(idx)
        nz = np.flatnonzero(cnt)
        c = cnt[nz].astype(np.int64)
        return AggResult(mids[nz], np.full(len(nz), _LONG, np.int8), c.astype(np.float64), c)

    t = column("t")
    isnum = (t == _LONG) | (t == _DOUBLE)
    all_num = bool(isnum.all())
    ts_n = ts if all_num else ts[isnum]
    idx = np.searchsorted(ts_n, edges)
    cnt = np.diff(idx)
    nz = np.flatnonzero(cnt)
    lo, hi = int(idx[0]), int(idx[-1])

    # result arrays over all buckets, filled where defined
    has = np.zeros(nb, bool)
    vtype = np.zeros(nb, np.int8)
    fval = np.full(nb, np.nan)
    ival = np.zeros(nb, np.int64)
    sval = None

    if len(nz):
        starts = idx[:-1][nz] - lo
        num = column("num")
        num_n = (num if all_num else num[isnum])[lo:hi]
        t_n = (t if all_num else t[isnum])[lo:hi]
        is_dbl = t_n == _DOUBLE
        if agg == "AVG":
            fval[nz] = np.add.reduceat(num_n, starts) / cnt[nz]
            vtype[nz] = _DOUBLE
        else:
            n_dbl = np.add.reduceat(is_dbl.astype(np.int64), starts)
            all_long = n_dbl == 0
            lng_n = None
            if all_long.any():
                lng = column("lng")
                lng_n = (lng if all_num else lng[isnum])[lo:hi]
            if agg == "SUM":
                fs = np.add.reduceat(num_n, starts)
                fval[nz] = fs
                vtype[nz] = _DOUBLE
                if lng_n is not None:
                    # doubles contribute 0 here; only all-long buckets use this sum
                    ls = np.add.reduceat(np.where(is_dbl, 0, lng_n), starts)
                    vt = np.where(all_long, _LONG, _DOUBLE).astype(np.int8)
                    big = all_long & (np.abs(fs) >= _BIG)
                    if big.any():  # rare: re-add exactly with Python ints, fall back to double
                        ends = np.append(starts[1:], hi - lo)
                        for j in np.flatnonzero(big):
                            exact = sum(lng_n[starts[j] : ends[j]].tolist())
                            if -(2**63) <= exact < 2**63:
                                ls[j] = exact
                            else:
                                vt[j] = _DOUBLE
                                fs[j] = float(exact)
                    vtype[nz] = vt
                    ival[nz] = ls
                    fval[nz] = np.where(vt == _LONG, ls.astype(np.float64), fs)
            else:
                uf = np.minimum if agg == "MIN" else np.maximum
                fm = uf.reduceat(num_n, starts)
                fval[nz] = fm
                vtype[nz] = _DOUBLE
                if lng_n is not None:
                    sentinel = np.iinfo(np.int64).max if agg == "MIN" else np.iinfo(np.int64).min
                    lm = uf.reduceat(np.where(is_dbl, sentinel, lng_n), starts)
                    vt = np.where(all_long, _LONG, _DOUBLE).astype(np.int8)
                    vtype[nz] = vt
                    ival[nz] = lm
                    fval[nz] = np.where(vt == _LONG, lm.astype(np.float64), fm)
        has[nz] = True

    if agg in ("MIN", "MAX") and not all_num:
        is_str = t == _STR
        if is_str.any():
            ts_s = ts[is_str]
            idx_s = np.searchsorted(ts_s, edges)
            cnt_s = np.diff(idx_s)
            sb = np.flatnonzero((cnt_s > 0) & (cnt == 0))
            if len(sb):
                # reduce over the string buckets only: restrict the strings to those buckets
                txt_s = column("txt")[is_str]
                keep = np.repeat((cnt_s > 0) & (cnt == 0), cnt_s)
                lo_s = int(idx_s[0])
                keep_full = np.zeros(len(ts_s), bool)
                keep_full[lo_s : lo_s + len(keep)] = keep
                vals = txt_s[keep_full]
                seg = np.concatenate(([0], np.cumsum(cnt_s[sb])[:-1]))
                uf = np.minimum if agg == "MIN" else np.maximum
                sval = np.empty(nb, dtype=object)
                sval[sb] = uf.reduceat(vals, seg)
                vtype[sb] = _STR
                has[sb] = True

    sel = np.flatnonzero(has)
    return AggResult(mids[sel], vtype[sel], fval[sel], ival[sel], None if sval is None else sval[sel])
