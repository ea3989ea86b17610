"""What an alarm query asks for: :class:`AlarmQuery`, the sort keys and the meaning of
ThingsBoard's ``searchStatus`` — one definition for the repository (SQL), live pushes
(:meth:`AlarmQuery.matches`), the REST and WebSocket APIs and the alarms page."""

from __future__ import annotations

from dataclasses import dataclass, field

from .model import STATUSES, Alarm

#: ``searchStatus`` → the alarm statuses it selects
SEARCH_TO_STATUSES: dict[str, tuple[str, ...]] = {
    "ANY": STATUSES,
    "ACTIVE": ("ACTIVE_UNACK", "ACTIVE_ACK"),
    "CLEARED": ("CLEARED_UNACK", "CLEARED_ACK"),
    "ACK": ("ACTIVE_ACK", "CLEARED_ACK"),
    "UNACK": ("ACTIVE_UNACK", "CLEARED_UNACK"),
}
#: ``searchStatus`` → the same selection as an SQL condition on the alarms table
SEARCH_SQL: dict[str, str] = {
    "ANY": "1",
    "ACTIVE": "cleared=0",
    "CLEARED": "cleared=1",
    "ACK": "acknowledged=1",
    "UNACK": "acknowledged=0",
}

#: API sortProperty -> SQL expression
SORT = {
    "createdTime": "created_time",
    "startTs": "start_ts",
    "endTs": "end_ts",
    "ackTs": "ack_ts",
    "clearTs": "clear_ts",
    "type": "type",
    "severity": "severity_rank",
    "originator": "originator_name",
    "originatorName": "originator_name",
    "status": "cleared * 2 + acknowledged",
}


@dataclass
class AlarmQuery:
    """Filters of the alarm queries (ThingsBoard's parameters plus severity/type/model lists)."""

    tenant_id: str
    originators: list[str] | None = None  # None: any device of the tenant
    search_status: str = "ANY"  # ANY | ACTIVE | CLEARED | ACK | UNACK
    statuses: list[str] = field(default_factory=list)  # ACTIVE_UNACK … CLEARED_ACK
    severities: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    model_id: str | None = None
    start_time: int | None = None
    end_time: int | None = None
    time_property: str = "createdTime"  # or startTs (data time of anomaly alarms)
    text: str | None = None
    sort_property: str = "createdTime"
    sort_order: str = "DESC"
    page: int = 0
    page_size: int = 100

    def matches(self, alarm: Alarm) -> bool:
        """Whether ``alarm`` passes the filters (paging and sorting aside): for live pushes."""
        if alarm.tenant_id != self.tenant_id:
            return False
        if self.originators is not None and alarm.originator_id not in self.originators:
            return False
        if alarm.status not in SEARCH_TO_STATUSES[self.search_status]:
            return False
        if self.statuses and alarm.status not in self.statuses:
            return False
        if (self.severities and alarm.severity not in self.severities) or (self.types and alarm.type not in self.types):
            return False
        if self.model_id and alarm.model_id != self.model_id:
            return False
        t = alarm.start_ts if self.time_property == "startTs" else alarm.created_time
        if (self.start_time is not None and t < self.start_time) or (self.end_time is not None and t > self.end_time):
            return False
        text = (self.text or "").lower()
        return not text or any(text in v.lower() for v in (alarm.type, alarm.severity, alarm.originator_name))
