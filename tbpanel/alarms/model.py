"""ThingsBoard's alarm as a domain object (no Panel): fields, derived status, severity order."""

from __future__ import annotations

from typing import Any

import param

#: Highest first, as ThingsBoard orders them.
SEVERITIES = ("CRITICAL", "MAJOR", "MINOR", "WARNING", "INDETERMINATE")
SEVERITY_RANK = {s: len(SEVERITIES) - i for i, s in enumerate(SEVERITIES)}  # CRITICAL=5 … INDETERMINATE=1
STATUSES = ("ACTIVE_UNACK", "ACTIVE_ACK", "CLEARED_UNACK", "CLEARED_ACK")
SEARCH_STATUSES = ("ANY", "ACTIVE", "CLEARED", "ACK", "UNACK")
#: One colour per severity on every page and plot (upper case, as ThingsBoard spells them);
#: NONE is an anomaly below every enabled threshold.
SEVERITY_COLOURS = {
    "CRITICAL": "#d32f2f",
    "MAJOR": "#f57c00",
    "MINOR": "#fbc02d",
    "WARNING": "#1e88e5",
    "INDETERMINATE": "#9e9e9e",
    "NONE": "#9e9e9e",
}


def severity_colour(severity: str | None, default: str = "#9e9e9e") -> str:
    """The colour of ``severity`` in any case (``"major"`` or ``"MAJOR"``)."""
    return SEVERITY_COLOURS.get((severity or "").upper(), default)


def higher(a: str | None, b: str | None) -> str | None:
    """The more severe of two severities (None counts as lowest)."""
    if a is None:
        return b
    if b is None:
        return a
    return a if SEVERITY_RANK[a] >= SEVERITY_RANK[b] else b


def status_of(cleared: bool, acknowledged: bool) -> str:
    return ("CLEARED_" if cleared else "ACTIVE_") + ("ACK" if acknowledged else "UNACK")


class Alarm(param.Parameterized):
    """One alarm. ``anomaly_id``/``model_id`` link an anomaly alarm to its cause (None for
    alarms posted over REST); ``status`` is derived, as in ThingsBoard, never stored."""

    id = param.String()
    created_time = param.Integer(default=0)
    tenant_id = param.String()
    customer_id = param.String(default=None, allow_None=True)
    type = param.String()
    originator_type = param.String(default="DEVICE")
    originator_id = param.String()
    originator_name = param.String(default="")
    severity: param.Selector[str] = param.Selector(default="INDETERMINATE", objects=list(SEVERITIES))
    acknowledged = param.Boolean(default=False)
    cleared = param.Boolean(default=False)
    start_ts = param.Integer(default=0)
    end_ts = param.Integer(default=0)
    ack_ts = param.Integer(default=0)
    clear_ts = param.Integer(default=0)
    details = param.Dict(default={})
    propagate = param.Boolean(default=False)
    anomaly_id = param.String(default=None, allow_None=True)
    model_id = param.String(default=None, allow_None=True)

    @property
    def status(self) -> str:
        return status_of(self.cleared, self.acknowledged)

    @property
    def active(self) -> bool:
        return not self.cleared

    @classmethod
    def from_row(cls, row: dict) -> Alarm:
        return cls(**{k: row[k] for k in row if k in cls.param and k != "name"})

    def to_json(self) -> dict[str, Any]:
        """ThingsBoard's alarm JSON (plus ``originatorName``, as its alarm-info variant has)."""
        return {
            "id": {"entityType": "ALARM", "id": self.id},
            "createdTime": self.created_time,
            "tenantId": {"entityType": "TENANT", "id": self.tenant_id},
            "customerId": ({"entityType": "CUSTOMER", "id": self.customer_id} if self.customer_id else None),
            "type": self.type,
            "originator": {"entityType": self.originator_type, "id": self.originator_id},
            "originatorName": self.originator_name,
            "severity": self.severity,
            "acknowledged": self.acknowledged,
            "cleared": self.cleared,
            "status": self.status,
            "startTs": self.start_ts,
            "endTs": self.end_ts,
            "ackTs": self.ack_ts,
            "clearTs": self.clear_ts,
            "details": self.details,
            "propagate": self.propagate,
            "name": self.type,
        }

    def __repr__(self) -> str:
        return (
            f"<Alarm {self.type!r} {self.severity} {self.status} originator={self.originator_name or self.originator_id}"
            f" id={self.id}>"
        )

    __str__ = __repr__
