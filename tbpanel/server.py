"""One process, one port: the Panel pages and the ThingsBoard-compatible API in one tornado app."""
from __future__ import annotations

import logging
import signal
import socket
import sys

import panel as pn
from tornado.ioloop import PeriodicCallback

from . import logs
from .api import api_patterns
from .live import LiveHub
from .platform import Platform
from .ui.alarms import alarms_page
from .ui.fleet import fleet_page
from .ui.login import PageAuthProvider
from .ui.telemetry import telemetry_page

log = logging.getLogger("tbpanel.server")

def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def build_server(platform: Platform, *, address: str = "127.0.0.1", port: int = 5006,
                 show: bool = False):
    """A started-but-not-running Bokeh server; ``server.io_loop.start()`` runs it."""
    if port == 0:
        port = free_port(address)
    hosts = {address, "localhost", "127.0.0.1"}
    live = LiveHub(platform.store)  # the one fan-out: WebSocket clients and page sessions

    def landing():  # Panel calls a plain function once per session (not a functools.partial)
        return fleet_page(platform, live)

    def telemetry():
        return telemetry_page(platform, live)

    def alarms():
        return alarms_page(platform)

    pages = {"/": landing, "/telemetry": telemetry, "/alarms": alarms}
    server = pn.serve(
        pages, port=port, address=address, show=show, start=False, title="tbpanel",
        extra_patterns=api_patterns(platform, live), liveness=True,
        websocket_origin=[f"{h}:{port}" for h in sorted(hosts)],
        cookie_secret=platform.cookie_secret, auth_provider=PageAuthProvider(platform),
        # look for closed page sessions every 3 s (Bokeh: 17 s) so their live subscriptions
        # end soon after the tab closes; a session still lingers 15 s for a reconnect
        check_unused_sessions_milliseconds=3000,
        verbose=False)
    live.bind(server.io_loop)
    server.live = live
    return server


def start_scheduler(platform: Platform, period_ms: int = 15_000) -> PeriodicCallback:
    """Check every ``period_ms`` for due refresh runs (on the server's own IOLoop); the runs
    themselves go to the task runner's threads, the check to the I/O pool."""
    def check() -> None:
        def run() -> None:
            try:
                platform.anomaly.run_due()
            except Exception:
                log.exception("scheduling refresh runs failed")
        platform.executor.submit(run)

    callback = PeriodicCallback(check, period_ms)
    callback.start()
    return callback


def public_url(address: str, port: int) -> str:
    host = "localhost" if address in ("127.0.0.1", "localhost", "0.0.0.0", "") else address
    return f"http://{host}:{port}/"


def serve_from_args(args) -> int:
    """``tbpanel serve``: open the data directory, optionally seed the demo, serve until stopped."""
    logs.configure(args.log_level)
    platform = Platform(args.data)
    simulator = None
    if args.demo:
        from . import demo
        demo.ensure_demo(platform, progress=lambda msg: print(msg, flush=True))
        demo.ensure_demo_models(platform, progress=lambda msg: print(msg, flush=True))
    server = build_server(platform, address=args.address, port=args.port, show=args.show)
    server.start()
    start_scheduler(platform)
    url = public_url(args.address, server.port)
    if args.demo:
        from . import demo
        simulator = demo.FleetSimulator(platform, f"http://127.0.0.1:{server.port}")
        simulator.start()
        print(f"demo logins: {demo.TENANT_EMAIL} / {demo.TENANT_PASSWORD}, "
              f"{demo.CUSTOMER_EMAIL} / {demo.CUSTOMER_PASSWORD}", flush=True)
    print(f"tbpanel serving at {url}", flush=True)

    def stop(*_):
        server.io_loop.asyncio_loop.call_soon_threadsafe(server.io_loop.stop)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.io_loop.start()
    finally:
        if simulator is not None:
            simulator.stop()
        server.stop()
        platform.close()
        print("tbpanel stopped", file=sys.stderr, flush=True)
    return 0
