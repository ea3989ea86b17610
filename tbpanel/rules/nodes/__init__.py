"""Rule node implementations, registered by their ThingsBoard type name (``NODE_TYPES``)."""

from . import actions, enrichment, external, filters, flow, profile, transform  # noqa: F401  (registration)
from .base import CATEGORIES, NODE_TYPES, NodeConfigError, RuleNode, node_class, substitute

__all__ = ["CATEGORIES", "NODE_TYPES", "NodeConfigError", "RuleNode", "node_class", "substitute"]
