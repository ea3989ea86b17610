"""Who may do what with a device or a customer: the permission rules every REST route,
WebSocket subscription and page applies.

Pure functions of a user and an entity (no database), so a rule reads in one place and can
be tested without one. The registry's ``check_device``/``check_customer`` fetch the entity and
call :func:`require_device`/:func:`require_customer`. Disabled users and SYS_ADMIN see no
tenant data.
"""

from __future__ import annotations

from ..errors import PermissionDenied
from .models import CUSTOMER_USER, TENANT_ADMIN, Customer, Device, User

#: ThingsBoard's wording for a 403 (clients match on it).
DENIED = "You don't have permission to perform this operation!"


def can_read(user: User | None, device: Device) -> bool:
    """TENANT_ADMIN: devices of its tenant; CUSTOMER_USER: its customer's devices;
    SYS_ADMIN: none."""
    if user is None or not user.enabled:
        return False
    if user.authority == TENANT_ADMIN:
        return bool(user.tenant_id == device.tenant_id)
    if user.authority == CUSTOMER_USER:
        return (
            user.tenant_id == device.tenant_id
            and user.customer_id is not None
            and device.customer_id == user.customer_id
        )
    return False


def can_write(user: User | None, device: Device) -> bool:
    """Write telemetry/attributes of the device: same rule as reading (customer users may
    post server-side telemetry of their own devices)."""
    return can_read(user, device)


def can_manage(user: User | None, device: Device) -> bool:
    """Update, delete, (un)assign the device or read/change its credentials: only a
    TENANT_ADMIN of the device's tenant."""
    return user is not None and user.enabled and user.authority == TENANT_ADMIN and user.tenant_id == device.tenant_id


def can_read_customer(user: User | None, customer: Customer) -> bool:
    """TENANT_ADMIN: customers of its tenant; CUSTOMER_USER: its own customer."""
    if user is None or not user.enabled:
        return False
    if user.authority == TENANT_ADMIN:
        return bool(user.tenant_id == customer.tenant_id)
    if user.authority == CUSTOMER_USER:
        return user.tenant_id == customer.tenant_id and user.customer_id == customer.id
    return False


def can_manage_customer(user: User | None, customer: Customer) -> bool:
    """Change the customer or assign devices to it: only a TENANT_ADMIN of its tenant."""
    return user is not None and user.enabled and user.authority == TENANT_ADMIN and user.tenant_id == customer.tenant_id


def require_device(user: User | None, device: Device, write: bool = False, *, manage: bool = False) -> Device:
    """``device`` if ``user`` may read it (``write``: post telemetry; ``manage``: change it),
    else PermissionDenied."""
    if manage:
        allowed = can_manage(user, device)
    elif write:
        allowed = can_write(user, device)
    else:
        allowed = can_read(user, device)
    if not allowed:
        raise PermissionDenied(DENIED)
    return device


def require_customer(user: User | None, customer: Customer, write: bool = False) -> Customer:
    """``customer`` if ``user`` may read it (``write``: change it), else PermissionDenied."""
    allowed = (can_manage_customer if write else can_read_customer)(user, customer)
    if not allowed:
        raise PermissionDenied(DENIED)
    return customer


# --------------------------------------------------------------------------- attribute scopes
#: scopes a user may write over REST (CLIENT_SCOPE is what the device reports: ThingsBoard's
#: REST save answers 400 "Invalid attribute scope" to it)
USER_WRITABLE_SCOPES = ("SERVER_SCOPE", "SHARED_SCOPE")
#: scopes a device reads (its own client attributes and the shared ones; never SERVER_SCOPE)
DEVICE_READABLE_SCOPES = ("CLIENT_SCOPE", "SHARED_SCOPE")
#: the one scope a device writes
DEVICE_WRITABLE_SCOPE = "CLIENT_SCOPE"


def can_read_attributes(user: User | None, device: Device, scope: str | None = None) -> bool:
    """Any scope of a device the user may read (ThingsBoard's READ_ATTRIBUTES: tenant admins
    on their tenant's devices, customer users on their customer's devices)."""
    return can_read(user, device)


def can_write_attributes(user: User | None, device: Device, scope: str) -> bool:
    """SERVER_SCOPE or SHARED_SCOPE of a device the user may write: tenant admins on their
    tenant's devices and, as ThingsBoard's WRITE_ATTRIBUTES for customer users, customer users
    on their own customer's devices (dashboards' settings widgets write shared attributes)."""
    return scope in USER_WRITABLE_SCOPES and can_write(user, device)


def can_delete_attributes(user: User | None, device: Device, scope: str) -> bool:
    """Delete keys of any scope (ThingsBoard allows CLIENT_SCOPE too) of a writable device."""
    return can_write(user, device)


def require_attribute_access(user: User | None, device: Device, scope: str | None, action: str) -> Device:
    """``device`` if ``user`` may ``action`` ("read", "write", "delete") ``scope`` of it, else
    PermissionDenied (the scope itself is validated by the caller)."""
    if action == "read":
        allowed = can_read_attributes(user, device, scope)
    elif action == "write":
        allowed = scope is not None and can_write_attributes(user, device, scope)
    else:
        allowed = scope is not None and can_delete_attributes(user, device, scope)
    if not allowed:
        raise PermissionDenied(DENIED)
    return device


def gateway_may_act_for(gateway: Device, device: Device) -> bool:
    """Whether a gateway device may read ``device``'s attributes (and hear its shared changes):
    a device it created (``additionalInfo.lastConnectedGateway``), or one of its tenant that
    belongs to the same owner as the gateway — any device for a gateway of the tenant itself,
    only its own customer's devices for a customer's gateway (never another customer's)."""
    if gateway.tenant_id != device.tenant_id:
        return False
    if (device.additional_info or {}).get("lastConnectedGateway") == gateway.id:
        return True
    return gateway.customer_id is None or device.customer_id == gateway.customer_id


def can_read_user(user: User | None, other: User) -> bool:
    """TENANT_ADMIN: users of its tenant; CUSTOMER_USER: itself only (ThingsBoard's rule)."""
    if user is None or not user.enabled:
        return False
    if user.authority == TENANT_ADMIN:
        return user.tenant_id is not None and user.tenant_id == other.tenant_id
    return user.id == other.id


def can_manage_user(user: User | None, other: User) -> bool:
    """Create, change or delete a user: a TENANT_ADMIN of its tenant (never SYS_ADMIN accounts)."""
    return (
        user is not None
        and user.enabled
        and user.authority == TENANT_ADMIN
        and other.tenant_id is not None
        and user.tenant_id == other.tenant_id
    )


def require_user(user: User | None, other: User, write: bool = False) -> User:
    """``other`` if ``user`` may read it (``write``: change it), else PermissionDenied."""
    if not (can_manage_user if write else can_read_user)(user, other):
        raise PermissionDenied(DENIED)
    return other
