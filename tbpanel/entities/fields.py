"""Field rules of the entity registry: what an id, a name, an email, a password, an access
token, ``additionalInfo``, a page or a sort order must look like.

Every function takes the value as it came from a caller (REST JSON, CLI, notebook), checks it
and returns it in the form the database stores, or raises :class:`InvalidInput` (HTTP 400)
with a message that names the field. Nothing here touches the database, so the rules are the
same for every table and can be tested without one.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from ..errors import InvalidInput
from . import passwords
from .models import NULL_UUID, Entity

MAX_NAME_LENGTH = 255
MAX_TOKEN_LENGTH = 128
MAX_EMAIL_LENGTH = 255

_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+$")
_TOKEN_BAD_CHARS = re.compile(r"[\s/?#%\\\x00-\x1f\x7f]")


def canonical_id(value: Any, what: str) -> str:
    """Canonical UUID string from a str / UUID / ThingsBoard id dict / entity object."""
    if isinstance(value, Entity):
        value = value.id
    elif isinstance(value, dict):
        value = value.get("id")
    if isinstance(value, uuid.UUID):
        return str(value)
    if not isinstance(value, str):
        raise InvalidInput(f"{what} id must be a UUID string, got {type(value).__name__}")
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidInput(f"Invalid {what} id {value[:60]!r}: not a UUID") from None


def optional_customer(value: Any) -> str | None:
    """A customer id, or None for "no customer" (None or ThingsBoard's NULL UUID)."""
    if value is None:
        return None
    cid = canonical_id(value, "customer")
    return None if cid == NULL_UUID else cid


def text(value: Any, what: str, *, max_len: int = MAX_NAME_LENGTH) -> str:
    """A required name or title: a non-blank string without NUL, at most ``max_len`` long."""
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise InvalidInput(f"{what} must not be empty")
    if len(value) > max_len:
        raise InvalidInput(f"{what} is longer than {max_len} characters")
    if "\x00" in value:
        raise InvalidInput(f"{what} must not contain NUL characters")
    return value


def optional_text(value: Any, what: str, *, max_len: int = MAX_NAME_LENGTH) -> str | None:
    """An optional string field (label, contact field, first name): None or a short string."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a string, got {type(value).__name__}")
    if len(value) > max_len:
        raise InvalidInput(f"{what} is longer than {max_len} characters")
    return value


def info_json(value: Any, what: str = "additionalInfo") -> str | None:
    """additionalInfo as JSON text (a JSON object or None)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidInput(f"{what} must be a JSON object, got {type(value).__name__}")
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{what} is not valid JSON: {exc}") from None


def load_info(stored: str | None) -> dict[str, Any] | None:
    """The stored additionalInfo text back as a dict (None stays None)."""
    if stored is None:
        return None
    info: dict[str, Any] = json.loads(stored)
    return info


def email(value: Any) -> tuple[str, str]:
    """(email as given but stripped, lower-cased key used for uniqueness)."""
    if not isinstance(value, str):
        raise InvalidInput(f"email must be a string, got {type(value).__name__}")
    address = value.strip()
    if not address:
        raise InvalidInput("email must not be empty")
    if len(address) > MAX_EMAIL_LENGTH or not _EMAIL_RE.match(address):
        raise InvalidInput(f"{address[:80]!r} is not a valid email address")
    return address, address.lower()


def password(value: Any) -> str:
    """A password to hash: a non-empty string no longer than the hasher accepts."""
    if not isinstance(value, str):
        raise InvalidInput(f"password must be a string, got {type(value).__name__}")
    if not value:
        raise InvalidInput("password must not be empty")
    if len(value) > passwords.MAX_PASSWORD_LENGTH:
        raise InvalidInput(f"password is longer than {passwords.MAX_PASSWORD_LENGTH} characters")
    return value


def access_token(value: Any) -> str:
    """A device access token: it travels in URL paths and MQTT user names, so no whitespace,
    control characters or URL delimiters."""
    if not isinstance(value, str):
        raise InvalidInput(f"access token must be a string, got {type(value).__name__}")
    if not value:
        raise InvalidInput("access token must not be empty")
    if len(value) > MAX_TOKEN_LENGTH:
        raise InvalidInput(f"access token is longer than {MAX_TOKEN_LENGTH} characters")
    if _TOKEN_BAD_CHARS.search(value):
        raise InvalidInput("access token must not contain whitespace, control characters or any of / ? # % \\")
    return value


def paging(page: Any, page_size: Any) -> tuple[int, int]:
    """``(page, page_size)`` of a list request: integers, page >= 0, page size >= 1."""
    if isinstance(page, bool) or not isinstance(page, int) or page < 0:
        raise InvalidInput(f"page must be an integer >= 0, got {page!r}")
    if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
        raise InvalidInput(f"pageSize must be an integer >= 1, got {page_size!r}")
    return page, page_size


def order(sort_property: str, sort_order: str, allowed: dict[str, str]) -> str:
    """An ``ORDER BY`` clause from ThingsBoard's sortProperty/sortOrder. ``allowed`` maps the
    API's property names to SQL, so a caller can never sort by (and so probe) another column;
    ``id`` breaks ties so that pages do not overlap."""
    column = allowed.get(sort_property)
    if column is None:
        raise InvalidInput(f"Unsupported sortProperty {sort_property!r}; use one of {', '.join(allowed)}")
    direction = str(sort_order).upper()
    if direction not in ("ASC", "DESC"):
        raise InvalidInput(f"sortOrder must be ASC or DESC, got {sort_order!r}")
    return f"{column} {direction}, id {direction}"


def like(search: str) -> str:
    """A ``LIKE ... ESCAPE '\\'`` pattern matching ``search`` literally as a substring."""
    escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"
