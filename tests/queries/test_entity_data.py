"""The entity data query's domain module over a real registry and store (in process): every
filter, key filters on every key type and scope, sorting, paging, scoping, and a property test
of key-filter evaluation against a plain Python oracle."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tbpanel.errors import InvalidInput
from tbpanel.platform import Platform
from tbpanel.queries import count, find, parse_query
from tbpanel.queries.entity_data import device_page
from tbpanel.queries.key_filters import evaluate, parse_predicate, split_list
from tbpanel.store.values import ValueType

T0 = 1_700_000_000_000


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    platform = Platform(tmp_path_factory.mktemp("eq") / "data", compaction_interval_s=0)
    reg = platform.registry
    tenant = reg.create_tenant("T")
    other = reg.create_tenant("Other")
    c1 = reg.save_customer(tenant.id, {"title": "C1"})
    c2 = reg.save_customer(tenant.id, {"title": "C2"})
    admin = reg.create_user("admin@t.io", "password-1", "TENANT_ADMIN", tenant.id)
    cu1 = reg.create_user("cu1@t.io", "password-1", "CUSTOMER_USER", tenant.id, c1.id)
    ids = {}
    modes = ["Auto", "manual", "AUTO-x", "off", "Manual, fast", "auto"]
    for i in range(6):
        d = reg.save_device(tenant.id, f"pump-{i}", type="pump" if i < 4 else "fan", label=f"L{i}")
        ids[i] = d.id
        points = [
            (d.id, "temperature", T0 + i, ValueType.LONG if i % 2 else ValueType.DOUBLE, i * 10 + (0 if i % 2 else 0.5))
        ]
        points.append((d.id, "mode", T0 + i, ValueType.STR, modes[i]))
        points.append((d.id, "on", T0 + i, ValueType.BOOL, i % 2 == 0))
        platform.store.submit(points).result(30)
        reg.save_attributes(d.id, "CLIENT_SCOPE", [(T0 + i, "fw", ValueType.STR, f"1.{i}")])
        reg.save_attributes(d.id, "SERVER_SCOPE", [(T0 + 100 + i, "fw", ValueType.STR, f"s{i}")])
        reg.save_attributes(d.id, "SHARED_SCOPE", [(T0 + i, "limit", ValueType.LONG, 100 - i)])
    reg.assign_device(ids[0], c1.id)
    reg.assign_device(ids[1], c1.id)
    reg.assign_device(ids[2], c2.id)
    b = reg.save_device(other.id, "pump-b", type="pump")
    platform.store.submit([(b.id, "temperature", T0, ValueType.LONG, 99)]).result(30)
    yield platform, admin, cu1, ids
    platform.close()


def q(flt=None, *, filters=None, sort=None, direction="ASC", size=100, page=0, text=None, latest=None, op=None):
    body = {
        "entityFilter": flt or {"type": "entityType", "entityType": "DEVICE"},
        "pageLink": {"pageSize": size, "page": page, "textSearch": text},
        "entityFields": [{"type": "ENTITY_FIELD", "key": "name"}],
        "latestValues": latest or [{"type": "TIME_SERIES", "key": "temperature"}],
        "keyFilters": filters or [],
    }
    if op:
        body["keyFiltersOperation"] = op
    if sort:
        body["pageLink"]["sortOrder"] = {"key": {"type": sort[0], "key": sort[1]}, "direction": direction}
    return parse_query(body)


def names(platform, user, query):
    page, _ = find(platform.registry, platform.store, user, query, T0)
    return [e["latest"]["ENTITY_FIELD"]["name"]["value"] for e in page["data"]]


def kf(ktype, key, ptype, op, value, **extra):
    return {
        "key": {"type": ktype, "key": key},
        "valueType": ptype,
        "predicate": {"type": ptype, "operation": op, "value": {"defaultValue": value}, **extra},
    }


def test_answer_shape_and_values_as_strings(fleet):
    platform, admin, _, ids = fleet
    query = q(
        {"type": "singleEntity", "singleEntity": {"entityType": "DEVICE", "id": ids[1]}},
        latest=[
            {"type": "TIME_SERIES", "key": "temperature"},
            {"type": "TIME_SERIES", "key": "on"},
            {"type": "TIME_SERIES", "key": "missing"},
            {"type": "ATTRIBUTE", "key": "fw"},
            {"type": "CLIENT_ATTRIBUTE", "key": "fw"},
            {"type": "SHARED_ATTRIBUTE", "key": "limit"},
        ],
    )
    page, _ = find(platform.registry, platform.store, admin, query, T0 + 5)
    assert page["totalElements"] == 1 and page["totalPages"] == 1 and page["hasNext"] is False
    (e,) = page["data"]
    assert e["entityId"] == {"entityType": "DEVICE", "id": ids[1]} and e["timeseries"] == {}
    assert e["latest"]["ENTITY_FIELD"] == {"name": {"ts": T0 + 5, "value": "pump-1"}}
    assert e["latest"]["TIME_SERIES"] == {
        "temperature": {"ts": T0 + 1, "value": "10"},
        "on": {"ts": T0 + 1, "value": "false"},
        "missing": {"ts": 0, "value": ""},
    }
    # ATTRIBUTE: the newest of any scope (the server attribute was saved later)
    assert e["latest"]["ATTRIBUTE"] == {"fw": {"ts": T0 + 101, "value": "s1"}}
    assert e["latest"]["CLIENT_ATTRIBUTE"] == {"fw": {"ts": T0 + 1, "value": "1.1"}}
    assert e["latest"]["SHARED_ATTRIBUTE"] == {"limit": {"ts": T0 + 1, "value": "99"}}


def test_double_values_as_thingsboard_sends_them(fleet):
    platform, admin, _, ids = fleet
    page, _ = find(
        platform.registry,
        platform.store,
        admin,
        q(
            {"type": "entityList", "entityType": "DEVICE", "entityList": [ids[0], ids[2]]},
            sort=("ENTITY_FIELD", "name"),
        ),
        T0,
    )
    assert [e["latest"]["TIME_SERIES"]["temperature"]["value"] for e in page["data"]] == ["0.5", "20.5"]


@pytest.mark.parametrize(
    "flt, expected",
    [
        ({"type": "entityType", "entityType": "DEVICE"}, [f"pump-{i}" for i in range(6)]),
        ({"type": "entityName", "entityType": "DEVICE", "entityNameFilter": "PUMP-1"}, ["pump-1"]),
        ({"type": "deviceType", "deviceTypes": ["fan"]}, ["pump-4", "pump-5"]),
        ({"type": "deviceType", "deviceType": "fan", "deviceNameFilter": "pump-5"}, ["pump-5"]),
        ({"type": "deviceType", "deviceTypes": ["fan", "pump"], "deviceNameFilter": "pump-3"}, ["pump-3"]),
        ({"type": "deviceType", "deviceTypes": []}, []),
    ],
)
def test_entity_filters(fleet, flt, expected):
    platform, admin, _, _ = fleet
    assert names(platform, admin, q(flt, sort=("ENTITY_FIELD", "name"))) == expected


@pytest.mark.parametrize(
    "filters, expected",
    [
        ([kf("TIME_SERIES", "temperature", "NUMERIC", "GREATER", 20)], [2, 3, 4, 5]),
        ([kf("TIME_SERIES", "temperature", "NUMERIC", "LESS_OR_EQUAL", "20.5")], [0, 1, 2]),
        ([kf("TIME_SERIES", "temperature", "NUMERIC", "EQUAL", 30)], [3]),
        ([kf("TIME_SERIES", "temperature", "NUMERIC", "NOT_EQUAL", 30)], [0, 1, 2, 4, 5]),
        ([kf("TIME_SERIES", "mode", "NUMERIC", "GREATER", 0)], []),  # strings never match NUMERIC
        ([kf("TIME_SERIES", "mode", "STRING", "EQUAL", "auto")], [5]),
        ([kf("TIME_SERIES", "mode", "STRING", "EQUAL", "auto", ignoreCase=True)], [0, 5]),
        ([kf("TIME_SERIES", "mode", "STRING", "STARTS_WITH", "AUTO", ignoreCase=True)], [0, 2, 5]),
        ([kf("TIME_SERIES", "mode", "STRING", "ENDS_WITH", "al")], [1]),
        ([kf("TIME_SERIES", "mode", "STRING", "CONTAINS", "anu")], [1, 4]),
        ([kf("TIME_SERIES", "mode", "STRING", "NOT_CONTAINS", "a", ignoreCase=True)], [3]),
        ([kf("TIME_SERIES", "mode", "STRING", "NOT_EQUAL", "off")], [0, 1, 2, 4, 5]),
        ([kf("TIME_SERIES", "mode", "STRING", "IN", 'off, auto,"Manual, fast"')], [3, 4, 5]),
        ([kf("TIME_SERIES", "mode", "STRING", "NOT_IN", "off,auto")], [0, 1, 2, 4]),
        ([kf("TIME_SERIES", "mode", "STRING", "EQUAL", "")], [0, 1, 2, 3, 4, 5]),  # empty: no condition
        ([kf("TIME_SERIES", "nothing", "STRING", "NOT_EQUAL", "x")], []),  # a missing key never matches
        ([kf("TIME_SERIES", "on", "BOOLEAN", "EQUAL", True)], [0, 2, 4]),
        ([kf("TIME_SERIES", "on", "BOOLEAN", "NOT_EQUAL", "true")], [1, 3, 5]),
        ([kf("CLIENT_ATTRIBUTE", "fw", "STRING", "EQUAL", "1.2")], [2]),
        ([kf("SERVER_ATTRIBUTE", "fw", "STRING", "EQUAL", "s2")], [2]),
        ([kf("SHARED_ATTRIBUTE", "limit", "NUMERIC", "GREATER_OR_EQUAL", 98)], [0, 1, 2]),
        ([kf("ATTRIBUTE", "fw", "STRING", "STARTS_WITH", "s")], [0, 1, 2, 3, 4, 5]),
        ([kf("ENTITY_FIELD", "type", "STRING", "EQUAL", "FAN", ignoreCase=True)], [4, 5]),
        ([kf("ENTITY_FIELD", "label", "STRING", "IN", "L1,L3")], [1, 3]),
        (
            [
                kf("TIME_SERIES", "temperature", "NUMERIC", "GREATER", 0),
                kf("TIME_SERIES", "on", "BOOLEAN", "EQUAL", True),
            ],
            [0, 2, 4],
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
                            {"type": "NUMERIC", "operation": "LESS", "value": {"defaultValue": 10}},
                            {
                                "type": "COMPLEX",
                                "operation": "AND",
                                "predicates": [
                                    {"type": "NUMERIC", "operation": "GREATER", "value": {"defaultValue": 30}},
                                    {
                                        "type": "NUMERIC",
                                        "operation": "LESS",
                                        "value": {"defaultValue": 45, "userValue": 50},
                                    },
                                ],
                            },
                        ],
                    },
                }
            ],
            [0, 4],
        ),
    ],
)
def test_key_filters(fleet, filters, expected):
    platform, admin, _, _ = fleet
    assert names(platform, admin, q(filters=filters, sort=("ENTITY_FIELD", "name"))) == [f"pump-{i}" for i in expected]
    assert count(
        platform.registry,
        platform.store,
        admin,
        parse_query(
            {"entityFilter": {"type": "entityType", "entityType": "DEVICE"}, "keyFilters": filters}, paged=False
        ),
    ) == len(expected)


def test_key_filters_operation_or(fleet):
    platform, admin, _, _ = fleet
    filters = [
        kf("TIME_SERIES", "temperature", "NUMERIC", "GREATER", 45),
        kf("ENTITY_FIELD", "name", "STRING", "EQUAL", "pump-0"),
    ]
    assert names(platform, admin, q(filters=filters, sort=("ENTITY_FIELD", "name"), op="OR")) == ["pump-0", "pump-5"]


def test_sort_by_latest_telemetry_attribute_and_field(fleet):
    platform, admin, _, _ = fleet
    assert names(platform, admin, q(sort=("TIME_SERIES", "temperature"), direction="DESC")) == [
        f"pump-{i}" for i in (5, 4, 3, 2, 1, 0)
    ]
    assert names(platform, admin, q(sort=("SHARED_ATTRIBUTE", "limit"))) == [f"pump-{i}" for i in (5, 4, 3, 2, 1, 0)]
    assert names(platform, admin, q(sort=("TIME_SERIES", "mode"))) == [
        "pump-0",
        "pump-5",
        "pump-2",
        "pump-1",
        "pump-4",
        "pump-3",
    ]
    assert names(platform, admin, q(sort=("ENTITY_FIELD", "createdTime"), direction="DESC"))[0] == "pump-5"


def test_paging_edges(fleet):
    platform, admin, _, _ = fleet
    pages = [
        find(platform.registry, platform.store, admin, q(sort=("ENTITY_FIELD", "name"), size=4, page=p), T0)[0]
        for p in range(3)
    ]
    assert [len(p["data"]) for p in pages] == [4, 2, 0]
    assert [p["hasNext"] for p in pages] == [True, False, False]
    assert {p["totalPages"] for p in pages} == {2} and {p["totalElements"] for p in pages} == {6}
    assert names(platform, admin, q(sort=("ENTITY_FIELD", "name"), size=1, page=2**31 - 1)) == []


def test_text_search_covers_fields_and_latest_values(fleet):
    platform, admin, _, _ = fleet
    assert names(platform, admin, q(text="PUMP-3", sort=("ENTITY_FIELD", "name"))) == ["pump-3"]
    assert names(platform, admin, q(text="20.5", sort=("ENTITY_FIELD", "name"))) == ["pump-2"]


def test_customer_user_sees_only_its_customer(fleet):
    platform, _, cu1, ids = fleet
    assert names(platform, cu1, q(sort=("ENTITY_FIELD", "name"))) == ["pump-0", "pump-1"]
    single = {"type": "singleEntity", "singleEntity": {"entityType": "DEVICE", "id": ids[2]}}
    assert names(platform, cu1, q(single)) == []
    assert (
        count(
            platform.registry,
            platform.store,
            cu1,
            parse_query({"entityFilter": {"type": "entityType", "entityType": "DEVICE"}}, paged=False),
        )
        == 2
    )
    cust = find(platform.registry, platform.store, cu1, q({"type": "entityType", "entityType": "CUSTOMER"}), T0)[0]
    assert [e["latest"]["ENTITY_FIELD"]["name"]["value"] for e in cust["data"]] == ["C1"]
    users = find(platform.registry, platform.store, cu1, q({"type": "entityType", "entityType": "USER"}), T0)[0]
    assert [e["entityId"]["id"] for e in users["data"]] == [cu1.id]


def test_tenant_admin_entity_types(fleet):
    platform, admin, _, _ = fleet
    assert sorted(names(platform, admin, q({"type": "entityType", "entityType": "CUSTOMER"}))) == ["C1", "C2"]
    assert names(platform, admin, q({"type": "entityType", "entityType": "TENANT"})) == ["T"]
    assert (
        count(
            platform.registry,
            platform.store,
            admin,
            parse_query({"entityFilter": {"type": "entityType", "entityType": "USER"}}, paged=False),
        )
        == 2
    )


@pytest.mark.parametrize(
    "body, word",
    [
        ({}, "entityFilter"),
        ({"entityFilter": {"type": "assetType"}}, "entityFilter.type"),
        ({"entityFilter": {"type": "entityType", "entityType": "ASSET"}}, "entityType"),
        ({"entityFilter": {"type": "singleEntity", "singleEntity": {"entityType": "DEVICE", "id": "x"}}}, "UUID"),
        ({"entityFilter": {"type": "entityType", "entityType": "DEVICE"}, "keyFilters": {}}, "keyFilters"),
        (
            {
                "entityFilter": {"type": "entityType", "entityType": "DEVICE"},
                "keyFilters": [
                    {
                        "key": {"type": "TIME_SERIES", "key": "t"},
                        "predicate": {"type": "NUMERIC", "operation": "LIKE", "value": {"defaultValue": 1}},
                    }
                ],
            },
            "operation",
        ),
        (
            {
                "entityFilter": {"type": "entityType", "entityType": "DEVICE"},
                "keyFilters": [
                    {
                        "key": {"type": "TIME_SERIES", "key": "t"},
                        "predicate": {"type": "NUMERIC", "operation": "EQUAL", "value": {"defaultValue": "abc"}},
                    }
                ],
            },
            "number",
        ),
    ],
)
def test_bad_queries_name_the_problem(body, word):
    with pytest.raises(InvalidInput, match=word):
        parse_query(body, paged=False)


# ----------------------------------------------------------------------------- property test
def oracle(op: str, kind: str, target, value, ignore_case: bool) -> bool | None:
    """The rules spelled out plainly, for comparison with the evaluator."""
    if kind == "STRING" and target == "":
        return None
    if value is None:
        return False
    vtype, v = value
    if kind == "NUMERIC":
        if vtype not in (ValueType.LONG, ValueType.DOUBLE):
            return False
        return {
            "EQUAL": v == target,
            "NOT_EQUAL": v != target,
            "GREATER": v > target,
            "LESS": v < target,
            "GREATER_OR_EQUAL": v >= target,
            "LESS_OR_EQUAL": v <= target,
        }[op]
    if kind == "BOOLEAN":
        return vtype == ValueType.BOOL and ((v == target) if op == "EQUAL" else (v != target))
    if vtype != ValueType.STR:
        return False
    a, b = (v.lower(), target.lower()) if ignore_case else (v, target)
    return {
        "EQUAL": a == b,
        "NOT_EQUAL": a != b,
        "STARTS_WITH": a.startswith(b),
        "ENDS_WITH": a.endswith(b),
        "CONTAINS": b in a,
        "NOT_CONTAINS": b not in a,
        "IN": a in split_list(b),
        "NOT_IN": a not in split_list(b),
    }[op]


values = st.one_of(
    st.none(),
    st.tuples(st.just(ValueType.LONG), st.integers(-100, 100)),
    st.tuples(st.just(ValueType.DOUBLE), st.floats(-100, 100)),
    st.tuples(st.just(ValueType.STR), st.text("aAbB ,", max_size=5)),
    st.tuples(st.just(ValueType.BOOL), st.booleans()),
)
predicates = st.one_of(
    st.tuples(
        st.just("NUMERIC"),
        st.sampled_from(["EQUAL", "NOT_EQUAL", "GREATER", "LESS", "GREATER_OR_EQUAL", "LESS_OR_EQUAL"]),
        st.integers(-100, 100).map(float),
        st.just(False),
    ),
    st.tuples(
        st.just("STRING"),
        st.sampled_from(["EQUAL", "NOT_EQUAL", "STARTS_WITH", "ENDS_WITH", "CONTAINS", "NOT_CONTAINS", "IN", "NOT_IN"]),
        st.text("aAbB ,", max_size=4),
        st.booleans(),
    ),
    st.tuples(st.just("BOOLEAN"), st.sampled_from(["EQUAL", "NOT_EQUAL"]), st.booleans(), st.just(False)),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(predicates, min_size=1, max_size=3), st.sampled_from(["AND", "OR"]), values)
def test_key_filter_evaluation_matches_oracle(parts, op, value):
    raw = [{"type": k, "operation": o, "value": {"defaultValue": t}, "ignoreCase": ic} for k, o, t, ic in parts]
    simple = [evaluate(parse_predicate(p), value) for p in raw]
    assert simple == [oracle(o, k, t, value, ic) for k, o, t, ic in parts]
    combined = evaluate(parse_predicate({"type": "COMPLEX", "operation": op, "predicates": raw}), value)
    known = [r for r in simple if r is not None]
    assert combined == (None if not known else (all(known) if op == "AND" else any(known)))


def test_sql_page_and_general_path_agree(fleet):
    """A query that only sorts by a device column is answered from SQL; the same query forced
    down the general path (a key filter that is no condition) answers the same pages."""
    platform, _, _, _ = fleet
    reg = platform.registry
    tenant = reg.create_tenant("Sorting")
    admin = reg.create_user("sort@t.io", "password-1", "TENANT_ADMIN", tenant.id)
    for i, name in enumerate(["b", "B", "a", "A-2", "a-10", "Ä", "_x", "b"] + [f"n{j}" for j in range(9)]):
        reg.save_device(tenant.id, f"{name}-{i}" if name == "b" else name, type=["Z", "y", "x"][i % 3])
    noop = [kf("TIME_SERIES", "t", "STRING", "EQUAL", "")]
    for sort in (None, ("ENTITY_FIELD", "name"), ("ENTITY_FIELD", "createdTime"), ("ENTITY_FIELD", "type")):
        for direction in ("ASC", "DESC"):
            for page in range(4):
                fast = q(sort=sort, direction=direction, size=5, page=page)
                slow = q(sort=sort, direction=direction, size=5, page=page, filters=noop)
                assert device_page(reg, admin, fast) is not None and device_page(reg, admin, slow) is None
                a, _ = find(reg, platform.store, admin, fast, T0)
                b, _ = find(reg, platform.store, admin, slow, T0)
                assert a == b, (sort, direction, page)
