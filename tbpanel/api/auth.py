"""``/api/auth/login``, ``/api/auth/token`` and ``/api/auth/user``: ThingsBoard's JWT login."""

from __future__ import annotations

from .base import ApiError, ApiHandler


class LoginHandler(ApiHandler):
    async def post(self) -> None:
        body = self.json_body()
        if not isinstance(body, dict):
            raise ApiError(400, "login body must be an object with 'username' and 'password'")
        username, password = body.get("username"), body.get("password")
        if not isinstance(username, str) or not isinstance(password, str):
            raise ApiError(400, "login body must have string 'username' and 'password'")
        user = await self.in_thread(self.platform.authenticate, username, password, self.request.remote_ip)
        if user is None:
            raise ApiError(401, "Invalid username or password")
        self.write_json(self.platform.tokens.issue(user))


class RefreshTokenHandler(ApiHandler):
    async def post(self) -> None:
        body = self.json_body()
        token = body.get("refreshToken") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise ApiError(400, "body must have a 'refreshToken' string")
        user = self.user_for_claims(self.platform.tokens.verify(token, refresh=True))
        self.write_json(self.platform.tokens.issue(user))


class CurrentUserHandler(ApiHandler):
    def get(self) -> None:
        self.write_json(self.require_user().to_json())


class LogoutHandler(ApiHandler):
    def post(self) -> None:
        # JWTs are stateless, as in ThingsBoard: the client drops them.
        self.require_user()
        self.set_status(200)
        self.finish()
