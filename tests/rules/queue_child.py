"""A tbpanel-like process for the kill -9 tests: drains the rule queue in ``DIR`` through a
chain of one external node (type and configuration as JSON); exits 0 when the queue is empty.

    python -m tests.rules.queue_child DIR NODE_TYPE CONFIG_JSON
"""

from __future__ import annotations

import json
import sys
import time

from tbpanel.rules import RuleEngine, Services
from tbpanel.rules.queue import RuleQueue
from tests.rules.helpers import chain


def main(data_dir: str, node_type: str, config: str) -> int:
    queue = RuleQueue(data_dir, retry_base_ms=50, retry_max_ms=200)
    engine = RuleEngine(Services())
    engine.set_chain(chain("t", [(node_type, "forward", json.loads(config))], []))
    worker = queue.start_worker(engine)
    print("started", flush=True)
    while queue.size():
        time.sleep(0.05)
    queue.stop_worker(worker)
    engine.close()
    queue.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3]))
