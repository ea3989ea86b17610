"""ThingsBoard-compatible HTTP API, mounted into the Panel/Bokeh server's tornado app."""

from .routes import api_patterns

__all__ = ["api_patterns"]
