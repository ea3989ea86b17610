"""The script sandbox: ThingsBoard bodies run; escapes, runaway loops and huge allocations
end as a clear ScriptError (a Failure in a chain) and the context keeps working after."""

from __future__ import annotations

import pytest

from tbpanel.rules import ScriptEngine, ScriptError
from tests.rules.helpers import chain, msg


@pytest.fixture(scope="module")
def js():
    e = ScriptEngine(timeout_ms=300, max_memory_bytes=32 << 20)
    yield e
    e.close()


def test_bodies_see_msg_metadata_and_type(js):
    s = js.compile("return {t: msg.t * 2, name: metadata.deviceName, type: msgType};")
    assert s({"t": 21}, {"deviceName": "d"}, "POST_TELEMETRY_REQUEST") == {
        "t": 42,
        "name": "d",
        "type": "POST_TELEMETRY_REQUEST",
    }
    assert js.compile("return;")({}, {}, "") is None


@pytest.mark.parametrize(
    "body",
    [
        "return typeof require;",
        "return typeof process;",
        "return typeof fetch;",
        "return typeof XMLHttpRequest;",
        "return typeof setTimeout;",
        "return typeof WebAssembly;",
        "return typeof eval;",
    ],
)
def test_no_io_or_escape_hatches(js, body):
    assert js.compile(body)({}, {}, "") == "undefined"


@pytest.mark.parametrize(
    "body",
    [
        "}); globalThis.pwned = 1; (function(){",  # closing the wrapper function
        "return (",
    ],
)
def test_a_body_cannot_break_out_of_its_function(js, body):
    with pytest.raises(ScriptError, match="SyntaxError"):
        js.compile(body)
    assert js.compile("return typeof pwned;")({}, {}, "") == "undefined"


def test_the_harness_cannot_be_replaced(js):
    js.compile("try { __tbCall = function(){ return '\"owned\"'; }; } catch (e) {} return 1;")({}, {}, "")
    assert js.compile("return 2;")({}, {}, "") == 2


def test_runaway_loop_is_stopped_and_the_context_recovers(js):
    loop = js.compile("while (true) {}")
    ok = js.compile("return msg.x + 1;")
    with pytest.raises(ScriptError, match="longer than 300 ms"):
        loop({}, {}, "")
    assert ok({"x": 1}, {}, "") == 2  # recompiled in a fresh context


@pytest.mark.parametrize(
    "body, error",
    [
        ("var a = []; for (;;) { a.push({x: Math.random(), y: [1, 2, 3]}); }", "more than 32 MiB of memory"),
        ("var a = []; while (true) { a.push(new Float64Array(1e6)); }", "allocation failed"),
    ],
)
def test_huge_allocation_is_stopped(body, error):
    e = ScriptEngine(timeout_ms=20_000, max_memory_bytes=32 << 20)  # the memory limit, not the clock, ends it
    try:
        hog = e.compile(body)
        with pytest.raises(ScriptError, match=error):
            hog({}, {}, "")
        assert e.compile("return 7;")({}, {}, "") == 7
    finally:
        e.close()


def test_exceptions_carry_the_message(js):
    with pytest.raises(ScriptError, match="boom"):
        js.compile("throw new Error('boom');")({}, {}, "")


def test_tenants_do_not_share_globals(bare_engine):
    a = bare_engine.services.scripts("a")
    b = bare_engine.services.scripts("b")
    a.compile("globalThis.secret = 'a'; return 1;")({}, {}, "")
    assert b.compile("return typeof secret;")({}, {}, "") == "undefined"


RUNAWAY = [
    ("while (true) {}", "longer than"),
    ("var s = 'x'; while (true) { s = s + s; }", "RangeError"),
    ("return msg.no.such.key;", "TypeError"),
    ("return new Date(;", None),  # refused at import already
]


@pytest.mark.parametrize("body, error", RUNAWAY)
def test_runaway_scripts_end_as_failure_in_a_chain(clock, body, error):
    from tbpanel.rules import NodeConfigError, RuleEngine, Services

    engine = RuleEngine(Services(clock=clock, script_timeout_ms=300, script_max_memory_bytes=32 << 20))
    try:
        if error is None:
            with pytest.raises(NodeConfigError, match="does not compile"):
                chain("t", [("filter.TbJsFilterNode", "f", {"jsScript": body})], [])
            return
        engine.set_chain(
            chain(
                "t",
                [("filter.TbJsFilterNode", "f", {"jsScript": body}), ("flow.TbAckNode", "err", {})],
                [(0, 1, "Failure")],
            )
        )
        [end] = engine.process(msg()).ended
        assert end.node_name == "err" and error in end.msg.metadata["error"]
        engine.set_chain(chain("t", [("filter.TbJsFilterNode", "f", {"jsScript": "return true;"})], []))
        assert engine.process(msg()).ended[0].relation == "True"
    finally:
        engine.close()


def test_scripts_compile_and_run_on_a_thread_with_a_running_event_loop():
    """A Jupyter kernel's thread runs an asyncio loop (so does the server's): mini-racer refuses
    its time limit there, so compiling and calling hop to a helper thread (the notebooks opened
    a data directory with a stored chain and failed to import it)."""
    import asyncio

    from tbpanel.rules import default_root_json, import_chain

    async def in_a_loop():
        eng = ScriptEngine(timeout_ms=500)
        try:
            script = eng.compile("return msg.a + 1;")
            chain = import_chain(default_root_json(), tenant_id="t")  # compiles the chain's scripts
            return script({"a": 1}, {}, "POST_TELEMETRY_REQUEST"), len(chain.nodes)
        finally:
            eng.close()

    value, nodes = asyncio.run(in_a_loop())
    assert value == 2 and nodes >= 5
