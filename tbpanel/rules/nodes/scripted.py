"""The part of a node that runs a user script: ThingsBoard's ``scriptLang`` / ``jsScript`` /
``tbelScript`` configuration, checked at import and compiled once per tenant context."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, ClassVar

import param

from ..script import MSG_ARGS, Script, ScriptEngine, ScriptError
from .base import NodeConfigError, RuleNode

if TYPE_CHECKING:
    from ..context import NodeContext

_checker: ScriptEngine | None = None
_checker_lock = threading.Lock()


def check_syntax(body: str, args: tuple[str, ...] = MSG_ARGS) -> None:
    """Compile ``body`` in a context of its own (never a tenant's); ScriptError → NodeConfigError."""
    global _checker
    with _checker_lock:
        if _checker is None:
            _checker = ScriptEngine(timeout_ms=1000)
        try:
            s = _checker.compile(body, args)
        except ScriptError as exc:
            raise NodeConfigError(f"script does not compile: {exc}") from None
        _checker.release(s)


class ScriptedNode(RuleNode):
    """A node whose behaviour is a script body (JavaScript; TBEL bodies run as JavaScript).
    Subclasses declare the two body parameters and name them in ``script_params``."""

    script_lang: param.Selector[str] = param.Selector(
        default="JS", objects=["JS", "TBEL"], doc="ThingsBoard's script language field."
    )

    script_args: ClassVar[tuple[str, ...]] = MSG_ARGS
    script_params: ClassVar[tuple[str, str]] = ("js_script", "tbel_script")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._compiled: dict[int, Script] = {}

    @property
    def body(self) -> str:
        js, tbel = (getattr(self, p) or "" for p in self.script_params)
        if self.script_lang == "TBEL" and tbel.strip():
            return str(tbel)
        return str(js or tbel)

    def check(self) -> None:
        if not self.body.strip():
            raise NodeConfigError(f"{type(self).__name__}: the script is empty")
        check_syntax(self.body, self.script_args)

    def run_script(self, ctx: NodeContext, *values: Any) -> Any:
        eng = ctx.services.scripts(ctx.tenant_id)
        s = self._compiled.get(id(eng))
        if s is None:
            s = self._compiled[id(eng)] = eng.compile(self.body, self.script_args)
        return s(*values)


class JsBodyNode(ScriptedNode):
    """The common case: the body is ``jsScript`` (``tbelScript`` in TBEL chains)."""

    js_script = param.String(default="", doc="The JavaScript function body.")
    tbel_script = param.String(default="", doc="The TBEL body (run as JavaScript: TBEL is a JS-like subset).")
