"""A tbpanel-like process for the kill -9 test: drains the rule queue in ``DIR`` through a
chain whose REST API call node forwards each message to ``URL``; exits 0 when the queue is empty.

    python -m tests.rules.queue_child DIR URL
"""

from __future__ import annotations

import sys
import time

from tbpanel.rules import RuleEngine, Services
from tbpanel.rules.queue import RuleQueue
from tests.rules.helpers import chain


def main(data_dir: str, url: str) -> int:
    queue = RuleQueue(data_dir, retry_base_ms=50, retry_max_ms=200)
    engine = RuleEngine(Services())
    engine.set_chain(
        chain("t", [("rest.TbRestApiCallNode", "forward", {"restEndpointUrlPattern": url + "/in/$[n]"})], [])
    )
    worker = queue.start_worker(engine)
    print("started", flush=True)
    while queue.size():
        time.sleep(0.05)
    queue.stop_worker(worker)
    queue.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
