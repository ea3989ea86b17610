"""The ``/rules`` page's view models without a browser: editing a chain (nodes added,
configured, removed with their connections renumbered), saving it as ThingsBoard metadata,
the graph's layout and colours, the script test, a sample message and its debug events."""

from __future__ import annotations

import json

import pytest

from tbpanel.errors import InvalidInput
from tbpanel.rules import import_chain
from tbpanel.rules.engine import NodeCounters
from tbpanel.rules.nodes import NodeConfigError
from tbpanel.rules.tenant_rules import TenantRules
from tbpanel.views.rules import BUSY, FAILED, IDLE, RAN, ChainEditor, ChainList, graph_data, layered_layout, node_types
from tests.rules import conftest as rule_fixtures
from tests.rules.conftest import FIXTURES

platform, tenant, device = (
    rule_fixtures.platform,
    rule_fixtures.tenant,
    rule_fixtures.device,
)  # the rule tests' fixtures
FILTER, LOG = "org.thingsboard.rule.engine.filter.TbJsFilterNode", "org.thingsboard.rule.engine.action.TbLogNode"


@pytest.fixture
def rules(platform, tenant):
    return TenantRules(platform.rules, tenant.id)


def test_edit_save_and_remove(rules):
    chains = ChainList(rules)
    chain = chains.create("edited")
    assert chains.selected == chain.id and chains.frame()["name"].tolist() == ["Root Rule Chain", "edited"]
    ed = ChainEditor(rules, rules.get(chain.id))
    assert node_types()["Filter: TbJsFilterNode"] == FILTER
    a = ed.add_node(FILTER, "a")
    b = ed.add_node(LOG, "b")
    c = ed.add_node(LOG, "c")
    assert ed.script_param(a) == "js_script" and "js_script" not in ed.form_params(a)
    ed.apply_node(a, name="a", debug_mode=True, values={"js_script": "return msg.t > 1;"})
    with pytest.raises(NodeConfigError, match="SyntaxError"):
        ed.apply_node(a, name="a", debug_mode=True, values={"js_script": "return (;"})
    ed.connect(a, b, "True")
    ed.connect(a, c, "False")
    ed.connect(b, c, "Success")
    with pytest.raises(InvalidInput):
        ed.connect(a, b, " ")
    assert ed.dirty
    ed.save()
    stored = rules.get(chain.id)
    assert [n.name for n in stored.nodes] == ["a", "b", "c"] and stored.nodes[0].impl.js_script == "return msg.t > 1;"
    assert not ed.dirty
    ed.remove_node(b)  # its connections go, the later node's index moves down
    assert [(x.from_index, x.to_index, x.type) for x in ed.chain.connections] == [(0, 1, "False")]
    ed.set_first(1)
    ed.save()
    assert rules.get(chain.id).first_node_index == 1 and list(ed.connection_labels()) == ["a -[False]-> c (#0)"]


def test_layout_and_colours(rules):
    thermostat = import_chain((FIXTURES / "thermostat_alarms.json").read_text(), tenant_id=rules.tenant_id)
    assert layered_layout(thermostat)[0] == (929.0, -67.0)  # ThingsBoard's own layout, y up
    for n in thermostat.nodes:
        n.additional_info = None
    pos = layered_layout(thermostat)
    first = thermostat.first_node_index
    assert pos[first][0] < min(x for i, (x, _y) in enumerate(pos) if i != first)  # layered from the first node
    ids = [n.id for n in thermostat.nodes]
    counters = {
        ids[0]: NodeCounters(received=3, last_ts=1_000_000),
        ids[1]: NodeCounters(received=1, failures=1, last_error="x"),
        ids[3]: NodeCounters(received=1, last_ts=900_000),
    }
    g = graph_data(thermostat, counters, selected=0, now=1_030_000)
    assert g.nodes["colour"][:4] == [BUSY, FAILED, IDLE, RAN] and g.nodes["line"][0] == "#0b6bcb"
    assert len(g.edges["xs"]) == len(thermostat.connections) and "NewTempAlarm" in g.edges["label"]


def test_script_test_sample_run_and_debug(platform, rules, device):
    ed = ChainEditor(rules, ChainList(rules).create("run"))
    ed.add_node(FILTER, "hot?")
    trial = ed.test_script("return msg.t > 20;", '{"t": 25}', "{}", "POST_TELEMETRY_REQUEST")
    assert (trial.output, trial.error) == ("true", "")
    assert "not JSON" in ed.test_script("return true;", "{}", "{nope", "X").error
    with pytest.raises(InvalidInput, match="save the chain first"):
        ed.run_sample(device.id, '{"t": 25}', "POST_TELEMETRY_REQUEST")
    ed.save()
    result = ed.run_sample(device.id, '{"t": 25}', "POST_TELEMETRY_REQUEST")
    assert [(e.node_name, e.relation) for e in result.ended] == [("hot?", "True")]
    frame = ed.debug_frame()
    assert frame["type"].tolist() == ["OUT", "IN"] and frame["relation"].tolist() == ["True", ""]
    assert json.loads(frame["data"][0]) == {"t": 25}
    assert ed.counters()[ed.chain.nodes[0].id].received == 1
    chains = ChainList(rules)
    name, text = chains.export_file(ed.chain.id)
    assert name == "run.json" and json.loads(text)["metadata"]["nodes"][0]["name"] == "hot?"
    copy = chains.import_file(text.encode())  # what the page's FileInput hands over: bytes
    assert chains.selected == copy.id and copy.id != ed.chain.id and not copy.root
    assert chains.frame()["name"].tolist().count("run") == 2
