"""``/model?id=<id>``: one anomaly model, its tabs under a header with its name and status.

Models are a tenant administrator's tool (as in ``/api/tbpanel``): customer users and other
tenants' administrators get a refusal, never the model.
"""

from __future__ import annotations

import panel as pn

from ..layout import page_template
from .result import result_tab
from .tabs import extra_tabs

TENANT_ADMIN = "TENANT_ADMIN"


def page_model(platform, user):
    """The model named by ``?id=`` if this user may open it, else None."""
    if user.authority != TENANT_ADMIN:
        return None
    arg = (pn.state.session_args or {}).get("id", [b""])[0]
    model_id = arg.decode(errors="replace") if isinstance(arg, bytes) else str(arg)
    model = platform.anomaly.get_model(model_id) if model_id else None
    if model is None or model.tenant_id != user.tenant_id:
        return None
    return model


def model_page(platform, live):
    template, user = page_template(platform, "/models")
    if user is None:
        return template
    model = page_model(platform, user)
    if model is None:
        template.main.append(
            pn.pane.Markdown(
                "No such model, or you may not open it. Anomaly models belong to tenant administrators; "
                "[back to the models](/models)."
            )
        )
        return template
    result = result_tab(platform, live, user, model)
    template.main.append(result.header)
    tabs = pn.Tabs(
        ("Result", result), *extra_tabs(platform, live, user, model), dynamic=True, sizing_mode="stretch_width"
    )
    template.main.append(tabs)
    return template
