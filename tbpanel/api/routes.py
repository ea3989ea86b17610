"""The URL table of the API, in one place (mounted via ``pn.serve(extra_patterns=...)``)."""
from __future__ import annotations

from ..live import LiveHub
from ..platform import Platform
from . import auth, device, entities, telemetry
from .websocket import websocket_patterns
from .models import model_patterns
from .alarms import alarm_patterns
from .base import ApiError, ApiHandler

_ID = r"([^/]+)"
_TEL = r"/api/plugins/telemetry/([A-Za-z_]+)/([^/]+)"


def device_patterns(platform: Platform) -> list[tuple]:
    """The device upload routes: the ingest hot path (see ``server.build_server``)."""
    p = {"platform": platform}
    return [
        (rf"/api/v1/{_ID}/telemetry/?", device.DeviceUploadHandler, dict(p, kind="telemetry")),
        (rf"/api/v1/{_ID}/attributes/?", device.DeviceUploadHandler, dict(p, kind="attributes")),
    ]


def api_patterns(platform: Platform, live: LiveHub | None = None) -> list[tuple]:
    """Every API route; ``live`` is the server's fan-out hub (one is made if not given)."""
    p = {"platform": platform}
    live = live if live is not None else LiveHub(platform.store)
    return [
        *device_patterns(platform),
        (r"/api/auth/login/?", auth.LoginHandler, p),
        (r"/api/auth/token/?", auth.RefreshTokenHandler, p),
        (r"/api/auth/user/?", auth.CurrentUserHandler, p),
        (r"/api/auth/logout/?", auth.LogoutHandler, p),
        (r"/api/device/?", entities.DeviceSaveHandler, p),
        (r"/api/device/types/?", entities.DeviceTypesHandler, p),
        (rf"/api/device/{_ID}/credentials/?", entities.DeviceCredentialsHandler, p),
        (rf"/api/device/{_ID}/?", entities.DeviceHandler, p),
        (r"/api/tenant/devices/?", entities.TenantDevicesHandler, p),
        (r"/api/customer/?", entities.CustomerSaveHandler, p),
        (r"/api/customers/?", entities.CustomersHandler, p),
        (rf"/api/customer/device/{_ID}/?", entities.UnassignDeviceHandler, p),
        (rf"/api/customer/{_ID}/devices/?", entities.CustomerDevicesHandler, p),
        (rf"/api/customer/{_ID}/device/{_ID}/?", entities.AssignDeviceHandler, p),
        (rf"/api/customer/{_ID}/?", entities.CustomerHandler, p),
        (rf"{_TEL}/keys/timeseries/?", telemetry.KeysHandler, p),
        (rf"{_TEL}/values/timeseries/history/?", telemetry.ValuesHandler, dict(p, history=True)),
        (rf"{_TEL}/values/timeseries/?", telemetry.ValuesHandler, p),
        (rf"{_TEL}/timeseries/delete/?", telemetry.DeleteTelemetryHandler, p),
        (rf"{_TEL}/timeseries/([A-Za-z_]+)/?", telemetry.SaveTelemetryHandler, p),
        (rf"{_TEL}/timeseries/([A-Za-z_]+)/(\d+)/?", telemetry.SaveTelemetryHandler, p),
        (rf"{_TEL}/keys/attributes/?", telemetry.AttributeKeysHandler, p),
        (rf"{_TEL}/keys/attributes/([A-Za-z_]+)/?", telemetry.AttributeKeysHandler, p),
        (rf"{_TEL}/values/attributes/?", telemetry.AttributeValuesHandler, p),
        (rf"{_TEL}/values/attributes/([A-Za-z_]+)/?", telemetry.AttributeValuesHandler, p),
        *model_patterns(platform),
        *alarm_patterns(platform),
        *websocket_patterns(platform, live),
        (r"/api/.*", NotFoundHandler, p),
    ]


class NotFoundHandler(ApiHandler):
    """Unknown API paths get ThingsBoard's JSON 404 instead of an HTML page."""

    def prepare(self) -> None:
        raise ApiError(404, f"No API route {self.request.method} {self.request.path}")
