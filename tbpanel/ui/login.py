"""Login for the Panel pages: a form, a signed session cookie, logout.

Bokeh's server asks :class:`PageAuthProvider` who is calling before it builds any page
session, so an anonymous request for a page is redirected to ``/login``. The cookie holds the
user id signed with the server's cookie secret (the name ``user`` is what ``pn.state.user``
reads). API routes do not use it: they take ThingsBoard's JWT.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from urllib.parse import urlparse

import tornado.web
from bokeh.server.auth_provider import AuthProvider

from ..entities import NotFound, TooManyAttempts

COOKIE = "user"
COOKIE_DAYS = 1

_FORM = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tbpanel · sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body {{ font-family: system-ui, sans-serif; background: #f4f6f8; margin: 0; }}
 form {{ max-width: 340px; margin: 12vh auto; background: #fff; padding: 32px;
        border-radius: 8px; box-shadow: 0 2px 12px rgba(0,0,0,.08); }}
 h1 {{ font-size: 22px; margin: 0 0 4px; }} p.sub {{ color: #667; margin: 0 0 20px; }}
 label {{ display: block; font-size: 13px; color: #445; margin: 12px 0 4px; }}
 input {{ width: 100%; box-sizing: border-box; padding: 9px; border: 1px solid #ccd;
         border-radius: 4px; font-size: 15px; }}
 button {{ margin-top: 20px; width: 100%; padding: 10px; background: #0b6bcb; color: #fff;
          border: 0; border-radius: 4px; font-size: 15px; cursor: pointer; }}
 .error {{ color: #b00020; margin-top: 12px; font-size: 14px; }}
 #demo-logins {{ margin-top: 24px; padding-top: 16px; border-top: 1px solid #e3e6ea; font-size: 14px; color: #445; }}
 #demo-logins p {{ margin: 0 0 8px; }}
 #demo-logins button {{ margin: 6px 0 0; background: #eef4fb; color: #0b4f96; border: 1px solid #c9dcf1;
          text-align: left; font-size: 14px; padding: 8px 10px; }}
 #demo-logins button:hover {{ background: #dfeaf7; }}
 #demo-logins code {{ font-size: 13px; }}
</style></head>
<body><form method="post" action="/login">
 <h1>tbpanel</h1><p class="sub">Sign in to see your devices</p>
 <label for="username">Email</label>
 <input id="username" name="username" type="email" autocomplete="username" value="{username}" required autofocus>
 <label for="password">Password</label>
 <input id="password" name="password" type="password" autocomplete="current-password" required>
 <input type="hidden" name="next" value="{next}">
 <button id="login" type="submit">Sign in</button>
 {error}
 {demo}
</form></body></html>"""

#: the demo box: one button per demo login, filling the form (a click on one and "Sign in")
_DEMO = """<section id="demo-logins" aria-label="Demo logins">
 <p><strong>Demo server</strong> &mdash; sign in as:</p>
 {buttons}
</section>
<script>
 document.querySelectorAll("#demo-logins button").forEach(function (b) {{
   b.addEventListener("click", function () {{
     document.getElementById("username").value = b.dataset.username;
     document.getElementById("password").value = b.dataset.password;
     document.getElementById("password").focus();
   }});
 }});
</script>"""
_DEMO_BUTTON = (
    '<button type="button" class="demo-login" data-username="{username}" data-password="{password}">'
    "{label}: <code>{username}</code> / <code>{password}</code></button>"
)


@dataclass(frozen=True)
class DemoLogin:
    """A login the login page offers on a demo server (never otherwise)."""

    label: str
    username: str
    password: str


def demo_box(logins: tuple[DemoLogin, ...]) -> str:
    """The HTML of the demo-logins box, or "" without demo logins."""
    if not logins:
        return ""
    buttons = "\n ".join(
        _DEMO_BUTTON.format(
            label=html.escape(d.label), username=html.escape(d.username), password=html.escape(d.password)
        )
        for d in logins
    )
    return _DEMO.format(buttons=buttons)


def safe_next(url: str | None) -> str:
    """Only same-site relative paths are followed after login (no open redirects)."""
    if not url:
        return "/"
    parsed = urlparse(url)
    if parsed.scheme or parsed.netloc or not url.startswith("/") or url.startswith("//"):
        return "/"
    return url


def _login_handler(platform, demo_logins: tuple[DemoLogin, ...]):
    demo = demo_box(demo_logins)

    class LoginPage(tornado.web.RequestHandler):
        def get(self) -> None:
            self._render()

        def _render(self, error: str = "", username: str = "", status: int = 200) -> None:
            self.set_status(status)
            self.set_header("Content-Type", "text/html; charset=utf-8")
            self.finish(
                _FORM.format(
                    username=html.escape(username),
                    next=html.escape(safe_next(self.get_argument("next", "/"))),
                    error=f'<div class="error" role="alert">{html.escape(error)}</div>' if error else "",
                    demo=demo,
                )
            )

        def post(self) -> None:
            username = self.get_body_argument("username", "").strip()
            password = self.get_body_argument("password", "")
            try:
                user = (
                    platform.authenticate(username, password, self.request.remote_ip) if username and password else None
                )
            except TooManyAttempts as exc:
                self._render(str(exc), username, status=429)
                return
            if user is None:
                self._render("Invalid username or password.", username, status=401)
                return
            self.set_signed_cookie(COOKIE, user.id, expires_days=COOKIE_DAYS, httponly=True, samesite="Lax")
            self.redirect(safe_next(self.get_body_argument("next", "/")))

    return LoginPage


class LogoutPage(tornado.web.RequestHandler):
    def get(self) -> None:
        self.clear_cookie(COOKIE)
        self.redirect("/login")


class PageAuthProvider(AuthProvider):
    """Bokeh auth hooks backed by tbpanel's users; ``demo_logins`` are shown on the login page
    (a demo server passes its logins; any other server none)."""

    def __init__(self, platform, demo_logins: tuple[DemoLogin, ...] = ()) -> None:
        self.platform = platform
        self._login = _login_handler(platform, tuple(demo_logins))
        super().__init__()

    @property
    def get_user(self):
        def get_user(handler):
            raw = handler.get_signed_cookie(COOKIE, max_age_days=COOKIE_DAYS)
            if not raw:
                return None
            try:
                user = self.platform.registry.get_user(raw.decode())
            except NotFound:
                return None
            return user.id if user.enabled else None

        return get_user

    @property
    def login_url(self) -> str:
        return "/login"

    @property
    def login_handler(self):
        return self._login

    @property
    def logout_url(self) -> str:
        return "/logout"

    @property
    def logout_handler(self):
        return LogoutPage
