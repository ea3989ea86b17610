"""Many devices × keys in one consistent read, answered as numpy columns per series.

The ThingsBoard routes answer one device at a time with a Python tuple per point; a data
scientist pulling a fleet wants one request and columns (``POST /api/tbpanel/telemetry/query``
sends them on as JSON arrays or Arrow IPC without touching each point). Raw points keep their
exact type (the ``t``/``num``/``lng``/``txt`` columns of the store); aggregates are the
buckets of :mod:`.aggregate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .aggregate import aggregate, normalize_agg
from .buckets import bucket_edges, check_range
from .series import SeriesIndex
from .snapshot import Snapshots
from .values import ValueType


@dataclass(frozen=True)
class SeriesColumns:
    """One series' points in ascending time: ``vtype`` per point (ValueType codes), numeric
    values in ``num`` (bool 0/1, long as float), the exact long in ``lng``, text in ``txt``
    (None when the series has no text point)."""

    entity: str
    key: str
    ts: np.ndarray
    vtype: np.ndarray
    num: np.ndarray
    lng: np.ndarray
    txt: np.ndarray | None

    def __len__(self) -> int:
        return len(self.ts)


def query_columns(
    series: SeriesIndex,
    snapshots: Snapshots,
    entities: Sequence[str],
    keys: Sequence[str] | None,
    start: int,
    end: int,
    *,
    agg: str = "NONE",
    interval: int | None = None,
    interval_type: str = "MILLISECONDS",
    tz: str = "UTC",
    limit: int | None = None,
    newest: bool = False,
) -> list[SeriesColumns]:
    """Every (entity, key) series with points in ``[start, end)``, in the order asked.

    Raw (``agg`` NONE): at most ``limit`` points per series, the oldest (``newest``: the
    newest) ones, always returned ascending. Otherwise one value per non-empty bucket.
    """
    start, end = int(start), int(end)
    check_range(start, end)
    agg_u = normalize_agg(agg, allow_none=True)
    edges = bucket_edges(start, end, interval, interval_type, tz) if agg_u is not None else None
    wanted = [(e, k, sid) for e in entities for k, sid in series.resolve(e, keys).items()]
    if not wanted:
        return []

    def run() -> list[SeriesColumns]:
        data = snapshots.collect(
            [sid for _, _, sid in wanted], start, end, None if edges is not None else limit, newest
        )
        out = []
        for entity, key, sid in wanted:
            sd = data[sid]
            if not len(sd):
                continue
            if edges is None:
                t = sd.column("t")
                has_txt = bool((t > ValueType.DOUBLE).any())
                out.append(
                    SeriesColumns(
                        entity,
                        key,
                        sd.ts,
                        t,
                        sd.column("num"),
                        sd.column("lng"),
                        sd.column("txt") if has_txt else None,
                    )
                )
                continue
            assert agg_u is not None  # edges exist only for an aggregation
            res = aggregate(agg_u, edges, sd.ts, sd.column)
            if len(res):
                out.append(SeriesColumns(entity, key, res.ts, res.vtype, res.fval, res.ival, res.sval))
        return out

    return snapshots.read(run)


def total_points(columns: Sequence[SeriesColumns]) -> int:
    return int(sum(len(c) for c in columns))
