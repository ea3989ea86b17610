"""``POST /api/v1/provision``: a device exchanges its profile's provisioning key and secret for
an access token (ThingsBoard's ``DeviceApiController.provisionDevice``).

As in ThingsBoard, every well-formed request is answered 200 with a JSON status
(``SUCCESS`` / ``NOT_FOUND`` / ``FAILURE``, see :mod:`tbpanel.entities.provisioning`); only a
body that is not a JSON object gets 400. The request carries no user or device credentials.
"""

from __future__ import annotations

from typing import Any

from ..entities.provisioning import provision_device
from ..platform import Platform
from .base import ApiHandler, Route


class ProvisionHandler(ApiHandler):
    async def post(self) -> None:
        request = self.json_object("provision request")
        answer = await self.in_thread(provision_device, self.platform.registry, request)
        self.write_json(answer)


def provision_patterns(platform: Platform) -> list[Route]:
    p: dict[str, Any] = {"platform": platform}
    return [(r"/api/v1/provision/?", ProvisionHandler, p)]
