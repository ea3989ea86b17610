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
