"""What one transaction did to a model's anomalies: the argument of ``AnomalyService.changed``.

The service emits an :class:`AnomalyChanges` *inside* the transaction that makes the change (a
build, refresh, reprocess or delete), so a listener such as the alarm lifecycle writes through
the same connection and commits, or rolls back, with the anomalies. Its own module because both
the service (delete) and the task work (:mod:`.runs`) make them, and listeners import it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class AnomalyChanges:
    """What one transaction did to a model's anomalies (given to listeners inside it)."""

    source: str  # BUILD | REFRESH | REPROCESS | DELETE
    create_alarms: bool = False
    created: list[dict[str, Any]] = field(default_factory=list)
    extended: list[dict[str, Any]] = field(default_factory=list)
    ended: list[dict[str, Any]] = field(default_factory=list)
    deleted: list[dict[str, Any]] = field(default_factory=list)
    #: what listeners want in the task log (the alarm service's storm warning)
    notes: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {k: len(getattr(self, k)) for k in ("created", "extended", "ended", "deleted")}
