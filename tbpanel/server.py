"""One process, one port: the Panel pages and the ThingsBoard-compatible API in one tornado app."""
from __future__ import annotations

import signal
import socket
import sys

import panel as pn

from . import logs
from .api import api_patterns
from .platform import Platform
from .ui.fleet import fleet_page
from .ui.login import PageAuthProvider

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
    def landing():  # Panel calls a plain function once per session (not a functools.partial)
        return fleet_page(platform)

    pages = {"/": landing}
    server = pn.serve(
        pages, port=port, address=address, show=show, start=False, title="tbpanel",
        extra_patterns=api_patterns(platform), liveness=True,
        websocket_origin=[f"{h}:{port}" for h in sorted(hosts)],
        cookie_secret=platform.cookie_secret, auth_provider=PageAuthProvider(platform),
        verbose=False)
    return server


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
    server = build_server(platform, address=args.address, port=args.port, show=args.show)
    server.start()
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
