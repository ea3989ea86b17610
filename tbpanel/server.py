"""One process, one port: the Panel pages and the ThingsBoard-compatible API in one tornado app."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
import sys
from typing import TYPE_CHECKING, Any, Literal, cast, overload

import panel as pn
from bokeh.server.server import Server
from tornado.ioloop import PeriodicCallback
from tornado.platform.asyncio import BaseAsyncIOLoop

from . import logs
from .api import api_patterns
from .live import LiveHub
from .platform import Platform
from .store.heap import freeze_startup_objects, tune_heap
from .ui.alarms import alarms_page
from .ui.dashboards import dashboard_page, dashboards_page
from .ui.fleet import fleet_page
from .ui.login import DemoLogin, PageAuthProvider
from .ui.profiles import profiles_page
from .ui.rules import rules_page
from .ui.telemetry import telemetry_page
from .ui.workspace.models import models_page
from .ui.workspace.page import model_page

if TYPE_CHECKING:
    from .transports.coap import CoapTransport
    from .transports.mqtt import MqttLimits, MqttTransport

log = logging.getLogger("tbpanel.server")


def announce(line: str) -> None:
    """One line on stdout in one write: tests and `tbpanel.notebook` read the URL and ports from
    these lines, and a log record of another thread (stderr, the same pipe) must not land inside
    one (``print`` writes the text and its newline separately)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        port: int = s.getsockname()[1]
        return port


def build_server(
    platform: Platform,
    *,
    address: str = "127.0.0.1",
    port: int = 5006,
    show: bool = False,
    demo_logins: tuple[DemoLogin, ...] = (),
) -> Server:
    """A started-but-not-running Bokeh server; ``server.io_loop.start()`` runs it.

    ``demo_logins`` are offered on the login page (only a demo server passes any).

    Pages are Panel applications; the API is :func:`~tbpanel.api.api_patterns`, mounted once
    with ``extra_patterns`` (Bokeh's public way to add tornado routes). Bokeh puts those after
    its own ~26 per-page and static patterns (Bokeh 3.9, Panel 1.9); none of those matches an
    ``/api/`` path, so the order only costs a device upload ~5 µs of pattern matching.
    """
    if port == 0:
        port = free_port(address)
    hosts = {address, "localhost", "127.0.0.1"}
    live = LiveHub(platform.store)  # the one fan-out: WebSocket clients and page sessions
    platform.rpc.activate()  # rpc: this process delivers RPC (recovers persistent requests)

    def landing() -> Any:  # Panel calls a plain function once per session (not a functools.partial)
        return fleet_page(platform, live)

    def telemetry() -> Any:
        return telemetry_page(platform, live)

    def alarms() -> Any:
        return alarms_page(platform)

    def models() -> Any:
        return models_page(platform, live)

    def profiles() -> Any:
        return profiles_page(platform)

    def model() -> Any:
        return model_page(platform, live)

    def rules() -> Any:
        return rules_page(platform)

    def dashboards() -> Any:
        return dashboards_page(platform)

    def dashboard() -> Any:
        return dashboard_page(platform, live)

    pages = {
        "/": landing,
        "/telemetry": telemetry,
        "/alarms": alarms,
        "/models": models,
        "/model": model,
        "/dashboards": dashboards,
        "/dashboard": dashboard,
        "/rules": rules,
        "/profiles": profiles,
    }
    server = pn.serve(
        pages,
        port=port,
        address=address,
        show=show,
        start=False,
        title="tbpanel",
        extra_patterns=api_patterns(platform, live),
        liveness=True,
        websocket_origin=[f"{h}:{port}" for h in sorted(hosts)],
        cookie_secret=platform.cookie_secret,
        auth_provider=PageAuthProvider(platform, demo_logins),
        # look for closed page sessions every 3 s (Bokeh: 17 s) so their live subscriptions
        # end soon after the tab closes; a session still lingers 15 s for a reconnect
        check_unused_sessions_milliseconds=3000,
        verbose=False,
    )
    live.bind(server.io_loop)
    return server


def asyncio_loop(server: Server) -> asyncio.AbstractEventLoop:
    """The asyncio loop under the server's tornado IOLoop (tornado 6 always runs on one)."""
    return cast(BaseAsyncIOLoop, server.io_loop).asyncio_loop


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


DEFAULT_PORTS = {"mqtt": 1883, "coap": 5683}


def mqtt_limits(platform: Platform, args: argparse.Namespace) -> MqttLimits:
    """The MQTT per-device limits: the defaults, with what ``--mqtt-max-*`` overrides."""
    from .transports.mqtt import MqttLimits

    limits = MqttLimits(max_payload_bytes=platform.max_body_bytes)
    for option, field in (
        ("mqtt_max_sessions", "max_sessions_per_device"),
        ("mqtt_max_rate", "messages_per_second"),
        ("mqtt_max_payload", "max_payload_bytes"),
    ):
        if getattr(args, option, None) is not None:
            setattr(limits, field, getattr(args, option))
    return limits


@overload
def start_transport(
    kind: Literal["mqtt"],
    platform: Platform,
    server: Server,
    address: str,
    port: int | None,
    limits: MqttLimits | None = None,
) -> MqttTransport | None: ...
@overload
def start_transport(
    kind: Literal["coap"],
    platform: Platform,
    server: Server,
    address: str,
    port: int | None,
    limits: MqttLimits | None = None,
) -> CoapTransport | None: ...
def start_transport(
    kind: str, platform: Platform, server: Server, address: str, port: int | None, limits: MqttLimits | None = None
) -> MqttTransport | CoapTransport | None:
    """The MQTT or CoAP device transport on the tornado server's own asyncio loop (before it runs).

    ``port`` None is the default port, which may be taken (a local broker): then the server
    runs without that transport and says so; an explicit port that cannot be bound is an error.
    ``limits`` are the MQTT per-device limits (:func:`mqtt_limits`).
    """
    if port is not None and port < 0:
        return None
    transport: MqttTransport | CoapTransport
    detail = ""
    if kind == "mqtt":
        from .transports.mqtt import MqttTransport

        transport = mqtt = MqttTransport(platform, limits)
        lim = mqtt.limits
        detail = (
            f" (per device: {lim.max_sessions_per_device} sessions, "
            f"{lim.messages_per_second:g} messages/s, {lim.max_payload_bytes}-byte payloads)"
        )
    else:
        try:
            from .transports.coap import CoapTransport
        except ImportError as exc:  # aiocoap missing from an older environment
            if port is not None:
                raise SystemExit(f"tbpanel: error: CoAP needs aiocoap: {exc}") from None
            announce("coap off: aiocoap is not installed")
            return None
        transport = CoapTransport(platform)
    default = DEFAULT_PORTS[kind]
    loop = asyncio_loop(server)
    try:
        bound = loop.run_until_complete(transport.start(address, default if port is None else port))
    except OSError as exc:
        if port is not None:
            raise SystemExit(f"tbpanel: error: cannot listen for {kind.upper()} on {address}:{port}: {exc}") from None
        log.warning(
            "%s transport off: cannot listen on %s:%d (%s); use --%s-port", kind.upper(), address, default, exc, kind
        )
        announce(f"{kind} off: {address}:{default} is not available")
        return None
    announce(f"{kind} listening on {address}:{bound}{detail}")
    return transport


def public_url(address: str, port: int) -> str:
    host = "localhost" if address in ("127.0.0.1", "localhost", "0.0.0.0", "") else address
    return f"http://{host}:{port}/"


def serve_from_args(args: argparse.Namespace) -> int:
    """``tbpanel serve``: open the data directory, optionally seed the demo, serve until stopped."""
    logs.configure(args.log_level)
    tune_heap()  # large arrays (compaction, big bodies) go back to the OS when freed
    limits = {
        name: value
        for name in ("max_keys_per_device", "max_points_per_message")
        if (value := getattr(args, name, None)) is not None
    }
    caches = {
        store_arg: value << shift
        for name, store_arg, shift in (
            ("cold_cache_mib", "cache_bytes", 20),
            ("hot_cache_mib", "hot_cache_bytes", 20),
            ("sqlite_cache_mib", "sqlite_cache_kib", 10),
        )
        if (value := getattr(args, name, None)) is not None
    }
    platform = Platform(
        args.data,
        compaction_interval_s=getattr(args, "compaction_interval", 60),
        store_options=caches,
        cold_url=getattr(args, "cold_url", None),
        cold_options=dict(getattr(args, "cold_option", None) or ()),
        **limits,
    )
    simulator = None
    if args.demo:
        from . import demo

        demo.ensure_demo(platform, progress=announce)
        demo.ensure_demo_models(platform, progress=announce)
        demo.ensure_demo_dashboards(platform, progress=announce)
    logins: tuple[DemoLogin, ...] = ()
    if args.demo:
        logins = (
            DemoLogin("Tenant administrator (the whole fleet)", demo.TENANT_EMAIL, demo.TENANT_PASSWORD),
            DemoLogin("Customer user (Customer A's devices)", demo.CUSTOMER_EMAIL, demo.CUSTOMER_PASSWORD),
        )
    server = build_server(platform, address=args.address, port=args.port, show=args.show, demo_logins=logins)
    server.start()
    platform.rules.start()  # the rule queue's worker: runs what the transports queued (and what a kill left)
    start_scheduler(platform)
    mqtt = start_transport(
        "mqtt", platform, server, args.address, getattr(args, "mqtt_port", -1), mqtt_limits(platform, args)
    )
    coap = start_transport("coap", platform, server, args.address, getattr(args, "coap_port", -1))
    port = server.port
    assert port is not None  # Bokeh's port is None only on a unix socket
    url = public_url(args.address, port)
    if args.demo:
        from . import demo

        simulator = demo.FleetSimulator(
            platform, f"http://127.0.0.1:{port}", mqtt_port=mqtt.port if mqtt is not None else None
        )
        simulator.start()
        print(
            f"demo logins: {demo.TENANT_EMAIL} / {demo.TENANT_PASSWORD}, "
            f"{demo.CUSTOMER_EMAIL} / {demo.CUSTOMER_PASSWORD}",
            flush=True,
        )
    freeze_startup_objects()  # the collector's full passes skip what the start made
    announce(f"tbpanel serving at {url}")

    def stop(*_: object) -> None:
        asyncio_loop(server).call_soon_threadsafe(server.io_loop.stop)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.io_loop.start()
    finally:
        if simulator is not None:
            simulator.stop()
        for transport in (mqtt, coap):
            if transport is not None:
                asyncio_loop(server).run_until_complete(transport.close())
        server.stop()
        platform.rules.stop()  # before the store closes: the worker may be saving
        platform.close()
        print("tbpanel stopped", file=sys.stderr, flush=True)
    return 0
