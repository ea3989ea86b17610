"""Alarms: ThingsBoard's alarm model, its REST semantics and the anomaly-driven lifecycle.

```python
tb = tbpanel.connect(".demo-data")
alarms, total = tb.alarms.repo.query(tbpanel.alarms.AlarmQuery(tenant.id, search_status="ACTIVE"))
```
"""
from __future__ import annotations

from .model import SEARCH_STATUSES, SEVERITIES, STATUSES, Alarm, status_of
from .repository import AlarmQuery, AlarmRepository
from .service import AlarmService

__all__ = ["Alarm", "AlarmQuery", "AlarmRepository", "AlarmService", "SEVERITIES", "STATUSES",
           "SEARCH_STATUSES", "status_of"]
