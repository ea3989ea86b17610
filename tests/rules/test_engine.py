"""The engine: relations followed, Failure on exceptions with the error in metadata, debug
events, per-node counters, chain-to-chain flow, loops contained, timer nodes on a test clock."""

from __future__ import annotations

import pytest

from tbpanel.rules import RuleEngineError
from tests.rules.helpers import chain, msg

FILTER = "filter.TbJsFilterNode"
XFORM = "transform.TbTransformMsgNode"
SWITCH = "filter.TbJsSwitchNode"
ACK = "flow.TbAckNode"


def ends(result):
    return sorted((e.node_name, e.relation) for e in result.ended)


def test_relations_are_followed_and_unconnected_outputs_end(bare_engine):
    c = chain(
        "t",
        [
            (FILTER, "hot?", {"jsScript": "return msg.t > 20;"}),
            (XFORM, "mark", {"jsScript": "msg.hot = true; return {msg: msg, metadata: metadata, msgType: msgType};"}),
            (ACK, "cold", {}),
        ],
        [(0, 1, "True"), (0, 2, "False")],
    )
    bare_engine.set_chain(c)
    r = bare_engine.process(msg(data={"t": 25}))
    assert ends(r) == [("mark", "Success")] and r.ok
    assert r.ended[0].msg.data == {"t": 25, "hot": True}
    assert ends(bare_engine.process(msg(data={"t": 5}))) == [("cold", "Success")]


def test_an_exception_is_failure_with_the_error_in_metadata(bare_engine):
    c = chain(
        "t",
        [(FILTER, "f", {"jsScript": "return msg.a.b.c > 1;"}), (ACK, "on failure", {})],
        [(0, 1, "Failure")],
    )
    bare_engine.set_chain(c)
    r = bare_engine.process(msg(data={}))
    [e] = r.ended
    assert e.node_name == "on failure" and "TypeError" in e.msg.metadata["error"]
    # without a Failure connection the failure is unhandled: what the queue reports
    bare_engine.set_chain(chain("t", [(FILTER, "f", {"jsScript": "return 1;"})], []))
    r = bare_engine.process(msg())
    assert not r.ok and "must return a boolean" in r.unhandled_failures[0].msg.metadata["error"]


def test_switch_follows_every_label_it_returns(bare_engine):
    c = chain(
        "t",
        [(SWITCH, "s", {"jsScript": "return ['a', 'b', 'nobody'];"}), (ACK, "A", {}), (ACK, "B", {}), (ACK, "B2", {})],
        [(0, 1, "a"), (0, 2, "b"), (0, 3, "b")],
    )
    bare_engine.set_chain(c)
    assert ends(bare_engine.process(msg())) == [("A", "Success"), ("B", "Success"), ("B2", "Success"), ("s", "nobody")]


def test_debug_events_and_counters(bare_engine):
    c = chain(
        "t",
        [
            (FILTER, "f", {"jsScript": "if (msg.t === undefined) throw new Error('no t'); return msg.t > 20;"}),
            (ACK, "ok", {}),
        ],
        [(0, 1, "True")],
    )
    bare_engine.set_chain(c)
    events = []
    bare_engine.debug.connect(events.append)
    bare_engine.process(msg(data={"t": 25}))
    bare_engine.process(msg(data={"t": 1}))
    bare_engine.process(msg(data={}))
    kinds = [(e.node_name, e.kind, e.relation) for e in events]
    assert kinds[:4] == [("f", "IN", None), ("f", "OUT", "True"), ("ok", "IN", None), ("ok", "OUT", "Success")]
    failed = [e for e in events if e.relation == "Failure"]
    assert len(failed) == 1 and "no t" in failed[0].error and failed[0].to_json()["error"] == failed[0].error
    f = bare_engine.counters[c.nodes[0].id]
    assert f.received == 3 and f.relations == {"True": 1, "False": 1, "Failure": 1} and f.failures == 1
    assert bare_engine.counters[c.nodes[1].id].received == 1


def test_debug_events_only_for_nodes_in_debug_mode(bare_engine):
    bare_engine.set_chain(chain("t", [(ACK, "quiet", {})], [], debug=False))
    events = []
    bare_engine.debug.connect(events.append)
    bare_engine.process(msg())
    assert events == []
    bare_engine.debug_all = True
    bare_engine.process(msg())
    assert [e.kind for e in events] == ["IN", "OUT"]


def test_chain_to_chain_and_back_through_output_nodes(bare_engine):
    inner = chain(
        "t",
        [
            (FILTER, "big?", {"jsScript": "return msg.v > 10;"}),
            ("flow.TbRuleChainOutputNode", "Big", {}),
            ("flow.TbRuleChainOutputNode", "Small", {}),
        ],
        [(0, 1, "True"), (0, 2, "False")],
        root=False,
        name="inner",
    )
    outer = chain(
        "t",
        [
            ("flow.TbRuleChainInputNode", "to inner", {"ruleChainId": inner.id}),
            (ACK, "after big", {}),
            (ACK, "after small", {}),
        ],
        [(0, 1, "Big"), (0, 2, "Small")],
    )
    bare_engine.set_chain(inner)
    bare_engine.set_chain(outer)
    assert ends(bare_engine.process(msg(data={"v": 50}))) == [("after big", "Success")]
    assert ends(bare_engine.process(msg(data={"v": 1}))) == [("after small", "Success")]
    # a chain that calls itself is stopped, as a Failure
    loop = chain("t", [("flow.TbRuleChainInputNode", "me", {"ruleChainId": "x"})], [], name="loop")
    loop.nodes[0].impl.rule_chain_id = loop.id
    bare_engine.set_chain(loop)
    r = bare_engine.process(msg())
    assert not r.ok and "deep" in r.unhandled_failures[0].msg.metadata["error"]


def test_a_connection_cycle_is_stopped(bare_engine):
    bare_engine.set_chain(chain("t", [(ACK, "a", {}), (ACK, "b", {})], [(0, 1, "Success"), (1, 0, "Success")]))
    r = bare_engine.process(msg())
    assert not r.ok and "loop" in r.unhandled_failures[0].msg.metadata["error"]


def test_root_chain_rules(bare_engine):
    with pytest.raises(RuleEngineError, match="no root"):
        bare_engine.process(msg())
    a = chain("t", [(ACK, "a", {})], [], name="a")
    b = chain("t", [(ACK, "b", {})], [], name="b")
    bare_engine.set_chain(a)
    bare_engine.set_chain(b)
    assert bare_engine.root("t") is b and not a.root
    assert ends(bare_engine.process(msg(), chain_id=a.id)) == [("a", "Success")]
    with pytest.raises(RuleEngineError, match="tenant"):
        bare_engine.process(msg(tenant_id=""))
    # another tenant's chains are not this tenant's
    with pytest.raises(RuleEngineError):
        bare_engine.process(msg(tenant_id="other"), chain_id=a.id)


def test_timer_nodes_run_on_the_engine_clock(bare_engine, clock):
    c = chain(
        "t",
        [
            ("delay.TbMsgDelayNode", "wait", {"periodInSeconds": 10, "maxPendingMsgs": 2}),
            (ACK, "later", {}),
            (ACK, "too many", {}),
        ],
        [(0, 1, "Success"), (0, 2, "Failure")],
    )
    bare_engine.set_chain(c)
    assert bare_engine.process(msg(data={"n": 1})).ended == []
    clock.t += 5_000
    bare_engine.process(msg(data={"n": 2}))
    assert ends(bare_engine.process(msg(data={"n": 3}))) == [("too many", "Success")]
    assert bare_engine.next_due() == clock.t - 5_000 + 10_000
    clock.t += 5_000
    r = bare_engine.tick()
    assert [e.msg.data for e in r.ended] == [{"n": 1}]
    clock.t += 5_000
    assert [e.msg.data for e in bare_engine.tick().ended] == [{"n": 2}]
    assert bare_engine.next_due() is None
