"""The frame every page shares: title bar, navigation, who is signed in, sign out."""

from __future__ import annotations

import html

import panel as pn
from panel.io.resources import CDN_DIST
from panel.template.base import BasicTemplate
from panel.theme.fast import Fast
from panel.util import isurl

from ..entities import NotFound, User

NAV = (("/", "Fleet"), ("/telemetry", "Telemetry"), ("/alarms", "Alarms"), ("/models", "Models"))


class LocalFast(Fast):
    """Panel's Fast design without its Google Fonts stylesheet: every asset of a page comes from
    the tbpanel server itself, so the product works offline (Panel serves its own JS and CSS
    locally; the Open Sans link of ``Fast._resources["font"]`` was the one external request)."""

    _resources = {
        **Fast._resources,
        "font": {},
        # Panel prefixes a relative resource with the class name ("fast/js/..."): keep Fast's
        "js_modules": {
            name: url if isurl(url) else f"{CDN_DIST}bundled/fast/{url}"
            for name, url in Fast._resources["js_modules"].items()
        },
    }


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
        title="tbpanel", header_background="#0b6bcb", font="system-ui, sans-serif", font_url="", design=LocalFast
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
