"""Telemetry persistence: SQLite hot tier, Zarr v3 cold tier, numpy aggregation, xarray queries.

See :mod:`tbpanel.store.telemetry` for the design and :class:`TelemetryStore` for the API.
"""
from .buckets import MAX_BUCKETS, QueryError
from .telemetry import TelemetryStore, open_store
from .values import ValueType

__all__ = ["TelemetryStore", "open_store", "QueryError", "ValueType", "MAX_BUCKETS"]
