"""Device provisioning: a device that knows its profile's provisionDeviceKey/Secret asks for
an access token (ThingsBoard's ``DeviceProvisionServiceImpl``, HTTP and MQTT alike).

ThingsBoard's answers, which tb-mqtt-client and the docs' scripts expect:
``{"status": "SUCCESS", "credentialsType": "ACCESS_TOKEN", "credentialsValue": token}``;
``{"status": "NOT_FOUND", "errorMsg": "Provision data was not found!"}`` when the key or
secret is missing, unknown, wrong, or the profile's provisioning is DISABLED;
``{"status": "FAILURE", "errorMsg": "Failed to provision device!"}`` when the strategy refuses:
ALLOW_CREATE_NEW_DEVICES and a device of that name exists already, or
CHECK_PRE_PROVISIONED_DEVICES and no device of that name and profile exists or it was
provisioned before (its SERVER_SCOPE attribute ``provisionState`` is ``provisioned``).

A new device may bring its own token (``"credentialsType": "ACCESS_TOKEN", "token": T``, as
tb-mqtt-client sends it); other credential types (MQTT_BASIC, X509) are a FAILURE here.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from typing import TYPE_CHECKING, Any

from ..clock import now_ms
from ..errors import EntityError
from ..store.payload import parse_attributes
from .profiles import ALLOW_CREATE_NEW_DEVICES, CHECK_PRE_PROVISIONED_DEVICES

if TYPE_CHECKING:
    from .registry import EntityRegistry

log = logging.getLogger("tbpanel.provision")

NOT_FOUND = {"status": "NOT_FOUND", "errorMsg": "Provision data was not found!"}
FAILURE = {"status": "FAILURE", "errorMsg": "Failed to provision device!"}
PROVISION_STATE = "provisionState"
PROVISIONED = "provisioned"


def provision_device(registry: EntityRegistry, request: Any) -> dict[str, Any]:
    """The answer to one provisioning request (a decoded JSON body; anything else is NOT_FOUND)."""
    if not isinstance(request, dict):
        return dict(NOT_FOUND)
    key, secret = request.get("provisionDeviceKey"), request.get("provisionDeviceSecret")
    name = request.get("deviceName")
    if not isinstance(key, str) or not isinstance(secret, str) or not key or not secret:
        return dict(NOT_FOUND)
    if name is not None and (not isinstance(name, str) or not name.strip()):
        return dict(FAILURE)
    profile = registry.device_profile_by_provision_key(key)
    if (
        profile is None
        or profile.provision_device_secret is None
        or profile.provision_type not in (ALLOW_CREATE_NEW_DEVICES, CHECK_PRE_PROVISIONED_DEVICES)
        or not hmac.compare_digest(profile.provision_device_secret.encode(), secret.encode())
    ):
        return dict(NOT_FOUND)
    ctype, token = request.get("credentialsType"), request.get("token")
    if ctype not in (None, "ACCESS_TOKEN") or (token is not None and not isinstance(token, str)):
        log.info("provisioning refused: credentialsType %r is not supported (ACCESS_TOKEN only)", str(ctype)[:40])
        return dict(FAILURE)
    name = name.strip() if name else secrets.token_urlsafe(15)
    with registry.transaction():
        device = registry.find_device(profile.tenant_id, name)
        if profile.provision_type == ALLOW_CREATE_NEW_DEVICES:
            if device is not None:
                log.info("provisioning refused: device %r exists already (profile %s)", name, profile.id)
                return dict(FAILURE)
            try:
                device = registry.save_device(
                    profile.tenant_id, name, device_profile_id=profile.id, access_token=token or None
                )
            except EntityError as exc:  # a bad name, for instance
                log.info("provisioning refused: device %r: %s", name, exc)
                return dict(FAILURE)
        else:
            if device is None or device.device_profile_id != profile.id:
                log.info("provisioning refused: no pre-provisioned device %r in profile %s", name, profile.id)
                return dict(FAILURE)
            state = registry.get_attributes(device.id, "SERVER_SCOPE", [PROVISION_STATE])
            if state:
                log.info("provisioning refused: device %s was provisioned before", device.id)
                return dict(FAILURE)
        registry.save_attributes(device.id, "SERVER_SCOPE", parse_attributes({PROVISION_STATE: PROVISIONED}, now_ms()))
        token = registry.get_credentials(device.id)
    log.info("device %s provisioned through profile %s", device.id, profile.id)
    return {"status": "SUCCESS", "credentialsType": "ACCESS_TOKEN", "credentialsValue": token}
