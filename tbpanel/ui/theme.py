"""The page design: Panel's Fast design, served whole from the tbpanel server, plus tbpanel's
widget styles (``theme.css``).

Fast's resources are all local (Panel serves its own JS and CSS) except the Open Sans
stylesheet of ``Fast._resources["font"]``, the one request that left the machine: it is
dropped, so the product works offline (pages use the system's own font).

A stylesheet in the document's head cannot reach Panel's widgets, which draw inside shadow
roots; a Design's ``modifiers`` add a stylesheet to every component's own root, so
:class:`Design` lists ``theme.css`` for the widgets it styles. Panel serves
the file from this package (``/components/...``), so no page needs the network for it. The
page template (``ui/layout.py``) uses this design; nothing else needs to.
"""

from __future__ import annotations

from typing import Any, ClassVar

from panel.io.resources import CDN_DIST
from panel.theme import Fast
from panel.theme.base import Inherit
from panel.util import isurl
from panel.viewable import Viewable
from panel.widgets import DatePicker, DatetimePicker, DatetimeRangePicker, Progress, RadioBoxGroup, RadioButtonGroup

__all__ = ["Design"]

#: what a themed component gets: its inherited stylesheets plus theme.css
_THEMED: dict[str, Any] = {"stylesheets": [Inherit, "theme.css"]}


class Design(Fast):
    """Fast, with ``theme.css`` in the components it styles and date pickers that accept typed dates.

    Only those components get the stylesheet: added to every component's shadow root it cost
    0.2–0.5 s of first paint on the larger pages (``benchmarks/pages.py``, measured both ways).
    """

    modifiers: ClassVar[dict[type[Viewable], dict[str, Any]]] = {
        RadioButtonGroup: _THEMED,
        RadioBoxGroup: _THEMED,
        Progress: _THEMED,
        DatePicker: _THEMED,
        DatetimePicker: {**_THEMED, "allow_input": True},
        DatetimeRangePicker: {**_THEMED, "allow_input": True},
    }
    # Panel prefixes a relative resource with the design's class name ("design/js/..."): point
    # each at Panel's bundled copy of Fast's (served locally like the rest of Fast)
    _resources = {
        **Fast._resources,
        "font": {},
        "js_modules": {
            name: url if isurl(url) else f"{CDN_DIST}bundled/fast/{url}"
            for name, url in Fast._resources["js_modules"].items()
        },
    }
