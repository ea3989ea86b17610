"""tbpanel: IoT telemetry and anomaly analytics on the HoloViz stack, ThingsBoard-compatible.

``import tbpanel`` stays light: the heavier parts are imported on first use, e.g.
``tbpanel.open_store`` is looked up in :mod:`tbpanel.store` only when it is accessed.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "open_store", "connect", "ModelConfig", "open_demo"]

# name -> module that defines it; resolved on first attribute access (PEP 562).
_LAZY = {
    "open_store": "tbpanel.store",
    "connect": "tbpanel.platform",
    "ModelConfig": "tbpanel.anomaly.config",
    "open_demo": "tbpanel.demo",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'tbpanel' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value  # cache: later lookups bypass __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
