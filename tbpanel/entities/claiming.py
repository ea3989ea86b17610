"""Device claiming (ThingsBoard's "claiming devices"): a device announces a secret, and a
customer user who knows it takes the device for its customer.

1. The device (HTTP ``POST /api/v1/{token}/claim``, MQTT ``v1/devices/me/claim``, CoAP) sends
   ``{"secretKey", "durationMs"}``; :func:`register_claim` keeps the claim until
   ``now + durationMs`` (ThingsBoard's default: 24 h) — only while the device is assigned to no
   customer. A new claim of the same device replaces the previous one.
2. A customer user ``POST /api/customer/device/{deviceName}/claim`` ``{"secretKey"}``;
   :func:`claim_device` assigns the device to the user's customer if the secret matches and
   the claim has not expired, and answers like ThingsBoard: SUCCESS with the device, else
   FAILURE (no claim, wrong secret, expired) or CLAIMED (already assigned).
3. ``DELETE`` on the same path (:func:`reclaim_device`) unassigns the device so it can be
   claimed again: by a TENANT_ADMIN, or a customer user for its own customer's device.

The claim is stored like ThingsBoard stores it, as the SERVER_SCOPE attribute ``claimingData``
(no migration; deleted with the device; never visible to the device, which cannot read the
server scope) — but with the secret scrypt-hashed, never in clear: ``{"secretKeyHash",
"expirationTime"}``. The device is looked up by name within the user's own tenant, so a user
of another tenant can never claim it (404). Secrets are never logged.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import Conflict, InvalidInput, NotFound, PermissionDenied
from .access import DENIED
from .models import CUSTOMER_USER, TENANT_ADMIN, Customer, Device, User
from .passwords import MAX_PASSWORD_LENGTH, hash_password, verify_password

if TYPE_CHECKING:
    from .registry import EntityRegistry

#: The SERVER_SCOPE attribute holding a device's pending claim (ThingsBoard's name).
CLAIM_DATA_KEY = "claimingData"
SCOPE = "SERVER_SCOPE"
#: How long a claim stays open when the device gives no (or a non-positive) ``durationMs``:
#: ThingsBoard's ``security.claim.duration`` default, 24 hours.
DEFAULT_DURATION_MS = 86_400_000
#: Latest expiration accepted (9999-12-31, the store's latest timestamp).
_TS_MAX = 253_402_300_799_999
#: ThingsBoard's 404 text (its ``checkNotNull``).
NOT_FOUND = "Requested item wasn't found!"


class ClaimResponse(enum.Enum):
    """ThingsBoard's ClaimResponse."""

    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    CLAIMED = "CLAIMED"


@dataclass(frozen=True)
class ClaimResult:
    response: ClaimResponse
    device: Device | None = None  # the claimed device, on SUCCESS


def secret_key(value: Any, what: str = "secretKey") -> str:
    """A claim secret as sent: a string (absent or null: ThingsBoard's default, empty)."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidInput(f"'{what}' must be a string")
    if len(value) > MAX_PASSWORD_LENGTH:
        raise InvalidInput(f"'{what}' is longer than {MAX_PASSWORD_LENGTH} characters")
    return value


def device_claim_request(body: bytes) -> tuple[str, int | None]:
    """``(secretKey, durationMs)`` of a device's claim payload; an empty body means the defaults.
    A JSON string holding the object is unwrapped (``tb-rest-client``'s ``claim_device`` takes
    the body as a str and encodes it once more; ThingsBoard would silently use the defaults).
    Raises PayloadError (malformed JSON) or InvalidInput (wrong shapes)."""
    from tbpanel.store.payload import loads  # lazy: keep `entities` import light

    if not body.strip():
        return "", None
    data = loads(body)
    if isinstance(data, str) and data.lstrip().startswith("{"):  # tb-rest-client sends its str body JSON-encoded
        data = loads(data)
    if not isinstance(data, dict):
        raise InvalidInput('claim payload must be a JSON object {"secretKey": "...", "durationMs": ms}')
    duration = data.get("durationMs")
    if duration is not None and (isinstance(duration, bool) or not isinstance(duration, int)):
        raise InvalidInput("'durationMs' must be an integer (milliseconds)")
    return secret_key(data.get("secretKey")), duration


def register_claim(registry: EntityRegistry, device_id: str, secret: str, duration_ms: int | None, now: int) -> int:
    """Open (or replace) the device's claim; returns its expiration time (epoch ms). Conflict
    (400, ThingsBoard's message) when the device already belongs to a customer."""
    from tbpanel.store.values import ValueType

    duration = duration_ms if duration_ms is not None and duration_ms > 0 else DEFAULT_DURATION_MS
    expiration = now + duration
    if expiration > _TS_MAX:
        raise InvalidInput(f"'durationMs' {duration} puts the claim's expiration beyond year 9999")
    stored = json.dumps({"secretKeyHash": hash_password(secret), "expirationTime": expiration})  # slow: no lock
    with registry.transaction():
        device = registry.get_device(device_id)
        if device.customer_id:
            raise Conflict(f"Device [{device.name}] has been already claimed!")
        registry.save_attributes(device.id, SCOPE, [(now, CLAIM_DATA_KEY, int(ValueType.JSON), stored)])
    return expiration


def _claim_data(registry: EntityRegistry, device_id: str) -> tuple[str, int, str] | None:
    """``(secret hash, expirationTime, stored text)`` of the device's claim; None when it has
    none (or one that is not ours, e.g. a tenant admin wrote the attribute by hand)."""
    found = registry.get_attributes(device_id, SCOPE, [CLAIM_DATA_KEY])
    if not found:
        return None
    text = found[0]["value"]
    try:
        data = json.loads(text) if isinstance(text, str) else {}
        digest, expiration = data["secretKeyHash"], data["expirationTime"]
    except (ValueError, TypeError, KeyError):
        return None
    if not isinstance(digest, str) or not isinstance(expiration, int) or isinstance(expiration, bool):
        return None
    return digest, expiration, text


def find_by_name(registry: EntityRegistry, user: User, device_name: Any) -> Device:
    """The device of that name in the user's own tenant (404 for any other tenant's)."""
    if not isinstance(device_name, str) or not device_name:
        raise InvalidInput("deviceName must not be empty")
    device = registry.find_device(user.tenant_id, device_name) if user.tenant_id else None
    if device is None:
        raise NotFound(NOT_FOUND)
    return device


def claim_device(registry: EntityRegistry, user: User, device_name: str, secret: str, now: int) -> ClaimResult:
    """A customer user claims the named device of its tenant with ``secret`` (see module doc)."""
    if user.authority != CUSTOMER_USER or not user.customer_id or not user.enabled:
        raise PermissionDenied(DENIED)
    device = find_by_name(registry, user, device_name)
    claim = _claim_data(registry, device.id)
    if claim is None:
        return ClaimResult(ClaimResponse.CLAIMED if device.customer_id else ClaimResponse.FAILURE)
    digest, expiration, text = claim
    if now > expiration or not verify_password(secret, digest):  # scrypt: outside the lock
        return ClaimResult(ClaimResponse.FAILURE)
    with registry.transaction():
        current = _claim_data(registry, device.id)
        if current is None or current[2] != text:  # claimed (or re-registered) meanwhile
            device = registry.get_device(device.id)
            return ClaimResult(ClaimResponse.CLAIMED if device.customer_id else ClaimResponse.FAILURE)
        registry.delete_attributes(device.id, SCOPE, [CLAIM_DATA_KEY])
        device = registry.get_device(device.id)
        if device.customer_id:
            return ClaimResult(ClaimResponse.CLAIMED)
        return ClaimResult(ClaimResponse.SUCCESS, registry.assign_device(device.id, user.customer_id))


def reclaim_device(registry: EntityRegistry, user: User, device_name: str) -> Customer | None:
    """Unassign the named device and drop any pending claim, so it can be claimed again;
    returns the customer it was taken from (None if it had none). A TENANT_ADMIN of the
    device's tenant may; a customer user only for its own customer's device."""
    if user.authority not in (TENANT_ADMIN, CUSTOMER_USER) or not user.enabled:
        raise PermissionDenied(DENIED)
    device = find_by_name(registry, user, device_name)
    if user.authority == CUSTOMER_USER and (not user.customer_id or device.customer_id != user.customer_id):
        raise PermissionDenied(DENIED)
    with registry.transaction():
        device = registry.get_device(device.id)
        registry.delete_attributes(device.id, SCOPE, [CLAIM_DATA_KEY])
        if not device.customer_id:
            return None
        customer = registry.get_customer(device.customer_id)
        registry.unassign_device(device.id)
        return customer
