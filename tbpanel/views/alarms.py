"""The ``/alarms`` table as data: filters, the rows they select, the storm warning, the row actions.

Filters map one to one onto :class:`~tbpanel.alarms.AlarmQuery`, so the page shows exactly
what ``GET /api/alarms`` would answer the same user, and every action goes through
:class:`~tbpanel.alarms.AlarmService` (which checks the permission), so the page and REST obey
one set of rules. :meth:`AlarmList.load` and :meth:`AlarmList.act` are blocking reads and
writes: the page runs them off the server loop (``ui/background.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import param

from ..alarms import SEARCH_STATUSES, SEVERITIES, Alarm, AlarmQuery
from ..clock import DAY_MS, HOUR_MS, now_ms, utc_text

#: the time-window choices; the window applies to the alarm's data time (startTs)
WINDOWS: dict[str, int | None] = {
    "any time": None,
    "last hour": HOUR_MS,
    "last day": DAY_MS,
    "last week": 7 * DAY_MS,
    "last 30 days": 30 * DAY_MS,
}
COLUMNS = ["id", "created", "device", "type", "severity", "status", "start", "end", "model", "review"]
#: what a row's buttons do: the AlarmService method of the same name
ACTIONS = ("ack", "clear", "delete")
#: most rows one read returns (the count says when there are more)
PAGE_SIZE = 1000


def _fmt(ms: int) -> str:
    return utc_text(ms or None, seconds=True)


def review_link(alarm: Alarm) -> str:
    """The telemetry page on the alarm's device, around its data time (half its span, at least an
    hour, either side)."""
    pad = max((alarm.end_ts - alarm.start_ts) // 2, HOUR_MS)
    return (
        f"/telemetry?device={alarm.originator_id}&window=fixed&start={alarm.start_ts - pad}"
        f"&end={max(alarm.end_ts, alarm.start_ts + 1) + pad}"
    )


def alarm_row(alarm: Alarm) -> dict[str, str]:
    """One table row (times as UTC text)."""
    return {
        "id": alarm.id,
        "created": _fmt(alarm.created_time),
        "device": alarm.originator_name or alarm.originator_id,
        "type": alarm.type,
        "severity": alarm.severity,
        "status": alarm.status,
        "start": _fmt(alarm.start_ts),
        "end": _fmt(alarm.end_ts),
        "model": alarm.details.get("modelName", "") if alarm.model_id else "",
        "review": review_link(alarm),
    }


def count_text(total: int) -> str:
    return f"{total} alarm{'s' if total != 1 else ''}" + (f" (first {PAGE_SIZE} shown)" if total > PAGE_SIZE else "")


class AlarmFilters(param.Parameterized):
    """What the table shows (the time window applies to the alarm's data time, startTs)."""

    status: param.Selector[str] = param.Selector(default="ANY", objects=list(SEARCH_STATUSES))
    severities = param.ListSelector(default=[], objects=list(SEVERITIES))
    types = param.List(default=[], item_type=str)
    device = param.String(default="")
    window: param.Selector[str] = param.Selector(default="any time", objects=list(WINDOWS))
    model = param.String(default="")


@dataclass
class AlarmRows:
    """One read of the table: its rows, how many match, the alarm types offered, the storm warning."""

    frame: pd.DataFrame
    total: int
    types: list[str]
    storm: str = ""  # markdown, empty when this tenant had no storm

    @property
    def count(self) -> str:
        return count_text(self.total)


class AlarmList(param.Parameterized):
    """One user's alarm table: what the filters select, and the ack / clear / delete actions."""

    filters: param.ClassSelector[AlarmFilters] = param.ClassSelector(class_=AlarmFilters)  # type: ignore[assignment]  # required, never None

    def __init__(self, platform, user, **params):
        params.setdefault("filters", AlarmFilters())
        super().__init__(**params)
        self.platform, self.user = platform, user
        self.service = platform.alarms

    # -- reading (blocking) ----------------------------------------------------------------------
    def devices(self) -> dict[str, str]:
        """Name → id of the devices whose alarms the user may see (the device filter's choices)."""
        visible = self.service.visible_devices(self.user)
        devices = self.platform.registry.all_devices(self.user.tenant_id)
        return {d.name: d.id for d in devices if visible is None or d.id in visible}

    def types(self) -> list[str]:
        return self.service.types(self.user)

    def query(self) -> AlarmQuery:
        f = self.filters
        span = WINDOWS[f.window]
        return AlarmQuery(
            self.user.tenant_id,
            originators=[f.device] if f.device else None,
            search_status=f.status,
            severities=list(f.severities),
            types=list(f.types),
            model_id=f.model or None,
            time_property="startTs",
            start_time=now_ms() - span if span else None,
            sort_property="createdTime",
            sort_order="DESC",
            page_size=PAGE_SIZE,
        )

    def frame(self) -> tuple[pd.DataFrame, int]:
        """The rows the filters select (newest first, at most PAGE_SIZE) and how many match."""
        alarms, total = self.service.query(self.user, self.query())
        return pd.DataFrame([alarm_row(a) for a in alarms], columns=COLUMNS), total

    def storm_warning(self) -> str:
        """The latest alarm storm of the user's tenant, as markdown ("" if none)."""
        storm = self.service.last_storm
        if not storm or storm.get("tenantId") != self.user.tenant_id:
            return ""
        return (
            f"**Alarm storm:** a {storm['source'].lower()} of model *{storm['modelName']}* "
            f"raised {storm['raised']} alarms at once (limit {storm['limit']}), "
            f"at {_fmt(storm['at'])} UTC. Check the model's thresholds."
        )

    def load(self) -> AlarmRows:
        frame, total = self.frame()
        return AlarmRows(frame, total, self.types(), self.storm_warning())

    def concerns(self, alarm: Alarm) -> bool:
        """Whether a change of ``alarm`` may change this table (it is of the user's tenant)."""
        return alarm.tenant_id == self.user.tenant_id

    # -- actions (blocking) ----------------------------------------------------------------------
    def act(self, action: str, alarm_id: str) -> None:
        """Ack, clear or delete as the user; the service raises EntityError when it may not."""
        if action not in ACTIONS:
            raise ValueError(f"unknown alarm action {action!r}")
        getattr(self.service, action)(self.user, alarm_id)
