"""The ``tbpanel`` command.

::

    tbpanel init --data DIR --admin-email E --admin-password P [--tenant TITLE]
    tbpanel user add --data DIR --email E --password P --role TENANT_ADMIN|CUSTOMER_USER
                     [--customer TITLE] [--tenant TITLE]
    tbpanel serve [--data DIR] [--address 127.0.0.1] [--port 5006] [--mqtt-port 1883] [--coap-port 5683] [--demo] [--show]
                  [--mqtt-max-sessions N] [--mqtt-max-rate N] [--mqtt-max-payload BYTES]
                  [--compaction-interval 60] [--cold-url s3://bucket/prefix --cold-option KEY=VALUE ...]
    tbpanel demo [--url URL] [--data DIR] [--devices N]

A password given as ``-`` is read from the first line of standard input (keeps it out of the
process list and shell history). Passwords are never printed. Exit codes: 0 success, 2 bad
input or a conflict (nothing was changed), 1 anything else.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from typing import Any

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2

ROLES = ("TENANT_ADMIN", "CUSTOMER_USER")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


class _CliError(Exception):
    """A user-facing error: printed as ``tbpanel: error: <message>``, exit code 2."""


def _read_password(value: str, what: str) -> str:
    if value != "-":
        return value
    line = sys.stdin.readline()
    password = line.rstrip("\r\n")
    if not password:
        raise _CliError(f"{what}: expected a password on standard input")
    return password


# ------------------------------------------------------------------------------------------
# subcommands
# ------------------------------------------------------------------------------------------
def _cmd_init(args: argparse.Namespace) -> int:
    from tbpanel.entities import registry

    password = _read_password(args.admin_password, "--admin-password")
    tenant, user = registry.init(args.data, args.admin_email, password, args.tenant)
    print(f"Initialised {args.data}: tenant {tenant.title!r} ({tenant.id}) with tenant administrator {user.email}.")
    print(f"Start the server with: tbpanel serve --data {args.data}")
    return EXIT_OK


def _cmd_user_add(args: argparse.Namespace) -> int:
    from tbpanel.entities import CUSTOMER_USER, TENANT_ADMIN, EntityRegistry, NotFound

    if args.role == TENANT_ADMIN and args.customer is not None:
        raise _CliError("--customer is only for --role CUSTOMER_USER (a TENANT_ADMIN manages the whole tenant)")
    if args.role == CUSTOMER_USER and not (args.customer and args.customer.strip()):
        raise _CliError("--role CUSTOMER_USER needs --customer TITLE (the customer is created if it does not exist)")
    password = _read_password(args.password, "--password")
    try:
        registry = EntityRegistry(args.data, create=False)
    except NotFound:
        raise _CliError(
            f"no tbpanel data in {args.data}: run `tbpanel init --data {args.data} "
            "--admin-email ... --admin-password ...` first"
        ) from None
    with registry:
        tenant = _pick_tenant(registry, args.tenant, args.data)
        if registry.find_user(args.email) is not None:
            raise _CliError(f"a user with email {args.email.strip()!r} already exists; nothing was changed")
        created_customer = False
        with registry.transaction():  # all or nothing: no stray customer on failure
            customer = None
            if args.role == CUSTOMER_USER:
                customer = registry.find_customer(tenant.id, args.customer)
                if customer is None:
                    customer = registry.create_customer(tenant.id, args.customer)
                    created_customer = True
            user = registry.create_user(
                args.email,
                password,
                args.role,
                tenant.id,
                customer.id if customer else None,
                first_name=args.first_name or "",
                last_name=args.last_name or "",
            )
    where = f"tenant {tenant.title!r}"
    if customer is not None:
        where += f", customer {customer.title!r}" + (" (created)" if created_customer else "")
    print(f"Added {user.authority} {user.email} ({user.id}) to {where}.")
    return EXIT_OK


def _pick_tenant(registry, title: str | None, data: str):
    if title is not None:
        tenant = registry.find_tenant(title)
        if tenant is None:
            titles = ", ".join(repr(t.title) for t in registry.list_tenants()) or "none"
            raise _CliError(f"no tenant titled {title!r} in {data} (tenants: {titles})")
        return tenant
    tenants = registry.list_tenants()
    if not tenants:
        raise _CliError(f"{data} has no tenant yet: run `tbpanel init` first")
    if len(tenants) > 1:
        titles = ", ".join(repr(t.title) for t in tenants)
        raise _CliError(f"{data} has several tenants ({titles}): choose one with --tenant TITLE")
    return tenants[0]


def _cmd_serve(args: argparse.Namespace) -> int:
    if args.cold_option and not args.cold_url:
        raise _CliError("--cold-option is an option of the --cold-url's file system: give --cold-url too")
    try:
        from tbpanel.server import serve_from_args
    except ModuleNotFoundError as exc:
        if exc.name != "tbpanel.server":
            raise
        print("tbpanel: error: the server (tbpanel.server) is not available in this installation", file=sys.stderr)
        return EXIT_ERROR
    result = serve_from_args(args)
    return result if isinstance(result, int) else EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    try:
        from tbpanel.demo import main_from_args
    except ModuleNotFoundError as exc:
        if exc.name != "tbpanel.demo":
            raise
        print("tbpanel: error: the demo (tbpanel.demo) is not available in this installation", file=sys.stderr)
        return EXIT_ERROR
    result = main_from_args(args)
    return result if isinstance(result, int) else EXIT_OK


# ------------------------------------------------------------------------------------------
# parser
# ------------------------------------------------------------------------------------------
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20}
#: ``serve`` ingest limit defaults: the values of tbpanel.store.limits (not imported here, so
#: that ``tbpanel --help`` stays quick; tests/store/test_many_keys.py checks they agree).
DEFAULT_MAX_KEYS_PER_DEVICE = 10_000
DEFAULT_MAX_POINTS_PER_MESSAGE = 100_000

#: ``serve`` memory defaults (MiB): those of tbpanel.store.telemetry / tbpanel.store.hot (checked
#: by tests/store/test_memory_bounds.py, like the limits above).
DEFAULT_COLD_CACHE_MIB = 128
DEFAULT_HOT_CACHE_MIB = 32
DEFAULT_SQLITE_CACHE_MIB = 16


def _mebibytes(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of MiB, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return value


#: MQTT's remaining length cannot say more than 256 MiB.
MAX_MQTT_PAYLOAD = 256 << 20


def _payload_size(text: str) -> int:
    """Bytes, optionally with a binary unit: ``65536``, ``64KiB``, ``1M``."""
    number = text.strip().rstrip("BbIiKkMm ")
    unit = text.strip()[len(number) :].strip().lower()
    try:
        value = int(number) * _SIZE_UNITS[unit]
    except (ValueError, KeyError):
        raise argparse.ArgumentTypeError(
            f"expected a size in bytes such as 65536, 64KiB or 1MiB, got {text!r}"
        ) from None
    if not 1 <= value <= MAX_MQTT_PAYLOAD:
        raise argparse.ArgumentTypeError(
            f"expected a size between 1 byte and 256 MiB (MQTT's packet limit), got {text!r}"
        )
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


#: a ``--cold-option`` value that reads as one of these is JSON; anything else is a string
_JSON_VALUE = re.compile(r"^(true|false|null|-?\d+(\.\d+)?|\{.*\}|\[.*\]|\".*\")$", re.DOTALL)


def _cold_option(text: str) -> tuple[str, Any]:
    """``KEY=VALUE``: one storage option of the cold tier's file system (s3fs's ``endpoint_url``,
    ``key``, ``secret``, ``client_kwargs``, ...). ``true``, ``10``, ``{"region_name": "eu-west-1"}``
    are JSON; ``'"10"'`` keeps a number a string; anything else is a string as given."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError("expected KEY=VALUE, e.g. endpoint_url=http://127.0.0.1:9000")
    if _JSON_VALUE.match(value):
        try:
            return key, json.loads(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"the value of {key} is not valid JSON") from None  # no echo: a secret?
    return key, value


def _transport_port(text: str) -> int:
    return -1 if text.strip() == "-1" else _port(text)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be between 0 and 65535, got {value}")
    return value


def _version() -> str:
    try:
        from tbpanel import __version__
    except ImportError:  # e.g. a stale editable install that maps `tbpanel` as a namespace
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("tbpanel")
        except PackageNotFoundError:
            return "unknown"
    return __version__


def build_parser() -> argparse.ArgumentParser:
    __version__ = _version()
    parser = argparse.ArgumentParser(
        prog="tbpanel", description="IoT telemetry and anomaly analytics, ThingsBoard-compatible."
    )
    parser.add_argument("--version", action="version", version=f"tbpanel {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser(
        "init",
        help="create a data directory with a tenant and its admin",
        description="Create the entity database and JWT secret in DIR, a "
        "tenant and its TENANT_ADMIN. Never changes an existing "
        "account.",
    )
    p.add_argument("--data", required=True, metavar="DIR", help="data directory")
    p.add_argument("--admin-email", required=True, metavar="E", help="tenant admin login")
    p.add_argument(
        "--admin-password", required=True, metavar="P", help="tenant admin password ('-' reads it from standard input)"
    )
    p.add_argument("--tenant", default="Tenant", metavar="TITLE", help="tenant title (default: %(default)s)")
    p.set_defaults(func=_cmd_init)

    p = sub.add_parser("user", help="manage users")
    user_sub = p.add_subparsers(dest="user_command", metavar="ACTION")
    user_sub.required = True
    p = user_sub.add_parser(
        "add", help="add a user", description="Add a TENANT_ADMIN or CUSTOMER_USER. A missing customer is created."
    )
    p.add_argument("--data", required=True, metavar="DIR", help="data directory")
    p.add_argument("--email", required=True, metavar="E", help="login email")
    p.add_argument("--password", required=True, metavar="P", help="password ('-' reads it from standard input)")
    p.add_argument("--role", required=True, choices=ROLES, type=str.upper)
    p.add_argument("--customer", metavar="TITLE", help="customer title (CUSTOMER_USER)")
    p.add_argument("--tenant", metavar="TITLE", help="tenant title (default: the only tenant)")
    p.add_argument("--first-name", default="", metavar="NAME")
    p.add_argument("--last-name", default="", metavar="NAME")
    p.set_defaults(func=_cmd_user_add)

    p = sub.add_parser("serve", help="run the web server (dashboards + ThingsBoard API)")
    p.add_argument("--data", default="./data/local", metavar="DIR", help="data directory (default: %(default)s)")
    p.add_argument("--address", default="127.0.0.1", help="listen address (default: %(default)s)")
    p.add_argument("--port", default=5006, type=_port, help="listen port (default: %(default)s)")
    p.add_argument(
        "--mqtt-port",
        default=None,
        type=_transport_port,
        help="MQTT device transport port (default: 1883 if free; 0 = a free port, -1 = off)",
    )
    p.add_argument(
        "--coap-port",
        default=None,
        type=_transport_port,
        help="CoAP (UDP) device transport port (default: 5683 if free; 0 = a free port, -1 = off)",
    )
    limits = p.add_argument_group(
        "MQTT per-device limits",
        "Each applies to one device across all its sessions. A publish over a limit is refused "
        "with its reason: MQTT 5 QoS 1/2 gets PUBACK/PUBREC 0x97 and a reason string, MQTT 5 "
        "QoS 0 a DISCONNECT with the reason, MQTT 3.1.1 a closed session (reason logged); "
        "nothing of it is stored. A session over the limit gets CONNACK 0x97 (MQTT 5) / 3 "
        "(3.1.1).",
    )
    limits.add_argument(
        "--mqtt-max-sessions",
        type=_positive_int,
        default=None,
        metavar="N",
        help="sessions one device may have open at once (default: 16)",
    )
    limits.add_argument(
        "--mqtt-max-rate",
        type=_positive_int,
        default=None,
        metavar="N",
        help="publishes per second per device, bursts of up to one second's worth (default: 5000)",
    )
    limits.add_argument(
        "--mqtt-max-payload",
        type=_payload_size,
        default=None,
        metavar="BYTES",
        help="largest publish payload, e.g. 65536, 64KiB, 1MiB (default: 1MiB, the HTTP body limit)",
    )
    ingest = p.add_argument_group(
        "Ingest limits (every transport)",
        "A telemetry message over a limit is refused whole, nothing of it stored, with an error "
        "naming the limit: over --max-points-per-message HTTP 413, MQTT 5 reason 0x95 (packet too "
        "large), CoAP 4.13; over --max-keys-per-device HTTP 400, MQTT 5 reason 0x97 (quota "
        "exceeded), CoAP 4.00; MQTT 3.1.1 closes the session, as for any bad payload.",
    )
    ingest.add_argument(
        "--max-keys-per-device",
        type=_positive_int,
        default=None,
        metavar="N",
        help=f"telemetry keys one device may have (default: {DEFAULT_MAX_KEYS_PER_DEVICE})",
    )
    ingest.add_argument(
        "--max-points-per-message",
        type=_positive_int,
        default=None,
        metavar="N",
        help=f"points one telemetry message may carry (default: {DEFAULT_MAX_POINTS_PER_MESSAGE})",
    )
    memory = p.add_argument_group(
        "Memory",
        "The caches of the telemetry store, each bounded (least recently used out; 0 = off). "
        "Latest values (as numpy columns) and the series index are always in memory, "
        "outside these bounds.",
    )
    memory.add_argument(
        "--cold-cache-mib",
        type=_mebibytes,
        default=DEFAULT_COLD_CACHE_MIB,
        metavar="MIB",
        help="decoded chunks of the Zarr cold tier (default: %(default)s)",
    )
    memory.add_argument(
        "--hot-cache-mib",
        type=_mebibytes,
        default=DEFAULT_HOT_CACHE_MIB,
        metavar="MIB",
        help="merged columnar blocks of the hot tier, not yet compacted (default: %(default)s)",
    )
    memory.add_argument(
        "--sqlite-cache-mib",
        type=_mebibytes,
        default=DEFAULT_SQLITE_CACHE_MIB,
        metavar="MIB",
        help="SQLite page cache of each connection to the hot tier: the writer and each reading "
        "thread (default: %(default)s)",
    )
    cold = p.add_argument_group(
        "Cold tier",
        "Months closed for a day move from the hot tier (SQLite in DATA: recent points, the "
        "durability) to Zarr arrays, by default in DATA/telemetry/cold. --cold-url puts them on "
        "object storage instead: S3 or an S3-compatible service (MinIO, Ceph, ...; the s3 extra: "
        "pip install 'tbpanel[s3]'), or any fsspec URL. Credentials: the AWS_ACCESS_KEY_ID / "
        "AWS_SECRET_ACCESS_KEY environment variables or ~/.aws keep them out of the process list, "
        "which shows --cold-option values to every local user; they are never logged.",
    )
    cold.add_argument(
        "--cold-url", default=None, metavar="URL", help="where closed months go, e.g. s3://bucket/fleet/cold"
    )
    cold.add_argument(
        "--cold-option",
        action="append",
        default=[],
        type=_cold_option,
        metavar="KEY=VALUE",
        help="an option of that URL's file system (s3fs), repeatable: endpoint_url=http://host:9000, "
        'key=..., secret=..., client_kwargs=\'{"region_name": "eu-west-1"}\' (true, numbers and '
        "{...} are JSON, the rest strings)",
    )
    p.add_argument("--demo", action="store_true", help="demo tenant, logins, simulated fleet and a built model")
    p.add_argument(
        "--show", action=argparse.BooleanOptionalAction, default=False, help="open a browser (default: --no-show)"
    )
    p.add_argument(
        "--log-level", default="info", choices=LOG_LEVELS, type=str.lower, help="logging level (default: %(default)s)"
    )
    p.add_argument(
        "--compaction-interval",
        default=60.0,
        type=_seconds,
        metavar="SECONDS",
        help="how often closed months move to the Zarr cold tier (default: %(default)s; 0 = never)",
    )
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("demo", help="simulate a fleet posting through the HTTP API")
    p.add_argument("--url", default="http://127.0.0.1:5006", help="server URL (default: %(default)s)")
    p.add_argument("--data", default="./data/local", metavar="DIR", help="data directory (default: %(default)s)")
    p.add_argument(
        "--devices",
        default=10,
        type=_positive_int,
        metavar="N",
        help="number of simulated devices (default: %(default)s)",
    )
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (argparse usage errors exit with 2)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from tbpanel.errors import EntityError

    try:
        return args.func(args)
    except (_CliError, EntityError) as exc:
        print(f"tbpanel: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"tbpanel: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
