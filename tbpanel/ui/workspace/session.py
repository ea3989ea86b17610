"""What the model tabs share: severity colours, date-picker conversions, a time figure.

(Slow reads go through :class:`~tbpanel.ui.background.Background`.)
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import panel as pn
from bokeh.plotting import figure
from panel.io.state import set_curdoc

from ...clock import from_datetime, naive_utc


def picker_value(ms: int | None) -> datetime | None:
    """Epoch ms as the naive UTC datetime Panel's date pickers show (None stays None)."""
    return None if ms is None else naive_utc(ms)


def picker_ms(value: datetime | None) -> int | None:
    """A date picker's naive UTC datetime as epoch ms (None stays None)."""
    return None if value is None else from_datetime(value)


def range_pickers(
    target: Any, start: str = "start", end: str = "end", width: int = 200
) -> tuple[pn.widgets.DatetimePicker, pn.widgets.DatetimePicker]:
    """ "From (UTC)" and "To (UTC)" pickers bound to ``target``'s epoch-ms ``start``/``end`` (editable as text)."""
    pickers = []
    for label, attr in (("From (UTC)", start), ("To (UTC)", end)):
        picker = pn.widgets.DatetimePicker(
            name=label, value=picker_value(getattr(target, attr)), width=width, allow_input=True
        )  # typed dates too, not only the calendar
        picker.param.watch(lambda e, attr=attr: setattr(target, attr, picker_ms(e.new)), "value")
        pickers.append(picker)
    return pickers[0], pickers[1]


def live_session() -> bool:
    """True inside a served page (a browser is or will be connected), False in a notebook."""
    doc = pn.state.curdoc
    return doc is not None and doc.session_context is not None


def time_figure(name: str, height: int = 300, **kw) -> figure:
    """A stretch-width figure with a UTC datetime x axis (x values are epoch ms)."""
    return figure(
        name=name,
        x_axis_type="datetime",
        height=height,
        sizing_mode="stretch_width",
        tools="xpan,xwheel_zoom,box_zoom,reset,save",
        active_scroll="xwheel_zoom",
        **kw,
    )


def after_first_paint(callback: Callable[[], None]) -> None:
    """Run ``callback`` on this page's document once the browser has drawn the page (Panel's
    ``onload``), in a next-tick callback of its own so it goes out as a message of its own; at
    once outside a served page. For the parts that would cost what a person came for its first
    paint (the Result tables, the Cluster info plots)."""
    doc = pn.state.curdoc
    if doc is None or doc.session_context is None:
        callback()
        return

    def run() -> None:
        with set_curdoc(doc):
            callback()

    def loaded() -> None:
        doc.add_next_tick_callback(run)

    pn.state.onload(loaded)
