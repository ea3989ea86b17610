"""What every rule node is: a ``param.Parameterized`` whose parameters are its configuration.

A node class names its ThingsBoard type (``tb_type``, the Java class name the import/export
format uses), its category and the relations it may emit; its parameters are the keys of
ThingsBoard's ``configuration`` object in snake case (``jsScript`` ↔ ``js_script``), so a form
for the UI can be generated from ``param`` and a chain round-trips through ThingsBoard's JSON.
Configuration keys a node does not declare are kept as they were (``extra``) and exported again.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import param

from ...errors import InvalidInput
from ..message import TbMsg

if TYPE_CHECKING:
    from ..context import NodeContext

SUCCESS, FAILURE, TRUE, FALSE, OTHER = "Success", "Failure", "True", "False", "Other"

#: What ``process`` returns: ``(relation label, message)`` pairs, in emission order.
Outputs = list[tuple[str, TbMsg]]

CATEGORIES = ("FILTER", "ENRICHMENT", "TRANSFORMATION", "ACTION", "EXTERNAL", "FLOW")


def camel(name: str) -> str:
    """``alarm_details_build_js`` → ``alarmDetailsBuildJs`` (ThingsBoard's configuration keys)."""
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


class NodeConfigError(InvalidInput):
    """A node's configuration cannot be used (bad value, missing script): a 400 naming it."""


class RuleNode(param.Parameterized):
    """Base class of every node implementation; subclasses declare their configuration as params."""

    tb_type: ClassVar[str] = ""
    category: ClassVar[str] = "ACTION"
    relations: ClassVar[tuple[str, ...]] = (SUCCESS, FAILURE)
    #: ``{param name: (other configuration keys read when the camel-case key is absent)}``
    aliases: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    #: ``{param name: configuration key}`` where ThingsBoard's key is not the camel case (``defaultTTL``)
    config_keys: ClassVar[Mapping[str, str]] = {}
    #: true for nodes that talk to systems outside tbpanel: failures are retried by the queue
    external: ClassVar[bool] = False

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.extra: dict[str, Any] = {}

    # -- configuration ---------------------------------------------------------------------
    @classmethod
    def config_params(cls) -> list[str]:
        """The names of the parameters that are configuration (everything but ``name``)."""
        return [p for p in cls.param if p != "name"]

    @classmethod
    def config_key(cls, pname: str) -> str:
        return cls.config_keys.get(pname) or camel(pname)

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None, *, node_name: str = "") -> RuleNode:
        """Build from ThingsBoard's ``configuration`` object; a bad value raises
        :class:`NodeConfigError` naming the node and the key."""
        config = dict(config or {})
        values: dict[str, Any] = {}
        used: set[str] = set()
        for pname in cls.config_params():
            for key in (cls.config_key(pname), *cls.aliases.get(pname, ())):
                if key in config:
                    used.add(key)
                    if config[key] is not None and pname not in values:
                        values[pname] = config[key]
        label = f"node {node_name!r} ({cls.tb_type.rsplit('.', 1)[-1]})"
        try:
            node = cls(**values)
        except (ValueError, TypeError) as exc:
            raise NodeConfigError(f"{label}: invalid configuration: {exc}") from None
        node.extra = {k: v for k, v in config.items() if k not in used}
        try:
            node.check()
        except NodeConfigError:
            raise
        except (ValueError, TypeError) as exc:
            raise NodeConfigError(f"{label}: {exc}") from None
        return node

    def to_config(self) -> dict[str, Any]:
        """The ``configuration`` object ThingsBoard's export carries."""
        out = dict(self.extra)
        for pname in self.config_params():
            out[self.config_key(pname)] = _plain(getattr(self, pname))
        return out

    def check(self) -> None:
        """Validate the configuration as a whole (compile scripts, regexes); raise ValueError."""

    # -- behaviour -------------------------------------------------------------------------
    def process(self, ctx: NodeContext, msg: TbMsg) -> Outputs:  # pragma: no cover - abstract
        raise NotImplementedError

    def due(self) -> int | None:
        """Epoch ms at which :meth:`tick` has work (timer nodes), else None."""
        return None

    def tick(self, ctx: NodeContext, now: int) -> Outputs:
        """Messages a timer node emits at ``now`` (delay, deduplication, count, generator)."""
        return []

    def close(self) -> None:
        """Release connections (external nodes); called when its chain is replaced or removed."""


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    return value


# -- the registry of node types --------------------------------------------------------------
NODE_TYPES: dict[str, type[RuleNode]] = {}

_PREFIX = "org.thingsboard.rule.engine."


def register(cls: type[RuleNode]) -> type[RuleNode]:
    """Class decorator: make ``cls`` importable under its ThingsBoard type name."""
    if not cls.tb_type.startswith(_PREFIX):
        cls.tb_type = _PREFIX + cls.tb_type
    NODE_TYPES[cls.tb_type] = cls
    return cls


def node_class(tb_type: str) -> type[RuleNode] | None:
    return NODE_TYPES.get(tb_type) or NODE_TYPES.get(_PREFIX + tb_type)


# -- small helpers nodes share -------------------------------------------------------------
_PATTERN = re.compile(r"\$\{([^}]+)\}|\$\[([^\]]+)\]")


def substitute(pattern: str, msg: TbMsg) -> str:
    """ThingsBoard's patterns: ``${key}`` from metadata, ``$[key]`` from the data (dotted
    paths into nested objects); an unknown key leaves the placeholder as it was."""

    def one(m: re.Match[str]) -> str:
        if m.group(1) is not None:
            v = msg.metadata.get(m.group(1))
            return m.group(0) if v is None else v
        found, value = data_path(msg.data, m.group(2))
        if not found:
            return m.group(0)
        from ..message import meta_text

        return meta_text(value)

    return _PATTERN.sub(one, pattern)


def data_path(data: Any, path: str) -> tuple[bool, Any]:
    """``("a.b")`` → ``data["a"]["b"]``; ``(False, None)`` when any step is missing."""
    cur = data
    for part in path.split("."):
        if isinstance(cur, Mapping) and part in cur:
            cur = cur[part]
        else:
            return False, None
    return True, cur


def string_list(value: Iterable[Any] | None) -> list[str]:
    return [str(v) for v in (value or [])]


@dataclass
class Timers:
    """Pending ``(due ms, payload)`` entries of a timer node, oldest first."""

    items: list[tuple[int, Any]] = field(default_factory=list)

    def add(self, due: int, payload: Any) -> None:
        self.items.append((due, payload))
        self.items.sort(key=lambda x: x[0])

    def pop_due(self, now: int) -> list[Any]:
        ready = [p for d, p in self.items if d <= now]
        self.items = [(d, p) for d, p in self.items if d > now]
        return ready

    def first(self) -> int | None:
        return self.items[0][0] if self.items else None

    def __len__(self) -> int:
        return len(self.items)


Factory = Callable[..., RuleNode]
