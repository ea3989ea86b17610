"""Work for one page session off the event loop, and figures the model tabs share.

Reading a device's history or scoring a training range takes a second or two; done in a
callback it would freeze every page of the server. :func:`in_background` runs it on the
platform's thread pool and applies the result on the session's own document.
"""
from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone
from typing import Any, Callable

import panel as pn
from bokeh.plotting import figure
from panel.io.state import set_curdoc

log = logging.getLogger("tbpanel.ui")

SEVERITY_COLOURS = {"warning": "#1e88e5", "minor": "#fbc02d", "major": "#f57c00", "critical": "#d32f2f",
                    "none": "#9e9e9e"}


def picker_value(ms: int | None) -> datetime | None:
    """Epoch ms as the naive UTC datetime Panel's date pickers show (None stays None)."""
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=timezone.utc).replace(tzinfo=None)


def picker_ms(value: datetime | None) -> int | None:
    """A date picker's naive UTC datetime as epoch ms (None stays None)."""
    return None if value is None else int(value.replace(tzinfo=timezone.utc).timestamp() * 1000)


def live_session() -> bool:
    """True inside a served page (a browser is or will be connected), False in a notebook."""
    doc = pn.state.curdoc
    return doc is not None and doc.session_context is not None


def in_background(executor, fn: Callable[[], Any], done: Callable[[Any], None],
                  failed: Callable[[Exception], None] | None = None) -> None:
    """``done(fn())`` with ``fn`` on ``executor`` and ``done`` on this session's document
    (inline when there is no session)."""
    doc = pn.state.curdoc
    if doc is None or doc.session_context is None:
        try:
            done(fn())
        except Exception as exc:
            if failed is None:
                raise
            failed(exc)
        return

    async def run() -> None:
        try:
            result = await asyncio.get_running_loop().run_in_executor(executor, fn)
        except Exception as exc:  # shown to the user; the page keeps working
            log.warning("background work failed: %s", exc)
            with set_curdoc(doc):
                if failed is not None:
                    failed(exc)
            return
        with set_curdoc(doc):
            done(result)
    doc.add_next_tick_callback(run)


def time_figure(name: str, height: int = 300, **kw) -> figure:
    """A stretch-width figure with a UTC datetime x axis (x values are epoch ms)."""
    return figure(name=name, x_axis_type="datetime", height=height, sizing_mode="stretch_width",
                  tools="xpan,xwheel_zoom,box_zoom,reset,save", active_scroll="xwheel_zoom", **kw)
