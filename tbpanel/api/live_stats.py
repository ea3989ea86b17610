"""``GET /api/tbpanel/live/stats``: how many live subscriptions a tenant holds (WebSocket and page)."""

from __future__ import annotations

from ..live import LiveHub
from ..platform import Platform
from .base import ApiHandler


class LiveStatsHandler(ApiHandler):
    """``GET /api/tbpanel/live/stats`` (tenant admins): the tenant's live subscriptions.

    tbpanel's own endpoint: lets tests and operators see that closed sockets and pages leave
    nothing behind. Counts are per tenant, so they reveal nothing about other tenants.
    """

    def initialize(self, platform: Platform, live: LiveHub) -> None:  # type: ignore[override]
        super().initialize(platform)
        self.live = live

    def get(self) -> None:
        user = self.require_user()
        self.require_role(user, "TENANT_ADMIN")
        self.write_json(self.live.stats(user.tenant_id))
