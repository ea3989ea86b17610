"""The page design: Panel's Fast design plus tbpanel's widget styles (``theme.css``).

A stylesheet in the document's head cannot reach Panel's widgets, which draw inside shadow
roots; a Design's ``modifiers`` add a stylesheet to every component's own root, so
:class:`Design` lists ``theme.css`` for every :class:`~panel.viewable.Viewable`. Panel serves
the file from this package (``/components/...``), so no page needs the network for it. The
page template (``ui/layout.py``) uses this design; nothing else needs to.
"""

from __future__ import annotations

from typing import Any, ClassVar

from panel.io.resources import CDN_DIST
from panel.theme import Fast
from panel.theme.base import Inherit
from panel.viewable import Viewable
from panel.widgets import DatetimePicker, DatetimeRangePicker

__all__ = ["Design"]


class Design(Fast):
    """Fast, with ``theme.css`` in every component and date pickers that accept typed dates."""

    modifiers: ClassVar[dict[type[Viewable], dict[str, Any]]] = {
        Viewable: {"stylesheets": [Inherit, "theme.css"]},
        DatetimePicker: {"allow_input": True},
        DatetimeRangePicker: {"allow_input": True},
    }
    # Panel finds Fast's own script by the design's class name ("fast/js/..."): name it outright,
    # as Panel's bundled copy (served locally like the rest of Fast)
    _resources = {
        **Fast._resources,
        "js_modules": {**Fast._resources["js_modules"], "fast-design": f"{CDN_DIST}bundled/fast/js/fast_design.js"},
    }
