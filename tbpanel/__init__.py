"""tbpanel: IoT telemetry and anomaly analytics on the HoloViz stack, ThingsBoard-compatible.

``import tbpanel`` stays light: the heavier parts are imported on first use, e.g.
``tbpanel.open_store`` is looked up in :mod:`tbpanel.store` only when it is accessed.
The module namespace holds only the public names (no ``Any``, no ``annotations``): it is what
tab completion in a notebook shows.
"""

import importlib as _importlib
import typing as _typing

__version__ = "0.1.0"

__all__ = ["__version__", "open_store", "connect", "ModelConfig", "open_demo"]

# name -> module that defines it; resolved on first attribute access (PEP 562).
_LAZY = {
    "open_store": "tbpanel.store",
    "connect": "tbpanel.platform",
    "ModelConfig": "tbpanel.anomaly.config",
    "open_demo": "tbpanel.demo",
}


def __getattr__(name: str) -> _typing.Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'tbpanel' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module_name), name)
    globals()[name] = value  # cache: later lookups bypass __getattr__
    return value


def __dir__() -> list[str]:
    """The public names and the module's dunders, not its private helpers or subpackages."""
    return sorted(set(__all__) | {n for n in globals() if n.startswith("__") and n.endswith("__")})
