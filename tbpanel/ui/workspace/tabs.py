"""The model page's tabs after Result, in the order Trendz shows them (Experiments last).

``extra_tabs`` is the one place the model page (``page.py``) asks for them, so each tab lives in
its own module and the page itself does not change when one is added.
"""

from __future__ import annotations

import panel as pn

from .clusters import clusters_tab
from .experiments import experiments_tab
from .inputs import inputs_tab
from .jobs import jobs_tab
from .review import review_tab
from .tasks import tasks_tab

TABS = (
    ("Review", review_tab),
    ("Cluster info", clusters_tab),
    ("Input", inputs_tab),
    ("Jobs", jobs_tab),
    ("Tasks", tasks_tab),
    ("Experiments", experiments_tab),
)


def extra_tabs(platform, live, user, model) -> list[tuple[str, object]]:
    """``[(title, viewable), ...]`` for Review, Cluster info, Input, Jobs, Tasks and Experiments.

    Each tab is built the first time it is shown (a lazy ``ParamFunction``), so opening the
    model page costs only the Result tab."""
    pn.extension("tabulator")  # the tabs' tables render later than the page: load Tabulator with it

    def lazy(make):
        def build():
            return make(platform, live, user, model)

        return pn.param.ParamFunction(build, lazy=True, sizing_mode="stretch_width")

    return [(title, lazy(make)) for title, make in TABS]
