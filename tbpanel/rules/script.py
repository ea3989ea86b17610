"""ThingsBoard script bodies in a sandboxed V8 (``mini-racer``) with time and memory limits.

Users write only a function body, called as ``(msg, metadata, msgType)`` (other argument
lists for generators and alarm details). Each tenant gets its own V8 context (:class:`ScriptEngine`),
so one tenant's globals never reach another's; the context has no I/O at all (no ``require``,
``fetch``, ``process``; the timer and WebAssembly globals are removed). Values cross the
boundary as JSON text only, never as live objects. A body is compiled with ``new Function``
(so it cannot close the function it is put in) and checked when its node is built.

Every call has a time limit and the context a heap limit; a runaway script (endless loop,
huge allocation) ends in :class:`ScriptError` and, because V8 may be left in a bad state after
either, the context is rebuilt (its scripts recompiled) before the next call. Calls on one
context are serialised by a lock (V8 isolates are single-threaded).
"""

from __future__ import annotations

import asyncio
import itertools
import re
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import orjson

MSG_ARGS = ("msg", "metadata", "msgType")

_PRELUDE = r"""
(function () {
  const parse = JSON.parse, stringify = JSON.stringify, Fn = Function;
  const fns = Object.create(null);
  for (const name of ["setTimeout", "setInterval", "clearTimeout", "clearInterval", "WebAssembly",
                      "SharedArrayBuffer", "Atomics", "eval"]) {
    try { delete globalThis[name]; } catch (e) {}
    if (name in globalThis) { Object.defineProperty(globalThis, name, {value: undefined, writable: false}); }
  }
  const define = function (id, args, body) { fns[id] = Fn.apply(null, parse(args).concat([body])); return true; };
  const call = function (id, argsText) {
    const out = fns[id].apply(undefined, parse(argsText));
    return out === undefined ? "null" : stringify(out);
  };
  for (const [k, v] of [["__tbDefine", define], ["__tbCall", call]]) {
    Object.defineProperty(globalThis, k, {value: v, writable: false, configurable: false, enumerable: false});
  }
})();
"""


T = TypeVar("T")
_helper: ThreadPoolExecutor | None = None
_helper_lock = threading.Lock()


def off_loop(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)``, on a helper thread when this thread runs an asyncio loop (the server's, a
    Jupyter kernel's): mini-racer refuses its time limit on such a thread. Elsewhere (the rule
    queue's worker, a script) it runs here."""
    global _helper
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn(*args)
    with _helper_lock:
        if _helper is None:
            _helper = ThreadPoolExecutor(1, thread_name_prefix="tbpanel-v8")
    return _helper.submit(fn, *args).result()


class ScriptError(Exception):
    """A script could not be compiled or run: syntax error, exception, time or memory limit."""


class Script:
    """One compiled body in a :class:`ScriptEngine`; call it with JSON-compatible arguments."""

    def __init__(self, engine: ScriptEngine, sid: str, body: str, args: Sequence[str]) -> None:
        self.engine, self.sid, self.body, self.args = engine, sid, body, tuple(args)

    def __call__(self, *values: Any) -> Any:
        return self.engine.call(self, values)

    def __repr__(self) -> str:
        return f"Script({self.body[:40]!r}…)"


class ScriptEngine:
    """One tenant's sandboxed JavaScript context."""

    def __init__(self, *, timeout_ms: int = 500, max_memory_bytes: int = 64 << 20) -> None:
        self.timeout_ms = timeout_ms
        self.max_memory_bytes = max_memory_bytes
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._scripts: dict[str, Script] = {}
        self._ctx: Any = None
        self._retired: Any = None
        self.restarts = 0

    def _context(self) -> Any:
        if self._ctx is None:
            from py_mini_racer import MiniRacer

            ctx = MiniRacer()
            # the heap limit once per context (cheaper than per call)
            ctx.set_hard_memory_limit(self.max_memory_bytes)
            ctx.eval(_PRELUDE)
            for s in self._scripts.values():
                self._define(ctx, s)
            self._ctx = ctx
        return self._ctx

    @staticmethod
    def _define(ctx: Any, s: Script) -> None:
        ctx.eval(
            "__tbDefine("
            + orjson.dumps(s.sid).decode()
            + ","
            + orjson.dumps(orjson.dumps(list(s.args)).decode()).decode()
            + ","
            + orjson.dumps(s.body).decode()
            + ")",
            timeout_sec=5,
        )

    def compile(self, body: str, args: Sequence[str] = MSG_ARGS) -> Script:
        """Compile a function body; a syntax error raises :class:`ScriptError` with V8's message."""
        return off_loop(self._compile, body, args)

    def _compile(self, body: str, args: Sequence[str]) -> Script:
        if not isinstance(body, str) or not body.strip():
            raise ScriptError("the script is empty")
        s = Script(self, f"s{next(self._ids)}", body, args)
        with self._lock:
            try:
                self._define(self._context(), s)
            except Exception as exc:
                raise ScriptError(_message(exc)) from None
            self._scripts[s.sid] = s
        return s

    def release(self, script: Script) -> None:
        """Forget ``script`` (its node was removed); it is not recompiled on a restart."""
        with self._lock:
            self._scripts.pop(script.sid, None)

    def call(self, script: Script, values: Sequence[Any]) -> Any:
        return off_loop(self._call, script, values)

    def _call(self, script: Script, values: Sequence[Any]) -> Any:
        from py_mini_racer import JSOOMException, JSTimeoutException

        arg_text = orjson.dumps(list(values)).decode()
        code = "__tbCall(" + orjson.dumps(script.sid).decode() + "," + orjson.dumps(arg_text).decode() + ")"
        with self._lock:
            ctx = self._context()
            try:
                out = ctx.eval(code, timeout_sec=self.timeout_ms / 1000)
            except JSTimeoutException:
                self._reset()
                raise ScriptError(f"script took longer than {self.timeout_ms} ms and was stopped") from None
            except JSOOMException:
                self._reset()
                raise ScriptError(
                    f"script used more than {self.max_memory_bytes >> 20} MiB of memory and was stopped"
                ) from None
            except Exception as exc:
                if ctx.was_hard_memory_limit_reached():
                    self._reset()
                raise ScriptError(_message(exc)) from None
        if not isinstance(out, str):
            raise ScriptError("script returned a value that is not JSON")
        return orjson.loads(out)

    def _reset(self) -> None:
        """Drop a context a runaway script may have left broken; the next call rebuilds it."""
        # closed later, not now: V8 still reports the terminated call to the context's event
        # loop a moment after, and a context closed (or collected) before that makes
        # mini-racer print "Event loop is closed"; one retired context is kept until the next
        # reset or close()
        if self._retired is not None:
            self._retired.close()
        self._retired, self._ctx = self._ctx, None
        self.restarts += 1

    def close(self) -> None:
        with self._lock:
            for ctx in (self._ctx, self._retired):
                if ctx is not None:
                    ctx.close()
            self._ctx = self._retired = None


def _message(exc: Exception) -> str:
    text = str(exc).strip()
    # mini-racer appends the source line and a caret; the first line says what went wrong
    lines = [ln for ln in text.splitlines() if ln.strip()]
    for ln in lines:
        if "Error" in ln:
            return re.sub(r"^undefined:\d+:\s*", "", ln.strip())
    return lines[0] if lines else type(exc).__name__
