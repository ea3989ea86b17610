"""The URL table of the API, in one place: ``server.build_server`` mounts exactly
:func:`api_patterns` with ``pn.serve(extra_patterns=...)``, and the isolation matrix test
enumerates the same list, so a route cannot be served without a row there."""

from __future__ import annotations

from ..live import LiveHub
from ..platform import Platform
from . import attributes, auth, device, device_attributes, device_rpc, entities, telemetry
from .alarms import alarm_patterns
from .base import ID, ApiError, ApiHandler, Route
from .claiming import claiming_patterns
from .dashboards import dashboard_patterns
from .entity_query import entity_query_patterns
from .fleet_query import FleetQueryHandler
from .live_stats import LiveStatsHandler
from .models import model_patterns
from .profiles import profile_patterns
from .provision import provision_patterns
from .rpc import rpc_patterns
from .rule_chains import rule_chain_patterns
from .users import user_patterns
from .ws import websocket_patterns

_TEL = rf"/api/plugins/telemetry/([A-Za-z_]+)/{ID}"


def api_patterns(platform: Platform, live: LiveHub | None = None) -> list[Route]:
    """Every API route; ``live`` is the server's fan-out hub (one is made if not given)."""
    p = {"platform": platform}
    live = live if live is not None else LiveHub(platform.store)
    return [
        # first: device uploads are the ingest hot path, and tornado tries rules in order
        (rf"/api/v1/{ID}/telemetry/?", device.DeviceUploadHandler, dict(p, kind="telemetry")),
        (rf"/api/v1/{ID}/attributes/?", device.DeviceAttributesHandler, dict(p, kind="attributes")),
        # attributes: the device's shared-attribute long poll (issue 16 item 1)
        (rf"/api/v1/{ID}/attributes/updates/?", device_attributes.AttributeUpdatesHandler, p),
        # claiming (device: /api/v1/{token}/claim; customer: /api/customer/device/{name}/claim)
        *claiming_patterns(platform),
        # rpc: the device side (long poll, answers, device -> server requests)
        (rf"/api/v1/{ID}/rpc/?", device_rpc.DeviceRpcHandler, p),
        (rf"/api/v1/{ID}/rpc/{ID}/?", device_rpc.DeviceRpcReplyHandler, p),
        (r"/api/auth/login/?", auth.LoginHandler, p),
        (r"/api/auth/token/?", auth.RefreshTokenHandler, p),
        (r"/api/auth/user/?", auth.CurrentUserHandler, p),
        (r"/api/auth/logout/?", auth.LogoutHandler, p),
        # device profiles, device infos, users, provisioning (issue 16 items 3, 5, 6); before
        # /api/device/{id} and /api/customer/{id}, whose {id} would take their literal segments
        *provision_patterns(platform),
        # dashboards (issue 18 items 1, 2): before /api/customer/{id} and /api/owner/.../DEVICE/...
        *dashboard_patterns(platform),
        (r"/api/device/credentials/?", entities.UpdateCredentialsHandler, p),
        (r"/api/device-with-credentials/?", entities.DeviceWithCredentialsHandler, p),
        (rf"/api/device/info/{ID}/?", entities.DeviceInfoHandler, p),
        (r"/api/tenant/device/?", entities.TenantDeviceByNameHandler, p),
        (r"/api/tenant/deviceInfos/?", entities.TenantDeviceInfosHandler, p),
        (r"/api/deviceInfos/all/?", entities.TenantDeviceInfosHandler, p),
        (rf"/api/customer/{ID}/deviceInfos/?", entities.CustomerDeviceInfosHandler, p),
        (r"/api/devices/?", entities.DevicesByIdsHandler, p),
        (r"/api/user/devices/?", entities.UserDevicesHandler, p),
        (rf"/api/owner/([A-Z_]+)/{ID}/([A-Z_]+)/{ID}/?", entities.OwnerHandler, p),
        (rf"/api/customer/{ID}/title/?", entities.CustomerTitleHandler, p),
        (rf"/api/customer/{ID}/shortInfo/?", entities.CustomerTitleHandler, dict(p, short=True)),
        (rf"/api/customer/info/{ID}/?", entities.CustomerInfoHandler, p),
        (r"/api/tenant/customers/?", entities.TenantCustomerByTitleHandler, p),
        (r"/api/customers/list/?", entities.CustomersByIdsHandler, p),
        (r"/api/customerInfos/all/?", entities.UserCustomersHandler, p),
        (r"/api/user/customers/?", entities.UserCustomersHandler, p),
        *profile_patterns(platform),
        *user_patterns(platform),
        (r"/api/device/?", entities.DeviceSaveHandler, p),
        (r"/api/device/types/?", entities.DeviceTypesHandler, p),
        (rf"/api/device/{ID}/credentials/?", entities.DeviceCredentialsHandler, p),
        (rf"/api/device/{ID}/?", entities.DeviceHandler, p),
        (r"/api/tenant/devices/?", entities.TenantDevicesHandler, p),
        (r"/api/customer/?", entities.CustomerSaveHandler, p),
        (r"/api/customers/?", entities.CustomersHandler, p),
        (rf"/api/customer/device/{ID}/?", entities.UnassignDeviceHandler, p),
        (rf"/api/customer/{ID}/devices/?", entities.CustomerDevicesHandler, p),
        (rf"/api/customer/{ID}/device/{ID}/?", entities.AssignDeviceHandler, p),
        (rf"/api/customer/{ID}/?", entities.CustomerHandler, p),
        (rf"{_TEL}/keys/timeseries/?", telemetry.KeysHandler, p),
        (rf"{_TEL}/values/timeseries/history/?", telemetry.ValuesHandler, dict(p, history=True)),
        (rf"{_TEL}/values/timeseries/?", telemetry.ValuesHandler, p),
        (rf"{_TEL}/timeseries/delete/?", telemetry.DeleteTelemetryHandler, p),
        (rf"{_TEL}/timeseries/([A-Za-z_]+)/?", telemetry.SaveTelemetryHandler, p),
        (rf"{_TEL}/timeseries/([A-Za-z_]+)/(\d+)/?", telemetry.SaveTelemetryHandler, p),
        # attributes (issue 16 item 1): keys, values, save (three path forms) and delete
        (rf"{_TEL}/keys/attributes/?", attributes.AttributeKeysHandler, p),
        (rf"{_TEL}/keys/attributes/([A-Za-z_]+)/?", attributes.AttributeKeysHandler, p),
        (rf"{_TEL}/values/attributes/?", attributes.AttributeValuesHandler, p),
        (rf"{_TEL}/values/attributes/([A-Za-z_]+)/?", attributes.AttributeValuesHandler, p),
        (rf"{_TEL}/attributes/{attributes.SCOPE}/?", attributes.SaveAttributesHandler, p),
        (rf"{_TEL}/{attributes.SCOPE}/?", attributes.ScopeAttributesHandler, p),
        (rf"/api/plugins/telemetry/{ID}/{attributes.SCOPE}/?", attributes.ScopeAttributesHandler, p),
        *model_patterns(platform),
        *alarm_patterns(platform),
        *entity_query_patterns(platform),
        *rpc_patterns(platform),  # rpc: REST (send, persistent requests)
        *rule_chain_patterns(platform),  # rule chains (issue 17): ThingsBoard's routes and tbpanel's extras
        *websocket_patterns(platform, live),
        (r"/api/tbpanel/live/stats/?", LiveStatsHandler, {"platform": platform, "live": live}),
        (r"/api/tbpanel/telemetry/query/?", FleetQueryHandler, p),
        (r"/api/.*", NotFoundHandler, p),
    ]


class NotFoundHandler(ApiHandler):
    """Unknown API paths get ThingsBoard's JSON 404 instead of an HTML page."""

    def prepare(self) -> None:
        raise ApiError(404, f"No API route {self.request.method} {self.request.path}")
