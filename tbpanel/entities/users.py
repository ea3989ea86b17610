"""Users: accounts that log in, with one authority each (SYS_ADMIN, TENANT_ADMIN or
CUSTOMER_USER) and a scrypt password hash.

Emails are unique case-insensitively (``email_key`` is the lower-cased address). Hashing and
verification (tens of milliseconds by design) run outside the registry lock.
"""

from __future__ import annotations

import uuid
from typing import Any

from ..clock import now_ms
from ..errors import Conflict, InvalidInput, NotFound
from . import fields, passwords
from .models import AUTHORITIES, CUSTOMER_USER, SYS_ADMIN, TENANT_ADMIN, User
from .tables import Tables

_USER_COLS = (
    "id, created_time, tenant_id, customer_id, email, authority, first_name, last_name, enabled, additional_info"
)
_USER_SORT = {
    "createdTime": "created_time",
    "email": "email_key",
    "firstName": "first_name COLLATE NOCASE",
    "lastName": "last_name COLLATE NOCASE",
}


def user_from_row(row: tuple[Any, ...]) -> User:
    return User(  # type: ignore[no-untyped-call]  # param's constructors are untyped
        id=row[0],
        created_time=row[1],
        tenant_id=row[2],
        customer_id=row[3],
        email=row[4],
        name=row[4],
        authority=row[5],
        first_name=row[6],
        last_name=row[7],
        enabled=bool(row[8]),
        additional_info=fields.load_info(row[9]),
    )


def _owner(authority: str, tenant_id: Any, cid: str | None) -> tuple[str | None, str | None]:
    """(tenant id, customer id) of a new user, checked against its authority."""
    if authority == SYS_ADMIN:
        if tenant_id is not None or cid is not None:
            raise InvalidInput("a SYS_ADMIN user belongs to no tenant and no customer")
        return None, None
    if tenant_id is None:
        raise InvalidInput(f"a {authority} user needs a tenant")
    tid = fields.canonical_id(tenant_id, "tenant")
    if authority == TENANT_ADMIN and cid is not None:
        raise InvalidInput("a TENANT_ADMIN user must not have a customer")
    if authority == CUSTOMER_USER and cid is None:
        raise InvalidInput("a CUSTOMER_USER user needs a customer")
    return tid, cid


class Users(Tables):
    """The registry's user methods (mixin of :class:`EntityRegistry`)."""

    def create_user(
        self,
        email: str,
        password: str,
        authority: str,
        tenant_id: Any,
        customer_id: Any = None,
        first_name: str = "",
        last_name: str = "",
    ) -> User:
        """A new user. ``authority`` is SYS_ADMIN (``tenant_id`` None), TENANT_ADMIN
        (``tenant_id`` required, no customer) or CUSTOMER_USER (``customer_id`` of a customer
        of the same tenant required). Emails are unique, case-insensitively."""
        email, email_key = fields.email(email)
        password = fields.password(password)
        if authority not in AUTHORITIES:
            raise InvalidInput(f"authority must be one of {', '.join(AUTHORITIES)}, got {authority!r}")
        first_name = fields.optional_text(first_name, "first name") or ""
        last_name = fields.optional_text(last_name, "last name") or ""
        tid, cid = _owner(authority, tenant_id, fields.optional_customer(customer_id))
        if self.find_user(email) is not None:  # early, before spending time on the hash
            raise Conflict(f"A user with email {email!r} already exists")
        password_hash = passwords.hash_password(password)
        user_id = str(uuid.uuid4())
        created = now_ms()
        with self.transaction():
            if tid is not None:
                self._require_tenant(tid)
            if cid is not None:
                self._check_customer_of_tenant(cid, tid)
            if self._one("SELECT 1 FROM users WHERE email_key = ?", (email_key,)):
                raise Conflict(f"A user with email {email!r} already exists")
            self._conn.execute(
                "INSERT INTO users (id, created_time, tenant_id, customer_id, email, email_key, "
                "authority, first_name, last_name, enabled, password_hash) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?)",
                (user_id, created, tid, cid, email, email_key, authority, first_name, last_name, password_hash),
            )
        return User(  # type: ignore[no-untyped-call]  # param's constructors are untyped
            id=user_id,
            created_time=created,
            tenant_id=tid,
            customer_id=cid,
            email=email,
            name=email,
            authority=authority,
            first_name=first_name,
            last_name=last_name,
            enabled=True,
        )

    def authenticate(self, email: str, password: str) -> User | None:
        """The user when ``email``/``password`` match an enabled account, else None.

        Unknown emails cost the same scrypt time as known ones (no user enumeration by timing).
        """
        if not isinstance(email, str) or not isinstance(password, str):
            return None
        row = self._one(f"SELECT {_USER_COLS}, password_hash FROM users WHERE email_key = ?", (email.strip().lower(),))
        if row is None:
            passwords.dummy_verify(password)
            return None
        if not passwords.verify_password(password, row[-1]):
            return None
        user = user_from_row(row[:-1])
        return user if user.enabled else None

    def get_user(self, user_id: Any) -> User:
        uid = fields.canonical_id(user_id, "user")
        row = self._one(f"SELECT {_USER_COLS} FROM users WHERE id = ?", (uid,))
        if row is None:
            raise NotFound(f"User {uid} not found")
        return user_from_row(row)

    def find_user(self, email: str) -> User | None:
        if not isinstance(email, str):
            return None
        row = self._one(f"SELECT {_USER_COLS} FROM users WHERE email_key = ?", (email.strip().lower(),))
        return None if row is None else user_from_row(row)

    def set_password(self, user_id: Any, password: str) -> None:
        uid = fields.canonical_id(user_id, "user")
        password = fields.password(password)
        self.get_user(uid)  # NotFound before spending time on the hash
        password_hash = passwords.hash_password(password)
        with self.transaction():
            cur = self._conn.execute("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, uid))
            if cur.rowcount == 0:
                raise NotFound(f"User {uid} not found")

    def update_user(
        self,
        user_id: Any,
        *,
        email: str | None = None,
        first_name: str | None = None,
        last_name: str | None = None,
        additional_info: Any = ...,
    ) -> User:
        """Change a user's email (unique, Conflict), names or additionalInfo (``...``: keep);
        authority, tenant and customer never change."""
        uid = fields.canonical_id(user_id, "user")
        new_email = None if email is None else fields.email(email)
        first = None if first_name is None else fields.optional_text(first_name, "first name") or ""
        last = None if last_name is None else fields.optional_text(last_name, "last name") or ""
        info = None if additional_info is ... else fields.info_json(additional_info)
        with self.transaction():
            self.get_user(uid)  # NotFound
            if new_email is not None:
                row = self._one("SELECT id FROM users WHERE email_key = ?", (new_email[1],))
                if row is not None and row[0] != uid:
                    raise Conflict(f"A user with email {new_email[0]!r} already exists")
                self._conn.execute(
                    "UPDATE users SET email = ?, email_key = ? WHERE id = ?", (new_email[0], new_email[1], uid)
                )
            if first is not None:
                self._conn.execute("UPDATE users SET first_name = ? WHERE id = ?", (first, uid))
            if last is not None:
                self._conn.execute("UPDATE users SET last_name = ? WHERE id = ?", (last, uid))
            if additional_info is not ...:
                self._conn.execute("UPDATE users SET additional_info = ? WHERE id = ?", (info, uid))
            return self.get_user(uid)

    def set_user_enabled(self, user_id: Any, enabled: bool) -> User:
        uid = fields.canonical_id(user_id, "user")
        with self.transaction():
            cur = self._conn.execute("UPDATE users SET enabled = ? WHERE id = ?", (1 if enabled else 0, uid))
            if cur.rowcount == 0:
                raise NotFound(f"User {uid} not found")
            return self.get_user(uid)

    def list_users(
        self,
        tenant_id: Any,
        customer_id: Any = None,
        page: int = 0,
        page_size: int = 100,
        text_search: str | None = None,
        authority: str | None = None,
        sort_property: str = "email",
        sort_order: str = "ASC",
    ) -> tuple[list[User], int]:
        """One page of a tenant's users (optionally one customer's, or one authority's)."""
        tid = fields.canonical_id(tenant_id, "tenant")
        cid = fields.optional_customer(customer_id)
        page, page_size = fields.paging(page, page_size)
        order = fields.order(sort_property, sort_order, _USER_SORT)
        where, params = "tenant_id = ?", [tid]
        if cid is not None:
            where += " AND customer_id = ?"
            params.append(cid)
        if authority is not None:
            if authority not in AUTHORITIES:
                raise InvalidInput(f"authority must be one of {', '.join(AUTHORITIES)}")
            where += " AND authority = ?"
            params.append(authority)
        if text_search:
            where += " AND (email LIKE ? ESCAPE '\\' OR first_name LIKE ? ESCAPE '\\' OR last_name LIKE ? ESCAPE '\\')"
            params += [fields.like(text_search)] * 3
        with self._lock:
            total = self._count("users", where, params)
            rows = self._all(
                f"SELECT {_USER_COLS} FROM users WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?",
                [*params, page_size, page * page_size],
            )
        return [user_from_row(r) for r in rows], total

    def delete_user(self, user_id: Any) -> None:
        uid = fields.canonical_id(user_id, "user")
        with self.transaction():
            cur = self._conn.execute("DELETE FROM users WHERE id = ?", (uid,))
            if cur.rowcount == 0:
                raise NotFound(f"User {uid} not found")
            self._conn.execute("DELETE FROM attribute WHERE entity_id = ?", (uid,))
