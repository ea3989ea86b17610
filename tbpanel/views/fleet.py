"""What a user's fleet looks like right now: devices, stored points, last activity, the last
day of each device, active alarms and (for a tenant administrator) each model's anomalies.

A pure domain object (no Panel import): the landing page renders it, a notebook can call
:meth:`Fleet.summary`, :meth:`Fleet.trends`, :meth:`Fleet.active_alarms` and
:meth:`Fleet.model_counts` directly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import param

from ..alarms import Alarm, AlarmQuery
from ..clock import DAY_MS, now_ms

#: keys a model writes back into the store (saved anomaly scores): never a device's own trend
SCORE_PREFIXES = ("_EAD_", "_EID_")


@dataclass(frozen=True)
class Trend:
    """One device's last day of one key: bucket averages (NaN where it sent nothing)."""

    key: str
    values: np.ndarray
    start_ms: int
    end_ms: int


@dataclass(frozen=True)
class ModelCount:
    """One anomaly model's figures for the landing page."""

    id: str
    name: str
    device_type: str
    status: str
    anomalies: int
    active: int
    devices: int


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

    def trend_key(self, keys: list[str]) -> str | None:
        """The key a device's trend shows: its first own key by name (not a saved score)."""
        own = sorted(k for k in keys if not k.startswith(SCORE_PREFIXES))
        return own[0] if own else None

    def trends(
        self, device_ids: list[str] | None = None, window_ms: int = DAY_MS, buckets: int = 48
    ) -> dict[str, Trend]:
        """``{device id: Trend}`` over the last ``window_ms`` in ``buckets`` averages, for every
        device the user may read (or those of ``device_ids`` among them) that has a numeric key:
        the latest values name each device's keys (one in-memory read) and one store query
        reads the whole fleet."""
        allowed = {d.id for d in self.devices()}
        ids = [d for d in (device_ids if device_ids is not None else allowed) if d in allowed]
        latest = self.platform.store.latest_many(ids)
        chosen = {d: k for d in ids if (k := self.trend_key(list(latest[d]))) is not None}
        if not chosen:
            return {}
        end = now_ms() // 60_000 * 60_000 + 60_000
        start = end - window_ms
        step = max(window_ms // buckets, 1)
        ds = self.platform.store.query(list(chosen), sorted(set(chosen.values())), start, end, interval=step, agg="AVG")
        times = ds["time"].values.astype("datetime64[ms]").astype(np.int64)
        slot = ((times - start) // step).clip(0, buckets - 1)
        out = {}
        for device, key in chosen.items():
            var = key if key not in ("device", "time") else key + "_"
            values = np.full(buckets, np.nan)
            row = ds[var].sel(device=device).values.astype(float)
            values[slot] = row
            out[device] = Trend(key, values, start, end)
        return out

    def active_alarms(self, limit: int = 8) -> tuple[list[Alarm], int]:
        """The newest ``limit`` active alarms of the devices the user may see, and how many are
        active in all (a customer user sees only its customer's devices' alarms)."""
        allowed, _customer = self._customer_scope()
        if not allowed:
            return [], 0
        query = AlarmQuery(tenant_id=self.user.tenant_id, search_status="ACTIVE", page_size=limit)
        return self.platform.alarms.query(self.user, query)

    def model_counts(self) -> list[ModelCount]:
        """Each anomaly model's anomaly counts; only a tenant administrator sees models at all
        (the workspace is theirs), so a customer user gets ``[]``."""
        if self.user.authority != "TENANT_ADMIN":
            return []
        service = self.platform.anomaly
        out = []
        for m in service.list_models(self.user.tenant_id):
            counts = service.repo.count_anomalies(m.id)
            out.append(
                ModelCount(
                    id=m.id,
                    name=m.config.name,
                    device_type=m.config.device_type,
                    status=m.status,
                    anomalies=int(counts["anomalies"]),
                    active=int(counts["active"]),
                    devices=int(counts["items"]),
                )
            )
        return out
