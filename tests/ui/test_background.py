"""``Background`` on a real Panel server: every result reaches the page, and the document is
touched only on the server loop (Bokeh's cross-thread ``add_next_tick_callback`` can lose a
callback to a concurrent document hold, which once left ``/alarms`` deaf to new alarms)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import panel as pn
import requests

from tbpanel.events import Signal
from tbpanel.server import free_port
from tbpanel.ui.background import Background

READS = 40


def test_reads_and_follows_reach_the_document_from_the_loop_thread_only():
    executor = ThreadPoolExecutor(max_workers=4)
    changed: Signal = Signal("test change")
    seen: dict = {"loop": None, "callers": [], "applied": [], "refreshes": 0, "follow": None}
    built = threading.Event()

    def page():
        doc = pn.state.curdoc
        seen["loop"] = threading.get_ident()
        add = doc.add_next_tick_callback

        def watched(callback):  # the real method, noting which thread asked
            seen["callers"].append(threading.get_ident())
            return add(callback)

        doc.add_next_tick_callback = watched
        bg = Background(executor)
        for i in range(READS):  # distinct keys: none coalesces with another
            bg.run(f"read-{i}", lambda i=i: (time.sleep(0.001 * (i % 3)), i)[1], seen["applied"].append)

        def refreshed() -> None:
            seen["refreshes"] += 1

        bg.follow(changed, lambda *_: True, refreshed, poll_ms=600_000)
        built.set()
        return pn.pane.Markdown("background test")

    port = free_port()
    server = pn.serve({"/": page}, port=port, address="127.0.0.1", show=False, threaded=True, verbose=False)
    try:
        deadline = time.monotonic() + 30
        while True:  # the server thread starts listening soon after serve returns
            try:
                assert requests.get(f"http://127.0.0.1:{port}/", timeout=30).status_code == 200
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert built.wait(30)
        while len(seen["applied"]) < READS and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sorted(seen["applied"]) == list(range(READS))
        emitter = threading.Thread(target=changed.emit)  # a commit on another thread
        emitter.start()
        emitter.join()
        while seen["refreshes"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert seen["refreshes"] == 1
        assert seen["callers"] and set(seen["callers"]) == {seen["loop"]}
    finally:
        server.stop()
        executor.shutdown(wait=False)
