"""``/api/entitiesQuery/find|count`` and ``/api/alarmsQuery/find|count`` against a real server,
with ``requests`` and with the real ``tb-rest-client`` 4.4 and its model classes: filters, key
filters, sort by latest telemetry, paging, customer isolation, hostile bodies."""

from __future__ import annotations

import uuid

import pytest
import requests
from tb_rest_client.models.alarm_count_query import AlarmCountQuery
from tb_rest_client.models.alarm_data_page_link import AlarmDataPageLink
from tb_rest_client.models.alarm_data_query import AlarmDataQuery
from tb_rest_client.models.device_type_filter import DeviceTypeFilter
from tb_rest_client.models.entity_count_query import EntityCountQuery
from tb_rest_client.models.entity_data_page_link import EntityDataPageLink
from tb_rest_client.models.entity_data_query import EntityDataQuery
from tb_rest_client.models.entity_data_sort_order import EntityDataSortOrder
from tb_rest_client.models.entity_key import EntityKey
from tb_rest_client.models.filter_predicate_value_double import FilterPredicateValueDouble
from tb_rest_client.models.filter_predicate_value_string import FilterPredicateValueString
from tb_rest_client.models.key_filter import KeyFilter
from tb_rest_client.models.numeric_filter_predicate import NumericFilterPredicate
from tb_rest_client.models.string_filter_predicate import StringFilterPredicate

pytestmark = pytest.mark.usefixtures("no_server_errors")

T0 = 1_720_000_000_000


@pytest.fixture(scope="module")
def fleet(world):
    """Five devices of a type of their own: temperature 10..50, a mode string, a client
    attribute; the first two assigned to customer A1, the third to A2."""
    dtype = "eq" + uuid.uuid4().hex[:8]
    devices = []
    for i in range(5):
        did, token = world.new_device(f"{dtype}-{i}", type=dtype)
        r = requests.post(
            f"{world.url}/api/v1/{token}/telemetry",
            json={
                "ts": T0 + i,
                "values": {"temperature": (i + 1) * 10, "mode": ["Auto", "manual", "auto", "off", "AUTO"][i]},
            },
            timeout=30,
        )
        assert r.status_code == 200, r.text
        r = requests.post(f"{world.url}/api/v1/{token}/attributes", json={"fw": f"v1.{i}"}, timeout=30)
        assert r.status_code == 200, r.text
        devices.append({"id": did, "token": token, "name": f"{dtype}-{i}"})
    for i, customer in ((0, "Customer A1"), (1, "Customer A1"), (2, "Customer A2")):
        r = world.admin.post(f"/api/customer/{world.customer_ids[customer]}/device/{devices[i]['id']}")
        assert r.status_code == 200, r.text
    return dtype, devices


def query(dtype, **extra):
    body = {
        "entityFilter": {"type": "deviceType", "deviceTypes": [dtype]},
        "pageLink": {
            "pageSize": 10,
            "page": 0,
            "sortOrder": {"key": {"type": "ENTITY_FIELD", "key": "name"}, "direction": "ASC"},
        },
        "entityFields": [{"type": "ENTITY_FIELD", "key": "name"}, {"type": "ENTITY_FIELD", "key": "type"}],
        "latestValues": [{"type": "TIME_SERIES", "key": "temperature"}, {"type": "CLIENT_ATTRIBUTE", "key": "fw"}],
    }
    body.update(extra)
    return body


def names(page):
    return [e["latest"]["ENTITY_FIELD"]["name"]["value"] for e in page["data"]]


def test_find_answers_thingsboards_page_of_entity_data(world, fleet):
    dtype, devices = fleet
    r = world.admin.post("/api/entitiesQuery/find", json=query(dtype))
    assert r.status_code == 200, r.text
    page = r.json()
    assert page["totalElements"] == 5 and page["totalPages"] == 1 and page["hasNext"] is False
    first = page["data"][0]
    assert first["entityId"] == {"entityType": "DEVICE", "id": devices[0]["id"]}
    assert first["timeseries"] == {}
    assert first["latest"]["ENTITY_FIELD"]["type"]["value"] == dtype
    assert first["latest"]["TIME_SERIES"] == {"temperature": {"ts": T0, "value": "10"}}
    assert first["latest"]["CLIENT_ATTRIBUTE"]["fw"]["value"] == "v1.0"
    assert isinstance(first["latest"]["CLIENT_ATTRIBUTE"]["fw"]["ts"], int)


def test_sort_by_latest_telemetry_and_paging(world, fleet):
    dtype, devices = fleet
    sort = {"key": {"type": "TIME_SERIES", "key": "temperature"}, "direction": "DESC"}
    seen = []
    for p in range(3):
        body = query(dtype, pageLink={"pageSize": 2, "page": p, "sortOrder": sort})
        page = world.admin.post("/api/entitiesQuery/find", json=body).json()
        assert page["totalElements"] == 5 and page["totalPages"] == 3 and page["hasNext"] is (p < 2)
        seen += names(page)
    assert seen == [devices[i]["name"] for i in (4, 3, 2, 1, 0)]
    beyond = world.admin.post("/api/entitiesQuery/find", json=query(dtype, pageLink={"pageSize": 2, "page": 7})).json()
    assert beyond["data"] == [] and beyond["totalElements"] == 5 and beyond["hasNext"] is False


def test_text_search_and_name_filters(world, fleet):
    dtype, devices = fleet
    body = query(dtype)
    body["pageLink"]["textSearch"] = f"{dtype}-3".upper()
    assert names(world.admin.post("/api/entitiesQuery/find", json=body).json()) == [devices[3]["name"]]
    body = query(dtype, entityFilter={"type": "entityName", "entityType": "DEVICE", "entityNameFilter": f"{dtype}-4"})
    assert names(world.admin.post("/api/entitiesQuery/find", json=body).json()) == [devices[4]["name"]]
    body = query(dtype, entityFilter={"type": "deviceType", "deviceType": dtype, "deviceNameFilter": f"{dtype}-1"})
    assert names(world.admin.post("/api/entitiesQuery/find", json=body).json()) == [devices[1]["name"]]
    ids = [devices[0]["id"], devices[2]["id"], str(uuid.uuid4())]
    body = query(dtype, entityFilter={"type": "entityList", "entityType": "DEVICE", "entityList": ids})
    assert names(world.admin.post("/api/entitiesQuery/find", json=body).json()) == [
        devices[0]["name"],
        devices[2]["name"],
    ]
    body = query(
        dtype, entityFilter={"type": "singleEntity", "singleEntity": {"entityType": "DEVICE", "id": devices[3]["id"]}}
    )
    assert names(world.admin.post("/api/entitiesQuery/find", json=body).json()) == [devices[3]["name"]]


@pytest.mark.parametrize(
    "key_filters, expected",
    [
        (
            [
                {
                    "key": {"type": "TIME_SERIES", "key": "temperature"},
                    "valueType": "NUMERIC",
                    "predicate": {"type": "NUMERIC", "operation": "GREATER_OR_EQUAL", "value": {"defaultValue": 30}},
                }
            ],
            [2, 3, 4],
        ),
        (
            [
                {
                    "key": {"type": "TIME_SERIES", "key": "mode"},
                    "valueType": "STRING",
                    "predicate": {
                        "type": "STRING",
                        "operation": "EQUAL",
                        "value": {"defaultValue": "auto"},
                        "ignoreCase": True,
                    },
                }
            ],
            [0, 2, 4],
        ),
        (
            [
                {
                    "key": {"type": "TIME_SERIES", "key": "mode"},
                    "valueType": "STRING",
                    "predicate": {"type": "STRING", "operation": "IN", "value": {"defaultValue": "off,manual"}},
                }
            ],
            [1, 3],
        ),
        (
            [
                {
                    "key": {"type": "CLIENT_ATTRIBUTE", "key": "fw"},
                    "valueType": "STRING",
                    "predicate": {"type": "STRING", "operation": "ENDS_WITH", "value": {"defaultValue": ".4"}},
                }
            ],
            [4],
        ),
        (
            [
                {
                    "key": {"type": "TIME_SERIES", "key": "temperature"},
                    "valueType": "NUMERIC",
                    "predicate": {
                        "type": "COMPLEX",
                        "operation": "OR",
                        "predicates": [
                            {"type": "NUMERIC", "operation": "LESS", "value": {"defaultValue": 15}},
                            {"type": "NUMERIC", "operation": "GREATER", "value": {"defaultValue": 45}},
                        ],
                    },
                }
            ],
            [0, 4],
        ),
    ],
)
def test_key_filters_find_and_count(world, fleet, key_filters, expected):
    dtype, devices = fleet
    page = world.admin.post("/api/entitiesQuery/find", json=query(dtype, keyFilters=key_filters)).json()
    assert names(page) == [devices[i]["name"] for i in expected]
    body = {"entityFilter": {"type": "deviceType", "deviceTypes": [dtype]}, "keyFilters": key_filters}
    r = world.admin.post("/api/entitiesQuery/count", json=body)
    assert r.status_code == 200 and r.json() == len(expected)


def test_customer_user_never_sees_or_counts_another_customers_device(world, fleet):
    dtype, devices = fleet
    assert names(world.customer.post("/api/entitiesQuery/find", json=query(dtype)).json()) == [
        devices[0]["name"],
        devices[1]["name"],
    ]
    assert names(world.other_customer.post("/api/entitiesQuery/find", json=query(dtype)).json()) == [devices[2]["name"]]
    assert names(world.other_admin.post("/api/entitiesQuery/find", json=query(dtype)).json()) == []
    count_body = {"entityFilter": {"type": "deviceType", "deviceTypes": [dtype]}}
    assert [
        api.post("/api/entitiesQuery/count", json=count_body).json()
        for api in (world.admin, world.customer, world.other_customer, world.other_admin)
    ] == [5, 2, 1, 0]
    single = query(
        dtype, entityFilter={"type": "singleEntity", "singleEntity": {"entityType": "DEVICE", "id": devices[2]["id"]}}
    )
    r = world.customer.post("/api/entitiesQuery/find", json=single)
    assert r.status_code == 200 and r.json()["data"] == [] and r.json()["totalElements"] == 0
    # the customer user's own customer and only that one
    body = query(
        dtype,
        entityFilter={"type": "entityType", "entityType": "CUSTOMER"},
        entityFields=[{"type": "ENTITY_FIELD", "key": "title"}],
    )
    page = world.customer.post("/api/entitiesQuery/find", json=body).json()
    assert [e["entityId"]["id"] for e in page["data"]] == [world.customer_ids["Customer A1"]]


def test_alarms_query_find_and_count(world, fleet):
    dtype, devices = fleet
    atype = "eqalarm" + uuid.uuid4().hex[:6]
    for i in (1, 2):
        r = world.admin.post(
            "/api/alarm",
            json={"type": atype, "severity": "MAJOR", "originator": {"entityType": "DEVICE", "id": devices[i]["id"]}},
        )
        assert r.status_code == 200, r.text
    body = {
        "entityFilter": {"type": "deviceType", "deviceTypes": [dtype]},
        "pageLink": {
            "pageSize": 10,
            "page": 0,
            "typeList": [atype],
            "sortOrder": {"key": {"type": "ALARM_FIELD", "key": "createdTime"}, "direction": "ASC"},
        },
        "entityFields": [{"type": "ENTITY_FIELD", "key": "name"}],
        "latestValues": [{"type": "TIME_SERIES", "key": "temperature"}],
        "alarmFields": [{"type": "ALARM_FIELD", "key": "type"}],
    }
    page = world.admin.post("/api/alarmsQuery/find", json=body).json()
    assert page["totalElements"] == 2
    assert [a["entityId"]["id"] for a in page["data"]] == [devices[1]["id"], devices[2]["id"]]
    assert page["data"][0]["type"] == atype and page["data"][0]["severity"] == "MAJOR"
    assert page["data"][0]["latest"]["TIME_SERIES"]["temperature"]["value"] == "20"
    assert page["data"][1]["latest"]["ENTITY_FIELD"]["name"]["value"] == devices[2]["name"]
    # the customer user of A1 sees the alarm of its device only
    mine = world.customer.post("/api/alarmsQuery/find", json=body).json()
    assert [a["entityId"]["id"] for a in mine["data"]] == [devices[1]["id"]] and mine["totalElements"] == 1
    filtered = dict(
        body,
        keyFilters=[
            {
                "key": {"type": "TIME_SERIES", "key": "temperature"},
                "valueType": "NUMERIC",
                "predicate": {"type": "NUMERIC", "operation": "GREATER", "value": {"defaultValue": 25}},
            }
        ],
    )
    assert [a["entityId"]["id"] for a in world.admin.post("/api/alarmsQuery/find", json=filtered).json()["data"]] == [
        devices[2]["id"]
    ]
    count = {"entityFilter": body["entityFilter"], "typeList": [atype]}
    assert [
        api.post("/api/alarmsQuery/count", json=count).json()
        for api in (world.admin, world.customer, world.other_admin)
    ] == [2, 1, 0]


# ------------------------------------------------------------------------------ tb-rest-client
def test_tb_rest_client_entity_queries(rest, fleet):
    dtype, devices = fleet
    flt = DeviceTypeFilter(type="deviceType", device_types=[dtype])
    hot = KeyFilter(
        key=EntityKey(type="TIME_SERIES", key="temperature"),
        value_type="NUMERIC",
        predicate=NumericFilterPredicate(
            type="NUMERIC", operation="GREATER", value=FilterPredicateValueDouble(default_value=20.0)
        ),
    )
    q = EntityDataQuery(
        entity_filter=flt,
        page_link=EntityDataPageLink(
            page_size=10,
            page=0,
            sort_order=EntityDataSortOrder(key=EntityKey(type="TIME_SERIES", key="temperature"), direction="ASC"),
        ),
        entity_fields=[EntityKey(type="ENTITY_FIELD", key="name")],
        latest_values=[EntityKey(type="TIME_SERIES", key="temperature"), EntityKey(type="CLIENT_ATTRIBUTE", key="fw")],
        key_filters=[hot],
    )
    page = rest.find_entity_data_by_query(q)
    assert page.total_elements == 3 and page.has_next is False
    assert [e.entity_id.id for e in page.data] == [devices[i]["id"] for i in (2, 3, 4)]
    latest = page.data[0].latest
    assert latest["TIME_SERIES"]["temperature"].value == "30" and latest["TIME_SERIES"]["temperature"].ts == T0 + 2
    assert latest["CLIENT_ATTRIBUTE"]["fw"].value == "v1.2"
    assert latest["ENTITY_FIELD"]["name"].value == devices[2]["name"]
    auto = KeyFilter(
        key=EntityKey(type="TIME_SERIES", key="mode"),
        value_type="STRING",
        predicate=StringFilterPredicate(
            type="STRING",
            operation="STARTS_WITH",
            value=FilterPredicateValueString(default_value="AU"),
            ignore_case=True,
        ),
    )
    assert rest.count_entities_by_query(EntityCountQuery(entity_filter=flt, key_filters=[auto])) == 3
    assert rest.count_entities_by_query(EntityCountQuery(entity_filter=flt, key_filters=[auto, hot])) == 2


def test_tb_rest_client_alarm_data(rest, world, fleet):
    dtype, devices = fleet
    atype = "eqrest" + uuid.uuid4().hex[:6]
    r = world.admin.post(
        "/api/alarm",
        json={"type": atype, "severity": "CRITICAL", "originator": {"entityType": "DEVICE", "id": devices[4]["id"]}},
    )
    assert r.status_code == 200, r.text
    q = AlarmDataQuery(
        entity_filter=DeviceTypeFilter(type="deviceType", device_types=[dtype]),
        page_link=AlarmDataPageLink(
            page_size=10, page=0, type_list=[atype], status_list=["ACTIVE"], severity_list=["CRITICAL"]
        ),
        latest_values=[EntityKey(type="TIME_SERIES", key="temperature")],
    )
    page = rest.find_alarm_data_by_query(q)
    assert page.total_elements == 1
    alarm = page.data[0]
    assert alarm.type == atype and alarm.entity_id.id == devices[4]["id"] and alarm.originator.id == devices[4]["id"]
    assert alarm.latest["TIME_SERIES"]["temperature"].value == "50"
    flt = DeviceTypeFilter(type="deviceType", device_types=[dtype])
    assert rest.count_alarms_by_query(AlarmCountQuery(entity_filter=flt, type_list=[atype])) == 1
    assert (
        rest.count_alarms_by_query(AlarmCountQuery(entity_filter=flt, type_list=[atype], status_list=["CLEARED"])) == 0
    )


# ------------------------------------------------------------------------------ hostile bodies
HOSTILE = [
    b"",
    b"not json",
    b"[]",
    b"42",
    b'{"entityFilter": null}',
    b'{"entityFilter": {"type": "relationsQuery"}}',
    b'{"entityFilter": {"type": "entityType", "entityType": 7}}',
    b'{"entityFilter": {"type": "entityList", "entityType": "DEVICE", "entityList": "x"}}',
    b'{"entityFilter": {"type": "entityList", "entityType": "DEVICE", "entityList": [1, {"a": 2}]}}',
    b'{"entityFilter": {"type": "singleEntity", "singleEntity": "x"}}',
    b'{"entityFilter": {"type": "deviceType", "deviceTypes": [1]}}',
    b'{"entityFilter": {"type": "deviceType", "deviceTypes": "abc"}}',
    b'{"entityFilter": {"type": "entityName", "entityType": "DEVICE", "entityNameFilter": 5}}',
    b'{"entityFilter": {"type": "entityType", "entityType": "DEVICE"}, "pageLink": {"pageSize": 0}}',
    b'{"entityFilter": {"type": "entityType", "entityType": "DEVICE"}, "pageLink": {"pageSize": "ten"}}',
    b'{"entityFilter": {"type": "entityType", "entityType": "DEVICE"}, "pageLink": {"pageSize": 10, "page": -1}}',
    b'{"entityFilter": {"type": "entityType", "entityType": "DEVICE"}, "pageLink": {"pageSize": 99999999999999999999999}}',
    b'{"entityFilter": {"type": "entityType", "entityType": "DEVICE"}, "pageLink": {"pageSize": 10, "sortOrder": {"key": "name"}}}',
    b'{"entityFilter": {"type": "entityType", "entityType": "DEVICE"}, "pageLink": {"pageSize": 10, "sortOrder": {"key": {"type": "X", "key": "n"}}}}',
    b'{"entityFilter": {"type": "entityType", "entityType": "DEVICE"}, "pageLink": {"pageSize": 10, "sortOrder": {"key": {"type": "ENTITY_FIELD", "key": "name"}, "direction": "UP"}}}',
    b'{"entityFilter": {"type": "entityType", "entityType": "DEVICE"}, "pageLink": {"pageSize": 10, "textSearch": ["x"]}}',
    b'{"entityFilter": {"type": "entityType", "entityType": "DEVICE"}, "keyFilters": [null]}',
    b'{"entityFilter": {"type": "entityType", "entityType": "DEVICE"}, "keyFilters": [{"key": {"type": "TIME_SERIES", "key": "t"}}]}',
    b'{"entityFilter": {"type": "entityType", "entityType": "DEVICE"}, "keyFilters": [{"key": {"type": "TIME_SERIES", "key": ""}, "predicate": {}}]}',
    b'{"entityFilter": {"type": "entityType", "entityType": "DEVICE"}, "keyFilters": [{"key": {"type": "TIME_SERIES", "key": "t"}, "predicate": {"type": "NUMERIC", "operation": "GREATER", "value": {"defaultValue": "NaN"}}}]}',
    b'{"entityFilter": {"type": "entityType", "entityType": "DEVICE"}, "keyFilters": [{"key": {"type": "TIME_SERIES", "key": "t"}, "predicate": {"type": "NUMERIC", "operation": "GREATER", "value": {"defaultValue": 1e999}}}]}',
    b'{"entityFilter": {"type": "entityType", "entityType": "DEVICE"}, "keyFilters": [{"key": {"type": "TIME_SERIES", "key": "t"}, "predicate": {"type": "BOOLEAN", "operation": "EQUAL", "value": {"defaultValue": "maybe"}}}]}',
    b'{"entityFilter": {"type": "entityType", "entityType": "DEVICE"}, "keyFilters": [{"key": {"type": "TIME_SERIES", "key": "t"}, "predicate": {"type": "STRING", "operation": "EQUAL", "value": {"defaultValue": {}}}}]}',
    b'{"entityFilter": {"type": "entityType", "entityType": "DEVICE"}, "keyFilters": [{"key": {"type": "TIME_SERIES", "key": "t"}, "predicate": {"type": "STRING", "operation": "EQUAL", "value": {"defaultValue": "x"}, "ignoreCase": "yes"}}]}',
    b'{"entityFilter": {"type": "entityType", "entityType": "DEVICE"}, "keyFilters": [{"key": {"type": "TIME_SERIES", "key": "t"}, "predicate": {"type": "COMPLEX", "operation": "XOR", "predicates": []}}]}',
    b'{"entityFilter": {"type": "entityType", "entityType": "DEVICE"}, "keyFilters": [{"key": {"type": "TIME_SERIES", "key": "t"}, "predicate": {"type": "COMPLEX", "operation": "AND", "predicates": "x"}}]}',
    b'{"entityFilter": {"type": "entityType", "entityType": "DEVICE"}, "keyFilters": [], "keyFiltersOperation": "NAND"}',
    b'{"entityFilter": {"type": "entityType", "entityType": "DEVICE"}, "latestValues": {"a": 1}}',
    b'{"entityFilter": {"type": "entityType", "entityType": "DEVICE"}, "entityFields": [{"type": "ENTITY_FIELD"}]}',
    b'{"entityFilter": {"type": "entityType", "entityType": "DEVICE"}, "pageLink": {"pageSize": 10, "statusList": ["NOPE"]}}',
    b'{"entityFilter": {"type": "entityType", "entityType": "DEVICE"}, "pageLink": {"pageSize": 10, "startTs": "x"}}',
    b'{"keyFilters": [{"key": {"type": "TIME_SERIES", "key": "t"}, "predicate": {"type": "NUMERIC", "operation": "EQUAL", "value": {"defaultValue": 1}}}]}',
]


def deep_complex(depth: int) -> bytes:
    p = '{"type": "NUMERIC", "operation": "EQUAL", "value": {"defaultValue": 1}}'
    for _ in range(depth):
        p = '{"type": "COMPLEX", "operation": "AND", "predicates": [' + p + "]}"
    return (
        '{"entityFilter": {"type": "entityType", "entityType": "DEVICE"}, "pageLink": {"pageSize": 1}, '
        '"keyFilters": [{"key": {"type": "TIME_SERIES", "key": "t"}, "predicate": ' + p + "}]}"
    ).encode()


@pytest.mark.parametrize(
    "route", ["/api/entitiesQuery/find", "/api/entitiesQuery/count", "/api/alarmsQuery/find", "/api/alarmsQuery/count"]
)
def test_hostile_bodies_get_a_clear_4xx(world, route):
    failures = []
    for body in [*HOSTILE, deep_complex(50), deep_complex(400)]:
        r = world.admin.post(route, data=body, headers={"Content-Type": "application/json"})
        if r.status_code >= 500:
            failures.append(f"{body[:80]!r}: {r.status_code} {r.text[:200]}")
        elif r.status_code >= 400 and not r.json().get("message"):
            failures.append(f"{body[:80]!r}: {r.status_code} without a message")
    assert not failures, "\n".join(failures)
    bad = world.admin.post(route, data=HOSTILE[5])
    assert bad.status_code == 400 and "entityFilter.type" in bad.json()["message"]


def test_unauthenticated_is_refused(world):
    for route in (
        "/api/entitiesQuery/find",
        "/api/entitiesQuery/count",
        "/api/alarmsQuery/find",
        "/api/alarmsQuery/count",
    ):
        r = world.anon.post(route, json={"entityFilter": {"type": "entityType", "entityType": "DEVICE"}})
        assert r.status_code == 401, r.text
