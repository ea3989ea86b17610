"""Alarms: ThingsBoard's alarm model, its REST semantics and the anomaly-driven lifecycle.

```python
tb = tbpanel.connect(".demo-data")
alarms, total = tb.alarms.repo.query(tbpanel.alarms.AlarmQuery(tenant.id, search_status="ACTIVE"))
```
"""

from __future__ import annotations

from .model import SEARCH_STATUSES, SEVERITIES, SEVERITY_COLOURS, STATUSES, Alarm, severity_colour, status_of
from .query import SEARCH_TO_STATUSES, SORT, AlarmQuery
from .repository import AlarmRepository
from .service import AlarmService

__all__ = [
    "Alarm",
    "AlarmQuery",
    "AlarmRepository",
    "AlarmService",
    "SEVERITIES",
    "STATUSES",
    "SEARCH_STATUSES",
    "SEARCH_TO_STATUSES",
    "SEVERITY_COLOURS",
    "SORT",
    "severity_colour",
    "status_of",
]
