"""tbpanel.events.Signal: order, disconnect, error containment, propagation, thread safety."""

from __future__ import annotations

import threading

import pytest

from tbpanel.events import Signal


def test_listeners_run_in_connection_order_and_disconnect():
    sig: Signal = Signal("s")
    heard = []
    off_a = sig.connect(lambda x: heard.append(("a", x)))
    sig.connect(lambda x: heard.append(("b", x)))
    sig.emit(1)
    off_a()
    off_a()  # idempotent
    sig.emit(2)
    assert heard == [("a", 1), ("b", 1), ("b", 2)]
    assert len(sig) == 1


def test_a_failing_listener_is_logged_and_the_others_still_run(caplog):
    sig: Signal = Signal("commits")
    heard = []
    sig.connect(lambda: 1 / 0)
    sig.connect(lambda: heard.append("ran"))
    sig.emit()
    assert heard == ["ran"]
    assert "a listener of commits failed" in caplog.text


def test_propagate_raises_the_first_error():
    sig: Signal = Signal("tx", propagate=True)
    heard = []
    sig.connect(lambda: 1 / 0)
    sig.connect(lambda: heard.append("never"))
    with pytest.raises(ZeroDivisionError):
        sig.emit()
    assert heard == []


def test_connect_from_many_threads_while_emitting():
    sig: Signal = Signal("busy")
    count = []
    stop = threading.Event()

    def emitter():
        while not stop.is_set():
            sig.emit()

    t = threading.Thread(target=emitter)
    t.start()
    offs = [sig.connect(lambda: count.append(1)) for _ in range(200)]
    for off in offs:
        off()
    stop.set()
    t.join()
    assert len(sig) == 0
