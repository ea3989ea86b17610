"""A short soak (benchmarks/soak.py): steady ingest, live dashboard pages in headless Chromium,
WebSocket subscribers and back-to-back reprocess runs at once, against a real server. Nothing
may fail and no acknowledged point may be missing from the store or a subscriber's stream
(timings are the benchmark's business, not asserted here)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, ServerProcess, cli

sys.path.insert(0, str(ROOT / "benchmarks"))
from soak import EMAIL, PASSWORD, Soak  # noqa: E402


@pytest.mark.slow
def test_short_soak_has_no_errors_and_loses_no_point(tmp_path: Path):
    data = tmp_path / "data"
    cli("init", "--data", str(data), "--admin-email", EMAIL, "--admin-password", PASSWORD)
    server = ServerProcess(data, extra=("--coap-port", "-1", "--mqtt-port", "-1")).start()
    try:
        soak = Soak(server.url, server.proc.pid, server.output, devices=3, rate=15, pages=2, subscribers=2)
        soak.setup()
        result = soak.run(seconds=10)
    finally:
        server.stop()
    print("\n" + "\n".join(result.summary(10, 15, 2, 2)))
    assert len(result.acked) > 50 and result.reprocess_done >= 1
    assert result.errors == 0, (result.post_errors, result.reprocess_failed, result.server_errors)
    assert result.lost_in_store == 0 and result.ws_missing == 0
    assert result.ws_latency and result.page_latency  # the subscribers and the pages really received
