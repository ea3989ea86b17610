"""ThingsBoard's script test (``POST /api/ruleChain/testScript``, the "Test" button of every
script node): run a body once on a sample message and say what it returned, or why it failed.

The body runs in the tenant's own sandboxed context (:meth:`~.context.Services.scripts`), with
the same time and memory limits as in a chain, and is released afterwards. ``script_type``
says how the result is read, as in ThingsBoard: ``filter`` (a boolean), ``switch`` (relation
labels), ``update`` / ``generate`` (``{msg, metadata, msgType}`` or an array of them),
``json`` (any JSON), ``string`` (text). The answer is ThingsBoard's ``{"output", "error"}``:
both strings, exactly one of them non-empty.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from ..errors import InvalidInput
from .context import Services
from .message import meta_text
from .script import MSG_ARGS, ScriptError

SCRIPT_TYPES = ("update", "generate", "filter", "switch", "json", "string")


@dataclass(frozen=True)
class ScriptTrial:
    output: str = ""
    error: str = ""

    def to_json(self) -> dict[str, str]:
        return {"output": self.output, "error": self.error}


def _msg_out(out: Any, data: Any, metadata: Mapping[str, str], msg_type: str) -> dict[str, Any]:
    if not isinstance(out, Mapping):
        raise TypeError("the script must return {msg, metadata, msgType}")
    meta = out.get("metadata", metadata)
    if not isinstance(meta, Mapping):
        raise TypeError("the script returned metadata that is not an object")
    return {
        "msg": out.get("msg", data),
        "metadata": {str(k): meta_text(v) for k, v in meta.items()},
        "msgType": out.get("msgType") or msg_type,
    }


def _read(script_type: str, out: Any, data: Any, metadata: Mapping[str, str], msg_type: str) -> str:
    if script_type == "filter":
        if not isinstance(out, bool):
            raise TypeError(f"a filter script must return a boolean, got {orjson.dumps(out).decode()[:60]}")
        return "true" if out else "false"
    if script_type == "switch":
        labels = [out] if isinstance(out, str) else out
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise TypeError("a switch script must return an array of relation names (strings)")
        return orjson.dumps(labels).decode()
    if script_type in ("update", "generate"):
        if isinstance(out, list):
            msgs = [_msg_out(o, data, metadata, msg_type) for o in out]
            return orjson.dumps(msgs[0] if len(msgs) == 1 else msgs).decode()
        return orjson.dumps(_msg_out(out, data, metadata, msg_type)).decode()
    if script_type == "string":
        return out if isinstance(out, str) else orjson.dumps(out).decode()
    return orjson.dumps(out).decode()  # json


def try_script(
    services: Services,
    tenant_id: str,
    script: str,
    script_type: str,
    *,
    msg: Any = None,
    metadata: Mapping[str, Any] | None = None,
    msg_type: str = "POST_TELEMETRY_REQUEST",
    arg_names: Sequence[str] | None = None,
) -> ScriptTrial:
    """Run ``script`` once; a script that fails (syntax, exception, limits, wrong result type)
    is an ``error`` answer, never an exception. ``msg`` is the message data as JSON text (what
    ThingsBoard sends) or already parsed. Bad requests (unknown type) raise InvalidInput."""
    if script_type not in SCRIPT_TYPES:
        raise InvalidInput(f"Unsupported script type: {script_type!r} (one of {', '.join(SCRIPT_TYPES)})")
    args = tuple(arg_names) if arg_names else MSG_ARGS
    if not all(isinstance(a, str) and a.isidentifier() for a in args):
        raise InvalidInput("argNames must be JavaScript identifiers")
    if isinstance(msg, (str, bytes)):
        try:
            data = orjson.loads(msg) if msg else {}
        except orjson.JSONDecodeError as exc:
            return ScriptTrial(error=f"the sample message is not JSON: {exc}")
    else:
        data = {} if msg is None else msg
    meta = {str(k): meta_text(v) for k, v in (metadata or {}).items()}
    engine = services.scripts(tenant_id)
    try:
        compiled = engine.compile(script, args)
    except ScriptError as exc:
        return ScriptTrial(error=str(exc))
    try:
        out = compiled(data, meta, msg_type)
        return ScriptTrial(output=_read(script_type, out, data, meta, msg_type))
    except (ScriptError, TypeError) as exc:
        return ScriptTrial(error=str(exc))
    finally:
        engine.release(compiled)
