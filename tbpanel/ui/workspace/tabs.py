"""The model page's tabs after Result, in the order Trendz shows them.

``model_tabs`` is the one place the model page (``page.py``) asks for them, so each tab lives in
its own module and the page itself does not change when one is added.
"""
from __future__ import annotations


def extra_tabs(platform, live, user, model) -> list[tuple[str, object]]:
    """``[(title, viewable), ...]`` for Review, Cluster info, Input, Jobs, Tasks and Experiments."""
    return []
