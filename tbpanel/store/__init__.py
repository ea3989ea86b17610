"""Telemetry persistence: SQLite hot tier, Zarr v3 cold tier, numpy aggregation, xarray queries.

See :mod:`tbpanel.store.telemetry` for the design and :class:`TelemetryStore` for the API;
docs/architecture.md lists what each module of this package holds.
"""

from .buckets import MAX_BUCKETS, QueryError
from .telemetry import TelemetryStore, open_store
from .validate import Point, ValidPoints, payload_points, validate_points
from .values import ValueType

__all__ = [
    "TelemetryStore",
    "open_store",
    "QueryError",
    "ValueType",
    "MAX_BUCKETS",
    "Point",
    "ValidPoints",
    "payload_points",
    "validate_points",
]
