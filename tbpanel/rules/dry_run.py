"""Dry runs: a rule chain replayed over historical telemetry, effects recorded, not made.

"What would this chain have alarmed last week?" :class:`DryRun` runs every row of a pandas
DataFrame (rows = timestamps, columns = keys, one device; or long format with a ``device``
column) through a chain as the ``POST_TELEMETRY_REQUEST`` its device would have sent, on an
engine of its own whose services only *pretend*:

- telemetry and attributes are recorded, not saved (later reads in the run see them);
- alarms live in memory, starting from the device's real active alarms, so create / update /
  clear follow each other as they would have, and no alarm row is written;
- external nodes (Kafka, RabbitMQ, MQTT, REST) and RPC to devices are recorded with what
  they would have sent, and answer Success; nothing leaves the process.

Reads (attributes for thresholds, latest values, devices) go to the real registry and store.
The clock is the data's: timer nodes (delay, deduplication) advance with the messages'
timestamps. The answer is one row per message: the path it took and what it would have done.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import InvalidInput
from .chain import RuleChain, import_chain
from .context import Services
from .engine import DebugEvent, RuleEngine, RunResult
from .message import POST_TELEMETRY_REQUEST, TbMsg
from .nodes.base import FAILURE, SUCCESS, Outputs, RuleNode, substitute
from .tenant_rules import device_message, tenant_device

if TYPE_CHECKING:
    from ..alarms.model import Alarm

#: the columns of :meth:`DryRun.run`'s answer
COLUMNS = [
    "ts",
    "device",
    "msg_type",
    "data",
    "path",
    "ended",
    "alarms_created",
    "alarms_updated",
    "alarms_cleared",
    "timeseries_saved",
    "attributes_saved",
    "external_calls",
    "rpc_calls",
    "error",
]
_TIME_COLUMNS = ("ts", "time")
_READS = ("get_", "find_", "check_", "list_", "latest", "query", "device_")


@dataclass
class Effect:
    """One thing a message would have done."""

    msg_id: str
    kind: str  # timeseries, attributes, alarm_created, alarm_updated, alarm_cleared, external, rpc
    node: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


class Recorder:
    """The effects of the message being replayed (the dry run's services write here)."""

    def __init__(self) -> None:
        self.current = ""
        self.effects: list[Effect] = []

    def add(self, kind: str, node: str = "", **detail: Any) -> None:
        self.effects.append(Effect(self.current, kind, node, detail))


class _ReadOnly:
    """Reads pass through to ``target``; anything that is not a read is refused, so a write
    method added to the store or registry later can never slip through a dry run."""

    def __init__(self, target: Any) -> None:
        self._target = target

    def __getattr__(self, name: str) -> Any:
        if name.startswith(_READS):
            return getattr(self._target, name)
        raise AttributeError(f"a dry run does not {name} (only reads reach the real data)")


class RecordingStore(_ReadOnly):
    """The telemetry store, with writes recorded and visible to the run's later reads."""

    def __init__(self, store: Any, recorder: Recorder) -> None:
        super().__init__(store)
        self.recorder = recorder
        self._latest: dict[str, dict[str, tuple[int, int, Any]]] = {}

    def write_points(self, points: Iterable[Any]) -> int:
        pts = list(points)
        for entity, key, ts, vtype, value in pts:  # the store's Point tuples
            mine = self._latest.setdefault(entity, {})
            if key not in mine or mine[key][0] <= ts:
                mine[key] = (ts, int(vtype), value)
        self.recorder.add("timeseries", points=len(pts), keys=sorted({p[1] for p in pts}))
        return len(pts)

    def latest(self, entity: str, keys: Iterable[str] | None = None) -> dict[str, tuple[int, int, Any]]:
        wanted = None if keys is None else list(keys)
        out = dict(self._target.latest(entity, wanted)) if self._target is not None else {}
        for k, v in self._latest.get(entity, {}).items():
            if (wanted is None or k in wanted) and (k not in out or out[k][0] <= v[0]):
                out[k] = v
        return out


class RecordingRegistry(_ReadOnly):
    """The entity registry, with attribute saves recorded and visible to later reads."""

    def __init__(self, registry: Any, recorder: Recorder) -> None:
        super().__init__(registry)
        self.recorder = recorder
        self._attrs: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}

    def save_attributes(self, entity_id: Any, scope: str, points: Iterable[tuple[int, str, int, Any]]) -> int:
        pts = list(points)
        mine = self._attrs.setdefault((str(entity_id), scope), {})
        for ts, key, _vtype, value in pts:
            mine[key] = {"key": key, "value": value, "lastUpdateTs": ts, "scope": scope}
        self.recorder.add("attributes", scope=scope, keys=sorted(p[1] for p in pts))
        return len(pts)

    def get_attributes(
        self, entity_id: Any, scope: str | None = None, keys: Iterable[str] | None = None
    ) -> list[dict[str, Any]]:
        wanted = None if keys is None else list(keys)
        real = self._target.get_attributes(entity_id, scope, wanted)
        mine = {
            (s, k): a
            for (e, s), attrs in self._attrs.items()
            if e == str(entity_id) and (scope is None or s == scope)
            for k, a in attrs.items()
            if wanted is None or k in wanted
        }
        merged = {(a["scope"], a["key"]): a for a in real} | mine
        return [merged[k] for k in sorted(merged)]


class SimulatedAlarms:
    """Alarms in memory, seeded lazily from the real active ones; ``repo`` answers the two
    lookups nodes make (``active_for``, ``get``)."""

    def __init__(self, alarms: Any, recorder: Recorder, clock: Callable[[], int]) -> None:
        self.real = alarms
        self.recorder = recorder
        self.clock = clock
        self._by_id: dict[str, Alarm] = {}
        self._active: dict[tuple[str, str], str | None] = {}  # (originator, type) → alarm id (None: none)
        self.repo = self

    def active_for(self, originator_id: str, type: str) -> Alarm | None:
        key = (originator_id, type)
        if key not in self._active:
            alarm = self.real.repo.active_for(originator_id, type) if self.real is not None else None
            if alarm is not None:
                self._by_id[alarm.id] = alarm
            self._active[key] = alarm.id if alarm is not None else None
        aid = self._active[key]
        return None if aid is None else self._by_id[aid]

    def get(self, alarm_id: str) -> Alarm | None:
        if alarm_id in self._by_id:
            return self._by_id[alarm_id]
        return self.real.repo.get(alarm_id) if self.real is not None else None

    def save(self, user: Any, data: Mapping[str, Any]) -> Alarm:
        from ..alarms.model import Alarm

        now = self.clock()
        existing = self._by_id.get(data["id"]) if data.get("id") else None
        if existing is None:
            existing = self.active_for(data["originator_id"], data["type"])
        if existing is None:
            start = data.get("start_ts") or now
            alarm = Alarm(
                id=str(uuid.uuid4()),
                created_time=now,
                tenant_id=user.tenant_id,
                type=data["type"],
                originator_id=data["originator_id"],
                severity=data.get("severity") or "INDETERMINATE",
                details=dict(data.get("details") or {}),
                propagate=bool(data.get("propagate")),
                start_ts=start,
                end_ts=data.get("end_ts") or start,
            )
            self._active[(alarm.originator_id, alarm.type)] = alarm.id
            self.recorder.add("alarm_created", type=alarm.type, severity=alarm.severity, details=alarm.details)
        else:
            alarm = Alarm(**existing.param.values())
            alarm.param.update(
                severity=data.get("severity") or existing.severity,
                details=dict(data.get("details") or existing.details),
                end_ts=data.get("end_ts") or existing.end_ts,
            )
            self.recorder.add("alarm_updated", type=alarm.type, severity=alarm.severity, details=alarm.details)
        self._by_id[alarm.id] = alarm
        return alarm

    def clear(self, user: Any, alarm_id: str) -> Alarm:
        from ..alarms.model import Alarm

        old = self.get(alarm_id)
        if old is None:
            raise LookupError(f"alarm {alarm_id} not found")
        alarm = Alarm(**old.param.values())
        alarm.param.update(cleared=True, clear_ts=self.clock())
        self._by_id[alarm.id] = alarm
        self._active[(alarm.originator_id, alarm.type)] = None
        self.recorder.add("alarm_cleared", type=alarm.type, severity=alarm.severity, details=alarm.details)
        return alarm


class CapturedCall(RuleNode):
    """Stands in for an external node: records what it would have sent, where, and answers Success."""

    category = "EXTERNAL"

    def __init__(self, original: RuleNode, node_name: str, recorder: Recorder) -> None:
        super().__init__()
        self.original, self.node_name, self.recorder = original, node_name, recorder

    def process(self, ctx: Any, msg: TbMsg) -> Outputs:
        target = {
            k: substitute(str(getattr(self.original, p)), msg)
            for p, k in (
                ("rest_endpoint_url_pattern", "url"),
                ("topic_pattern", "topic"),
                ("routing_key_pattern", "routingKey"),
                ("exchange_name_pattern", "exchange"),
            )
            if p in self.original.param
        }
        self.recorder.add("external", self.node_name, type=self.original.tb_type, target=target, data=msg.data)
        return [(SUCCESS, msg)]


class _Clock:
    def __init__(self, t: int = 0) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t


def _ms(values: Any) -> np.ndarray:
    """Timestamps (datetime-like or epoch ms numbers) → int64 epoch ms."""
    s = pd.Series(values)
    if pd.api.types.is_datetime64_any_dtype(s):
        if s.dt.tz is not None:
            s = s.dt.tz_convert("UTC").dt.tz_localize(None)
        return np.asarray(s.astype("datetime64[ms]").astype("int64"))
    if pd.api.types.is_numeric_dtype(s):
        return np.asarray(s.astype("int64"))
    raise InvalidInput("timestamps must be datetimes or epoch milliseconds")


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def frame_rows(frame: pd.DataFrame, device: str | None) -> list[tuple[str, int, dict[str, Any]]]:
    """``(device ref, ts ms, {key: value})`` per row with at least one value, in time order.
    Wide (``device`` given; timestamps in a ``ts`` or ``time`` column or the index) or long (a
    ``device`` column or index level: what ``tb.store.query(...).to_dataframe()`` gives)."""
    df = frame if any(c in frame.columns for c in _TIME_COLUMNS) else frame.reset_index()
    tcol = next((c for c in _TIME_COLUMNS if c in df.columns), df.columns[0])  # else: the unnamed index
    if "device" in df.columns:
        devices = df["device"].astype(str).to_numpy()
    elif device is not None:
        devices = np.full(len(df), device, dtype=object)
    else:
        raise InvalidInput("name the device (device=...) or give the frame a 'device' column")
    ts = _ms(df[tcol])
    keys = [c for c in df.columns if c not in (tcol, "device")]
    columns = {k: df[k].to_numpy() for k in keys}
    rows = []
    for i in range(len(df)):
        values = {}
        for k in keys:
            v = columns[k][i]
            if v is None or (isinstance(v, (float, np.floating)) and np.isnan(v)):
                continue
            values[str(k)] = _plain(v)
        if values:
            rows.append((str(devices[i]), int(ts[i]), values))
    rows.sort(key=lambda r: r[1])
    return rows


class DryRun:
    """One chain of one tenant on a pretend engine; :meth:`run` replays a DataFrame through it."""

    def __init__(self, services: Services, tenant_id: str, chain: RuleChain, others: Iterable[RuleChain] = ()) -> None:
        self.tenant_id = tenant_id
        self.recorder = Recorder()
        self.clock = _Clock()
        self.registry = services.registry
        self.services = Services(
            store=RecordingStore(services.store, self.recorder),  # type: ignore[arg-type]
            registry=RecordingRegistry(services.registry, self.recorder),  # type: ignore[arg-type]
            alarms=SimulatedAlarms(services.alarms, self.recorder, self.clock),  # type: ignore[arg-type]
            rpc=lambda msg: self.recorder.add("rpc", method=(msg.data or {}).get("method")),
            clock=self.clock,
            script_timeout_ms=services.script_timeout_ms,
            script_max_memory_bytes=services.script_max_memory_bytes,
        )
        self.engine = RuleEngine(self.services)
        self.engine.debug_all = True
        self._path: list[str] = []
        self.engine.debug.connect(self._heard)
        self.chain = self._install(chain)
        for other in others:
            if other.id != chain.id:
                self._install(other)

    def _install(self, chain: RuleChain) -> RuleChain:
        """A private copy (its own node objects), external nodes replaced by :class:`CapturedCall`."""
        copy = import_chain(chain.export_json(), tenant_id=self.tenant_id, keep_id=True)
        for node in copy.nodes:
            if node.impl.external:
                node.impl = CapturedCall(node.impl, node.name, self.recorder)
        self.engine.set_chain(copy)
        return copy

    def _heard(self, event: DebugEvent) -> None:
        if event.kind == "OUT":
            self._path.append(f"{event.node_name} -[{event.relation}]->")

    def close(self) -> None:
        self.engine.close()

    def __enter__(self) -> DryRun:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def device_info(self, ref: str, cache: dict[str, Any]) -> Any:
        if ref not in cache:
            device = tenant_device(self.registry, self.tenant_id, ref) if self.registry is not None else None
            if device is None:
                raise InvalidInput(f"device {ref!r} is not a device of this tenant")
            cache[ref] = device
        return cache[ref]

    def run(self, frame: pd.DataFrame, device: str | None = None) -> pd.DataFrame:
        """One row per message of ``frame`` (see :data:`COLUMNS`): the path it took and what
        it would have done."""
        devices: dict[str, Any] = {}
        out = []
        for ref, ts, values in frame_rows(frame, device):
            d = self.device_info(ref, devices)
            out.append(self.run_message(device_message(d, POST_TELEMETRY_REQUEST, values, ts=ts), d.name))
        return pd.DataFrame(out, columns=COLUMNS)

    def run_message(self, msg: TbMsg, device_name: str = "") -> dict[str, Any]:
        self.clock.t = msg.ts
        self.recorder.current = msg.id
        self._path = []
        self.engine.tick(msg.ts)  # timer nodes due before this message (their effects count here)
        first = len(self.recorder.effects)
        result: RunResult = self.engine.process(msg, self.chain.id)
        mine = [e for e in self.recorder.effects[first:] if e.msg_id == msg.id]

        def of(kind: str) -> list[str]:
            return [f"{e.detail['type']} ({e.detail['severity']})" for e in mine if e.kind == kind]

        failures = [e for e in result.ended if e.relation == FAILURE]
        return {
            "ts": pd.Timestamp(msg.ts, unit="ms", tz="UTC"),
            "device": device_name,
            "msg_type": msg.type,
            "data": msg.data,
            "path": list(self._path),
            "ended": [f"{e.node_name}: {e.relation}" for e in result.ended],
            "alarms_created": of("alarm_created"),
            "alarms_updated": of("alarm_updated"),
            "alarms_cleared": of("alarm_cleared"),
            "timeseries_saved": sum(e.detail["points"] for e in mine if e.kind == "timeseries"),
            "attributes_saved": sum(len(e.detail["keys"]) for e in mine if e.kind == "attributes"),
            "external_calls": [f"{e.node}: {e.detail['target']}" for e in mine if e.kind == "external"],
            "rpc_calls": sum(1 for e in mine if e.kind == "rpc"),
            "error": "; ".join(f"{e.node_name}: {e.msg.metadata.get('error', '')}" for e in failures) or None,
        }

    def effects_frame(self) -> pd.DataFrame:
        """Every recorded effect of the run (msg_id, kind, node, detail)."""
        return pd.DataFrame(
            [{"msg_id": e.msg_id, "kind": e.kind, "node": e.node, "detail": e.detail} for e in self.recorder.effects],
            columns=["msg_id", "kind", "node", "detail"],
        )


def dry_run(
    services: Services,
    tenant_id: str,
    chain: RuleChain,
    frame: pd.DataFrame,
    *,
    device: str | None = None,
    others: Iterable[RuleChain] = (),
) -> pd.DataFrame:
    """Replay ``frame`` through ``chain`` with every effect recorded, not made (see the module)."""
    with DryRun(services, tenant_id, chain, others) as run:
        return run.run(frame, device)
