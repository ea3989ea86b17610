"""ThingsBoard's rule chain JSON in and out: its own files import, round-trip, and every
kind of bad input is refused with a message naming what is wrong."""

from __future__ import annotations

import copy
import json

import pytest

from tbpanel.errors import InvalidInput
from tbpanel.rules import NODE_TYPES, NodeConfigError, UnknownNodeType, apply_metadata, default_root_json, import_chain
from tbpanel.rules.chain import RULE_CHAIN_INPUT
from tests.rules.conftest import FIXTURES


def load(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


@pytest.mark.parametrize("name", ["root_rule_chain.json", "thermostat_alarms.json"])
def test_thingsboard_files_import_and_round_trip(name):
    doc = load(name)
    chain = import_chain(doc, tenant_id="t1")
    md = doc["metadata"]
    assert chain.title == doc["ruleChain"]["name"] and chain.root == doc["ruleChain"]["root"]
    assert chain.first_node_index == md["firstNodeIndex"]
    assert [n.type for n in chain.nodes] == [n["type"] for n in md["nodes"]]
    assert [n.name for n in chain.nodes] == [n["name"] for n in md["nodes"]]
    assert [c.to_json() for c in chain.connections] == md["connections"]
    out = chain.export_json()
    # every configuration key of the original survives the trip with its value
    for orig, exported in zip(md["nodes"], out["metadata"]["nodes"]):
        for k, v in orig["configuration"].items():
            if v is not None:
                assert exported["configuration"][k] == v, (orig["name"], k)
        assert exported["additionalInfo"] == orig["additionalInfo"]
    again = import_chain(out, tenant_id="t1", keep_id=True)
    assert again.export_json() == out


def test_export_is_thingsboards_format():
    chain = import_chain(default_root_json(), tenant_id="t1")
    out = chain.export_json()
    assert set(out) == {"ruleChain", "metadata"}
    assert {"name", "type", "root", "debugMode", "configuration"} <= set(out["ruleChain"])
    assert {"firstNodeIndex", "nodes", "connections", "ruleChainConnections"} <= set(out["metadata"])
    for n in out["metadata"]["nodes"]:
        assert {"type", "name", "debugMode", "configuration", "additionalInfo"} <= set(n)
        assert n["type"].startswith("org.thingsboard.rule.engine.")
    assert json.loads(chain.export_text()) == out


def test_unknown_node_types_are_all_named():
    doc = load("demo_root_rule_chain_2_5.json")
    with pytest.raises(UnknownNodeType) as e:
        import_chain(doc)
    assert "org.thingsboard.rule.engine.action.TbCreateRelationNode" in str(e.value)
    assert isinstance(e.value, InvalidInput) and e.value.status == 400
    doc["metadata"]["nodes"][0]["type"] = "org.example.Nope"
    with pytest.raises(UnknownNodeType) as e:
        import_chain(doc)
    assert "org.example.Nope" in str(e.value) and "TbCreateRelationNode" in str(e.value)


def test_old_rule_chain_connections_become_input_nodes():
    doc = load("demo_root_rule_chain_2_5.json")
    # without the node tbpanel lacks (its connection too), the rest of the 2.5 file imports
    nodes = doc["metadata"]["nodes"]
    bad = next(i for i, n in enumerate(nodes) if n["type"].endswith("TbCreateRelationNode"))
    doc["metadata"]["nodes"] = [n for i, n in enumerate(nodes) if i != bad]
    doc["metadata"]["connections"] = [
        {**c, "fromIndex": c["fromIndex"] - (c["fromIndex"] > bad), "toIndex": c["toIndex"] - (c["toIndex"] > bad)}
        for c in doc["metadata"]["connections"]
        if bad not in (c["fromIndex"], c["toIndex"])
    ]
    chain = import_chain(doc)
    flow = chain.nodes[-1]
    assert flow.type == RULE_CHAIN_INPUT and flow.impl.rule_chain_id == "25e26570-89ed-11ea-a650-cd6e14e633bd"
    assert any(c.to_index == len(chain.nodes) - 1 and c.type == "True" for c in chain.connections)
    assert chain.export_json()["metadata"]["ruleChainConnections"] is None


BAD = [
    (lambda d: d.pop("ruleChain"), "ruleChain must be a JSON object"),
    (lambda d: d["ruleChain"].update(name=""), "ruleChain.name"),
    (lambda d: d["ruleChain"].update(type="EDGE"), "EDGE"),
    (lambda d: d["metadata"].update(firstNodeIndex=99), "firstNodeIndex 99"),
    (lambda d: d["metadata"].update(firstNodeIndex="x"), "firstNodeIndex must be an integer"),
    (
        lambda d: d["metadata"]["connections"].append({"fromIndex": 0, "toIndex": 42, "type": "Success"}),
        "does not exist",
    ),
    (lambda d: d["metadata"]["connections"].append({"fromIndex": 0, "toIndex": 1, "type": ""}), "relation label"),
    (lambda d: d["metadata"].update(nodes={}), "nodes must be an array"),
    (lambda d: d["metadata"]["nodes"][3]["configuration"].update(jsScript="return (;"), "does not compile"),
    (lambda d: d["metadata"]["nodes"][3]["configuration"].update(jsScript=""), "empty"),
    (lambda d: d["metadata"]["nodes"][1]["configuration"].update(scope="NOPE"), "Save Client Attributes"),
    (lambda d: d["metadata"]["nodes"][0]["configuration"].update(defaultTTL="soon"), "Save Timeseries"),
    (lambda d: d["metadata"]["nodes"][0].update(configuration=[1]), "configuration must be a JSON object"),
    (lambda d: d["metadata"]["nodes"][0].pop("type"), "has no type"),
]


@pytest.mark.parametrize("change, message", BAD)
def test_bad_files_are_refused_with_a_clear_message(change, message):
    doc = copy.deepcopy(default_root_json())
    change(doc)
    with pytest.raises(InvalidInput) as e:
        import_chain(doc)
    assert message in str(e.value)


def test_bad_json_text():
    with pytest.raises(InvalidInput, match="not JSON"):
        import_chain("{nope")


def test_apply_metadata_refused_leaves_the_chain_as_it_was():
    chain = import_chain(default_root_json(), tenant_id="t")
    before = chain.export_json()
    md = copy.deepcopy(before["metadata"])
    md["nodes"][0]["type"] = "org.example.Unknown"
    with pytest.raises(UnknownNodeType):
        apply_metadata(chain, md)
    assert chain.export_json() == before


def test_every_node_declares_a_configuration_form():
    """Each node's configuration is param parameters with a ThingsBoard key: what the UI's
    forms are generated from; each registered type builds from an empty configuration or
    says what it needs."""
    assert len(NODE_TYPES) >= 25
    for tb_type, cls in NODE_TYPES.items():
        assert cls.tb_type == tb_type and tb_type.startswith("org.thingsboard.rule.engine.")
        assert cls.category in ("FILTER", "ENRICHMENT", "TRANSFORMATION", "ACTION", "EXTERNAL", "FLOW")
        try:
            node = cls.from_config({})
        except NodeConfigError as exc:
            assert cls.__name__ in str(exc) or str(exc)
            continue
        cfg = node.to_config()
        assert set(cfg) >= {p for p in (camel_keys(cls))}


def camel_keys(cls):
    return [cls.config_key(p) for p in cls.config_params()]
