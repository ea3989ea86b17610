"""The RPC console's view model on a real platform (no browser): refusals before sending, a
not-connected device, and an answer from a session."""

from __future__ import annotations

import threading

import pytest

from tbpanel.entities import TENANT_ADMIN
from tbpanel.errors import InvalidInput, PermissionDenied
from tbpanel.platform import Platform
from tbpanel.views.rpc import RpcConsole


@pytest.fixture
def world(tmp_path):
    p = Platform(tmp_path / "data", compaction_interval_s=0)
    t = p.registry.create_tenant("T")
    other = p.registry.create_tenant("U")
    user = p.registry.create_user("a@t.test", "pass-word-1", TENANT_ADMIN, t.id)
    device = p.registry.save_device(t.id, "d")
    foreign = p.registry.save_device(other.id, "f")
    yield p, user, device, foreign
    p.close()


def ended(console: RpcConsole, call) -> tuple[str, str]:
    done = threading.Event()
    console.when_done(call, done.set)
    assert done.wait(10)
    return console.outcome(call)


def test_refusals(world):
    p, user, device, foreign = world
    c = RpcConsole(p, user, method="m")
    with pytest.raises(InvalidInput, match="pick a device"):
        c.submit()
    c.device = device.id
    c.params_text = "{oops"
    with pytest.raises(InvalidInput, match="not valid JSON"):
        c.submit()
    c.params_text, c.device = "{}", foreign.id
    with pytest.raises(PermissionDenied):
        c.submit()
    c.device, c.method = device.id, ""
    with pytest.raises(InvalidInput, match="'method'"):
        c.submit()


def test_not_connected_then_answered(world):
    p, user, device, _ = world
    c = RpcConsole(p, user, device=device.id, method="ping", params_text='{"n": 1}')
    status, text = ended(c, c.submit())
    assert status == "error" and "not connected" in text

    class Session:
        def send_rpc(self, request):
            p.rpc.reply(device.id, request.request_id, {"pong": request.params["n"]})

    p.rpc.sessions.announce(device.id, Session())
    status, text = ended(c, c.submit())
    assert status == "SUCCESSFUL" and '"pong": 1' in text
    c.show((status, text))
    assert c.status == "SUCCESSFUL"
