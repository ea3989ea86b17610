"""The demo's two dashboards: "Fleet overview" (the tenant's) and "Customer A" (assigned to
the demo customer), each with every widget kind over the demo fleet, built with the same
model a notebook uses. Also a short lat/lon route per demo device, so the map has something
to draw (the fleet file has no positions)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..clock import HOUR_MS, now_ms
from ..store.values import ValueType
from .model import (
    AlarmTable,
    AnomalyChart,
    AttributeSlider,
    AttributeSwitch,
    Dashboard,
    EntitiesTable,
    Gauge,
    LatestCard,
    MapWidget,
    MarkdownCard,
    RpcButton,
    TimeseriesChart,
    TimeWindow,
)

FLEET_TITLE = "Fleet overview"
#: where the demo fleet stands (a made-up site), and how far a device wanders in a day
SITE = (52.52, 13.40)


def demo_dashboard(
    title: str, devices: dict[str, Any], pumps: dict[str, Any], thermostats: dict[str, Any]
) -> Dashboard:
    """Every widget kind: ``devices``, ``pumps`` and ``thermostats`` are alias filters."""
    d = Dashboard(title=title, description="Every widget kind on the demo fleet.")
    d.timewindow = TimeWindow(last_ms=6 * HOUR_MS)
    every, pump, thermo = (
        d.add_alias(n, f) for n, f in (("Devices", devices), ("Pumps", pumps), ("Thermostats", thermostats))
    )
    d.add_widget(
        EntitiesTable(title="Devices (click one)", alias_id=every, keys=["temperature", "pressure", "flow"]),
        size=(12, 6),
    )
    d.add_widget(MapWidget(title="Where they are", alias_id=every), size=(12, 6))
    d.add_widget(
        TimeseriesChart(
            title="Pump pressure and flow", alias_id=pump, keys=["pressure", "flow"], right_axis_keys=["flow"]
        ),
        size=(12, 7),
    )
    d.add_widget(
        TimeseriesChart(
            title="Hourly mean temperature",
            alias_id=thermo,
            keys=["temperature"],
            chart="bar",
            use_dashboard_timewindow=False,
            timewindow=TimeWindow(last_ms=24 * HOUR_MS, agg="AVG", interval_ms=HOUR_MS),
        ),
        size=(12, 7),
    )
    d.add_widget(
        LatestCard(
            title="Pressure", alias_id=pump, keys=["pressure"], units={"pressure": "bar"}, follow_selection=True
        ),
        size=(4, 4),
    )
    d.add_widget(
        Gauge(title="Temperature", alias_id=thermo, keys=["temperature"], low=0, high=40, follow_selection=True),
        size=(6, 6),
    )
    d.add_widget(
        MarkdownCard(
            title="Selected pump",
            alias_id=pump,
            follow_selection=True,
            text="### ${name}\n\npressure **${pressure}** bar, flow **${flow}** m³/h",
        ),
        size=(6, 4),
    )
    d.add_widget(AnomalyChart(title="Pump anomaly score", alias_id=pump), size=(12, 6))
    d.add_widget(AlarmTable(title="Alarms", alias_id=every), size=(12, 6))
    d.add_widget(
        AttributeSwitch(title="Pump enabled", alias_id=pump, attribute="pump_enabled", follow_selection=True),
        size=(4, 3),
    )
    d.add_widget(
        AttributeSlider(
            title="Thermostat setpoint",
            alias_id=thermo,
            attribute="setpoint",
            low=15,
            high=30,
            step=0.5,
            follow_selection=True,
        ),
        size=(6, 3),
    )
    d.add_widget(RpcButton(title="Reboot pump", alias_id=pump, method="reboot", follow_selection=True), size=(4, 3))
    return d


def write_routes(platform: Any, ids: dict[str, str], end_ms: int | None = None, hours: int = 24) -> int:
    """A route per device: one lat/lon point an hour for the last ``hours``, around :data:`SITE`."""
    end_ms = (end_ms or now_ms()) // HOUR_MS * HOUR_MS
    points = []
    for i, device_id in enumerate(ids.values()):
        angle = np.linspace(0, np.pi, hours) + i
        lat = SITE[0] + 0.01 * (i + 1) * np.sin(angle)
        lon = SITE[1] + 0.015 * (i + 1) * np.cos(angle)
        for k in range(hours):
            ts = end_ms - (hours - 1 - k) * HOUR_MS
            points += [
                (device_id, "latitude", ts, int(ValueType.DOUBLE), float(lat[k])),
                (device_id, "longitude", ts, int(ValueType.DOUBLE), float(lon[k])),
            ]
    return int(platform.store.write_points(points))


def ensure_demo_dashboards(
    platform: Any,
    tenant_title: str,
    customer_title: str,
    admin_email: str,
    ids: dict[str, str],
    progress: Callable[[str], None],
) -> list[str]:
    """Create the two demo dashboards unless the tenant has them (idempotent); their ids."""
    reg = platform.registry
    admin = reg.find_user(admin_email)
    tenant = reg.find_tenant(tenant_title)
    customer = reg.find_customer(tenant.id, customer_title)
    infos, _ = platform.dashboards.list_tenant(admin, 0, 100)
    have = {i["title"]: i["id"]["id"] for i in infos}
    if FLEET_TITLE in have and customer_title in have:
        return [have[FLEET_TITLE], have[customer_title]]
    progress("creating the demo dashboards ...")
    write_routes(platform, ids)
    pumps = {"type": "deviceType", "deviceTypes": ["pump"], "deviceNameFilter": "", "resolveMultiple": True}
    thermostats = {"type": "deviceType", "deviceTypes": ["thermostat"], "deviceNameFilter": "", "resolveMultiple": True}
    fleet = demo_dashboard(
        FLEET_TITLE, {"type": "entityType", "entityType": "DEVICE", "resolveMultiple": True}, pumps, thermostats
    )
    mine = {
        "type": "customerDevices",
        "customerId": {"entityType": "CUSTOMER", "id": customer.id},
        "resolveMultiple": True,
    }
    # the customer's: its devices; the type aliases resolve, for its users, to their own devices only
    cust = demo_dashboard(customer_title, mine, pumps, thermostats)
    out = []
    for dash in (fleet, cust):
        stored = platform.dashboards.save(admin, dash.to_json())
        out.append(stored["id"]["id"])
    platform.dashboards.assign(admin, customer.id, out[1])
    return out
