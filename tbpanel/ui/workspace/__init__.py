"""The anomaly workspace pages: ``/models`` (list and creation wizard) and ``/model?id=<id>`` (tabs)."""
