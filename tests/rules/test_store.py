"""Rule chains on disk: saved as ThingsBoard's JSON, reloaded into a new engine after a
restart, one root per tenant, tenants kept apart, refused saves change nothing."""

from __future__ import annotations

import copy

import pytest

from tbpanel.errors import InvalidInput, NotFound
from tbpanel.rules import RuleEngine, Services, UnknownNodeType
from tbpanel.rules.queue import RuleQueue
from tbpanel.rules.store import RuleChainStore
from tests.rules.helpers import chain, msg


@pytest.fixture
def opened(tmp_path, clock):
    q = RuleQueue(tmp_path, clock=clock)
    e = RuleEngine(Services(clock=clock))
    yield q, e, RuleChainStore(q, e)
    e.close()
    q.close()


def test_default_root_is_created_once_and_survives_a_restart(tmp_path, opened, clock):
    q, e, s = opened
    root = s.ensure_root("t")
    assert root.root and s.ensure_root("t").id == root.id and e.root("t").id == root.id
    other = s.save(chain("t", [("flow.TbAckNode", "ack", {})], [], root=False, name="side"))
    assert [c.title for c in s.list("t")] == ["Root Rule Chain", "side"]
    q.close()
    q2 = RuleQueue(tmp_path, clock=clock)
    e2 = RuleEngine(Services(clock=clock))
    try:
        assert RuleChainStore(q2, e2).load() == 2
        assert e2.root("t").id == root.id and e2.chain("t", other.id).nodes[0].name == "ack"
        assert e2.process(msg(type="CONNECT_EVENT")).ended[0].relation == "Connect Event"
    finally:
        e2.close()
        q2.close()


def test_one_root_per_tenant(opened):
    _, e, s = opened
    a = s.ensure_root("t")
    b = s.save(chain("t", [("flow.TbAckNode", "b", {})], [], root=False, name="b"))
    s.set_root("t", b.id)
    assert [c.title for c in s.list("t") if c.root] == ["b"] and e.root("t").id == b.id
    assert not s.get("t", a.id).root
    with pytest.raises(InvalidInput, match="root rule chain cannot be deleted"):
        s.delete("t", b.id)
    s.delete("t", a.id)
    with pytest.raises(NotFound):
        s.get("t", a.id)


def test_tenants_are_kept_apart(opened):
    _, _, s = opened
    mine = s.ensure_root("t")
    for call in (
        lambda: s.get("other", mine.id),
        lambda: s.delete("other", mine.id),
        lambda: s.set_root("other", mine.id),
    ):
        with pytest.raises(NotFound):
            call()
    stolen = copy.copy(mine)
    stolen.tenant_id = "other"
    with pytest.raises(NotFound):
        s.save(stolen)
    assert s.list("other") == []


def test_refused_metadata_changes_nothing(opened):
    _, e, s = opened
    root = s.ensure_root("t")
    md = root.metadata_json()
    md["nodes"][0]["type"] = "org.example.Missing"
    with pytest.raises(UnknownNodeType):
        s.save_metadata("t", root.id, md)
    assert s.get("t", root.id).export_json()["metadata"] == root.export_json()["metadata"]
    md = root.metadata_json()
    md["nodes"] = md["nodes"][:1]
    md["connections"] = []
    md["firstNodeIndex"] = 0
    s.save_metadata("t", root.id, md)
    assert [n.name for n in s.get("t", root.id).nodes] == ["Save Timeseries"] and len(e.root("t").nodes) == 1
