"""Dashboards: ThingsBoard's dashboard entity (stored JSON, customer assignment, export and
import), its configuration rules and its entity aliases resolved per user. No Panel import;
the param model, widgets and pages build on this (``model.py``, ``widgets/``, ``views/``)."""

from __future__ import annotations

from .aliases import ALIAS_FILTER_TYPES, CUSTOMER_DEVICES, alias_filter, resolve_alias, resolve_aliases
from .configuration import MAX_CONFIGURATION_BYTES, empty_configuration, validate_configuration
from .store import DashboardStore

__all__ = [
    "ALIAS_FILTER_TYPES",
    "CUSTOMER_DEVICES",
    "MAX_CONFIGURATION_BYTES",
    "DashboardStore",
    "alias_filter",
    "empty_configuration",
    "resolve_alias",
    "resolve_aliases",
    "validate_configuration",
]
