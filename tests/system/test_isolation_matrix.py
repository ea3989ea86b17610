"""Isolation and auth matrix (issue 8, item 3): every API route, page and WebSocket command ×
eight identities gets exactly the expected status, and no answer carries another tenant's or
customer's data. The server runs at debug log level; the last test checks that none of the
secrets this module used (passwords, device tokens, JWTs, cookie secret and cookies) reached
its output.

The route table is read from :func:`tbpanel.api.routes.api_patterns`, so a route (or a method
on one) added without a row in :data:`ROUTES` fails ``test_every_route_has_a_row``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace

import jwt as pyjwt
import pytest
import requests
import tornado.web
import tornado.websocket
from tornado.websocket import websocket_connect

from tbpanel.api.routes import api_patterns
from tbpanel.platform import Platform
from tests.helpers import ADMIN, CUSTOMER_USER, OTHER_ADMIN, OTHER_CUSTOMER_USER, WAIT_MS, jwt, open_world

TIMEOUT = 30
#: Order matters only for readability: the refused first, the allowed last.
IDENTITIES = [
    "anon",
    "wrong_token",
    "expired_token",
    "tampered_jwt",
    "other_customer",
    "customer",
    "other_admin",
    "admin",
]
UNAUTHENTICATED = IDENTITIES[:4]
PASSWORDS = {
    "admin": ADMIN,
    "other_admin": OTHER_ADMIN,
    "customer": CUSTOMER_USER,
    "other_customer": OTHER_CUSTOMER_USER,
}


@dataclass
class Ctx:
    """The world of this module: tenant A (admin, customers A1 and A2), tenant B, and what each
    owns; ``secrets`` collects everything that must never reach the server's output."""

    w: object
    jwts: dict[str, str | None]
    ids: dict[str, str]
    tokens: dict[str, str]
    markers: dict[str, set[str]]
    secrets: set[str] = field(default_factory=set)
    fresh: Callable[[str], str] | None = None

    def headers(self, who: str) -> dict:
        t = self.jwts[who]
        return {"X-Authorization": f"Bearer {t}"} if t else {}


# What each identity must never see: the markers of every owner it does not belong to.
VISIBLE = {"admin": {"A1", "A2", "AT"}, "other_admin": {"B"}, "customer": {"A1"}, "other_customer": {"A2"}}


def leaks(ctx: Ctx, who: str, text: str, request_text: str = "") -> list[str]:
    """Markers of owners ``who`` may not see that occur in ``text`` (an id the client sent
    itself and the server echoes in its error message is not a leak)."""
    allowed = VISIBLE.get(who, set())
    return sorted(
        m
        for owner, ms in ctx.markers.items()
        if owner not in allowed
        for m in ms
        if m in text and m not in request_text
    )


def expired_jwt(ctx_w, token: str) -> str:
    secret = (ctx_w.server.data / "jwt.secret").read_bytes()
    claims = pyjwt.decode(token, options={"verify_signature": False})
    claims.update(iat=int(time.time()) - 20000, exp=int(time.time()) - 10)
    return pyjwt.encode(claims, secret, algorithm="HS512")


def tampered_jwt(token: str, claims_from: str) -> str:
    """The admin's signature on the claims of a token of someone else: must not verify."""
    head, _, sig = token.split(".")
    return f"{head}.{claims_from.split('.')[1]}.{sig}"


@pytest.fixture(scope="module")
def ctx(tmp_path_factory) -> Ctx:
    w = open_world(tmp_path_factory.mktemp("isolation-data"), ("--log-level", "debug"))
    try:
        yield build_ctx(w)
    finally:
        w.server.stop()


def profiles_and_users(w) -> tuple[dict[str, str], dict[str, set[str]]]:
    """Ids of each tenant's device profile and users, and a provisioning profile per tenant
    whose key and secret only that tenant's administrator may ever see."""
    ids = {
        "prof_a": w.devices["dev-a1"]["deviceProfileId"]["id"],
        "prof_b": w.devices["dev-b"]["deviceProfileId"]["id"],
        "tenant_a": w.admin.get("/api/auth/user").json()["tenantId"]["id"],
        "user_a1": w.customer.get("/api/auth/user").json()["id"]["id"],
        "user_a2": w.other_customer.get("/api/auth/user").json()["id"]["id"],
        "user_b": w.other_admin.get("/api/auth/user").json()["id"]["id"],
    }
    markers: dict[str, set[str]] = {"A1": {ids["user_a1"]}, "A2": {ids["user_a2"]}, "AT": set()}
    markers["B"] = {ids["prof_b"], ids["user_b"]}
    for owner, api in (("AT", w.admin), ("B", w.other_admin)):
        key, secret = f"prov_key_{owner}_secret", f"prov_secret_{owner}_secret"
        body = {"name": f"prov-{owner}", "provisionType": "ALLOW_CREATE_NEW_DEVICES", "provisionDeviceKey": key}
        body["profileData"] = {"provisionConfiguration": {"provisionDeviceSecret": secret}}
        r = api.post("/api/deviceProfile", json=body)
        assert r.status_code == 200, r.text
        markers[owner] |= {key, secret}
    return ids, markers


def dashboards(w, dev: dict[str, str]) -> tuple[dict[str, str], dict[str, set[str]]]:
    """A dashboard of customer A1 (its alias names devices of A1, A2 and the tenant: A1's user
    must read only its own device's id in it), one shared by A1 and A2 (each may see
    only itself among ``assignedCustomers``), one of tenant A alone and one of tenant B."""
    cust = w.customer_ids
    listed = [dev["dev-a1"], dev["dev-a2"], dev["dev-tenant"]]  # customer A1 may read only the first of them
    alias = {"type": "entityList", "entityType": "DEVICE", "entityList": listed}
    config = {"entityAliases": {"a": {"id": "a", "alias": "tenant A's devices", "filter": alias}}}
    ids, markers = {}, {}
    for key, owner, api, title, customers in (
        ("dash_a1", "A1", w.admin, "dash_A1_secret", [cust["Customer A1"]]),
        ("dash_shared", None, w.admin, "dash shared by A1 and A2", [cust["Customer A1"], cust["Customer A2"]]),
        ("dash_at", "AT", w.admin, "dash_AT_secret", []),
        ("dash_b", "B", w.other_admin, "dash_B_secret", []),
    ):
        r = api.post("/api/dashboard", json={"title": title, "configuration": config if key == "dash_a1" else None})
        assert r.status_code == 200, r.text
        ids[key] = r.json()["id"]["id"]
        for cid in customers:
            assert api.post(f"/api/customer/{cid}/dashboard/{ids[key]}").status_code == 200
        if owner:
            markers[owner] = {ids[key], title}
    return ids, markers


def rule_chains(w) -> tuple[dict[str, str], dict[str, set[str]]]:
    """A rule chain per tenant (with a debug-mode node that has seen a message), whose name,
    id and node id only that tenant's administrator may ever see (issue 17)."""
    ids, markers = {}, {}
    for owner, api, key, device in (("AT", w.admin, "a", "dev-a1"), ("B", w.other_admin, "b", "dev-b")):
        name = f"chain_{owner}_secret"
        cid = api.post("/api/ruleChain", json={"name": name, "type": "CORE"}).json()["id"]["id"]
        node = {
            "type": "org.thingsboard.rule.engine.filter.TbJsFilterNode",
            "name": f"node_{owner}_secret",
            "debugMode": True,
            "configuration": {"jsScript": "return true;"},
        }
        md = {"ruleChainId": {"id": cid}, "firstNodeIndex": 0, "nodes": [node], "connections": []}
        r = api.post("/api/ruleChain/metadata", json=md)
        assert r.status_code == 200, r.text
        did = w.devices[device]["id"]["id"]
        assert (
            api.post(f"/api/tbpanel/ruleChain/{cid}/run", json={"deviceId": did, "data": {"x": 1}}).status_code == 200
        )
        ids[f"chain_{key}"], ids[f"node_{key}"] = cid, r.json()["nodes"][0]["id"]["id"]
        markers[owner] = {name, cid, ids[f"node_{key}"], f"node_{owner}_secret"}
    return ids, markers


def build_ctx(w) -> Ctx:
    admin_jwt = jwt(w.admin)
    jwts = {
        "anon": None,
        "wrong_token": "not-a-jwt",
        "expired_token": expired_jwt(w, admin_jwt),
        "tampered_jwt": tampered_jwt(jwt(w.customer), admin_jwt),
        "other_customer": jwt(w.other_customer),
        "customer": jwt(w.customer),
        "other_admin": jwt(w.other_admin),
        "admin": admin_jwt,
    }
    dev = {name: d["id"]["id"] for name, d in w.devices.items()}
    tokens = {name: w.token(name) for name in ("dev-a1", "dev-a2", "dev-tenant")}
    tokens["dev-b"] = w.other_admin.get(f"/api/device/{dev['dev-b']}/credentials").json()["credentialsId"]
    for name, key in (
        ("dev-a1", "key_a1_secret"),
        ("dev-a2", "key_a2_secret"),
        ("dev-tenant", "key_at_secret"),
        ("dev-b", "key_b_secret"),
    ):
        r = requests.post(f"{w.url}/api/v1/{tokens[name]}/telemetry", json={key: 42.5}, timeout=TIMEOUT)
        assert r.status_code == 200, r.text
        r = requests.post(f"{w.url}/api/v1/{tokens[name]}/attributes", json={"attr_" + key: "x"}, timeout=TIMEOUT)
        assert r.status_code == 200, r.text
    alarms = {}
    for name, api in (("dev-a1", w.admin), ("dev-a2", w.admin), ("dev-tenant", w.admin), ("dev-b", w.other_admin)):
        r = api.post(
            "/api/alarm",
            json={
                "type": f"alarm_{name}_secret",
                "severity": "MAJOR",
                "originator": {"entityType": "DEVICE", "id": dev[name]},
            },
        )
        assert r.status_code == 200, r.text
        alarms[name] = r.json()["id"]["id"]
    models = {}
    for name, api in (("A", w.admin), ("B", w.other_admin)):
        r = api.post("/api/tbpanel/models", json={"config": {"name": f"model_{name}_secret"}})
        assert r.status_code == 200, r.text
        models[name] = r.json()["id"]
    r = w.admin.post(f"/api/tbpanel/models/{models['A']}/build")
    assert r.status_code == 200, r.text
    task = r.json()["id"]
    cust = w.customer_ids
    ids = {
        "dev_a1": dev["dev-a1"],
        "dev_a2": dev["dev-a2"],
        "dev_at": dev["dev-tenant"],
        "dev_b": dev["dev-b"],
        "cust_a1": cust["Customer A1"],
        "cust_a2": cust["Customer A2"],
        "alarm_a1": alarms["dev-a1"],
        "alarm_b": alarms["dev-b"],
        "model_a": models["A"],
        "model_b": models["B"],
        "task_a": task,
    }
    markers = {
        "A1": {dev["dev-a1"], "dev-a1", "key_a1_secret", cust["Customer A1"], "alarm_dev-a1_secret", alarms["dev-a1"]},
        "A2": {dev["dev-a2"], "dev-a2", "key_a2_secret", cust["Customer A2"], "alarm_dev-a2_secret", alarms["dev-a2"]},
        "AT": {
            dev["dev-tenant"],
            "dev-tenant",
            "key_at_secret",
            "alarm_dev-tenant_secret",
            models["A"],
            "model_A_secret",
            task,
            tokens["dev-a1"],
            tokens["dev-a2"],
            tokens["dev-tenant"],
        },
        "B": {
            dev["dev-b"],
            "dev-b",
            "key_b_secret",
            "alarm_dev-b_secret",
            models["B"],
            "model_B_secret",
            tokens["dev-b"],
            alarms["dev-b"],
        },
    }
    profile_ids, profile_markers = profiles_and_users(w)  # device profiles, users (issue 16)
    chain_ids, chain_markers = rule_chains(w)  # rule chains (issue 17)
    ids |= profile_ids | chain_ids
    for owner, ms in (*profile_markers.items(), *chain_markers.items()):
        markers[owner] |= ms
    dashboard_ids, dashboard_markers = dashboards(w, dev)  # dashboards (issue 18)
    ids |= dashboard_ids
    for owner, ms in dashboard_markers.items():
        markers[owner] |= ms
    c = Ctx(w, jwts, ids, tokens, markers)
    c.secrets |= {p for _, p in PASSWORDS.values()} | set(tokens.values())
    c.secrets |= {t for t in jwts.values() if t and t != "not-a-jwt"}
    c.secrets.add(Platform.cookie_secret.fget(SimpleNamespace(_secret=(w.server.data / "jwt.secret").read_bytes())))
    c.fresh = lambda kind: make_fresh(c, kind)
    return c


def make_fresh(ctx: Ctx, kind: str) -> str:
    """A throwaway resource of tenant A for routes that change or delete what they name, so
    that an allowed request does not change the shared world the other cells are checked on."""
    a = ctx.w.admin
    if kind == "device":  # assigned to customer A1, so that customer routes apply to it
        did = a.post("/api/device", json={"name": f"fresh-{uuid.uuid4().hex[:8]}"}).json()["id"]["id"]
        assert a.post(f"/api/customer/{ctx.ids['cust_a1']}/device/{did}").status_code == 200
        return did
    if kind in ("claimable", "claimed"):  # claiming: a device name; claimable: unassigned, claim pending
        name = f"fresh-{uuid.uuid4().hex[:8]}"
        did = a.post("/api/device", json={"name": name}).json()["id"]["id"]
        if kind == "claimed":
            assert a.post(f"/api/customer/{ctx.ids['cust_a1']}/device/{did}").status_code == 200
            return name
        token = a.get(f"/api/device/{did}/credentials").json()["credentialsId"]
        r = requests.post(f"{ctx.w.url}/api/v1/{token}/claim", json={"secretKey": "matrix-claim"}, timeout=TIMEOUT)
        assert r.status_code == 200, r.text
        return name
    if kind == "customer":
        return a.post("/api/customer", json={"title": f"fresh-{uuid.uuid4().hex[:8]}"}).json()["id"]["id"]
    if kind == "alarm":
        return a.post(
            "/api/alarm",
            json={
                "type": f"fresh-{uuid.uuid4().hex[:8]}",
                "originator": {"entityType": "DEVICE", "id": ctx.ids["dev_a1"]},
            },
        ).json()["id"]["id"]
    if kind == "model":
        return a.post("/api/tbpanel/models", json={"config": {"name": f"fresh-{uuid.uuid4().hex[:8]}"}}).json()["id"]
    if kind == "profile":
        return a.post("/api/deviceProfile", json={"name": f"fresh-{uuid.uuid4().hex[:8]}"}).json()["id"]["id"]
    if kind == "user":  # a customer A1 user; its password must never be logged either
        password = f"fresh-pass-{uuid.uuid4().hex}"
        ctx.secrets.add(password)
        body = {"email": f"fresh-{uuid.uuid4().hex[:8]}@tenant-a.test", "authority": "CUSTOMER_USER"}
        body |= {"customerId": {"id": ctx.ids["cust_a1"]}, "password": password}
        return a.post("/api/user", json=body).json()["id"]["id"]
    if kind == "chain":  # a chain of tenant A doing what the default root does (a row makes one root)
        body = {"name": f"fresh-{uuid.uuid4().hex[:8]}"}
        return a.post("/api/ruleChain/device/default", json=body).json()["id"]["id"]
    if kind == "rpc":  # a persistent request to device A1 (stays QUEUED: A1 is never connected)
        body = {"method": "fresh", "persistent": True, "timeout": 600_000}
        return a.post(f"/api/rpc/oneway/{ctx.ids['dev_a1']}", json=body).json()["rpcId"]
    if kind == "dashboard":  # assigned to customer A1
        did = a.post("/api/dashboard", json={"title": f"fresh-{uuid.uuid4().hex[:8]}"}).json()["id"]["id"]
        assert a.post(f"/api/customer/{ctx.ids['cust_a1']}/dashboard/{did}").status_code == 200
        return did
    raise ValueError(kind)


# --------------------------------------------------------------------------- the route table
def expect(*, customer: int, other_customer: int, other_admin: int, admin: int, unauth: int = 401) -> dict:
    return {
        **{i: unauth for i in UNAUTHENTICATED},
        "customer": customer,
        "other_customer": other_customer,
        "other_admin": other_admin,
        "admin": admin,
    }


def same(status: int) -> dict:
    return {i: status for i in IDENTITIES}


ADMIN_ONLY = expect(customer=403, other_customer=403, other_admin=403, admin=200)
A1_READ = expect(customer=200, other_customer=403, other_admin=403, admin=200)
A1_WRITE = A1_READ  # customer users write telemetry to their devices (ThingsBoard's WRITE_TELEMETRY)
ANY_USER = expect(customer=200, other_customer=200, other_admin=200, admin=200)
OWN_TENANT_ADMIN = expect(customer=403, other_customer=403, other_admin=200, admin=200)  # each admin: its own
TEL = "/api/plugins/telemetry/([A-Za-z_]+)/([^/]+)"
SCOPE = "([A-Za-z_]*_SCOPE)"  # tbpanel.api.attributes.SCOPE
M = "/api/tbpanel/models/([^/]+)"
#: a chain (node) of tenant A: another tenant's administrator is told it does not exist
CHAIN_A = expect(customer=403, other_customer=403, other_admin=404, admin=200)
RC = "/api/ruleChain/([^/]+)"
TEST_SCRIPT = {
    "script": "return true;",
    "scriptType": "filter",
    "msg": "",  # an empty message (fill() would read braces as a placeholder)
    "metadata": {},
    "msgType": "POST_TELEMETRY_REQUEST",
}


#: every device with the secrets' latest values: each identity must get only its own
ENTITY_QUERY = {
    "entityFilter": {"type": "entityType", "entityType": "DEVICE"},
    "entityFields": [{"type": "ENTITY_FIELD", "key": "name"}],
    "latestValues": [
        *({"type": "TIME_SERIES", "key": f"key_{o}_secret"} for o in ("a1", "a2", "at", "b")),
        *({"type": "CLIENT_ATTRIBUTE", "key": f"attr_key_{o}_secret"} for o in ("a1", "a2", "at", "b")),
    ],
}


@dataclass
class Row:
    """One (route, method): how to call it (``{name}`` from ``ctx.ids``, ``{fresh}`` a new
    resource of ``fresh`` kind per call) and the status each identity must get."""

    path: str
    statuses: dict
    body: object = None
    fresh: str | None = None


ROUTES: dict[tuple[str, str], Row] = {
    (r"/api/v1/([^/]+)/telemetry/?", "POST"): Row("/api/v1/not-a-device-token/telemetry", same(401), {"t": 1}),
    (r"/api/v1/([^/]+)/attributes/?", "POST"): Row("/api/v1/not-a-device-token/attributes", same(401), {"t": 1}),
    # attributes (issue 16 item 1): the device's request and long poll, the REST save/delete forms
    (r"/api/v1/([^/]+)/attributes/?", "GET"): Row("/api/v1/not-a-device-token/attributes", same(401)),
    (r"/api/v1/([^/]+)/attributes/updates/?", "GET"): Row(
        "/api/v1/not-a-device-token/attributes/updates?timeout=1", same(401)
    ),
    (rf"{TEL}/attributes/{SCOPE}/?", "POST"): Row(
        "/api/plugins/telemetry/DEVICE/{fresh}/attributes/SHARED_SCOPE", A1_WRITE, {"written": 1}, "device"
    ),
    (rf"{TEL}/{SCOPE}/?", "POST"): Row(
        "/api/plugins/telemetry/DEVICE/{fresh}/SERVER_SCOPE", A1_WRITE, {"written": 1}, "device"
    ),
    (rf"{TEL}/{SCOPE}/?", "DELETE"): Row(
        "/api/plugins/telemetry/DEVICE/{fresh}/SERVER_SCOPE?keys=written", A1_WRITE, fresh="device"
    ),
    (rf"/api/plugins/telemetry/([^/]+)/{SCOPE}/?", "POST"): Row(
        "/api/plugins/telemetry/{fresh}/SHARED_SCOPE", A1_WRITE, {"written": 1}, "device"
    ),
    (rf"/api/plugins/telemetry/([^/]+)/{SCOPE}/?", "DELETE"): Row(
        "/api/plugins/telemetry/{fresh}/SHARED_SCOPE?keys=written", A1_WRITE, fresh="device"
    ),
    # claiming: the device side takes only a device token; only customer users claim (each a
    # fresh claimable device of tenant A); a tenant admin or the owning customer's user re-claims
    (r"/api/v1/([^/]+)/claim/?", "POST"): Row("/api/v1/not-a-device-token/claim", same(401), {"secretKey": "x"}),
    (r"/api/customer/device/([^/]+)/claim/?", "POST"): Row(
        "/api/customer/device/{fresh}/claim",
        expect(customer=200, other_customer=200, other_admin=403, admin=403),
        {"secretKey": "matrix-claim"},
        "claimable",
    ),
    (r"/api/customer/device/([^/]+)/claim/?", "DELETE"): Row(
        "/api/customer/device/{fresh}/claim",
        expect(customer=200, other_customer=403, other_admin=404, admin=200),
        fresh="claimed",
    ),
    (r"/api/auth/login/?", "POST"): Row(
        "/api/auth/login", same(401), {"username": "nobody-{who}@x.test", "password": "guess"}
    ),
    (r"/api/auth/token/?", "POST"): Row("/api/auth/token", same(401), {"refreshToken": "not.a.token"}),
    (r"/api/auth/user/?", "GET"): Row("/api/auth/user", ANY_USER),
    (r"/api/auth/logout/?", "POST"): Row("/api/auth/logout", ANY_USER),
    (r"/api/device/?", "POST"): Row("/api/device", ADMIN_ONLY, {"name": "renamed-{who}", "id": "{fresh}"}, "device"),
    (r"/api/device/types/?", "GET"): Row("/api/device/types", ANY_USER),
    (r"/api/device/([^/]+)/credentials/?", "GET"): Row("/api/device/{dev_a1}/credentials", ADMIN_ONLY),
    (r"/api/device/([^/]+)/?", "GET"): Row("/api/device/{dev_a1}", A1_READ),
    (r"/api/device/([^/]+)/?", "DELETE"): Row("/api/device/{fresh}", ADMIN_ONLY, fresh="device"),
    (r"/api/tenant/devices/?", "GET"): Row("/api/tenant/devices?pageSize=100&page=0", OWN_TENANT_ADMIN),
    (r"/api/customer/?", "POST"): Row(
        "/api/customer", ADMIN_ONLY, {"title": "retitled-{who}", "id": "{fresh}"}, "customer"
    ),
    (r"/api/customers/?", "GET"): Row("/api/customers?pageSize=100&page=0", OWN_TENANT_ADMIN),
    (r"/api/customer/device/([^/]+)/?", "DELETE"): Row("/api/customer/device/{fresh}", ADMIN_ONLY, fresh="device"),
    (r"/api/customer/([^/]+)/devices/?", "GET"): Row("/api/customer/{cust_a1}/devices?pageSize=100&page=0", A1_READ),
    (r"/api/customer/([^/]+)/device/([^/]+)/?", "POST"): Row(
        "/api/customer/{cust_a2}/device/{fresh}", ADMIN_ONLY, fresh="device"
    ),
    (r"/api/customer/([^/]+)/?", "GET"): Row("/api/customer/{cust_a1}", A1_READ),
    (r"/api/customer/([^/]+)/?", "DELETE"): Row("/api/customer/{fresh}", ADMIN_ONLY, fresh="customer"),
    (rf"{TEL}/keys/timeseries/?", "GET"): Row("/api/plugins/telemetry/DEVICE/{dev_a1}/keys/timeseries", A1_READ),
    (rf"{TEL}/values/timeseries/history/?", "GET"): Row(
        "/api/plugins/telemetry/DEVICE/{dev_a1}/values/timeseries/history?keys=key_a1_secret&startTs=0&endTs=4000000000000",
        A1_READ,
    ),
    (rf"{TEL}/values/timeseries/?", "GET"): Row("/api/plugins/telemetry/DEVICE/{dev_a1}/values/timeseries", A1_READ),
    (rf"{TEL}/timeseries/delete/?", "DELETE"): Row(
        "/api/plugins/telemetry/DEVICE/{fresh}/timeseries/delete?keys=x&deleteAllDataForKeys=true",
        A1_WRITE,
        fresh="device",
    ),
    (rf"{TEL}/timeseries/([A-Za-z_]+)/?", "POST"): Row(
        "/api/plugins/telemetry/DEVICE/{fresh}/timeseries/ANY", A1_WRITE, {"written": 1}, "device"
    ),
    (rf"{TEL}/timeseries/([A-Za-z_]+)/(\d+)/?", "POST"): Row(
        "/api/plugins/telemetry/DEVICE/{fresh}/timeseries/ANY/1000", A1_WRITE, {"written": 1}, "device"
    ),
    (rf"{TEL}/keys/attributes/?", "GET"): Row("/api/plugins/telemetry/DEVICE/{dev_a1}/keys/attributes", A1_READ),
    (rf"{TEL}/keys/attributes/([A-Za-z_]+)/?", "GET"): Row(
        "/api/plugins/telemetry/DEVICE/{dev_a1}/keys/attributes/CLIENT_SCOPE", A1_READ
    ),
    (rf"{TEL}/values/attributes/?", "GET"): Row("/api/plugins/telemetry/DEVICE/{dev_a1}/values/attributes", A1_READ),
    (rf"{TEL}/values/attributes/([A-Za-z_]+)/?", "GET"): Row(
        "/api/plugins/telemetry/DEVICE/{dev_a1}/values/attributes/CLIENT_SCOPE", A1_READ
    ),
    (r"/api/tbpanel/models/?", "GET"): Row("/api/tbpanel/models", OWN_TENANT_ADMIN),
    (r"/api/tbpanel/models/?", "POST"): Row(
        "/api/tbpanel/models", ADMIN_ONLY, {"config": {"name": "matrix-{who}", "items": ["{dev_a1}"]}}
    ),
    (rf"{M}/build/?", "POST"): Row(M.replace("([^/]+)", "{fresh}") + "/build", ADMIN_ONLY, fresh="model"),
    (rf"{M}/refresh/run/?", "POST"): Row(
        "/api/tbpanel/models/{fresh}/refresh/run",
        expect(customer=403, other_customer=403, other_admin=403, admin=400),
        fresh="model",
    ),
    (rf"{M}/refresh/?", "GET"): Row("/api/tbpanel/models/{model_a}/refresh", ADMIN_ONLY),
    (rf"{M}/refresh/?", "PUT"): Row("/api/tbpanel/models/{fresh}/refresh", ADMIN_ONLY, {"enabled": False}, "model"),
    (rf"{M}/reprocess/?", "POST"): Row(
        "/api/tbpanel/models/{fresh}/reprocess",
        expect(customer=403, other_customer=403, other_admin=403, admin=400),
        {"startTs": 0, "endTs": 1000},
        "model",
    ),
    (rf"{M}/anomalies/?", "GET"): Row("/api/tbpanel/models/{model_a}/anomalies", ADMIN_ONLY),
    (rf"{M}/tasks/?", "GET"): Row("/api/tbpanel/models/{model_a}/tasks", ADMIN_ONLY),
    (rf"{M}/experiments/?", "POST"): Row(
        "/api/tbpanel/models/{fresh}/experiments",
        ADMIN_ONLY,
        {"variants": {"v": {}}, "startTs": 0, "endTs": 1000},
        "model",
    ),
    (rf"{M}/?", "GET"): Row("/api/tbpanel/models/{model_a}", ADMIN_ONLY),
    (rf"{M}/?", "PUT"): Row("/api/tbpanel/models/{fresh}", ADMIN_ONLY, {"config": {"name": "renamed-{who}"}}, "model"),
    (rf"{M}/?", "DELETE"): Row("/api/tbpanel/models/{fresh}", ADMIN_ONLY, fresh="model"),
    (r"/api/tbpanel/tasks/([^/]+)/cancel/?", "GET"): Row("/api/tbpanel/tasks/{task_a}/cancel", ADMIN_ONLY),
    (r"/api/tbpanel/tasks/([^/]+)/cancel/?", "POST"): Row("/api/tbpanel/tasks/{task_a}/cancel", ADMIN_ONLY),
    (r"/api/tbpanel/tasks/([^/]+)/?", "GET"): Row("/api/tbpanel/tasks/{task_a}", ADMIN_ONLY),
    (r"/api/alarm/?", "POST"): Row(
        "/api/alarm", A1_READ, {"type": "matrix-{who}", "originator": {"entityType": "DEVICE", "id": "{dev_a1}"}}
    ),
    (r"/api/alarms/?", "GET"): Row("/api/alarms?pageSize=100&page=0", ANY_USER),
    (r"/api/alarm/types/?", "GET"): Row("/api/alarm/types", ANY_USER),
    (r"/api/alarm/highestSeverity/([^/]+)/([^/]+)/?", "GET"): Row(
        "/api/alarm/highestSeverity/DEVICE/{dev_a1}", A1_READ
    ),
    (r"/api/alarm/([^/]+)/ack/?", "POST"): Row("/api/alarm/{fresh}/ack", A1_READ, fresh="alarm"),
    (r"/api/alarm/([^/]+)/clear/?", "POST"): Row("/api/alarm/{fresh}/clear", A1_READ, fresh="alarm"),
    (r"/api/alarm/([^/]+)/([^/]+)/?", "GET"): Row("/api/alarm/DEVICE/{dev_a1}?pageSize=100&page=0", A1_READ),
    (r"/api/alarm/([^/]+)/?", "GET"): Row("/api/alarm/{alarm_a1}", A1_READ),
    (r"/api/alarm/([^/]+)/?", "DELETE"): Row("/api/alarm/{fresh}", A1_READ, fresh="alarm"),
    (r"/api/entitiesQuery/find/?", "POST"): Row(
        "/api/entitiesQuery/find", ANY_USER, {**ENTITY_QUERY, "pageLink": {"pageSize": 100}}
    ),
    (r"/api/entitiesQuery/count/?", "POST"): Row("/api/entitiesQuery/count", ANY_USER, ENTITY_QUERY),
    (r"/api/alarmsQuery/find/?", "POST"): Row(
        "/api/alarmsQuery/find", ANY_USER, {**ENTITY_QUERY, "pageLink": {"pageSize": 100, "page": 0}}
    ),
    (r"/api/alarmsQuery/count/?", "POST"): Row("/api/alarmsQuery/count", ANY_USER, ENTITY_QUERY),
    (r"/api/tbpanel/live/stats/?", "GET"): Row("/api/tbpanel/live/stats", OWN_TENANT_ADMIN),
    (r"/api/tbpanel/telemetry/query/?", "POST"): Row(
        "/api/tbpanel/telemetry/query", A1_READ, {"deviceIds": ["{dev_a1}"], "startTs": 0, "endTs": 4000000000000}
    ),
    # device profiles, device infos, users, provisioning (issue 16 items 3, 5, 6)
    (r"/api/v1/provision/?", "POST"): Row(
        "/api/v1/provision",
        same(200),
        {"deviceName": "prov-{who}", "provisionDeviceKey": "nope", "provisionDeviceSecret": "x"},
    ),
    (r"/api/device/credentials/?", "POST"): Row(
        "/api/device/credentials",
        ADMIN_ONLY,
        {"deviceId": {"id": "{fresh}"}, "credentialsId": "cred-{who}-{fresh}"},
        "device",
    ),
    (r"/api/device-with-credentials/?", "POST"): Row(
        "/api/device-with-credentials",
        ADMIN_ONLY,
        {"device": {"name": "renamed-wc-{who}", "id": "{fresh}"}, "credentials": {"credentialsId": "wc-{who}-{fresh}"}},
        "device",
    ),
    (r"/api/device/info/([^/]+)/?", "GET"): Row("/api/device/info/{dev_a1}", A1_READ),
    (r"/api/tenant/device/?", "GET"): Row(
        "/api/tenant/device?deviceName=dev-a1", expect(customer=403, other_customer=403, other_admin=404, admin=200)
    ),
    (r"/api/tenant/deviceInfos/?", "GET"): Row("/api/tenant/deviceInfos?pageSize=100&page=0", OWN_TENANT_ADMIN),
    (r"/api/deviceInfos/all/?", "GET"): Row("/api/deviceInfos/all?pageSize=100&page=0", ANY_USER),
    (r"/api/customer/([^/]+)/deviceInfos/?", "GET"): Row(
        "/api/customer/{cust_a1}/deviceInfos?pageSize=100&page=0", A1_READ
    ),
    (r"/api/devices/?", "GET"): Row("/api/devices?deviceIds={dev_a1},{dev_a2},{dev_at},{dev_b}", ANY_USER),
    (r"/api/user/devices/?", "GET"): Row("/api/user/devices?pageSize=100&page=0", ANY_USER),
    (r"/api/owner/([A-Z_]+)/([^/]+)/([A-Z_]+)/([^/]+)/?", "POST"): Row(
        "/api/owner/CUSTOMER/{cust_a2}/DEVICE/{fresh}", ADMIN_ONLY, fresh="device"
    ),
    (r"/api/customer/([^/]+)/title/?", "GET"): Row("/api/customer/{cust_a1}/title", A1_READ),
    (r"/api/customer/([^/]+)/shortInfo/?", "GET"): Row("/api/customer/{cust_a1}/shortInfo", A1_READ),
    (r"/api/customer/info/([^/]+)/?", "GET"): Row("/api/customer/info/{cust_a1}", A1_READ),
    (r"/api/tenant/customers/?", "GET"): Row(
        "/api/tenant/customers?customerTitle=Customer%20A1",
        expect(customer=403, other_customer=403, other_admin=404, admin=200),
    ),
    (r"/api/customers/list/?", "GET"): Row("/api/customers/list?customerIds={cust_a1},{cust_a2}", ANY_USER),
    (r"/api/customerInfos/all/?", "GET"): Row("/api/customerInfos/all?pageSize=100&page=0", ANY_USER),
    (r"/api/user/customers/?", "GET"): Row("/api/user/customers?pageSize=100&page=0", ANY_USER),
    (r"/api/deviceProfiles/?", "GET"): Row("/api/deviceProfiles?pageSize=100&page=0", OWN_TENANT_ADMIN),
    (r"/api/deviceProfileInfos/list/?", "GET"): Row(
        "/api/deviceProfileInfos/list?deviceProfileIds={prof_a},{prof_b}", OWN_TENANT_ADMIN
    ),
    (r"/api/deviceProfileInfos/?", "GET"): Row("/api/deviceProfileInfos?pageSize=100&page=0", ANY_USER),
    (r"/api/deviceProfileInfo/default/?", "GET"): Row("/api/deviceProfileInfo/default", ANY_USER),
    (r"/api/deviceProfileInfo/([^/]+)/?", "GET"): Row(
        "/api/deviceProfileInfo/{prof_a}", expect(customer=200, other_customer=200, other_admin=403, admin=200)
    ),
    (r"/api/deviceProfile/?", "POST"): Row(
        "/api/deviceProfile", ADMIN_ONLY, {"name": "renamed-{who}", "id": "{fresh}"}, "profile"
    ),
    (r"/api/deviceProfile/names/?", "GET"): Row("/api/deviceProfile/names", ANY_USER),
    (r"/api/deviceProfile/devices/keys/timeseries/?", "GET"): Row(
        "/api/deviceProfile/devices/keys/timeseries?deviceProfileId={prof_a}", ADMIN_ONLY
    ),
    (r"/api/deviceProfile/devices/keys/attributes/?", "GET"): Row(
        "/api/deviceProfile/devices/keys/attributes?deviceProfileId={prof_a}", ADMIN_ONLY
    ),
    (r"/api/deviceProfile/([^/]+)/default/?", "POST"): Row(
        "/api/deviceProfile/{fresh}/default", ADMIN_ONLY, fresh="profile"
    ),
    (r"/api/deviceProfile/([^/]+)/?", "GET"): Row("/api/deviceProfile/{prof_a}", ADMIN_ONLY),
    (r"/api/deviceProfile/([^/]+)/?", "DELETE"): Row("/api/deviceProfile/{fresh}", ADMIN_ONLY, fresh="profile"),
    (r"/api/auth/changePassword/?", "POST"): Row(
        "/api/auth/changePassword",
        expect(customer=400, other_customer=400, other_admin=400, admin=400),
        {"currentPassword": "not-the-password-{who}", "newPassword": "never-set"},
    ),
    (r"/api/noauth/userPasswordPolicy/?", "GET"): Row("/api/noauth/userPasswordPolicy", same(200)),
    (r"/api/users/?", "GET"): Row("/api/users?pageSize=100&page=0", OWN_TENANT_ADMIN),
    (r"/api/users/list/?", "GET"): Row("/api/users/list?userIds={user_a1},{user_a2},{user_b}", ANY_USER),
    (r"/api/users/info/?", "GET"): Row("/api/users/info?pageSize=100&page=0", OWN_TENANT_ADMIN),
    (r"/api/userInfos/all/?", "GET"): Row("/api/userInfos/all?pageSize=100&page=0", OWN_TENANT_ADMIN),
    (r"/api/customer/users/?", "GET"): Row("/api/customer/users?pageSize=100&page=0", OWN_TENANT_ADMIN),
    (r"/api/customer/([^/]+)/userInfos/?", "GET"): Row(
        "/api/customer/{cust_a1}/userInfos?pageSize=100&page=0", ADMIN_ONLY
    ),
    (r"/api/customer/([^/]+)/users/?", "GET"): Row("/api/customer/{cust_a1}/users?pageSize=100&page=0", ADMIN_ONLY),
    (r"/api/tenant/([^/]+)/users/?", "GET"): Row("/api/tenant/{tenant_a}/users?pageSize=100&page=0", ADMIN_ONLY),
    (r"/api/user/tokenAccessEnabled/?", "GET"): Row("/api/user/tokenAccessEnabled", ANY_USER),
    (r"/api/user/info/([^/]+)/?", "GET"): Row("/api/user/info/{user_a1}", A1_READ),
    (r"/api/user/([^/]+)/userCredentialsEnabled/?", "POST"): Row(
        "/api/user/{fresh}/userCredentialsEnabled?userCredentialsEnabled=false", ADMIN_ONLY, fresh="user"
    ),
    (r"/api/user/users/?", "GET"): Row("/api/user/users?pageSize=100&page=0", OWN_TENANT_ADMIN),
    (r"/api/user/?", "POST"): Row(
        "/api/user",
        ADMIN_ONLY,
        {
            "email": "matrix-{who}-{fresh}@tenant-a.test",
            "authority": "CUSTOMER_USER",
            "customerId": {"id": "{cust_a1}"},
            "password": "matrix-pass-{fresh}",
        },
        "device",  # only for a unique suffix
    ),
    (r"/api/user/([^/]+)/?", "GET"): Row("/api/user/{user_a1}", A1_READ),
    (r"/api/user/([^/]+)/?", "DELETE"): Row("/api/user/{fresh}", ADMIN_ONLY, fresh="user"),
    # rpc: A1 is not connected, so an allowed non-persistent request is 409
    (r"/api/v1/([^/]+)/rpc/?", "GET"): Row("/api/v1/not-a-device-token/rpc?timeout=1", same(401)),
    (r"/api/v1/([^/]+)/rpc/?", "POST"): Row("/api/v1/not-a-device-token/rpc", same(401), {"method": "getCurrentTime"}),
    (r"/api/v1/([^/]+)/rpc/([^/]+)/?", "POST"): Row("/api/v1/not-a-device-token/rpc/1", same(401), {"ok": 1}),
    **{
        (rf"{family}/{kind}/([^/]+)/?", "POST"): Row(
            f"{family}/{kind}/{{dev_a1}}",
            expect(customer=409, other_customer=403, other_admin=403, admin=409),
            {"method": "matrix-{who}", "params": {}, "timeout": 1000},
        )
        for family in ("/api/rpc", "/api/plugins/rpc")
        for kind in ("oneway", "twoway")
    },
    (r"/api/rpc/persistent/device/([^/]+)/?", "GET"): Row(
        "/api/rpc/persistent/device/{dev_a1}?pageSize=100&page=0", A1_READ
    ),
    (r"/api/rpc/persistent/([^/]+)/?", "GET"): Row("/api/rpc/persistent/{fresh}", A1_READ, fresh="rpc"),
    (r"/api/rpc/persistent/([^/]+)/?", "DELETE"): Row("/api/rpc/persistent/{fresh}", A1_READ, fresh="rpc"),
    # dashboards (issue 18 items 1, 2): tenant admins write; customer users read what is assigned to them
    (r"/api/dashboard/?", "POST"): Row(
        "/api/dashboard", ADMIN_ONLY, {"title": "renamed-{who}", "id": "{fresh}"}, "dashboard"
    ),
    (r"/api/dashboard/info/([^/]+)/?", "GET"): Row("/api/dashboard/info/{dash_a1}", A1_READ),
    (r"/api/dashboard/([^/]+)/customers/?", "POST"): Row(
        "/api/dashboard/{fresh}/customers", ADMIN_ONLY, ["{cust_a2}"], "dashboard"
    ),
    (r"/api/dashboard/([^/]+)/customers/add/?", "POST"): Row(
        "/api/dashboard/{fresh}/customers/add", ADMIN_ONLY, ["{cust_a2}"], "dashboard"
    ),
    (r"/api/dashboard/([^/]+)/customers/remove/?", "POST"): Row(
        "/api/dashboard/{fresh}/customers/remove", ADMIN_ONLY, ["{cust_a1}"], "dashboard"
    ),
    (r"/api/dashboard/([^/]+)/?", "GET"): Row("/api/dashboard/{dash_a1}", A1_READ),
    (r"/api/dashboard/([^/]+)/?", "DELETE"): Row("/api/dashboard/{fresh}", ADMIN_ONLY, fresh="dashboard"),
    (r"/api/tenant/dashboards/?", "GET"): Row("/api/tenant/dashboards?pageSize=100&page=0", OWN_TENANT_ADMIN),
    (r"/api/dashboards/?", "GET"): Row(
        "/api/dashboards?dashboardIds={dash_a1},{dash_shared},{dash_at},{dash_b}", ANY_USER
    ),
    (r"/api/dashboards/list/?", "GET"): Row(
        "/api/dashboards/list?dashboardIds={dash_a1},{dash_shared},{dash_at},{dash_b}", ANY_USER
    ),
    (r"/api/customer/([^/]+)/dashboards/?", "GET"): Row(
        "/api/customer/{cust_a1}/dashboards?pageSize=100&page=0", A1_READ
    ),
    (r"/api/customer/([^/]+)/dashboard/([^/]+)/?", "POST"): Row(
        "/api/customer/{cust_a2}/dashboard/{fresh}", ADMIN_ONLY, fresh="dashboard"
    ),
    (r"/api/customer/([^/]+)/dashboard/([^/]+)/?", "DELETE"): Row(
        "/api/customer/{cust_a1}/dashboard/{fresh}", ADMIN_ONLY, fresh="dashboard"
    ),
    (r"/api/owner/([A-Z_]+)/([^/]+)/DASHBOARD/([^/]+)/?", "POST"): Row(
        "/api/owner/CUSTOMER/{cust_a2}/DASHBOARD/{fresh}", ADMIN_ONLY, fresh="dashboard"
    ),
    (r"/api/tbpanel/dashboard/([^/]+)/export/?", "GET"): Row("/api/tbpanel/dashboard/{dash_a1}/export", A1_READ),
    (r"/api/tbpanel/dashboard/import/?", "POST"): Row(
        "/api/tbpanel/dashboard/import", OWN_TENANT_ADMIN, {"title": "imported-{who}", "configuration": {}}
    ),
    (r"/api/tbpanel/dashboard/([^/]+)/aliases/resolve/?", "POST"): Row(
        "/api/tbpanel/dashboard/{dash_a1}/aliases/resolve",
        A1_READ,
        {"entityAliases": {"all": {"alias": "every device", "filter": {"type": "entityType", "entityType": "DEVICE"}}}},
    ),
    # rule chains (issue 17): tenant administrators only; another tenant's chain or node is 404
    (r"/api/ruleChain/?", "POST"): Row(
        "/api/ruleChain",
        CHAIN_A,
        {"id": {"entityType": "RULE_CHAIN", "id": "{fresh}"}, "name": "renamed-{who}"},
        "chain",
    ),
    (r"/api/ruleChain/device/default/?", "POST"): Row(
        "/api/ruleChain/device/default", OWN_TENANT_ADMIN, {"name": "matrix-{who}"}
    ),
    (r"/api/ruleChain/metadata/?", "POST"): Row(
        "/api/ruleChain/metadata",
        CHAIN_A,
        {"ruleChainId": {"id": "{fresh}"}, "firstNodeIndex": None, "nodes": [], "connections": []},
        "chain",
    ),
    (r"/api/ruleChain/testScript/?", "POST"): Row("/api/ruleChain/testScript", OWN_TENANT_ADMIN, TEST_SCRIPT),
    (r"/api/ruleChain/tbelEnabled/?", "GET"): Row("/api/ruleChain/tbelEnabled", OWN_TENANT_ADMIN),
    (rf"{RC}/root/?", "POST"): Row("/api/ruleChain/{fresh}/root", CHAIN_A, fresh="chain"),
    (rf"{RC}/metadata/?", "GET"): Row("/api/ruleChain/{chain_a}/metadata", CHAIN_A),
    (rf"{RC}/output/labels/?", "GET"): Row("/api/ruleChain/{chain_a}/output/labels", CHAIN_A),
    (rf"{RC}/?", "GET"): Row("/api/ruleChain/{chain_a}", CHAIN_A),
    (rf"{RC}/?", "DELETE"): Row("/api/ruleChain/{fresh}", CHAIN_A, fresh="chain"),
    (r"/api/ruleChains/list/?", "GET"): Row("/api/ruleChains/list?ruleChainIds={chain_a},{chain_b}", OWN_TENANT_ADMIN),
    (r"/api/ruleChains/?", "GET"): Row("/api/ruleChains?pageSize=100&page=0", OWN_TENANT_ADMIN),
    (r"/api/ruleNode/([^/]+)/debugIn/?", "GET"): Row("/api/ruleNode/{node_a}/debugIn", CHAIN_A),
    (r"/api/tbpanel/ruleChain/([^/]+)/debug/?", "GET"): Row("/api/tbpanel/ruleChain/{chain_a}/debug", CHAIN_A),
    (r"/api/tbpanel/ruleChain/([^/]+)/counters/?", "GET"): Row("/api/tbpanel/ruleChain/{chain_a}/counters", CHAIN_A),
    (r"/api/tbpanel/ruleChain/([^/]+)/run/?", "POST"): Row(
        "/api/tbpanel/ruleChain/{chain_a}/run", CHAIN_A, {"deviceId": "{dev_a1}", "data": {"matrix": 1}}
    ),
    (r"/api/tbpanel/rules/deadLetters/?", "GET"): Row("/api/tbpanel/rules/deadLetters", OWN_TENANT_ADMIN),
    # no dead letter exists (the server runs no queue worker here): both administrators get 404
    (r"/api/tbpanel/rules/deadLetters/([^/]+)/retry/?", "POST"): Row(
        "/api/tbpanel/rules/deadLetters/1/retry", expect(customer=403, other_customer=403, other_admin=404, admin=404)
    ),
    (r"/api/.*", "GET"): Row("/api/no/such/route", same(404)),
}
WEBSOCKET_ROUTES = {r"/api/ws/plugins/telemetry/?", r"/api/ws/?"}


def route_methods() -> set[tuple[str, str]]:
    """(pattern, METHOD) of every HTTP route the server mounts (WebSockets apart)."""
    out = set()
    for pattern, handler, _ in api_patterns(None, object()):
        if issubclass(handler, tornado.websocket.WebSocketHandler):
            assert pattern in WEBSOCKET_ROUTES, f"a new WebSocket route needs WS_COMMANDS cases: {pattern}"
            continue
        methods = [
            m.upper()
            for m in ("get", "post", "put", "delete", "patch")
            if getattr(handler, m) is not getattr(tornado.web.RequestHandler, m)
        ]
        out |= {(pattern, m) for m in methods or ["GET"]}
    return out


def test_every_route_has_a_row():
    assert route_methods() == set(ROUTES), (
        f"missing rows: {sorted(route_methods() - set(ROUTES))}; stale rows: {sorted(set(ROUTES) - route_methods())}"
    )


def fill(value, ctx: Ctx, who: str, fresh: str | None):
    if isinstance(value, str):
        return value.format(who=who, fresh=fresh, **ctx.ids)
    if isinstance(value, dict):
        return {k: fill(v, ctx, who, fresh) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, ctx, who, fresh) for v in value]
    return value


def test_route_matrix(ctx):
    """Every (route, method) × identity: the expected status, a JSON error with a message on
    refusal, and no marker of an owner the identity does not belong to in any answer."""
    failures, cells = [], 0
    for (pattern, method), row in ROUTES.items():
        for who in IDENTITIES:
            fresh = ctx.fresh(row.fresh) if row.fresh else None
            path = fill(row.path, ctx, who, fresh)
            body = fill(row.body, ctx, who, fresh)
            r = requests.request(
                method,
                ctx.w.url + path,
                headers=ctx.headers(who),
                timeout=TIMEOUT,
                data=None if body is None else json.dumps(body),
            )
            cells += 1
            want = row.statuses[who]
            where = f"{method} {pattern} as {who}"
            if r.status_code != want:
                failures.append(f"{where}: {r.status_code} (want {want}) {r.text[:200]}")
            if r.status_code >= 400 and not r.json().get("message"):
                failures.append(f"{where}: refusal without a message: {r.text[:200]}")
            found = leaks(ctx, who, r.text, path + json.dumps(body))
            if found:
                failures.append(f"{where}: carries {found}")
    assert not failures, f"{len(failures)} of {cells} cells:\n" + "\n".join(failures)
    assert cells == len(ROUTES) * len(IDENTITIES)


def test_device_api_takes_only_its_access_token(ctx):
    """The device routes ignore JWTs; each device token writes to its own device only."""
    for who in IDENTITIES:
        r = requests.post(
            f"{ctx.w.url}/api/v1/{ctx.tokens['dev-a1']}/telemetry",
            json={"via_token": 1},
            headers=ctx.headers(who),
            timeout=TIMEOUT,
        )
        assert r.status_code == 200, r.text
    keys_b = ctx.w.other_admin.get(f"/api/plugins/telemetry/DEVICE/{ctx.ids['dev_b']}/keys/timeseries").json()
    assert "via_token" not in keys_b


def test_device_attribute_reads_take_only_their_own_device(ctx):
    """A device token reads its own client and shared attributes only: never another device's,
    never SERVER_SCOPE; its long poll hears only its own device's shared changes."""
    w = ctx.w
    for name, did in (("dev-a2", ctx.ids["dev_a2"]), ("dev-a1", ctx.ids["dev_a1"])):
        r = w.admin.post(f"/api/plugins/telemetry/DEVICE/{did}/SERVER_SCOPE", json={f"srv_{name}_secret": 1})
        assert r.status_code == 200, r.text
    r = w.admin.post(f"/api/plugins/telemetry/DEVICE/{ctx.ids['dev_a2']}/SHARED_SCOPE", json={"shared_a2_secret": 1})
    assert r.status_code == 200, r.text
    for params in ({}, {"clientKeys": "attr_key_a2_secret", "sharedKeys": "shared_a2_secret,srv_dev-a1_secret"}):
        r = requests.get(f"{w.url}/api/v1/{ctx.tokens['dev-a1']}/attributes", params=params, timeout=TIMEOUT)
        assert r.status_code == 200, r.text
        assert not leaks(ctx, "customer", r.text) and "secret" not in r.text.replace("attr_key_a1_secret", ""), r.text
    r = requests.get(f"{w.url}/api/v1/{ctx.tokens['dev-a1']}/attributes/updates?timeout=200", timeout=TIMEOUT)
    assert r.status_code == 408  # dev-a2's shared change above was not for it (and came before)


def test_shared_world_unchanged(ctx):
    """Refused requests changed nothing: the shared devices, customers, alarm and models are
    where they were, with their owners."""
    a = ctx.w.admin
    assert a.get(f"/api/device/{ctx.ids['dev_a1']}").json()["customerId"]["id"] == ctx.ids["cust_a1"]
    assert a.get(f"/api/device/{ctx.ids['dev_at']}").json()["customerId"]["id"] != ctx.ids["cust_a2"]
    assert a.get(f"/api/customer/{ctx.ids['cust_a2']}").status_code == 200
    assert a.get(f"/api/alarm/{ctx.ids['alarm_a1']}").status_code == 200
    assert a.get(f"/api/tbpanel/models/{ctx.ids['model_a']}").json()["name"] == "model_A_secret"
    names = {d["name"] for d in ctx.w.other_admin.get("/api/tenant/devices?pageSize=100&page=0").json()["data"]}
    assert not any(n.startswith("renamed-") for n in names)
    b_models = ctx.w.other_admin.get("/api/tbpanel/models").json()
    assert [m["name"] for m in b_models] == ["model_B_secret"]
    dash = a.get(f"/api/dashboard/{ctx.ids['dash_a1']}").json()
    assert dash["title"] == "dash_A1_secret" and [c["title"] for c in dash["assignedCustomers"]] == ["Customer A1"]
    assert ctx.w.other_admin.get(f"/api/dashboard/{ctx.ids['dash_b']}").json()["title"] == "dash_B_secret"
    b_dashboards = ctx.w.other_admin.get("/api/tenant/dashboards?pageSize=100&page=0").json()["data"]
    assert sorted(d["title"] for d in b_dashboards) == ["dash_B_secret", "imported-other_admin"]


# --------------------------------------------------------------------------- WebSocket commands
def ws_commands(ctx: Ctx) -> dict[str, tuple[dict, dict]]:
    """name → (command for /api/ws, expected errorCode per authenticated identity)."""
    dev = {"entityType": "DEVICE", "entityId": ctx.ids["dev_a1"]}
    a1 = {"customer": 0, "other_customer": 3, "other_admin": 3, "admin": 0}
    everyone = {who: 0 for who in a1}
    single = {"type": "singleEntity", "singleEntity": {"entityType": "DEVICE", "id": ctx.ids["dev_a1"]}}
    return {
        "TIMESERIES latest": (dict(dev, type="TIMESERIES", keys="key_a1_secret"), a1),
        "TIMESERIES window": (dict(dev, type="TIMESERIES", keys="key_a1_secret", timeWindow=10**12), a1),
        "TIMESERIES_HISTORY": (
            dict(dev, type="TIMESERIES_HISTORY", keys="key_a1_secret", startTs=0, endTs=4_000_000_000_000),
            a1,
        ),
        "ATTRIBUTES": (dict(dev, type="ATTRIBUTES"), a1),
        "ATTRIBUTES server scope": (
            dict(dev, type="ATTRIBUTES", scope="SERVER_SCOPE", keys="attr_key_a1_secret,attr_key_a2_secret"),
            a1,
        ),
        "ENTITY_DATA all": (
            {"type": "ENTITY_DATA", "query": {**ENTITY_QUERY, "pageLink": {"pageSize": 100}}},
            everyone,
        ),
        "ENTITY_DATA single": (
            {
                "type": "ENTITY_DATA",
                "query": {**ENTITY_QUERY, "entityFilter": single, "pageLink": {"pageSize": 10}},
                "latestCmd": {"keys": ENTITY_QUERY["latestValues"]},
                "tsCmd": {"keys": ["key_a1_secret", "key_a2_secret"], "timeWindow": 10**12},
            },
            everyone,
        ),
        "ENTITY_COUNT": ({"type": "ENTITY_COUNT", "query": ENTITY_QUERY}, everyone),
        "ALARM_COUNT": ({"type": "ALARM_COUNT", "query": ENTITY_QUERY}, everyone),
        "ENTITY_DATA_UNSUBSCRIBE": ({"type": "ENTITY_DATA_UNSUBSCRIBE"}, None),
        "ALARM_DATA single": ({"type": "ALARM_DATA", "query": {"entityFilter": single}}, a1),
        "ALARM_DATA list": (
            {
                "type": "ALARM_DATA",
                "query": {
                    "entityFilter": {"type": "entityList", "entityType": "DEVICE", "entityList": [ctx.ids["dev_a1"]]}
                },
            },
            a1,
        ),
        "ALARM_DATA all": ({"type": "ALARM_DATA", "query": {"pageLink": {"pageSize": 100}}}, everyone),
        "ALARM_DATA_UNSUBSCRIBE": ({"type": "ALARM_DATA_UNSUBSCRIBE"}, None),
    }


LEGACY_KINDS = {"TIMESERIES": "tsSubCmds", "TIMESERIES_HISTORY": "historyCmds", "ATTRIBUTES": "attrSubCmds"}


async def ws_session(url: str, path: str, first: str | None, messages: list[str], quiet_s: float = 1.5) -> dict:
    """Open ``path``, send ``first`` (the authCmd) then ``messages``; collect what comes back
    until the socket closes or stays quiet for ``quiet_s``."""
    conn = await websocket_connect(url.replace("http", "ws", 1) + path)
    out = {"messages": [], "close": None}
    try:
        for m in ([first] if first else []) + messages:
            try:
                await conn.write_message(m)
            except tornado.websocket.WebSocketClosedError:  # closed by the server already
                break
        while True:
            try:
                msg = await asyncio.wait_for(conn.read_message(), quiet_s)
            except TimeoutError:
                return out
            if msg is None:
                out["close"] = (conn.close_code, conn.close_reason)
                return out
            out["messages"].append(msg)
    finally:
        conn.close()


def test_websocket_matrix(ctx):
    """Every WebSocket command on both endpoints × identity: unauthenticated sockets are
    closed with a reason (1008 no auth, 1007/1011 bad token); each authenticated answer has the
    expected errorCode and no marker of an owner the identity does not belong to. Each cell is
    its own socket; they run side by side (each waits for 1.5 s of quiet), a few at a time."""
    cells = []  # (where, who, path, first message or None, message, codes)
    for legacy in (True, False):
        for who in IDENTITIES:
            token = ctx.jwts[who]
            for i, (name, (cmd, codes)) in enumerate(ws_commands(ctx).items(), start=1):
                cmd = dict(cmd, cmdId=i)
                if legacy:
                    kind = cmd.pop("type")
                    if kind not in LEGACY_KINDS:
                        continue  # /api/ws only
                    message = {LEGACY_KINDS[kind]: [cmd]}
                    path, first = (
                        f"/api/ws/plugins/telemetry?token={token}" if token else "/api/ws/plugins/telemetry",
                        None,
                    )
                else:
                    message = {"cmds": [cmd]}
                    path = "/api/ws"
                    first = json.dumps({"authCmd": {"cmdId": 0, "token": token}}) if token else None
                where = f"{'legacy' if legacy else 'api/ws'} {name} as {who}"
                cells.append((where, who, path, first, message, codes))

    async def run_all() -> list[dict]:
        gate = asyncio.Semaphore(16)

        async def one(path: str, first: str | None, message: dict) -> dict:
            async with gate:
                return await ws_session(ctx.w.url, path, first, [json.dumps(message)])

        return await asyncio.gather(*(one(path, first, message) for _, _, path, first, message, _ in cells))

    failures = []
    for (where, who, _path, _first, message, codes), result in zip(cells, asyncio.run(run_all())):
        text = "".join(result["messages"])
        if who in UNAUTHENTICATED:
            token = ctx.jwts[who]
            legacy = where.startswith("legacy")
            want = 1008 if token is None else (1011 if legacy else 1007)
            if result["close"] is None or result["close"][0] != want or not result["close"][1] or text:
                failures.append(f"{where}: {result} (want close {want} with a reason, no data)")
            continue
        if codes is None:  # an unsubscribe is not answered
            if text:
                failures.append(f"{where}: unexpected answer {text[:200]}")
            continue
        got = [json.loads(m).get("errorCode") for m in result["messages"]]
        if not got or got[0] != codes[who] or result["close"]:
            failures.append(f"{where}: codes {got}, close {result['close']} (want {codes[who]})")
        found = leaks(ctx, who, text, json.dumps(message))
        if found:
            failures.append(f"{where}: carries {found}")
    assert not failures, f"{len(failures)} of {len(cells)} cells:\n" + "\n".join(failures)
    assert len(cells) >= 60


def test_websocket_pushes_stay_in_their_tenant_and_customer(ctx):
    """Live pushes obey the same rules: an unfiltered ALARM_DATA subscription and a telemetry
    subscription of each user see only the changes they may read."""

    async def run() -> dict[str, str]:
        url = ctx.w.url.replace("http", "ws", 1)
        conns = {}
        for who in VISIBLE:
            conn = await websocket_connect(url + "/api/ws")
            await conn.write_message(
                json.dumps(
                    {
                        "authCmd": {"cmdId": 0, "token": ctx.jwts[who]},
                        "cmds": [{"type": "ALARM_DATA", "cmdId": 1, "query": {}}],
                    }
                )
            )
            await asyncio.wait_for(conn.read_message(), TIMEOUT)
            conns[who] = conn
        created = [
            ctx.w.admin.post(
                "/api/alarm",
                json={"type": f"push_{name}_secret", "originator": {"entityType": "DEVICE", "id": ctx.ids[key]}},
            )
            for name, key in (("a1", "dev_a1"), ("a2", "dev_a2"))
        ]
        created.append(
            ctx.w.other_admin.post(
                "/api/alarm",
                json={"type": "push_b_secret", "originator": {"entityType": "DEVICE", "id": ctx.ids["dev_b"]}},
            )
        )
        assert all(r.status_code == 200 for r in created), [r.text for r in created]
        seen = {}
        for who, conn in conns.items():
            msgs = []
            while True:
                try:
                    msg = await asyncio.wait_for(conn.read_message(), 2)
                except TimeoutError:
                    break
                if msg is None:
                    break
                msgs.append(msg)
            seen[who] = "".join(msgs)
            conn.close()
        return seen

    seen = asyncio.run(run())
    expected = {
        "admin": {"push_a1_secret", "push_a2_secret"},
        "customer": {"push_a1_secret"},
        "other_customer": {"push_a2_secret"},
        "other_admin": {"push_b_secret"},
    }
    for who, text in seen.items():
        got = {t for t in ("push_a1_secret", "push_a2_secret", "push_b_secret") if t in text}
        assert got == expected[who], (who, got)
        assert not leaks(ctx, who, text), (who, leaks(ctx, who, text))


# --------------------------------------------------------------------------- pages
PAGES = [
    "/",
    "/telemetry",
    "/alarms",
    "/models",
    "/model?id={model_a}",
    "/profiles",
    "/profiles?profile={prof_b}",
    "/rules",
    "/dashboards",
    "/dashboard?id={dash_a1}",
    "/dashboard?id={dash_b}",
]


def page_cookies(ctx: Ctx) -> dict[str, str | None]:
    """The ``user`` cookie per identity: signed-in users log in through /login; the others
    carry nothing, garbage, an expired signed cookie or a signed cookie with a swapped value."""
    cookies = {}
    for who, (email, password) in PASSWORDS.items():
        r = requests.post(
            ctx.w.url + "/login", data={"username": email, "password": password}, allow_redirects=False, timeout=TIMEOUT
        )
        assert r.status_code == 302 and "user" in r.cookies, (who, r.status_code)
        cookies[who] = r.cookies["user"]
    secret = Platform.cookie_secret.fget(SimpleNamespace(_secret=(ctx.w.server.data / "jwt.secret").read_bytes()))
    admin_id = ctx.w.admin.get("/api/auth/user").json()["id"]["id"]
    expired = tornado.web.create_signed_value(secret, "user", admin_id, clock=lambda: time.time() - 3 * 86400)
    customer = cookies["customer"]
    parts = customer.split("|")  # 2|1:0|10:<ts>|4:user|48:<base64 user id>|<signature>
    swapped = base64.b64encode(admin_id.encode()).decode()
    parts[4] = f"{len(swapped)}:{swapped}"
    cookies |= {
        "anon": None,
        "wrong_token": "garbage",
        "expired_token": expired.decode(),
        "tampered_jwt": "|".join(parts),
    }
    ctx.secrets |= {c for c in cookies.values() if c and c != "garbage"}
    return cookies


def test_page_statuses(ctx):
    """Pages without a valid session cookie redirect to /login; signed-in users get the page;
    /login is open to all and /logout clears the cookie."""
    cookies = page_cookies(ctx)
    ctx.page_cookies = cookies
    failures, cells = [], 0
    for who in IDENTITIES:
        jar = {"user": cookies[who]} if cookies[who] else {}
        for page in PAGES + ["/login", "/logout"]:
            path = fill(page, ctx, who, None)
            r = requests.get(ctx.w.url + path, cookies=jar, allow_redirects=False, timeout=TIMEOUT)
            cells += 1
            if page == "/login":
                ok = r.status_code == 200 and 'id="login"' in r.text
            elif page == "/logout":
                ok = (
                    r.status_code == 302
                    and r.headers["Location"].startswith("/login")
                    and "user=" in r.headers.get("Set-Cookie", "")
                )
            elif who in UNAUTHENTICATED:
                ok = r.status_code == 302 and "/login" in r.headers["Location"]
            else:
                ok = r.status_code == 200
            if not ok:
                failures.append(f"{path} as {who}: {r.status_code} {r.headers.get('Location')}")
            found = leaks(ctx, who if who not in UNAUTHENTICATED else "anon", r.text, path)
            if found:
                failures.append(f"{path} as {who}: carries {found}")
    assert not failures, "\n".join(failures)
    assert cells == len(IDENTITIES) * (len(PAGES) + 2)


DOCUMENT_JS = """() => {
  // every property value of every model in the page's Bokeh documents, as text
  const isModel = (v) => v && typeof v === 'object' && 'properties' in v && 'id' in v;
  const replacer = (key, v) => {
    if (typeof v === 'function') return undefined;
    if (v instanceof Map) return Object.fromEntries(v);
    if (ArrayBuffer.isView(v)) return Array.from(v);
    if (key !== '' && isModel(v)) return 'ref:' + v.id;
    return v;
  };
  const out = [];
  for (const doc of Bokeh.documents)
    for (const m of doc.all_models) {
      let attrs = {};
      try { attrs = m.attributes; } catch (e) { continue; }
      for (const [k, v] of Object.entries(attrs)) {
        try { out.push(typeof v === 'string' ? v : JSON.stringify(v, replacer)); } catch (e) {}
      }
    }
  return out.join('\\n');
}"""


@pytest.mark.browser
def test_page_contents(ctx, browser):
    """What each signed-in user's browser receives (the whole Bokeh document, hidden parts
    included) holds no marker of an owner it does not belong to; the model page opens for
    the tenant's administrator only, with a refusal for everyone else."""
    cookies = getattr(ctx, "page_cookies", None) or page_cookies(ctx)
    host = ctx.w.url.split("//", 1)[1].split(":")[0]
    failures = []
    for who in VISIBLE:
        context = browser.new_context()
        context.add_cookies([{"name": "user", "value": cookies[who], "domain": host, "path": "/"}])
        page = context.new_page()
        for path in PAGES:
            url = ctx.w.url + fill(path, ctx, who, None)
            page.goto(url)
            page.wait_for_function(
                "() => window.Bokeh && Bokeh.documents.length > 0 && Bokeh.documents[0].roots().length > 0",
                timeout=WAIT_MS,
            )
            page.wait_for_timeout(1500)  # let onload callbacks fill the page
            doc = page.evaluate(DOCUMENT_JS)
            found = leaks(ctx, who, doc, url)  # the id the user typed is not a leak
            if found:
                failures.append(f"{path} as {who}: carries {found}")
            if path.startswith("/model?"):
                opened = "model_A_secret" in doc
                if opened != (who == "admin") or (who != "admin" and "may not open it" not in doc):
                    failures.append(f"{path} as {who}: opened={opened}")
            own = {"admin": "dev-a1", "customer": "dev-a1", "other_customer": "dev-a2", "other_admin": "dev-b"}[who]
            if path == "/" and own not in doc:  # the scan sees the page's content, not an empty shell
                failures.append(f"/ as {who}: its own device {own} is not on the page")
            if path == "/models" and ("model_A_secret" in doc) != (who == "admin"):
                failures.append(f"/models as {who}: lists model_A_secret={who != 'admin'}")
            if path.startswith("/profiles"):  # tenant administrators only, each its own tenant's profiles
                editor = "Device profile" in doc and "prov-" in doc
                if editor != (who in ("admin", "other_admin")) or (
                    not editor and "tenant administrators only" not in doc
                ):
                    failures.append(f"{path} as {who}: editor={editor}")
            if path == "/rules" and ("chain_AT_secret" in doc) != (who == "admin"):
                failures.append(f"/rules as {who}: lists chain_AT_secret={who != 'admin'}")
            if path == "/rules" and who in ("customer", "other_customer") and "tenant administrators only" not in doc:
                failures.append(f"/rules as {who}: no refusal")
        context.close()
    assert not failures, "\n".join(failures)


# --------------------------------------------------------------------------- secrets at rest and in logs
def test_passwords_are_stored_only_as_slow_hashes(ctx):
    """No file of the data directory holds a password in clear; the users table holds one
    scrypt hash per user (the format of :mod:`tbpanel.entities.passwords`)."""
    import sqlite3

    for path in ctx.w.server.data.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not [who for who, (_, pw) in PASSWORDS.items() if pw.encode() in data], path
    dbs = [p for p in ctx.w.server.data.rglob("*") if p.is_file() and p.read_bytes()[:16] == b"SQLite format 3\x00"]
    hashes = []
    for db in dbs:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            if conn.execute("SELECT 1 FROM sqlite_master WHERE name='users'").fetchone():
                hashes += [r[0] for r in conn.execute("SELECT password_hash FROM users")]
    assert len(hashes) >= len(PASSWORDS)  # more: the users the matrix's POST /api/user rows made
    assert all(h.startswith("scrypt$16384$8$1$") for h in hashes), hashes


def test_no_secret_in_the_server_output(ctx):
    """After everything above ran at debug level: no password, device access token, JWT,
    cookie secret or session cookie appears anywhere in the server's output."""
    output = "".join(ctx.w.server.output)
    assert "DEBUG" in output and "/api/v1/***/telemetry" in output  # debug access lines were logged
    assert len(ctx.secrets) >= 15
    found = [s[:12] + "…" for s in ctx.secrets if s in output]
    assert not found, found
