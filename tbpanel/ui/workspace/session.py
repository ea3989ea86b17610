"""What the model tabs share: severity colours, date-picker conversions, a time figure.

(Slow reads go through :class:`~tbpanel.ui.background.Background`.)
"""
from __future__ import annotations

from datetime import datetime, timezone

import panel as pn
from bokeh.plotting import figure



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


def time_figure(name: str, height: int = 300, **kw) -> figure:
    """A stretch-width figure with a UTC datetime x axis (x values are epoch ms)."""
    return figure(name=name, x_axis_type="datetime", height=height, sizing_mode="stretch_width",
                  tools="xpan,xwheel_zoom,box_zoom,reset,save", active_scroll="xwheel_zoom", **kw)
