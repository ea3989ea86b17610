"""What a store holds, for its reprs: devices, series, keys, time span and size on disk.

Enough to know what is in a store before querying it (a notebook shows ``store``), from the
series index and two index lookups per series — never a scan of the data.
"""

from __future__ import annotations

import html
import os
import sqlite3
from typing import Any

from ..clock import utc_text
from .hot import SQL_FIRST_COLD_TS, first_hot_ts, scalar
from .series import SeriesIndex


def store_summary(series: SeriesIndex, conn: sqlite3.Connection, path: str) -> dict[str, Any]:
    """Devices, keys, time span and size for the reprs (index lookups only, no data scan)."""
    out = series.summary()
    firsts = first_hot_ts(conn, out.pop("sids"))
    cold = scalar(conn, SQL_FIRST_COLD_TS)
    if cold is not None:
        firsts.append(cold)
    out["first_ts"] = min(firsts) if firsts else None
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:  # a retired generation removed while we walk
                pass
    out["bytes"] = total
    return out


def text(path: str, s: dict[str, Any]) -> str:
    span = f"{_iso(s['first_ts'])} .. {_iso(s['last_ts'])}" if s["first_ts"] is not None else "empty"
    keys = ", ".join(s["keys"][:8]) + (", ..." if len(s["keys"]) > 8 else "")
    return (
        f"<TelemetryStore {path!r} devices={s['entities']} series={s['series']} "
        f"points~{s['points']:,} span={span} size={_size(s['bytes'])} keys=[{keys}]>"
    )


def html_table(path: str, s: dict[str, Any]) -> str:
    span = f"{_iso(s['first_ts'])} &ndash; {_iso(s['last_ts'])}" if s["first_ts"] is not None else "empty"
    rows = [
        ("path", f"<code>{html.escape(path)}</code>"),
        ("devices", f"{s['entities']:,}"),
        ("series", f"{s['series']:,}"),
        ("points (approx.)", f"{s['points']:,}"),
        ("time span", span),
        ("size on disk", _size(s["bytes"])),
        ("keys", html.escape(", ".join(s["keys"])) or "&ndash;"),
    ]
    body = "".join(
        f"<tr><th style='text-align:left'>{k}</th><td style='text-align:left'>{v}</td></tr>" for k, v in rows
    )
    return f"<b>TelemetryStore</b><table>{body}</table>"


def _iso(ts: int | None) -> str:
    """Epoch ms as a short UTC timestamp for reprs."""
    return "-" if ts is None else utc_text(ts) + " UTC"


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
