"""The frame every page shares: title bar, navigation, who is signed in, sign out."""

from __future__ import annotations

import html

import panel as pn
from panel.template.base import BasicTemplate

from ..entities import NotFound, User
from .theme import Design  # tbpanel's widget styles (theme.css) in every component

NAV = (
    ("/", "Fleet"),
    ("/telemetry", "Telemetry"),
    ("/alarms", "Alarms"),
    ("/models", "Models"),
    ("/dashboards", "Dashboards"),
    ("/rules", "Rules"),
    ("/profiles", "Profiles"),
)


def session_user(platform):
    """The signed-in user of this page session, or None (the cookie names a deleted user)."""
    try:
        return platform.registry.get_user(pn.state.user) if pn.state.user else None
    except NotFound:
        return None


def page_template(platform, active: str) -> tuple[BasicTemplate, User | None]:
    """A FastListTemplate with the nav links; the user is None when nobody is signed in."""
    user = session_user(platform)
    template = pn.template.FastListTemplate(
        title="tbpanel", header_background="#0b6bcb", font="system-ui, sans-serif", font_url="", design=Design
    )  # no CDN fonts: the system's own
    if user is None or not user.enabled:  # the auth provider redirects first; a second lock
        template.main.append(pn.pane.Markdown("Please [sign in](/login)."))
        return template, None
    links = " ".join(
        f'<a class="nav{" active" if path == active else ""}" href="{path}" '
        f'style="color:white;margin-right:14px;{"font-weight:600;text-decoration:underline" if path == active else "text-decoration:none"}">'
        f"{label}</a>"
        for path, label in NAV
    )
    template.header.append(pn.pane.HTML(f'<nav id="nav">{links}</nav>', margin=(0, 10)))
    template.header.append(
        pn.pane.HTML(
            f'<span style="color:white">{html.escape(user.email)} · {user.authority.replace("_", " ").lower()} · '
            f'<a style="color:white" href="/logout">sign out</a></span>'
        )
    )
    return template, user


def tenant_admin_template(platform, active: str, refusal: str, name: str) -> tuple[BasicTemplate, User | None]:
    """:func:`page_template` for a tenant administrators' page: anyone else gets ``refusal``
    (Markdown) in a warning named ``name`` and no user (so the page draws nothing more)."""
    template, user = page_template(platform, active)
    if user is not None and user.authority != "TENANT_ADMIN":
        template.main.append(pn.pane.Alert(refusal, alert_type="warning", name=name))
        return template, None
    return template, user
