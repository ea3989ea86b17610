"""View models: what each page shows and does, as param objects with no Panel or Bokeh import.

Every page in :mod:`tbpanel.ui` draws one of these (``ui/<name>.py`` over ``views/<name>.py``,
``ui/workspace/<tab>.py`` over ``views/workspace/<tab>.py``), so notebooks and unit tests use the
same logic without a browser. View models call only the domain's public API (store, registry,
anomaly, alarm and task services); blocking reads are plain methods the pages run off the
server loop.
"""
