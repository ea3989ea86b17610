"""What a user's fleet looks like right now: devices, stored points, last activity.

A pure domain object (no Panel import): the landing page renders it, a notebook can call
:meth:`Fleet.summary` directly.
"""

from __future__ import annotations

import pandas as pd
import param

from ..clock import now_ms


class Fleet(param.Parameterized):
    """The devices one user may see, with the store's per-device figures."""

    online_within_s = param.Integer(
        default=300, bounds=(1, None), doc="A device that reported within this many seconds is online."
    )

    def __init__(self, platform, user, **params):
        super().__init__(**params)
        self.platform = platform
        self.user = user

    def _customer_scope(self) -> tuple[bool, str | None]:
        """``(may see devices at all, customer id to restrict to or None for the whole tenant)``."""
        if self.user.authority not in ("TENANT_ADMIN", "CUSTOMER_USER"):
            return False, None
        return True, self.user.customer_id if self.user.authority == "CUSTOMER_USER" else None

    def devices(self) -> list:
        """Every device the user may read: the tenant's, or only its customer's."""
        allowed, customer = self._customer_scope()
        if not allowed:
            return []
        reg = self.platform.registry
        out, page = [], 0
        while True:
            items, total = reg.list_devices(
                self.user.tenant_id,
                customer_id=customer,
                page=page,
                page_size=1000,
                sort_property="name",
                sort_order="ASC",
            )
            out.extend(items)
            page += 1
            if page * 1000 >= total or not items:
                return out

    def find_devices(self, text: str = "", limit: int = 50) -> tuple[list, int]:
        """The first ``limit`` devices (by name) the user may read whose name or label contains
        ``text`` (case-insensitive), and how many match: a picker over 10,000 devices holds 50."""
        allowed, customer = self._customer_scope()
        if not allowed:
            return [], 0
        return self.platform.registry.list_devices(
            self.user.tenant_id,
            customer_id=customer,
            page=0,
            page_size=limit,
            text_search=text.strip() or None,
            sort_property="name",
            sort_order="ASC",
        )

    def latest(self, keys: list[str] | None = None) -> pd.DataFrame:
        """The latest value of each key of each device the user may read, in one store read:
        one row per (device, key) with its time and value (``keys=None``: every key)."""
        devices = self.devices()
        latest = self.platform.store.latest_many([d.id for d in devices], keys)
        rows = [
            {"device": d.name, "key": key, "ts": pd.to_datetime(ts, unit="ms", utc=True), "value": value, "id": d.id}
            for d in devices
            for key, (ts, _vtype, value) in latest[d.id].items()
        ]
        return pd.DataFrame(rows, columns=["device", "key", "ts", "value", "id"])

    def summary(self) -> pd.DataFrame:
        """One row per device: name, type, customer, keys, points stored, last activity, online."""
        now = now_ms()
        store = self.platform.store
        customers: dict[str, str] = {}
        rows = []
        for d in self.devices():
            stats = store.stats(d.id)
            last = stats.get("last_ts")
            if d.customer_id and d.customer_id not in customers:
                customers[d.customer_id] = self.platform.registry.get_customer(d.customer_id).title
            rows.append(
                {
                    "device": d.name,
                    "type": d.type,
                    "customer": customers.get(d.customer_id, ""),
                    "keys": stats.get("series", 0),
                    "points": stats.get("points", 0),
                    "last_activity": pd.to_datetime(last, unit="ms", utc=True) if last else pd.NaT,
                    "online": bool(last and now - last <= self.online_within_s * 1000),
                    "id": d.id,
                }
            )
        columns = ["device", "type", "customer", "keys", "points", "last_activity", "online", "id"]
        return pd.DataFrame(rows, columns=columns)
