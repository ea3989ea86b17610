"""Queries across entities: ThingsBoard's entity data query (filters, key filters, sort,
paging, latest values) and its alarm variant — pure functions over the registry and store."""

from .entity_data import EntityQuery, count, find, parse_query, select
from .key_filters import EntityKey, KeyFilter

__all__ = ["EntityKey", "EntityQuery", "KeyFilter", "count", "find", "parse_query", "select"]
