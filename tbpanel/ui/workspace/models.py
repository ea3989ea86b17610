"""``/models``: the tenant's anomaly models and the creation wizard."""
from __future__ import annotations

import html

import panel as pn

from ..layout import page_template


def models_page(platform, live):
    """Placeholder list until the models page lands."""
    template, user = page_template(platform, "/models")
    if user is None:
        return template
    models = platform.anomaly.list_models(user.tenant_id) if user.authority == "TENANT_ADMIN" else []
    links = "".join(f'<li><a href="/model?id={m.id}">{html.escape(m.config.name)}</a> {m.status}</li>'
                    for m in models)
    template.main.append(pn.pane.HTML(f"<ul id='models'>{links}</ul>"))
    return template
