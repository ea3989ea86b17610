"""Users: ThingsBoard's ``/api/user``, ``/api/users``, ``/api/customer/{id}/users``,
``/api/tenant/{id}/users`` and ``/api/auth/changePassword``.

Rules (ThingsBoard's ``UserController``): tenant administrators list, create, change and delete
the users of their tenant; a customer user may read only itself; nobody reaches another
tenant's users (403). ThingsBoard creates users without a password and mails an activation
link; tbpanel sends no mail, so ``POST /api/user`` takes the password in the body
(``"password"``, a tbpanel extension; tb-rest-client passes it with a dict body) and 400s
without one on creation. ``sendActivationMail`` is accepted and ignored.
"""

from __future__ import annotations

from typing import Any

from ..entities import CUSTOMER_USER, NULL_UUID, TENANT_ADMIN, Customer, EntityError, Tenant, User
from ..entities.passwords import MAX_PASSWORD_LENGTH
from ..platform import Platform
from .base import ID, ApiError, ApiHandler, Route, page_data
from .entities import PagedHandler, entity_uuid

_USER_SORT = {"createdTime", "email", "firstName", "lastName"}


class UserPagedHandler(PagedHandler):
    def user_page(self, tenant_id: str | None, customer_id: str | None = None, authority: str | None = None) -> None:
        page, size, text, sort_prop, sort_order = self.page_args()
        if sort_prop not in _USER_SORT:
            raise ApiError(400, f"Unsupported sortProperty {sort_prop!r}; use one of {', '.join(sorted(_USER_SORT))}")
        items, total = self.platform.registry.list_users(
            tenant_id,
            customer_id=customer_id,
            page=page,
            page_size=size,
            text_search=text,
            authority=authority,
            sort_property=sort_prop,
            sort_order=sort_order,
        )
        self.write_json(page_data([u.to_json() for u in items], total, page, size))


class UsersHandler(UserPagedHandler):
    """``GET /api/users`` and ``/api/user/users`` (tb-rest-client's ``get_users``): the tenant's users."""

    def get(self) -> None:
        user = self.require_user()
        self.require_role(user, TENANT_ADMIN)
        self.user_page(user.tenant_id)


class CustomerUsersHandler(UserPagedHandler):
    """``GET /api/customer/{customerId}/users`` (tenant admins)."""

    def get(self, customer_id: str) -> None:
        user = self.require_user()
        self.require_role(user, TENANT_ADMIN)
        customer = self.platform.registry.check_customer(user, entity_uuid(customer_id, "customer id"), write=True)
        self.user_page(user.tenant_id, customer_id=customer.id)


class TenantAdminsHandler(UserPagedHandler):
    """``GET /api/tenant/{tenantId}/users``: the tenant's administrators (ThingsBoard: SYS_ADMIN;
    tbpanel: also the tenant's own administrators)."""

    def get(self, tenant_id: str) -> None:
        user = self.require_user()
        tid = entity_uuid(tenant_id, "tenant id")
        if user.authority != "SYS_ADMIN" and not (user.authority == TENANT_ADMIN and user.tenant_id == tid):
            raise ApiError(403, "You don't have permission to perform this operation!")
        self.platform.registry.get_tenant(tid)  # 404 for an unknown tenant
        self.user_page(tid, authority=TENANT_ADMIN)


def _text(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise ApiError(400, f"user '{key}' must be a string")
    return value


class UserSaveHandler(ApiHandler):
    """``POST /api/user[?sendActivationMail=]``: create (with ``password``), or update the
    email, names and additionalInfo when the body has an id (tenant admins)."""

    async def post(self) -> None:
        user = self.require_user()
        self.require_role(user, TENANT_ADMIN)
        self.bool_arg("sendActivationMail", False)  # validated, then ignored: no mail is sent
        body = self.json_object("user")
        email, first, last = _text(body, "email"), _text(body, "firstName"), _text(body, "lastName")
        info = body.get("additionalInfo")
        if info is not None and not isinstance(info, dict):
            raise ApiError(400, "user 'additionalInfo' must be a JSON object")
        if body.get("id"):
            target = self.platform.registry.check_user(user, entity_uuid(body["id"], "user id"), write=True)
            authority = body.get("authority")
            if authority is not None and authority != target.authority:
                raise ApiError(400, "a user's authority cannot be changed")
            saved = await self.in_thread(
                lambda: self.platform.registry.update_user(
                    target.id,
                    email=email,
                    first_name=first,
                    last_name=last,
                    additional_info=info if "additionalInfo" in body else ...,
                )
            )
            if body.get("password") is not None:
                await self.in_thread(self.platform.registry.set_password, target.id, body["password"])
            self.write_json(saved.to_json())
            return
        authority = body.get("authority")
        if authority not in (TENANT_ADMIN, CUSTOMER_USER):
            raise ApiError(400, f"user 'authority' must be TENANT_ADMIN or CUSTOMER_USER, got {str(authority)[:40]!r}")
        if not isinstance(email, str):
            raise ApiError(400, "user 'email' is required")
        password = body.get("password")
        if not isinstance(password, str) or not password:
            raise ApiError(
                400,
                "user 'password' is required: tbpanel sends no activation mail, so a new user gets its "
                "password in the body (tbpanel extension)",
            )
        customer_id = None
        if authority == CUSTOMER_USER:
            raw = body.get("customerId")
            if raw is None or entity_uuid(raw, "customer id") == NULL_UUID:
                raise ApiError(400, "a CUSTOMER_USER needs a 'customerId'")
            customer_id = self.platform.registry.check_customer(user, entity_uuid(raw, "customer id"), write=True).id
        created = await self.in_thread(
            lambda: self.platform.registry.create_user(
                email, password, authority, user.tenant_id, customer_id, first or "", last or ""
            )
        )
        if info is not None:
            created = await self.in_thread(lambda: self.platform.registry.update_user(created.id, additional_info=info))
        self.write_json(created.to_json())


class UserHandler(ApiHandler):
    """``GET /api/user/{id}`` (tenant admins: their tenant's users; customer users: themselves)
    and ``DELETE`` (tenant admins; not themselves)."""

    def get(self, user_id: str) -> None:
        user = self.require_user()
        self.write_json(self.platform.registry.check_user(user, entity_uuid(user_id, "user id")).to_json())

    async def delete(self, user_id: str) -> None:
        user = self.require_user()
        self.require_role(user, TENANT_ADMIN)
        target = self.platform.registry.check_user(user, entity_uuid(user_id, "user id"), write=True)
        if target.id == user.id:
            raise ApiError(400, "a user cannot delete itself")
        await self.in_thread(self.platform.registry.delete_user, target.id)
        self.set_status(200)
        self.finish()


class ChangePasswordHandler(ApiHandler):
    """``POST /api/auth/changePassword {"currentPassword", "newPassword"}`` → a new token pair.
    A wrong current password is 400 (ThingsBoard's answer) and counts against the login throttle."""

    async def post(self) -> None:
        user: User = self.require_user()
        body = self.json_object("change password")
        current, new = body.get("currentPassword"), body.get("newPassword")
        if not isinstance(current, str) or not isinstance(new, str):
            raise ApiError(400, "body must have string 'currentPassword' and 'newPassword'")
        if not new:
            raise ApiError(400, "'newPassword' must not be empty")
        ok = await self.in_thread(self.platform.authenticate, user.email, current, self.request.remote_ip)
        if ok is None or ok.id != user.id:
            raise ApiError(400, "Current password doesn't match!")
        await self.in_thread(self.platform.registry.set_password, user.id, new)
        self.write_json(self.platform.tokens.issue(user))


class AllCustomerUsersHandler(UserPagedHandler):
    """``GET /api/customer/users``: the users of all the tenant's customers (tenant admins)."""

    def get(self) -> None:
        user = self.require_user()
        self.require_role(user, TENANT_ADMIN)
        self.user_page(user.tenant_id, authority=CUSTOMER_USER)


class UserInfosHandler(UserPagedHandler):
    """``GET /api/userInfos/all`` and ``/api/users/info``: the tenant's users (tenant admins);
    ``/api/customer/{id}/userInfos``: one customer's."""

    def get(self, customer_id: str | None = None) -> None:
        user = self.require_user()
        self.require_role(user, TENANT_ADMIN)
        self.bool_arg("includeCustomers", True)
        cid = None
        if customer_id is not None:
            cid = self.platform.registry.check_customer(user, entity_uuid(customer_id, "customer id"), write=True).id
        self.user_page(user.tenant_id, customer_id=cid)


class UsersByIdsHandler(ApiHandler):
    """``GET /api/users/list?userIds=a,b``: those the user may read."""

    def get(self) -> None:
        user = self.require_user()
        raw = self.get_query_argument("userIds", None)
        if not raw:
            raise ApiError(400, "parameter 'userIds' is required")
        ids = list(dict.fromkeys(entity_uuid(i.strip(), "user id") for i in raw.split(",") if i.strip()))[:1000]
        out = []
        for uid in ids:
            try:
                out.append(self.platform.registry.check_user(user, uid).to_json())
            except EntityError:
                continue
        self.write_json(out)


class UserInfoHandler(ApiHandler):
    """``GET /api/user/info/{id}``: the user with ThingsBoard's UserInfo fields."""

    def get(self, user_id: str) -> None:
        user = self.require_user()
        other = self.platform.registry.check_user(user, entity_uuid(user_id, "user id"))
        registry = self.platform.registry
        if other.customer_id:
            owner: Customer | Tenant = registry.get_customer(other.customer_id)
        else:
            owner = registry.get_tenant(other.tenant_id)
        owner_name, owner_id = owner.title, owner.entity_id
        self.write_json(dict(other.to_json(), ownerName=owner_name, ownerId=owner_id, groups=[]))


class UserCredentialsEnabledHandler(ApiHandler):
    """``POST /api/user/{id}/userCredentialsEnabled?userCredentialsEnabled=true|false``: enable or
    disable a user's login (tenant admins; not themselves). A disabled user's tokens stop working."""

    async def post(self, user_id: str) -> None:
        user = self.require_user()
        self.require_role(user, TENANT_ADMIN)
        target = self.platform.registry.check_user(user, entity_uuid(user_id, "user id"), write=True)
        enabled = self.bool_arg("userCredentialsEnabled", True)
        if target.id == user.id and not enabled:
            raise ApiError(400, "a user cannot disable itself")
        await self.in_thread(self.platform.registry.set_user_enabled, target.id, enabled)
        self.set_status(200)
        self.finish()


class TokenAccessEnabledHandler(ApiHandler):
    """``GET /api/user/tokenAccessEnabled``: false (administrators never sign in as other users)."""

    def get(self) -> None:
        self.require_user()
        self.write_json(False)


class PasswordPolicyHandler(ApiHandler):
    """``GET /api/noauth/userPasswordPolicy``: what ``POST /api/user`` and changePassword accept."""

    def get(self) -> None:
        self.write_json(
            {
                "minimumLength": 1,
                "maximumLength": MAX_PASSWORD_LENGTH,
                "minimumUppercaseLetters": None,
                "minimumLowercaseLetters": None,
                "minimumDigits": None,
                "minimumSpecialCharacters": None,
                "passwordExpirationPeriodDays": None,
                "passwordReuseFrequencyDays": None,
                "allowWhitespaces": True,
                "forceUserToResetPasswordIfNotValid": False,
            }
        )


def user_patterns(platform: Platform) -> list[Route]:
    """The user routes (mounted by :func:`tbpanel.api.routes.api_patterns`)."""
    p: dict[str, Any] = {"platform": platform}
    return [
        (r"/api/auth/changePassword/?", ChangePasswordHandler, p),
        (r"/api/noauth/userPasswordPolicy/?", PasswordPolicyHandler, p),
        (r"/api/users/?", UsersHandler, p),
        (r"/api/users/list/?", UsersByIdsHandler, p),
        (r"/api/users/info/?", UserInfosHandler, p),
        (r"/api/userInfos/all/?", UserInfosHandler, p),
        (r"/api/customer/users/?", AllCustomerUsersHandler, p),
        (rf"/api/customer/{ID}/userInfos/?", UserInfosHandler, p),
        (r"/api/user/tokenAccessEnabled/?", TokenAccessEnabledHandler, p),
        (rf"/api/user/info/{ID}/?", UserInfoHandler, p),
        (rf"/api/user/{ID}/userCredentialsEnabled/?", UserCredentialsEnabledHandler, p),
        (r"/api/user/users/?", UsersHandler, p),
        (r"/api/user/?", UserSaveHandler, p),
        (rf"/api/customer/{ID}/users/?", CustomerUsersHandler, p),
        (rf"/api/tenant/{ID}/users/?", TenantAdminsHandler, p),
        (rf"/api/user/{ID}/?", UserHandler, p),  # last: after /api/user/users and /api/user/devices
    ]
