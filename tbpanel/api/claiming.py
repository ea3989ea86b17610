"""Claiming routes (the rules are in :mod:`tbpanel.entities.claiming`).

- device: ``POST /api/v1/{token}/claim`` ``{"secretKey", "durationMs"}`` → 200 empty body
  once the claim is stored (400 if the device already belongs to a customer);
- customer user: ``POST /api/customer/device/{deviceName}/claim`` ``{"secretKey"}`` → 200
  ``{"device": Device, "response": "SUCCESS"}``, or 400 with the JSON string ``"FAILURE"`` /
  ``"CLAIMED"`` (ThingsBoard's DeviceController answers exactly so);
- ``DELETE /api/customer/device/{deviceName}/claim`` → 200 empty body: the device is
  unassigned and may be claimed again.
"""

from __future__ import annotations

from ..clock import now_ms
from ..entities import CUSTOMER_USER, claiming
from ..platform import Platform
from .base import ID, ApiError, ApiHandler, Route


class DeviceClaimHandler(ApiHandler):
    """The device announces that it may be claimed (its access token in the path)."""

    def body_limit(self) -> int:
        return self.platform.max_body_bytes

    async def post(self, token: str) -> None:
        device = self.device_of_token(token)
        limit = self.platform.max_body_bytes
        if len(self.request.body) > limit:
            raise ApiError(413, f"Payload of {len(self.request.body)} bytes exceeds the limit of {limit} bytes")
        secret, duration = claiming.device_claim_request(self.request.body)
        await self.in_thread(claiming.register_claim, self.platform.registry, device.id, secret, duration, now_ms())
        self.set_status(200)
        self.clear_header("Content-Type")
        self.finish()


class CustomerClaimHandler(ApiHandler):
    """A customer user claims a device by name; DELETE gives it back (re-claim)."""

    async def post(self, device_name: str) -> None:
        user = self.require_user()
        if user.authority != CUSTOMER_USER:
            raise ApiError(403, "You don't have permission to perform this operation!")
        body = self.json_object("claim") if self.request.body.strip() else {}
        secret = claiming.secret_key(body.get("secretKey"))
        result = await self.in_thread(
            claiming.claim_device, self.platform.registry, user, device_name, secret, now_ms()
        )
        if result.response is claiming.ClaimResponse.SUCCESS:
            assert result.device is not None  # SUCCESS always carries the claimed device
            self.write_json({"device": result.device.to_json(), "response": result.response.value})
        else:
            self.write_json(result.response.value, status=400)

    async def delete(self, device_name: str) -> None:
        user = self.require_user()
        await self.in_thread(claiming.reclaim_device, self.platform.registry, user, device_name)
        self.set_status(200)
        self.clear_header("Content-Type")
        self.finish()


def claiming_patterns(platform: Platform) -> list[Route]:
    """The claiming routes (device and customer side), mounted right after the device uploads."""
    p = {"platform": platform}
    return [
        (rf"/api/v1/{ID}/claim/?", DeviceClaimHandler, p),
        (rf"/api/customer/device/{ID}/claim/?", CustomerClaimHandler, p),
    ]
