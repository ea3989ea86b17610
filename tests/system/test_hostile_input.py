"""Hostile input against one real server: every bad request gets a 4xx with a message, stores
nothing, and the server keeps serving (issue 8, item 2).

Table-driven cases name each kind of bad input once; hypothesis then throws generated
payloads, query parameters and WebSocket commands at the same server. After every batch the
server must still answer ``/liveness`` and an authenticated read, its log must hold no
traceback, and the device the rejected requests were aimed at must hold no data.
"""

from __future__ import annotations

import asyncio
import json
import math
import uuid

import pytest
import requests
import tornado.websocket
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from tornado.websocket import websocket_connect

from tbpanel.store.payload import MAX_KEY_LENGTH, MAX_STRING_LENGTH, TS_MAX, PayloadError, parse_telemetry
from tests.helpers import jwt, open_world

TIMEOUT = 20  # seconds per request or WebSocket read: a hang fails the test instead of stalling it


def examples(n: int) -> settings:
    """Bounded, reproducible runs against the live server (no per-example deadline)."""
    return settings(
        max_examples=n,
        deadline=None,
        derandomize=True,
        report_multiple_bugs=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@pytest.fixture(scope="module")
def w(tmp_path_factory):
    world = open_world(tmp_path_factory.mktemp("hostile-data"))
    try:
        yield world
    finally:
        world.server.stop()


@pytest.fixture(scope="module")
def target(w):
    """A device that only ever receives rejected requests: (id, access token)."""
    return w.new_device("hostile-target")


def rejected(r: requests.Response, *statuses: int) -> None:
    """A 4xx answer in ThingsBoard's JSON error shape with a non-empty message."""
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    if statuses:
        assert r.status_code in statuses, (r.status_code, r.text[:300])
    body = r.json()
    assert body["status"] == r.status_code and isinstance(body["message"], str) and body["message"], body


def assert_serving(w, start: int = 0) -> None:
    """Still live, still answering an authenticated read, and no traceback since ``start``."""
    assert requests.get(w.url + "/liveness", timeout=TIMEOUT).status_code == 200
    assert w.admin.get("/api/auth/user").status_code == 200
    log = "".join(w.server.output[start:])
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]


def assert_untouched(w, device_id: str) -> None:
    """Nothing of any rejected request reached the device: no series, no attributes."""
    base = f"/api/plugins/telemetry/DEVICE/{device_id}"
    assert w.admin.get(f"{base}/keys/timeseries").json() == []
    assert w.admin.get(f"{base}/values/attributes").json() == []


# ------------------------------------------------------------------------- payload tables
BIG = 2**63
TELEMETRY_BAD = {
    "empty body": b"",
    "whitespace body": b"  \n ",
    "truncated object": b'{"temperature": 21.5',
    "truncated array": b'[{"a": 1}, ',
    "truncated timestamped": b'{"ts": 1700000000000, "values": {"a": 1}',
    "unquoted key": b"{a: 1}",
    "single quotes": b"{'a': 1}",
    "trailing comma": b'{"a": 1,}',
    "leading zero": b'{"a": 01}',
    "invalid utf-8": b'{"a": "\xff\xfe"}',
    "lone surrogate key": b'{"\\ud800": 1}',
    "NaN literal": b'{"a": NaN}',
    "Infinity literal": b'{"a": Infinity}',
    "-Infinity literal": b'{"a": -Infinity}',
    "float overflow": b'{"a": 1e400}',
    "2**63": f'{{"a": {BIG}}}'.encode(),
    "-2**63-1": f'{{"a": {-BIG - 1}}}'.encode(),
    "2**64": f'{{"a": {2**64}}}'.encode(),
    "10**40": b'{"a": 10000000000000000000000000000000000000000}',
    "huge int in array": f'[{{"a": 1}}, {{"b": {2**70}}}]'.encode(),
    "string top level": b'"temperature"',
    "number top level": b"42",
    "null top level": b"null",
    "array of numbers": b"[1, 2, 3]",
    "array with a number": b'[{"a": 1}, 5]',
    "values not an object": b'{"ts": 1700000000000, "values": 5}',
    "values an array": b'{"ts": 1700000000000, "values": [1, 2]}',
    "ts a word": b'{"ts": "soon", "values": {"a": 1}}',
    "ts a bool": b'{"ts": true, "values": {"a": 1}}',
    "ts fractional": b'{"ts": 1700000000000.5, "values": {"a": 1}}',
    "ts negative": b'{"ts": -1, "values": {"a": 1}}',
    "ts negative string": b'{"ts": "-5", "values": {"a": 1}}',
    "ts past year 9999": f'{{"ts": {TS_MAX + 1}, "values": {{"a": 1}}}}'.encode(),
    "ts 1e20": b'{"ts": 1e20, "values": {"a": 1}}',
    "ts beyond 64 bits": f'{{"ts": {2**65}, "values": {{"a": 1}}}}'.encode(),
    "one bad element rejects all": b'[{"ts": 1700000000000, "values": {"good": 1}}, {"ts": -1, "values": {"bad": 1}}]',
    "deep nesting": b"[" * 5000 + b"]" * 5000,
    "deep nesting in a value": b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    "empty key": b'{"": 1}',
    "key too long": json.dumps({"k" * (MAX_KEY_LENGTH + 1): 1}).encode(),
    "NUL in key": b'{"a\\u0000b": 1}',
    "control char key": b'{"\\u0001": 1}',
    "newline in key": b'{"line\\nbreak": 1}',
    "escape in key": b'{"\\u001b[31m": 1}',
    "string too long": json.dumps({"a": "x" * (MAX_STRING_LENGTH + 1)}).encode(),
}
#: Accepted as no-ops by the device API (ThingsBoard's probe), refused by the REST save.
EMPTY = {
    "empty object": b"{}",
    "empty array": b"[]",
    "empty values": b'{"ts": 1700000000000, "values": {}}',
    "only nulls": b'{"a": null}',
}
ATTRIBUTES_BAD = {
    k: v
    for k, v in TELEMETRY_BAD.items()
    if not (k.startswith("ts ") or k.startswith("values ") or "array" in k or k == "one bad element rejects all")
}
ATTRIBUTES_BAD |= {"array top level": b'[{"a": 1}]'}


def device_post(w, token: str, kind: str, body, **kw) -> requests.Response:
    return requests.post(f"{w.url}/api/v1/{token}/{kind}", data=body, timeout=TIMEOUT, **kw)


@pytest.mark.parametrize("case", sorted(TELEMETRY_BAD))
def test_device_telemetry_rejects(w, target, case):
    rejected(device_post(w, target[1], "telemetry", TELEMETRY_BAD[case]), 400)


@pytest.mark.parametrize("case", sorted(ATTRIBUTES_BAD))
def test_device_attributes_rejects(w, target, case):
    rejected(device_post(w, target[1], "attributes", ATTRIBUTES_BAD[case]), 400)


@pytest.mark.parametrize("case", sorted(TELEMETRY_BAD))
def test_rest_save_rejects(w, target, case):
    r = w.admin.post(f"/api/plugins/telemetry/DEVICE/{target[0]}/timeseries/ANY", data=TELEMETRY_BAD[case])
    rejected(r, 400)


@pytest.mark.parametrize("case", sorted(EMPTY))
def test_empty_payloads(w, target, case):
    assert device_post(w, target[1], "telemetry", EMPTY[case]).status_code == 200
    rejected(w.admin.post(f"/api/plugins/telemetry/DEVICE/{target[0]}/timeseries/ANY", data=EMPTY[case]), 400)


def test_huge_bodies_are_413(w, target):
    limit = 1 << 20  # Platform.max_body_bytes
    body = b'{"a": "' + b"x" * (2 * limit) + b'"}'
    rejected(device_post(w, target[1], "telemetry", body), 413)
    rejected(device_post(w, target[1], "attributes", body), 413)
    # no Content-Length: the cap is enforced while the chunks stream in
    rejected(device_post(w, target[1], "telemetry", (body[i : i + 65536] for i in range(0, len(body), 65536))), 413)
    rejected(w.admin.post(f"/api/plugins/telemetry/DEVICE/{target[0]}/timeseries/ANY", data=body), 400)
    rejected(requests.post(w.url + "/api/auth/login", data=b"{" * (3 * limit), timeout=TIMEOUT), 400)


def test_device_routes_and_bodies_leave_the_target_untouched(w, target):
    assert_untouched(w, target[0])
    assert_serving(w)


def test_oversized_request_line_is_dropped_not_hung(w, target):
    """Tornado closes a connection whose request line and headers pass 64 KiB (documented)."""
    url = f"{w.url}/api/plugins/telemetry/DEVICE/{target[0]}/values/timeseries?keys={'k' * 70_000}"
    try:
        r = w.admin.get(url[len(w.url) :])
    except requests.ConnectionError:
        pass
    else:
        assert 400 <= r.status_code < 500
    assert_serving(w)


# ------------------------------------------------------------------------- query tables
def query_cases(w, did: str, cid: str) -> list[tuple[str, str, str]]:
    """(name, method, path) of bad query parameters and malformed ids on every REST family."""
    tel = f"/api/plugins/telemetry/DEVICE/{did}"
    hist = f"{tel}/values/timeseries?keys=a"
    return [
        ("reversed range", "GET", f"{hist}&startTs=2000&endTs=1000"),
        ("empty range", "GET", f"{hist}&startTs=1000&endTs=1000"),
        ("negative start", "GET", f"{hist}&startTs=-5&endTs=1000"),
        ("end past 9999", "GET", f"{hist}&startTs=0&endTs={TS_MAX + 2}"),
        ("end beyond 64 bits", "GET", f"{hist}&startTs=0&endTs={2**64}"),
        ("start a float", "GET", f"{hist}&startTs=1e3&endTs=5000"),
        ("start with underscores", "GET", f"{hist}&startTs=1_000&endTs=5000"),
        ("start a word", "GET", f"{hist}&startTs=yesterday&endTs=5000"),
        ("only start", "GET", f"{tel}/values/timeseries/history?keys=a&startTs=1000"),
        ("history without keys", "GET", f"{tel}/values/timeseries/history?startTs=0&endTs=10"),
        ("zero interval", "GET", f"{hist}&startTs=0&endTs=1000&agg=AVG&interval=0"),
        ("negative interval", "GET", f"{hist}&startTs=0&endTs=1000&agg=AVG&interval=-10"),
        ("missing interval", "GET", f"{hist}&startTs=0&endTs=1000&agg=MAX"),
        ("unknown agg", "GET", f"{hist}&startTs=0&endTs=1000&agg=MEDIAN&interval=10"),
        ("billions of buckets", "GET", f"{hist}&startTs=0&endTs={TS_MAX}&agg=AVG&interval=1"),
        ("billions of weeks", "GET", f"{hist}&startTs=0&endTs=1000000&agg=AVG&interval=1&intervalType=FORTNIGHT"),
        (
            "unknown time zone",
            "GET",
            f"{hist}&startTs=0&endTs=86400000&agg=AVG&interval=1&intervalType=WEEK&timeZone=Mars/Base",
        ),
        ("limit zero", "GET", f"{hist}&startTs=0&endTs=1000&limit=0"),
        ("limit beyond 64 bits", "GET", f"{hist}&startTs=0&endTs=1000&limit={2**64}"),
        ("limit 5000 digits", "GET", f"{hist}&startTs=0&endTs=1000&limit={'9' * 5000}"),
        ("bad orderBy", "GET", f"{hist}&startTs=0&endTs=1000&orderBy=SIDEWAYS"),
        ("bad strict flag", "GET", f"{hist}&startTs=0&endTs=1000&useStrictDataTypes=maybe"),
        ("malformed device id", "GET", "/api/plugins/telemetry/DEVICE/not-a-uuid/values/timeseries"),
        ("unknown device id", "GET", f"/api/plugins/telemetry/DEVICE/{uuid.uuid4()}/keys/timeseries"),
        ("asset entity type", "GET", f"/api/plugins/telemetry/ASSET/{did}/keys/timeseries"),
        ("delete reversed", "DELETE", f"{tel}/timeseries/delete?keys=a&startTs=10&endTs=5"),
        ("delete no range", "DELETE", f"{tel}/timeseries/delete?keys=a"),
        ("delete no keys", "DELETE", f"{tel}/timeseries/delete?startTs=0&endTs=5"),
        ("delete huge end", "DELETE", f"{tel}/timeseries/delete?keys=a&startTs=0&endTs={2**63}"),
        ("save ttl word", "POST", f"{tel}/timeseries/ANY/forever"),
        ("device malformed id", "GET", "/api/device/12345"),
        ("device unknown id", "GET", f"/api/device/{uuid.uuid4()}"),
        ("credentials malformed id", "GET", "/api/device/%00/credentials"),
        ("page beyond 64 bits", "GET", f"/api/tenant/devices?pageSize=10&page={2**63}"),
        ("page past a Java int", "GET", f"/api/tenant/devices?pageSize=10&page={2**31}"),
        ("page negative", "GET", "/api/tenant/devices?pageSize=10&page=-1"),
        ("pageSize zero", "GET", "/api/tenant/devices?pageSize=0&page=0"),
        ("pageSize huge", "GET", "/api/tenant/devices?pageSize=100000000&page=0"),
        ("bad sortOrder", "GET", "/api/tenant/devices?pageSize=10&page=0&sortOrder=UP"),
        ("customers page huge", "GET", f"/api/customers?pageSize=10&page={10**30}"),
        ("customer malformed id", "GET", "/api/customer/xyz/devices?pageSize=10&page=0"),
        ("customer device page huge", "GET", f"/api/customer/{cid}/devices?pageSize=10&page={2**63}"),
        ("alarms page huge", "GET", f"/api/alarms?pageSize=10&page={2**63}"),
        ("alarms start beyond 64 bits", "GET", f"/api/alarms?pageSize=10&page=0&startTime={2**63}"),
        ("alarms reversed", "GET", "/api/alarms?pageSize=10&page=0&startTime=10&endTime=5"),
        ("alarms bad status", "GET", "/api/alarms?pageSize=10&page=0&status=ON_FIRE"),
        ("alarms bad severity", "GET", "/api/alarms?pageSize=10&page=0&severity=APOCALYPTIC"),
        ("alarms bad sort", "GET", "/api/alarms?pageSize=10&page=0&sortProperty=password"),
        ("alarms malformed model", "GET", "/api/alarms?pageSize=10&page=0&modelId=zz"),
        ("alarms malformed device", "GET", "/api/alarms?pageSize=10&page=0&deviceId=zz"),
        ("alarm malformed id", "GET", "/api/alarm/zz"),
        ("alarm ack malformed id", "POST", "/api/alarm/zz/ack"),
        ("entity alarms asset", "GET", f"/api/alarm/ASSET/{did}?pageSize=10&page=0"),
        ("highest severity bad status", "GET", f"/api/alarm/highestSeverity/DEVICE/{did}?searchStatus=SOMETIMES"),
        ("model malformed id", "GET", "/api/tbpanel/models/zz"),
        ("model unknown id", "GET", f"/api/tbpanel/models/{uuid.uuid4()}"),
        ("model tasks malformed", "GET", "/api/tbpanel/models/zz/tasks?limit=0"),
        ("task malformed id", "GET", "/api/tbpanel/tasks/zz"),
        ("task unknown id", "POST", f"/api/tbpanel/tasks/{uuid.uuid4()}/cancel"),
        ("unknown route", "GET", "/api/no/such/thing"),
    ]


def test_bad_query_parameters_and_ids(w, target):
    start = len(w.server.output)
    _, cid = next(iter(w.customer_ids.items()))
    failures = []
    for name, method, path in query_cases(w, target[0], cid):
        r = w.admin.session.request(
            method, w.url + path, timeout=TIMEOUT, data=b'{"a": 1}' if method == "POST" else None
        )
        try:
            rejected(r)
        except AssertionError as e:
            failures.append(f"{name}: {e}")
    assert not failures, "\n".join(failures)
    assert_untouched(w, target[0])
    assert_serving(w, start)


JSON_BODY_CASES = {
    "/api/auth/login": [b"", b"[1,2", b"[]", b'{"username": 5, "password": "x"}', b'{"username": "a"}', b"NaN"],
    "/api/auth/token": [b"", b"{}", b'{"refreshToken": 5}', b'{"refreshToken": "not.a.jwt"}', b'"x"'],
    "/api/device": [
        b"",
        b"{",
        b"[]",
        b'{"name": ""}',
        b'{"name": 5}',
        b'{"name": "' + b"n" * 300 + b'"}',
        b'{"name": "a\\u0000b"}',
        b'{"name": "x", "type": ["a"]}',
        b'{"name": "x", "label": 7}',
        b'{"name": "x", "id": "not-a-uuid"}',
        b'{"name": "x", "additionalInfo": 1e400}',
    ],
    "/api/customer": [
        b"",
        b"[]",
        b'{"title": ""}',
        b'{"title": "' + b"t" * 300 + b'"}',
        b'{"title": "t", "id": "zz"}',
        b'{"title": "t", "email": 5}',
    ],
    "/api/alarm": [
        b"",
        b"[]",
        b'{"type": "t"}',
        b'{"type": "' + b"t" * 300 + b'", "originator": {"id": "%s"}}',
        b'{"type": "t", "originator": {"id": "%s"}, "startTs": 9223372036854775808}',
        b'{"type": "t", "originator": {"id": "%s"}, "endTs": 18446744073709551615}',
        b'{"type": "t", "originator": {"id": "%s"}, "startTs": -1}',
        b'{"type": "t", "originator": {"id": "%s"}, "severity": "APOCALYPTIC"}',
        b'{"type": "t", "originator": {"id": "%s"}, "details": [1]}',
        b'{"type": "t", "originator": {"id": "%s"}, "acknowledged": "yes"}',
        b'{"type": "t", "originator": {"entityType": "ASSET", "id": "%s"}}',
        b'{"type": "t", "originator": "%s"}',
    ],
    "/api/tbpanel/models": [
        b"",
        b"[]",
        b'{"config": 5}',
        b'{"config": {"nope": 1}}',
        b'{"config": {"name": ""}}',
        b'{"config": {"name": "' + b"m" * 300 + b'"}}',
        b'{"config": {"items": ["zz"]}}',
        b'{"config": {"items": 5}}',
        b'{"config": {}, "refresh": 5}',
        b'{"config": {}, "refresh": {"enabled": "yes"}}',
        b'{"config": {"window": "wide"}}',
    ],
}


MODEL_BODY_CASES = {
    "PUT": {
        "": [
            b"",
            b"[]",
            b'{"config": 5}',
            b'{"config": {"nope": 1}}',
            b'{"config": {"name": "' + b"m" * 300 + b'"}}',
            b'{"config": {"items": ["zz"]}}',
        ],
        "/refresh": [b"", b"[]", b'{"enabled": "yes"}', b'{"interval_ms": -5}', b'{"items": ["zz"]}', b'{"nope": 1}'],
    },
    "POST": {
        "/reprocess": [
            b"",
            b"{}",
            b'{"startTs": "0", "endTs": 10}',
            b'{"startTs": 0, "endTs": 1e400}',
            b'{"startTs": 0, "endTs": 9223372036854775808}',
            b'{"startTs": -5, "endTs": 10}',
            b'{"startTs": 10, "endTs": 5}',
            b'{"startTs": 0, "endTs": 10, "items": ["zz"]}',
            b'{"startTs": 0, "endTs": 10, "items": 5}',
        ],
        "/experiments": [
            b"",
            b"{}",
            b'{"variants": 5}',
            b'{"variants": {"a": 5}}',
            b'{"variants": {"a": {"nope": 1}}}',
            b'{"variants": {}, "startTs": 10, "endTs": 5}',
            b'{"variants": {}, "startTs": 0, "endTs": 99999999999999999999999}',
            b'{"variants": {}, "startTs": 0, "endTs": 10, "items": ["zz"]}',
        ],
    },
}


def test_bad_model_bodies(w):
    """The model routes' bodies; the model and its task list are unchanged afterwards."""
    start = len(w.server.output)
    model = w.admin.post("/api/tbpanel/models", json={"config": {"name": "hostile-model"}}).json()
    base = f"/api/tbpanel/models/{model['id']}"
    refresh = w.admin.get(f"{base}/refresh").json()
    failures = []
    for method, routes in MODEL_BODY_CASES.items():
        for suffix, bodies in routes.items():
            for body in bodies:
                r = w.admin.session.request(method, w.url + base + suffix, data=body, timeout=TIMEOUT)
                try:
                    rejected(r)
                except AssertionError as e:
                    failures.append(f"{method} {suffix} {body[:80]!r}: {e}")
    assert not failures, "\n".join(failures)
    after = w.admin.get(base).json()
    assert after["name"] == "hostile-model" and after["status"] == model["status"]
    assert w.admin.get(f"{base}/refresh").json() == refresh
    assert w.admin.get(f"{base}/tasks").json() == []
    assert_serving(w, start)


def test_bad_json_bodies(w, target):
    start = len(w.server.output)
    failures = []
    before = {
        p: w.admin.get(p + "s?pageSize=100&page=0").json().get("totalElements") for p in ("/api/customer", "/api/alarm")
    }
    models_before = len(w.admin.get("/api/tbpanel/models").json())
    n = 0
    for path, bodies in JSON_BODY_CASES.items():
        for body in bodies:
            body = body.replace(b"%s", target[0].encode())
            r = w.admin.post(path, data=body)
            n += 1
            try:
                rejected(r)
            except AssertionError as e:
                failures.append(f"{path} {body[:80]!r}: {e}")
    assert not failures, "\n".join(failures)
    assert n >= 40
    # nothing was created by a rejected body
    names = [d["name"] for d in w.admin.get("/api/tenant/devices?pageSize=1000&page=0").json()["data"]]
    assert sorted(names) == sorted(
        ["dev-a1", "dev-a2", "dev-tenant", "hostile-target"] + [n for n in names if n.startswith("hyp-")]
    )
    assert {
        p: w.admin.get(p + "s?pageSize=100&page=0").json().get("totalElements") for p in ("/api/customer", "/api/alarm")
    } == before
    assert len(w.admin.get("/api/tbpanel/models").json()) == models_before
    assert_serving(w, start)


# ------------------------------------------------------------------------- hypothesis: device API
# Keys: mostly ordinary, sometimes empty, control characters, unicode or too long.
keys = st.one_of(
    st.text(alphabet="abcxyz_", min_size=1, max_size=8),
    st.text(max_size=12),
    st.text(alphabet=st.characters(max_codepoint=0x1F), min_size=1, max_size=3),
    st.just("k" * (MAX_KEY_LENGTH + 1)),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["12", "-3.5", "1e400", "NaN", " 7"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=3)),
    max_leaves=8,
)
timestamps = st.one_of(
    st.integers(min_value=-(2**66), max_value=2**66),
    st.just(1_700_000_000_000),
    st.floats(allow_nan=True),
    st.text(max_size=5),
    st.booleans(),
)
objects = st.one_of(
    st.dictionaries(keys, json_values, max_size=4),
    st.fixed_dictionaries(
        {"ts": timestamps, "values": st.one_of(st.dictionaries(keys, json_values, max_size=4), json_values)}
    ),
)
payloads = st.one_of(objects, st.lists(objects, max_size=3), json_values)


def encode(value) -> bytes:
    """JSON text as a careless client writes it: NaN/Infinity literals and huge ints included."""
    return json.dumps(value, allow_nan=True).encode()


mutations = st.sampled_from(["none", "none", "truncate", "garbage"])


def mutate(body: bytes, how: str) -> bytes:
    if how == "truncate" and len(body) > 1:
        return body[: len(body) // 2]
    if how == "garbage":
        return body + b"}"
    return body


def stored_keys(w, device_id: str) -> set[str]:
    return set(w.admin.get(f"/api/plugins/telemetry/DEVICE/{device_id}/keys/timeseries").json())


def test_device_api_generated_payloads(w):
    """Generated payloads: each is answered 200 or 400 (never 5xx); exactly the keys of the
    accepted ones are stored, so nothing of a rejected payload is."""
    start = len(w.server.output)
    did, token = w.new_device("hyp-device")
    accepted: set[str] = set()
    counts = {"accepted": 0, "rejected": 0}

    @examples(300)
    @given(payload=payloads, how=mutations)
    def check(payload, how):
        body = mutate(encode(payload), how)
        r = device_post(w, token, "telemetry", body)
        if r.status_code == 200:
            counts["accepted"] += 1
            accepted.update(key for _, key, _, _ in parse_telemetry(body, 0))
        else:
            counts["rejected"] += 1
            rejected(r, 400)
            with pytest.raises(PayloadError):  # the server agrees with the parser it uses
                parse_telemetry(body, 0)

    check()
    assert counts["rejected"] > 0
    assert stored_keys(w, did) == accepted
    assert_serving(w, start)


# ------------------------------------------------------------------------- hypothesis: REST queries
ints_as_text = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.sampled_from(["", "1e3", "0x10", "1_0", " 5", "NaN", "-0", "9" * 30]),
    st.text(max_size=6),
)
query_params = st.fixed_dictionaries(
    {},
    optional={
        "keys": st.sampled_from(["a", "a,b", "", ",", "x" * 300]),
        "startTs": ints_as_text,
        "endTs": ints_as_text,
        "interval": ints_as_text,
        "limit": ints_as_text,
        "agg": st.sampled_from(["NONE", "AVG", "MIN", "max", "COUNT", "SUM", "MEDIAN", ""]),
        "intervalType": st.sampled_from(["MILLISECONDS", "WEEK", "WEEK_ISO", "MONTH", "QUARTER", "DAY", ""]),
        "timeZone": st.sampled_from(["UTC", "Europe/Berlin", "Mars/Base", "", "../../etc/passwd"]),
        "orderBy": st.sampled_from(["ASC", "DESC", "UP", ""]),
        "useStrictDataTypes": st.sampled_from(["true", "false", "maybe"]),
    },
)


def test_rest_generated_history_queries(w, target):
    """Generated history queries are answered 200 with a series object or 4xx with a message;
    a reversed or empty range is always a 400."""
    start = len(w.server.output)
    did = w.devices["dev-tenant"]["id"]["id"]
    seen = {"ok": 0, "rejected": 0}

    @examples(150)
    @given(params=query_params, history=st.booleans())
    def check(params, history):
        path = f"/api/plugins/telemetry/DEVICE/{did}/values/timeseries" + ("/history" if history else "")
        r = w.admin.get(path, params=params)
        if r.status_code == 200:
            seen["ok"] += 1
            assert isinstance(r.json(), dict)
            s, e = params.get("startTs", ""), params.get("endTs", "")
            if s.lstrip("-").isdigit() and e.lstrip("-").isdigit() and int(s) >= int(e):
                raise AssertionError(f"reversed range accepted: {params}")
        else:
            seen["rejected"] += 1
            rejected(r)

    check()
    assert seen["rejected"] > 0
    assert_serving(w, start)


alarm_params = st.fixed_dictionaries(
    {},
    optional={
        "pageSize": ints_as_text,
        "page": ints_as_text,
        "startTime": ints_as_text,
        "endTime": ints_as_text,
        "sortProperty": st.sampled_from(["createdTime", "severity", "secret", ""]),
        "sortOrder": st.sampled_from(["ASC", "DESC", "x"]),
        "searchStatus": st.sampled_from(["ANY", "ACTIVE", "x"]),
        "status": st.sampled_from(["ACTIVE_UNACK", "x", ""]),
        "textSearch": st.text(max_size=10),
        "deviceId": st.sampled_from(["zz", str(uuid.uuid4()), ""]),
    },
)


def test_rest_generated_list_queries(w):
    """Generated paging/alarm parameters on the list routes: 200 PageData or 4xx with a message."""
    start = len(w.server.output)

    @examples(150)
    @given(params=alarm_params, path=st.sampled_from(["/api/alarms", "/api/tenant/devices", "/api/customers"]))
    def check(params, path):
        r = w.admin.get(path, params=params)
        if r.status_code == 200:
            assert set(r.json()) >= {"data", "totalElements"}
        else:
            rejected(r)

    check()
    assert_serving(w, start)


# ------------------------------------------------------------------------- WebSocket
async def ws_exchange(url: str, messages: list[str], *, legacy: bool, token: str, until: int | None = None) -> list:
    """Send each message on one authenticated socket and read one answer for it (None when
    the socket closed instead). With ``until``: send them all, then read every answer up to
    and including the one to command ``until``."""
    path = f"/api/ws/plugins/telemetry?token={token}" if legacy else "/api/ws"
    conn = await websocket_connect(url.replace("http", "ws", 1) + path)
    try:
        if not legacy:
            await conn.write_message(json.dumps({"authCmd": {"cmdId": 0, "token": token}}))
        answers = []
        for m in messages:
            await conn.write_message(m)
            if until is None:
                answers.append(await asyncio.wait_for(conn.read_message(), TIMEOUT))
        while until is not None:
            answers.append(await asyncio.wait_for(conn.read_message(), TIMEOUT))
            if answers[-1] is None or json.loads(answers[-1]).get("subscriptionId") == until:
                return answers
        return answers
    finally:
        conn.close()


def ws_cases(did: str) -> list[tuple[str, dict | str]]:
    """(name, command or raw message) — commands get wrapped per endpoint."""
    base = {"cmdId": 7, "entityType": "DEVICE", "entityId": did, "keys": "a"}
    return [
        ("reversed range", dict(base, startTs=2000, endTs=1000)),
        ("empty range", dict(base, startTs=1000, endTs=1000)),
        ("negative start", dict(base, startTs=-1, endTs=1000)),
        ("end beyond 64 bits", dict(base, startTs=0, endTs=2**65)),
        ("end 2**63", dict(base, startTs=0, endTs=2**63)),
        ("fractional start", dict(base, startTs=0.5, endTs=1000)),
        ("start a word", dict(base, startTs="soon", endTs=1000)),
        ("start an object", dict(base, startTs={"a": 1}, endTs=1000)),
        ("limit beyond 64 bits", dict(base, startTs=0, endTs=1000, limit=2**63)),
        ("zero interval", dict(base, startTs=0, endTs=1000, agg="AVG", interval=0)),
        ("negative interval", dict(base, startTs=0, endTs=1000, agg="AVG", interval=-5)),
        ("unknown agg", dict(base, startTs=0, endTs=1000, agg="MEDIAN", interval=10)),
        ("agg not a string", dict(base, startTs=0, endTs=1000, agg=5, interval=10)),
        ("billions of buckets", dict(base, startTs=0, endTs=TS_MAX, agg="AVG", interval=1)),
        ("keys a number", dict(base, keys=5, startTs=0, endTs=10)),
        ("no keys", dict(base, keys="", startTs=0, endTs=10)),
        ("malformed id", dict(base, entityId="not-a-uuid", startTs=0, endTs=10)),
        ("id a list", dict(base, entityId=[1], startTs=0, endTs=10)),
        ("unknown id", dict(base, entityId=str(uuid.uuid4()), startTs=0, endTs=10)),
        ("asset", dict(base, entityType="ASSET", startTs=0, endTs=10)),
        ("entity type a number", dict(base, entityType=5, startTs=0, endTs=10)),
        ("no cmdId", {k: v for k, v in dict(base, startTs=0, endTs=10).items() if k != "cmdId"}),
        ("cmdId negative", dict(base, cmdId=-3, startTs=0, endTs=10)),
        ("cmdId beyond a Java int", dict(base, cmdId=2**31, startTs=0, endTs=10)),
        ("cmdId a word", dict(base, cmdId="seven", startTs=0, endTs=10)),
        ("command a number", 5),
        ("sub huge window", {"sub": dict(base, timeWindow=2**63)}),
        ("sub negative window", {"sub": dict(base, timeWindow=-1)}),
        ("sub window from far future", {"sub": dict(base, timeWindow=1000, startTs=2**63)}),
        ("sub window billions of buckets", {"sub": dict(base, timeWindow=10**13, agg="AVG", interval=1)}),
        ("sub unknown device", {"sub": dict(base, entityId=str(uuid.uuid4()))}),
        ("not JSON", "{'cmdId': 1"),
        ("truncated", '{"historyCmds": [{"cmdId": 1'),
        ("NaN literal", '{"historyCmds": [{"cmdId": 1, "startTs": NaN}]}'),
        ("top-level array", "[1, 2]"),
        ("top-level string", '"hello"'),
        ("deep nesting", "[" * 3000 + "]" * 3000),
    ]


def ws_message(case, legacy: bool) -> str:
    if isinstance(case, str):
        return case
    if isinstance(case, dict) and "sub" in case:
        cmd = case["sub"]
        return json.dumps({"tsSubCmds": [cmd]} if legacy else {"cmds": [dict(cmd, type="TIMESERIES")]})
    if legacy:
        return json.dumps({"historyCmds": [case]})
    return json.dumps({"cmds": [dict(case, type="TIMESERIES_HISTORY") if isinstance(case, dict) else case]})


def assert_ws_bad_request(answer, name: str) -> None:
    assert answer is not None, f"{name}: the socket closed"
    msg = json.loads(answer)
    code = msg.get("errorCode")
    assert code in (2, 3) and msg.get("errorMsg"), f"{name}: {answer[:300]}"


WS_ALARM_QUERIES = [
    5,
    "x",
    {"pageLink": 5},
    {"pageLink": {"page": 2**63}},
    {"pageLink": {"page": -1}},
    {"pageLink": {"pageSize": 2**63}},
    {"pageLink": {"pageSize": 0}},
    {"pageLink": {"startTs": 2**63}},
    {"pageLink": {"endTs": "soon"}},
    {"pageLink": {"sortOrder": {"key": 5}}},
    {"pageLink": {"sortOrder": {"key": {"key": ["x"]}}}},
    {"pageLink": {"sortOrder": {"key": {"key": "password"}}}},
    {"pageLink": {"statusList": ["SOMETIMES"]}},
    {"pageLink": {"severityList": [5]}},
    {"pageLink": {"typeList": "x"}},
    {"pageLink": {"timeWindow": -5}},
    {"entityFilter": 5},
    {"entityFilter": {"type": "assetType"}},
    {"entityFilter": {"type": "singleEntity", "singleEntity": "x"}},
    {"entityFilter": {"type": "singleEntity", "singleEntity": {"entityType": "DEVICE", "id": "zz"}}},
    {"entityFilter": {"type": "entityList", "entityType": "DEVICE", "entityList": "zz"}},
    {"entityFilter": {"type": "entityList", "entityType": "DEVICE", "entityList": ["zz"]}},
]


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "api-ws"])
def test_websocket_bad_commands(w, target, legacy):
    start = len(w.server.output)
    cases = ws_cases(target[0])
    messages = [ws_message(c, legacy) for _, c in cases]
    if not legacy:
        messages += [json.dumps({"cmds": [{"type": "ALARM_DATA", "cmdId": 9, "query": q}]}) for q in WS_ALARM_QUERIES]
        messages += [
            json.dumps({"cmds": 5}),
            json.dumps({"cmds": [5]}),
            json.dumps({"cmds": [{"type": 5, "cmdId": 1}]}),
            json.dumps({"cmds": [{"type": "ENTITY_DATA", "cmdId": 1}]}),
            json.dumps({"cmds": [{"type": "ALARM_DATA"}]}),
        ]
    names = (
        [n for n, _ in cases]
        + [f"alarm query {q!r}"[:60] for q in WS_ALARM_QUERIES] * (not legacy)
        + ["cmds bad"] * 5 * (not legacy)
    )
    good = json.dumps(
        {
            "historyCmds": [
                {"cmdId": 99, "entityType": "DEVICE", "entityId": target[0], "keys": "a", "startTs": 0, "endTs": 1000}
            ]
        }
        if legacy
        else {
            "cmds": [
                {
                    "type": "TIMESERIES_HISTORY",
                    "cmdId": 99,
                    "entityType": "DEVICE",
                    "entityId": target[0],
                    "keys": "a",
                    "startTs": 0,
                    "endTs": 1000,
                }
            ]
        }
    )
    answers = asyncio.run(ws_exchange(w.url, messages + [good], legacy=legacy, token=jwt(w.admin)))
    for name, answer in zip(names, answers[:-1]):
        assert_ws_bad_request(answer, name)
    last = json.loads(answers[-1])
    assert last["subscriptionId"] == 99 and last["errorCode"] == 0  # the socket still serves
    assert_untouched(w, target[0])
    assert_serving(w, start)


ws_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
ws_commands = st.fixed_dictionaries(
    {"cmdId": st.one_of(st.integers(min_value=0, max_value=2**31 - 2), ws_values)},
    optional={
        "entityType": st.one_of(st.just("DEVICE"), ws_values),
        "entityId": ws_values,
        "keys": st.one_of(st.just("a,b"), ws_values),
        "startTs": ws_values,
        "endTs": ws_values,
        "timeWindow": ws_values,
        "interval": ws_values,
        "limit": ws_values,
        "agg": st.one_of(st.sampled_from(["AVG", "NONE", "COUNT"]), ws_values),
        "unsubscribe": ws_values,
    },
)


PROBE = 2**31 - 1  # cmdId of the good command sent after the generated ones


def test_websocket_generated_commands(w, target):
    """Generated commands on both endpoints: every answer is a ThingsBoard update whose
    errorCode is 0, 2 or 3 (never 1, an internal error), and the socket keeps serving."""
    start = len(w.server.output)

    @examples(80)
    @given(
        cmds=st.lists(ws_commands, min_size=1, max_size=3),
        legacy=st.booleans(),
        history=st.booleans(),
        aim=st.booleans(),
    )
    def check(cmds, legacy, history, aim):
        assume(all(c.get("cmdId") != PROBE for c in cmds))  # the probe's answer must be its own
        if aim:  # half of them at a real device, so that the value checks are reached
            cmds = [dict(c, entityId=target[0], entityType="DEVICE") for c in cmds]
        kind = "historyCmds" if history else "tsSubCmds"
        wire = (
            {kind: cmds}
            if legacy
            else {"cmds": [dict(c, type="TIMESERIES_HISTORY" if history else "TIMESERIES") for c in cmds]}
        )
        probe = {
            "cmdId": PROBE,
            "entityType": "DEVICE",
            "entityId": target[0],
            "keys": "a",
            "startTs": 0,
            "endTs": 1000,
        }
        probe = {"historyCmds": [probe]} if legacy else {"cmds": [dict(probe, type="TIMESERIES_HISTORY")]}
        answers = asyncio.run(
            ws_exchange(w.url, [json.dumps(wire), json.dumps(probe)], legacy=legacy, token=jwt(w.admin), until=PROBE)
        )
        assert answers[-1] is not None and json.loads(answers[-1])["errorCode"] == 0  # still serving
        for answer in answers[:-1]:
            msg = json.loads(answer)
            assert msg["errorCode"] in (0, 2, 3), msg
            if msg["errorCode"]:
                assert msg["errorMsg"], msg

    check()
    assert_untouched(w, target[0])
    assert_serving(w, start)


def test_float_strings_are_not_a_way_around_the_checks(w, target):
    """ "1e400" and "NaN" as strings are stored as strings (ThingsBoard's cast rules), never as
    non-finite numbers that would break aggregation."""
    did, token = w.new_device("hyp-strings")
    assert device_post(w, token, "telemetry", b'{"s": "1e400", "n": "NaN"}').status_code == 200
    latest = w.admin.get(f"/api/plugins/telemetry/DEVICE/{did}/values/timeseries?useStrictDataTypes=true").json()
    assert latest["s"][0]["value"] == "1e400" and latest["n"][0]["value"] == "NaN"
    assert not any(isinstance(v[0]["value"], float) and not math.isfinite(v[0]["value"]) for v in latest.values())


def test_websocket_huge_messages(w, target):
    """A message over the 20 MiB WebSocket limit closes that socket (tornado sends 1009 and
    drops the stream, so a client still writing may not read the code); a large junk message
    under it is a bad-request update; the server keeps serving."""
    start = len(w.server.output)

    async def run():
        url = w.url.replace("http", "ws", 1) + f"/api/ws/plugins/telemetry?token={jwt(w.admin)}"
        conn = await websocket_connect(url)
        await conn.write_message('{"historyCmds": [' + " " * (2 << 20) + "1]}")
        junk = json.loads(await asyncio.wait_for(conn.read_message(), TIMEOUT))
        try:
            await conn.write_message('{"historyCmds": ["' + "x" * (21 << 20) + '"]}')
        except tornado.websocket.WebSocketClosedError:  # the server closed it mid-message
            pass
        closed = await asyncio.wait_for(conn.read_message(), TIMEOUT)
        return junk, closed, conn.close_code

    junk, closed, code = asyncio.run(run())
    assert junk["errorCode"] == 2 and junk["errorMsg"]
    assert closed is None and code in (1009, None)
    assert_untouched(w, target[0])
    assert_serving(w, start)


# ------------------------------------------------------------------------- attributes (issue 16 item 1)
ATTRIBUTE_SAVE_PATHS = (
    "/api/plugins/telemetry/DEVICE/{did}/attributes/SHARED_SCOPE",
    "/api/plugins/telemetry/DEVICE/{did}/SERVER_SCOPE",
    "/api/plugins/telemetry/{did}/SHARED_SCOPE",
)


def attribute_cases(did: str, token: str) -> list[tuple[str, str, str, bytes | None]]:
    """(name, method, path, body) of bad attribute requests: every save form with every bad
    attributes body, bad scopes, deletes without keys, and the device side's parameters."""
    tel = f"/api/plugins/telemetry/DEVICE/{did}"
    cases = [
        (f"{path.split('/')[-1]} {name}", "POST", path.format(did=did), body)
        for path in ATTRIBUTE_SAVE_PATHS
        for name, body in {**ATTRIBUTES_BAD, **EMPTY}.items()
        if name != "empty values"  # a flat object with keys ts and values: valid attributes
    ]
    many = ",".join(f"k{i}" for i in range(1001))
    return cases + [
        ("save client scope", "POST", f"{tel}/attributes/CLIENT_SCOPE", b'{"a": 1}'),
        ("save client scope, old form", "POST", f"{tel}/CLIENT_SCOPE", b'{"a": 1}'),
        ("save unknown scope", "POST", f"{tel}/attributes/EVERY_SCOPE", b'{"a": 1}'),
        ("save lower-case scope", "POST", f"{tel}/attributes/shared_scope", b'{"a": 1}'),
        ("save asset", "POST", f"/api/plugins/telemetry/ASSET/{did}/SHARED_SCOPE", b'{"a": 1}'),
        ("save malformed id", "POST", "/api/plugins/telemetry/zz/SHARED_SCOPE", b'{"a": 1}'),
        ("save unknown id", "POST", f"/api/plugins/telemetry/{uuid.uuid4()}/SHARED_SCOPE", b'{"a": 1}'),
        ("delete no keys", "DELETE", f"{tel}/SHARED_SCOPE", None),
        ("delete empty keys", "DELETE", f"{tel}/SHARED_SCOPE?keys=,,", None),
        ("delete unknown scope", "DELETE", f"{tel}/NO_SCOPE?keys=a", None),
        ("delete malformed id", "DELETE", "/api/plugins/telemetry/zz/SERVER_SCOPE?keys=a", None),
        ("values unknown scope", "GET", f"{tel}/values/attributes/NO_SCOPE", None),
        ("keys unknown scope", "GET", f"{tel}/keys/attributes/NO_SCOPE", None),
        ("device request too many keys", "GET", f"/api/v1/{token}/attributes?clientKeys={many}", None),
        ("device request bad flag", "GET", f"/api/v1/{token}/attributes?allSharedKeys=maybe", None),
        ("device request unknown token", "GET", "/api/v1/not-a-token/attributes?sharedKeys=a", None),
        ("poll negative timeout", "GET", f"/api/v1/{token}/attributes/updates?timeout=-1", None),
        ("poll word timeout", "GET", f"/api/v1/{token}/attributes/updates?timeout=soon", None),
        ("poll timeout beyond 64 bits", "GET", f"/api/v1/{token}/attributes/updates?timeout={2**64}", None),
        ("poll unknown token", "GET", "/api/v1/not-a-token/attributes/updates?timeout=1", None),
    ]


def test_bad_attribute_requests(w, target):
    """Every bad attribute request is a 4xx with a message and stores nothing on the target."""
    start = len(w.server.output)
    failures = []
    for name, method, path, body in attribute_cases(*target):
        # one keep-alive session for all: a refusal must not drop the connection either
        r = w.admin.session.request(method, w.url + path, data=body, timeout=TIMEOUT)
        try:
            rejected(r)
        except AssertionError as e:
            failures.append(f"{name}: {e}")
    assert not failures, "\n".join(failures)
    assert_untouched(w, target[0])
    assert_serving(w, start)


@pytest.mark.parametrize("legacy", [True, False], ids=["attrSubCmds", "ATTRIBUTES"])
def test_websocket_bad_attribute_commands(w, target, legacy):
    start = len(w.server.output)
    base = {"cmdId": 7, "entityType": "DEVICE", "entityId": target[0]}
    cases = [
        dict(base, scope="EVERY_SCOPE"),
        dict(base, scope=5),
        dict(base, scope=["SHARED_SCOPE"]),
        dict(base, keys=5),
        dict(base, keys={"a": 1}),
        dict(base, entityId="zz"),
        dict(base, entityId=str(uuid.uuid4())),
        dict(base, entityType="ASSET"),
        dict(base, cmdId=-1),
        dict(base, cmdId="x"),
        5,
    ]

    def wrap(cmd) -> str:
        if legacy:
            return json.dumps({"attrSubCmds": [cmd]})
        return json.dumps({"cmds": [dict(cmd, type="ATTRIBUTES") if isinstance(cmd, dict) else cmd]})

    good = wrap(dict(base, cmdId=99))
    answers = asyncio.run(ws_exchange(w.url, [wrap(c) for c in cases] + [good], legacy=legacy, token=jwt(w.admin)))
    for case, answer in zip(cases, answers[:-1]):
        assert_ws_bad_request(answer, repr(case))
    last = json.loads(answers[-1])
    assert (last["subscriptionId"], last["errorCode"], last["data"]) == (99, 0, {})
    assert_untouched(w, target[0])
    assert_serving(w, start)


# ------------------------------------------------------------------------- claiming, gzip bodies
CLAIM_DEVICE_BAD = [
    b"{",
    b"[]",
    b'"secret"',
    b"null",
    b"42",
    b'{"secretKey": 5}',
    b'{"secretKey": ["a"]}',
    b'{"secretKey": "' + b"s" * 1025 + b'"}',
    b'{"durationMs": "soon"}',
    b'{"durationMs": true}',
    b'{"durationMs": 1.5}',
    b'{"durationMs": 9223372036854775807}',
    b'{"durationMs": 18446744073709551616}',
    b'{"secretKey": "\xff\xfe"}',
    b'"{\\"secretKey\\": 5}"',
    b"[" * 5000 + b"]" * 5000,
]
CLAIM_CUSTOMER_BAD = [b"{", b"[]", b'"k"', b"42", b'{"secretKey": 5}', b'{"secretKey": {"a": 1}}', b"NaN"]


def test_claim_bodies_and_names(w, target):
    """Bad device claims store nothing on the target; bad customer claims and device names are
    4xx; the target stays unclaimed."""
    import gzip

    start = len(w.server.output)
    failures = []
    for body in CLAIM_DEVICE_BAD:
        r = device_post(w, target[1], "claim", body)
        try:
            rejected(r, 400)
        except AssertionError as e:
            failures.append(f"device claim {body[:60]!r}: {e}")
    for body in CLAIM_CUSTOMER_BAD:
        r = w.customer.post("/api/customer/device/hostile-target/claim", data=body)
        try:
            rejected(r, 400)
        except AssertionError as e:
            failures.append(f"customer claim {body[:60]!r}: {e}")
    for name in ("n" * 300, "a%00b", "%2F..%2F", "%FF%FE", "no-such-device", "%20"):
        for method in ("POST", "DELETE"):
            r = w.customer.session.request(method, f"{w.url}/api/customer/device/{name}/claim", timeout=TIMEOUT)
            try:
                rejected(r)
            except AssertionError as e:
                failures.append(f"{method} claim name {name[:40]!r}: {e}")
    r = device_post(w, target[1], "claim", gzip.compress(b'{"secretKey": 5}'), headers={"Content-Encoding": "gzip"})
    rejected(r, 400)
    rejected(device_post(w, target[1], "claim", b"x" * (2 << 20)), 413)
    assert not failures, "\n".join(failures)
    assert w.customer.post("/api/customer/device/hostile-target/claim", json={}).json() == "FAILURE"
    assert_untouched(w, target[0])
    assert_serving(w, start)


GZIP_BAD = {
    "not gzip": (b"plain text", "gzip", 400),
    "gzip header only": (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03", "gzip", 400),
    "truncated": (None, "gzip", 400),
    "bomb": (None, "gzip", 413),
    "brotli": (b'{"a": 1}', "br", 415),
    "deflate": (b'{"a": 1}', "deflate", 415),
    "unknown in a list": (b'{"a": 1}', "gzip, snappy", 415),
}


@pytest.mark.parametrize("case", sorted(GZIP_BAD))
def test_gzip_bodies(w, target, case):
    import gzip
    import zlib

    body, encoding, status = GZIP_BAD[case]
    if case == "truncated":
        body = gzip.compress(b'{"a": 1}')[:-5]
    elif case == "bomb":
        z = zlib.compressobj(9, zlib.DEFLATED, 31)
        body = z.compress(b'{"a": "') + b"".join(z.compress(b"0" * (1 << 20)) for _ in range(8)) + z.flush()
    start = len(w.server.output)
    headers = {"Content-Encoding": encoding}
    rejected(device_post(w, target[1], "telemetry", body, headers=headers), status)
    rest_status = 400 if case == "bomb" else status  # under the REST limit: inflated, then bad JSON
    r = w.admin.post(f"/api/plugins/telemetry/DEVICE/{target[0]}/timeseries/ANY", data=body, headers=headers)
    rejected(r, rest_status)
    assert_untouched(w, target[0])
    assert_serving(w, start)


# ------------------------------------------------------------------------- device profiles, users, provisioning
PROFILE_USER_BODIES = {
    "/api/deviceProfile": [
        b"",
        b"[]",
        b"{}",
        b'{"name": ""}',
        b'{"name": 5}',
        b'{"name": "' + b"p" * 300 + b'"}',
        b'{"name": "a\\u0000b"}',
        b'{"name": "p", "type": "SNMP"}',
        b'{"name": "p", "transportType": 7}',
        b'{"name": "p", "provisionType": "X509_CERTIFICATE_CHAIN"}',
        b'{"name": "p", "provisionType": "ALLOW_CREATE_NEW_DEVICES"}',
        b'{"name": "p", "provisionType": "ALLOW_CREATE_NEW_DEVICES", "provisionDeviceKey": 5, "provisionDeviceSecret": "s"}',
        b'{"name": "p", "provisionType": "CHECK_PRE_PROVISIONED_DEVICES", "provisionDeviceKey": "k",'
        b' "provisionDeviceSecret": "' + b"s" * 300 + b'"}',
        b'{"name": "p", "profileData": 5}',
        b'{"name": "p", "profileData": {"provisionConfiguration": 5}}',
        b'{"name": "p", "profileData": {"alarms": 1e400}}',
        b'{"name": "p", "profileData": {"x": "' + b"d" * 1_100_000 + b'"}}',
        b'{"name": "p", "description": 5}',
        b'{"name": "p", "id": "zz"}',
        b'{"name": "p", "id": "%u"}',
        b'{"name": "default"}',
    ],
    "/api/user": [
        b"",
        b"[]",
        b"{}",
        b'{"email": "x@y.z", "authority": "TENANT_ADMIN"}',
        b'{"email": "x@y.z", "authority": "SYS_ADMIN", "password": "p"}',
        b'{"email": "x@y.z", "authority": "CUSTOMER_USER", "password": "p"}',
        b'{"email": "x@y.z", "authority": "CUSTOMER_USER", "password": "p", "customerId": {"id": "zz"}}',
        b'{"email": "x@y.z", "authority": "CUSTOMER_USER", "password": "p", "customerId": {"id": "%u"}}',
        b'{"email": "not-an-email", "authority": "TENANT_ADMIN", "password": "p"}',
        b'{"email": 5, "authority": "TENANT_ADMIN", "password": "p"}',
        b'{"email": "x@y.z", "authority": "TENANT_ADMIN", "password": 5}',
        b'{"email": "x@y.z", "authority": "TENANT_ADMIN", "password": "' + b"p" * 2000 + b'"}',
        b'{"email": "x@y.z", "authority": "TENANT_ADMIN", "password": "p", "firstName": ["a"]}',
        b'{"email": "x@y.z", "authority": "TENANT_ADMIN", "password": "p", "additionalInfo": 5}',
        b'{"email": "admin@tenant-a.test", "authority": "TENANT_ADMIN", "password": "p"}',
        b'{"id": "zz", "email": "x@y.z"}',
        b'{"id": "%u", "email": "x@y.z"}',
    ],
    "/api/auth/changePassword": [
        b"",
        b"[]",
        b"{}",
        b'{"currentPassword": 5, "newPassword": "x"}',
        b'{"currentPassword": "wrong", "newPassword": "x"}',
        b'{"currentPassword": "wrong", "newPassword": ""}',
    ],
    "/api/device/credentials": [
        b"",
        b"[]",
        b"{}",
        b'{"deviceId": {"id": "zz"}, "credentialsId": "t"}',
        b'{"deviceId": {"id": "%u"}, "credentialsId": "t"}',
        b'{"deviceId": {"id": "%s"}}',
        b'{"deviceId": {"id": "%s"}, "credentialsId": 5}',
        b'{"deviceId": {"id": "%s"}, "credentialsId": "with space"}',
        b'{"deviceId": {"id": "%s"}, "credentialsId": "' + b"t" * 200 + b'"}',
        b'{"deviceId": {"id": "%s"}, "credentialsId": "t", "credentialsType": "MQTT_BASIC"}',
    ],
    "/api/device-with-credentials": [
        b"",
        b"{}",
        b'{"device": 5, "credentials": {}}',
        b'{"device": {"name": ""}, "credentials": {}}',
        b'{"device": {"name": "x"}, "credentials": {"credentialsType": "X509_CERTIFICATE"}}',
        b'{"device": {"name": "x"}, "credentials": {"credentialsId": "a/b"}}',
        b'{"device": {"name": "x", "deviceProfileId": {"id": "zz"}}, "credentials": {}}',
    ],
    "/api/v1/provision": [b"", b"{", b"[]", b'"x"', b"null", b"[" * 5000 + b"]" * 5000],
    "/api/device": [
        b'{"name": "x", "deviceProfileId": {"id": "zz"}}',
        b'{"name": "x", "deviceProfileId": "%u"}',
        b'{"name": "x", "deviceProfileId": 5}',
    ],
}


def profile_user_query_cases(w, did: str, cid: str) -> list[tuple[str, str, str]]:
    u = uuid.uuid4()
    return [
        ("profiles page huge", "GET", f"/api/deviceProfiles?pageSize=10&page={2**63}"),
        ("profiles pageSize zero", "GET", "/api/deviceProfiles?pageSize=0&page=0"),
        ("profiles bad sort", "GET", "/api/deviceProfiles?pageSize=10&page=0&sortProperty=provision_device_secret"),
        ("profiles bad order", "GET", "/api/deviceProfiles?pageSize=10&page=0&sortOrder=UP"),
        ("profile infos bad transport", "GET", "/api/deviceProfileInfos?pageSize=10&page=0&transportType=PIGEON"),
        ("profile infos bad ids", "GET", "/api/deviceProfileInfos?deviceProfileIds=zz"),
        ("profile infos list no ids", "GET", "/api/deviceProfileInfos/list"),
        ("profile infos list bad ids", "GET", "/api/deviceProfileInfos/list?deviceProfileIds=a,b"),
        (
            "profile infos list too many",
            "GET",
            "/api/deviceProfileInfos/list?deviceProfileIds=" + ",".join([str(u)] * 1001),
        ),
        ("profile info malformed", "GET", "/api/deviceProfileInfo/zz"),
        ("profile info unknown", "GET", f"/api/deviceProfileInfo/{u}"),
        ("profile malformed", "GET", "/api/deviceProfile/%00"),
        ("profile unknown", "DELETE", f"/api/deviceProfile/{u}"),
        ("profile default unknown", "POST", f"/api/deviceProfile/{u}/default"),
        ("profile names bad flag", "GET", "/api/deviceProfile/names?activeOnly=maybe"),
        ("profile keys bad id", "GET", "/api/deviceProfile/devices/keys/timeseries?deviceProfileId=zz"),
        ("profile keys unknown id", "GET", f"/api/deviceProfile/devices/keys/attributes?deviceProfileId={u}"),
        ("device info malformed", "GET", "/api/device/info/zz"),
        ("tenant device no name", "GET", "/api/tenant/device"),
        ("tenant device unknown", "GET", "/api/tenant/device?deviceName=%00"),
        ("device infos active", "GET", "/api/tenant/deviceInfos?pageSize=10&page=0&active=true"),
        ("device infos bad profile", "GET", "/api/tenant/deviceInfos?pageSize=10&page=0&deviceProfileId=zz"),
        ("device infos page huge", "GET", f"/api/deviceInfos/all?pageSize=10&page={2**63}"),
        ("device infos bad customers flag", "GET", "/api/deviceInfos/all?pageSize=10&page=0&includeCustomers=2"),
        ("customer device infos malformed", "GET", "/api/customer/zz/deviceInfos?pageSize=10&page=0"),
        ("devices no ids", "GET", "/api/devices"),
        ("devices bad ids", "GET", "/api/devices?deviceIds=zz,yy"),
        ("devices too many ids", "GET", "/api/devices?deviceIds=" + ",".join(str(uuid.uuid4()) for _ in range(1001))),
        ("user devices bad sort", "GET", "/api/user/devices?pageSize=10&page=0&sortProperty=access_token"),
        ("owner bad owner type", "POST", f"/api/owner/GROUP/{cid}/DEVICE/{did}"),
        ("owner bad entity type", "POST", f"/api/owner/CUSTOMER/{cid}/ASSET/{did}"),
        ("owner malformed ids", "POST", "/api/owner/CUSTOMER/zz/DEVICE/yy"),
        ("customer title malformed", "GET", "/api/customer/zz/title"),
        ("customer info unknown", "GET", f"/api/customer/info/{u}"),
        ("tenant customer no title", "GET", "/api/tenant/customers"),
        ("customers list bad ids", "GET", "/api/customers/list?customerIds=zz"),
        ("users bad sort", "GET", "/api/users?pageSize=10&page=0&sortProperty=password_hash"),
        ("users page huge", "GET", f"/api/users?pageSize=10&page={2**63}"),
        ("users list no ids", "GET", "/api/users/list"),
        ("users list bad ids", "GET", "/api/users/list?userIds=zz"),
        ("user malformed", "GET", "/api/user/zz"),
        ("user unknown", "DELETE", f"/api/user/{u}"),
        ("user info malformed", "GET", "/api/user/info/%00"),
        ("user credentials flag", "POST", f"/api/user/{u}/userCredentialsEnabled?userCredentialsEnabled=maybe"),
        ("user save mail flag", "POST", "/api/user?sendActivationMail=maybe"),
        ("customer users malformed", "GET", "/api/customer/zz/users?pageSize=10&page=0"),
        ("customer user infos unknown", "GET", f"/api/customer/{u}/userInfos?pageSize=10&page=0"),
        ("tenant users malformed", "GET", "/api/tenant/zz/users?pageSize=10&page=0"),
        ("tenant users other tenant", "GET", f"/api/tenant/{u}/users?pageSize=10&page=0"),
    ]


def _counts(w) -> tuple[int, int, int]:
    a = w.admin
    return (
        a.get("/api/deviceProfiles?pageSize=1&page=0").json()["totalElements"],
        a.get("/api/users?pageSize=1&page=0").json()["totalElements"],
        a.get("/api/tenant/devices?pageSize=1&page=0").json()["totalElements"],
    )


def test_bad_profile_user_and_provision_requests(w, target):
    """Every new body and parameter of the profile, user, device-info and provisioning routes:
    a 4xx with a message, and no profile, user or device was created; the target device's
    token is unchanged."""
    start = len(w.server.output)
    did, token = target
    _, cid = next(iter(w.customer_ids.items()))
    before = _counts(w)
    failures, n = [], 0
    for path, bodies in PROFILE_USER_BODIES.items():
        for body in bodies:
            body = body.replace(b"%s", did.encode()).replace(b"%u", str(uuid.uuid4()).encode())
            r = w.admin.post(path, data=body)
            n += 1
            try:
                rejected(r)
            except AssertionError as e:
                failures.append(f"POST {path} {body[:80]!r}: {e}")
    for name, method, path in profile_user_query_cases(w, did, cid):
        r = w.admin.session.request(method, w.url + path, timeout=TIMEOUT, data=b"{}" if method == "POST" else None)
        n += 1
        try:
            rejected(r)
        except AssertionError as e:
            failures.append(f"{name}: {e}")
    assert not failures, "\n".join(failures)
    assert n >= 100
    assert _counts(w) == before
    assert w.admin.get(f"/api/device/{did}/credentials").json()["credentialsId"] == token
    assert_untouched(w, did)
    assert_serving(w, start)


def test_provision_refusals_create_nothing(w, target):
    """Provisioning with a real key but bad names, tokens or secrets: a NOT_FOUND / FAILURE
    answer (ThingsBoard's, HTTP 200), no device, no traceback -- over HTTP and over MQTT."""
    from tbpanel.transports import mqtt_codec as c
    from tests.helpers.mqtt import RawClient

    start = len(w.server.output)
    key, secret = f"hostile-key-{uuid.uuid4().hex}", "hostile-secret"
    r = w.admin.post(
        "/api/deviceProfile",
        json={
            "name": "hostile-prov",
            "provisionType": "ALLOW_CREATE_NEW_DEVICES",
            "provisionDeviceKey": key,
            "provisionDeviceSecret": secret,
        },
    )
    assert r.status_code == 200, r.text
    before = _counts(w)
    ok = {"provisionDeviceKey": key, "provisionDeviceSecret": secret}
    bodies = [
        {},
        {"provisionDeviceKey": key},
        {"provisionDeviceKey": key, "provisionDeviceSecret": secret + "x"},
        {"provisionDeviceKey": "k" * 5000, "provisionDeviceSecret": secret},
        {"provisionDeviceKey": [key], "provisionDeviceSecret": {"a": secret}},
        dict(ok, deviceName=""),
        dict(ok, deviceName="   "),
        dict(ok, deviceName=5),
        dict(ok, deviceName="n" * 300),
        dict(ok, deviceName="a\x00b"),
        dict(ok, deviceName="dev-a1"),  # exists already
        dict(ok, deviceName="hostile-p1", credentialsType="ACCESS_TOKEN", token="has space"),
        dict(ok, deviceName="hostile-p2", credentialsType="ACCESS_TOKEN", token=target[1]),  # taken
        dict(ok, deviceName="hostile-p3", credentialsType="ACCESS_TOKEN", token=5),
        dict(ok, deviceName="hostile-p4", credentialsType="X509_CERTIFICATE", hash="x"),
    ]
    for body in bodies:
        r = requests.post(w.url + "/api/v1/provision", data=json.dumps(body), timeout=TIMEOUT)
        assert r.status_code == 200, (body, r.text)
        assert r.json()["status"] in ("NOT_FOUND", "FAILURE") and r.json()["errorMsg"], (body, r.text)
    raw = RawClient(w.server.mqtt_port, c.MQTT_5)
    assert raw.connect("provision") == 0
    for i, payload in enumerate(
        [b"", b"\xff\xfe", b"[" * 5000 + b"]" * 5000, *(json.dumps(b).encode() for b in bodies)]
    ):
        raw.publish("/provision/request", payload, qos=1, packet_id=i + 1)
        assert raw.puback() == (i + 1, 0)
        first, answer = raw.read()
        assert first >> 4 == c.PUBLISH and (b"NOT_FOUND" in answer or b"FAILURE" in answer), answer[:200]
    raw.sock.close()
    assert _counts(w) == before
    assert_untouched(w, target[0])
    assert_serving(w, start)


provision_bodies = st.dictionaries(
    st.sampled_from(["deviceName", "provisionDeviceKey", "provisionDeviceSecret", "credentialsType", "token", "x"]),
    json_values,
    max_size=5,
)


def test_provision_and_profile_generated_bodies(w):
    """Generated provisioning and profile bodies: never a 5xx; provisioning answers 200 with a
    status or 400; nothing is created by a refused profile body."""
    start = len(w.server.output)
    before = _counts(w)

    @examples(150)
    @given(body=provision_bodies, profile=st.dictionaries(keys, json_values, max_size=4), how=mutations)
    def check(body, profile, how):
        r = requests.post(w.url + "/api/v1/provision", data=mutate(encode(body), how), timeout=TIMEOUT)
        assert r.status_code in (200, 400), r.text[:300]
        if r.status_code == 200:
            assert r.json()["status"] in ("NOT_FOUND", "FAILURE")
        profile.pop("name", None)  # without a name a profile body is always refused
        r = w.admin.post("/api/deviceProfile", data=mutate(encode(profile), how))
        rejected(r)

    check()
    assert _counts(w) == before
    assert_serving(w, start)


# ------------------------------------------------------------------------- rpc
RPC_BAD_BODIES = [
    b"",
    b"{",
    b"[]",
    b'"setGpio"',
    b"{}",
    b'{"method": ""}',
    b'{"method": 5}',
    b'{"method": "' + b"m" * 300 + b'"}',
    b'{"method": "m", "timeout": 0}',
    b'{"method": "m", "timeout": -5}',
    b'{"method": "m", "timeout": 1e400}',
    b'{"method": "m", "timeout": 99999999999999999999999}',
    b'{"method": "m", "timeout": "10"}',
    b'{"method": "m", "expirationTime": 5}',
    b'{"method": "m", "expirationTime": 9223372036854775807}',
    b'{"method": "m", "persistent": "true"}',
    b'{"method": "m", "persistent": true, "retries": -1}',
    b'{"method": "m", "persistent": true, "additionalInfo": "x"}',
    b'{"method": "m", "params": "' + b"p" * 70_000 + b'"}',
]


def test_bad_rpc_requests(w, target):
    """Bad RPC bodies, parameters and ids on every RPC route: 4xx with a message, no persistent
    request stored for the target, and the server keeps serving."""
    start = len(w.server.output)
    did, token = target
    failures = []
    for family in ("/api/rpc", "/api/plugins/rpc"):
        for kind in ("oneway", "twoway"):
            for body in RPC_BAD_BODIES:
                r = w.admin.post(f"{family}/{kind}/{did}", data=body)
                try:
                    rejected(r, 400)
                except AssertionError as e:
                    failures.append(f"{family}/{kind} {body[:60]!r}: {e}")
    cases = [
        ("POST", "/api/rpc/twoway/not-a-uuid", b'{"method": "m"}', 400),
        ("POST", f"/api/rpc/twoway/{uuid.uuid4()}", b'{"method": "m"}', 404),
        ("GET", "/api/rpc/persistent/zz", None, 400),
        ("GET", f"/api/rpc/persistent/{uuid.uuid4()}", None, 404),
        ("DELETE", "/api/rpc/persistent/%00", None, 400),
        ("GET", f"/api/rpc/persistent/device/{did}?pageSize=0&page=0", None, 400),
        ("GET", f"/api/rpc/persistent/device/{did}?pageSize=10&page={2**63}", None, 400),
        ("GET", f"/api/rpc/persistent/device/{did}?pageSize=10&page=0&rpcStatus=BURNING", None, 400),
        ("GET", f"/api/rpc/persistent/device/{did}?pageSize=10&page=0&sortProperty=password", None, 400),
        ("GET", f"/api/rpc/persistent/device/{did}?pageSize=10&page=0&sortOrder=UP", None, 400),
        ("GET", "/api/rpc/persistent/device/zz?pageSize=10&page=0", None, 400),
        ("GET", f"/api/v1/{token}/rpc?timeout={2**64}", None, 400),
        ("GET", f"/api/v1/{token}/rpc?timeout=-1", None, 400),
        ("GET", f"/api/v1/{token}/rpc?timeout=soon", None, 400),
        ("POST", f"/api/v1/{token}/rpc", b"{", 400),
        ("POST", f"/api/v1/{token}/rpc", b"", 400),
        ("POST", f"/api/v1/{token}/rpc/{'9' * 40}", b"{}", 400),
        ("POST", f"/api/v1/{token}/rpc/-1", b"{}", 400),
        ("POST", f"/api/v1/{token}/rpc/1", b"{", 400),
        ("POST", "/api/v1/not-a-token/rpc/1", b"{}", 401),
    ]
    for method, path, body, status in cases:
        r = w.admin.session.request(method, w.url + path, data=body, timeout=TIMEOUT)
        try:
            rejected(r, status)
        except AssertionError as e:
            failures.append(f"{method} {path[:80]}: {e}")
    assert not failures, "\n".join(failures)
    page = w.admin.get(f"/api/rpc/persistent/device/{did}?pageSize=10&page=0").json()
    assert page["totalElements"] == 0
    assert_serving(w, start)
