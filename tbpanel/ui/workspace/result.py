"""The Result tab: what the model found, at a glance."""
from __future__ import annotations

import panel as pn


def result_tab(platform, live, user, model):
    """Placeholder until the Result view lands."""
    return pn.pane.Markdown(f"Model **{model.config.name}**: {model.status}")
