"""Tenants, customers, users, devices, passwords and JWT tokens (SQLite, no Panel import)."""

from __future__ import annotations

from ..errors import (
    AuthError,
    Conflict,
    EntityError,
    InvalidInput,
    NotFound,
    PermissionDenied,
    TokenExpired,
    TokenInvalid,
    TooManyAttempts,
)
from .models import (
    AUTHORITIES,
    CUSTOMER_USER,
    NULL_UUID,
    SYS_ADMIN,
    TENANT_ADMIN,
    Customer,
    Device,
    Entity,
    Tenant,
    User,
    entity_id_json,
)
from .passwords import hash_password, verify_password
from .profiles import PROVISION_TYPES, DeviceProfile
from .registry import ATTRIBUTE_SCOPES, DB_FILE, EntityRegistry, generate_access_token, init
from .throttle import LoginThrottle
from .tokens import REFRESH_SCOPE, SECRET_FILE, TokenIssuer, load_or_create_secret

__all__ = [
    "AUTHORITIES",
    "ATTRIBUTE_SCOPES",
    "CUSTOMER_USER",
    "DB_FILE",
    "NULL_UUID",
    "REFRESH_SCOPE",
    "SECRET_FILE",
    "SYS_ADMIN",
    "TENANT_ADMIN",
    "AuthError",
    "Conflict",
    "EntityError",
    "InvalidInput",
    "NotFound",
    "PermissionDenied",
    "TokenExpired",
    "TokenInvalid",
    "TooManyAttempts",
    "LoginThrottle",
    "Customer",
    "Device",
    "DeviceProfile",
    "PROVISION_TYPES",
    "Entity",
    "Tenant",
    "User",
    "entity_id_json",
    "EntityRegistry",
    "TokenIssuer",
    "generate_access_token",
    "hash_password",
    "init",
    "load_or_create_secret",
    "verify_password",
]
