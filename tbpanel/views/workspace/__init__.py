"""View models of the anomaly workspace: param objects the Panel views in ``tbpanel.ui.workspace``
take as parameters. No Panel imports here, so notebooks and unit tests use them without a browser."""
