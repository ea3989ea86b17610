"""One data directory, opened: the entity registry, the telemetry store and the token issuer.

The server, the CLI, the demo and notebooks all reach tbpanel's state through a
:class:`Platform`, so that every one of them opens the same files the same way.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import param

from . import analytics_db
from .alarms import AlarmRepository, AlarmService
from .anomaly.repository import AnomalyRepository
from .anomaly.service import AnomalyService
from .dashboards import DashboardStore
from .entities import EntityRegistry, LoginThrottle, NotFound, TokenIssuer, TooManyAttempts, load_or_create_secret
from .jobs import TaskRunner
from .rpc import RpcService
from .rules.python_api import NotebookRules
from .store import TelemetryStore, open_store
from .store.limits import DEFAULT_MAX_KEYS_PER_DEVICE, DEFAULT_MAX_POINTS_PER_MESSAGE, check_points
from .store.object_store import StorageOptions


class Platform(param.Parameterized):
    """The opened data directory and the settings that apply to every transport."""

    data_dir = param.String(doc="Directory holding entities.sqlite, telemetry.sqlite and cold/.")
    max_body_bytes = param.Integer(
        default=1 << 20, bounds=(1, None), doc="Largest device payload accepted; larger bodies get 413."
    )
    max_keys_per_device = param.Integer(
        default=DEFAULT_MAX_KEYS_PER_DEVICE,
        bounds=(1, None),
        allow_None=True,
        doc="Telemetry keys one device may have (None: no limit); a message over it is refused whole.",
    )
    max_points_per_message = param.Integer(
        default=DEFAULT_MAX_POINTS_PER_MESSAGE,
        bounds=(1, None),
        allow_None=True,
        doc="Points one telemetry message may carry (None: no limit); a larger one is refused whole.",
    )
    compaction_interval_s = param.Number(
        default=60, bounds=(0, None), doc="How often closed partitions move to the Zarr tier (0: never)."
    )
    store_options = param.Dict(
        default={}, doc="More keyword arguments of open_store (its cache sizes: tbpanel serve's Memory options)."
    )
    cold_url = param.String(
        default=None, allow_None=True, doc="Where closed months go: an fsspec URL (s3://bucket/prefix); None: DATA."
    )
    cold_options = param.Dict(
        default={},
        doc="The cold URL's file system options (s3fs: endpoint_url, key, secret); credentials shown masked.",
    )

    def __init__(self, data_dir: str | os.PathLike, **params):
        params["cold_options"] = StorageOptions(params.get("cold_options") or {})  # its repr hides secrets
        super().__init__(data_dir=str(Path(data_dir).resolve()), **params)
        Path(self.data_dir).mkdir(parents=True, exist_ok=True)
        if not os.access(self.data_dir, os.W_OK):  # say so, rather than "unable to open database file"
            code = errno.EROFS if _read_only_fs(self.data_dir) else errno.EACCES
            raise OSError(code, f"the data directory is not writable ({os.strerror(code)})", self.data_dir)
        self.registry: EntityRegistry = EntityRegistry(self.data_dir)
        #: Dashboards (their tables are in entities.sqlite, so they share the registry's connection)
        self.dashboards: DashboardStore = DashboardStore(self.registry)
        self.store: TelemetryStore = open_store(
            Path(self.data_dir) / "telemetry",
            cold_url=self.cold_url,
            storage_options=self.cold_options or None,
            compaction_interval_s=self.compaction_interval_s,
            max_keys_per_entity=self.max_keys_per_device,
            **self.store_options,
        )
        self.store.device_ids = self.device_ids  # store.query(devices=["Pump P1"]) takes names
        self._secret = load_or_create_secret(self.data_dir)
        self.tokens: TokenIssuer = TokenIssuer(self._secret)
        self.logins = LoginThrottle()
        #: Runs blocking work (SQLite reads, Zarr reads) off the server's event loop.
        self.executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="tbpanel-io")
        analytics = Path(self.data_dir) / analytics_db.FILE
        #: models, anomalies and alarms: one connection, so an anomaly change and its alarms commit together
        self.analytics = analytics_db.open_database(analytics)
        #: Long work (build, refresh, reprocess) with progress and history.
        self.tasks: TaskRunner = TaskRunner(analytics, workers=1)
        self.anomaly: AnomalyService = AnomalyService(
            self.store, self.registry, AnomalyRepository(self.analytics), self.tasks
        )
        #: Alarms; its listener on the anomaly service keeps anomaly alarms in step, atomically.
        self.alarms: AlarmService = AlarmService(AlarmRepository(self.analytics), self.registry, self.anomaly)
        #: Server-side RPC: persistent requests in rpc.sqlite, delivery to the device sessions
        self.rpc: RpcService = RpcService(self.data_dir, self.registry)
        #: Rule chains per tenant, their durable queue (rules.sqlite) and its worker; the
        #: notebook conveniences (``tb.rules.list()``, ``.build``, ``.dry_run``) on top
        self.rules: NotebookRules = NotebookRules(
            self.data_dir,
            store=self.store,
            registry=self.registry,
            alarms=self.alarms,
            rpc=self.rpc,
            executor=self.executor,
        )

    def authenticate(self, username: str, password: str, address: str):
        """The user for these credentials, or None; raises TooManyAttempts while throttled.
        Every login (API and page) goes through here, so both share one throttle."""
        wait = self.logins.retry_after(username, address)
        if wait > 0:
            raise TooManyAttempts(wait)
        user = self.registry.authenticate(username, password)
        if user is None:
            self.logins.failed(username, address)
        else:
            self.logins.succeeded(username)
        return user

    def device_ids(self, refs: list[str]) -> dict[str, str]:
        """``{ref: device id}`` for each ref that is a device id or a device name in the registry;
        a name that several tenants use is a ``KeyError`` (pass the id)."""
        out: dict[str, str] = {}
        tenants = None
        for ref in refs:
            try:
                out[ref] = self.registry.get_device(ref).id
                continue
            except (NotFound, ValueError):
                pass
            if tenants is None:
                tenants = self.registry.list_tenants()
            matches = [d.id for t in tenants if (d := self.registry.find_device(t.id, ref)) is not None]
            if len(matches) > 1:
                raise KeyError(f"device name {ref!r} is used by {len(matches)} tenants: pass the device id")
            if matches:
                out[ref] = matches[0]
        return out

    @property
    def cookie_secret(self) -> str:
        """Page-session cookie key, derived from the JWT secret so one file guards both."""
        return hmac.new(self._secret, b"tbpanel page cookies", hashlib.sha256).hexdigest()

    def check_message(self, points: int) -> None:
        """Refuse a telemetry message of ``points`` points over :attr:`max_points_per_message`
        (:class:`~tbpanel.store.limits.TooManyPoints`); every transport asks before storing."""
        check_points(points, self.max_points_per_message)

    def close(self) -> None:
        self.rules.close()
        self.rpc.close()
        self.tasks.shutdown()
        self.analytics.close()
        self.executor.shutdown(wait=True)
        self.store.close()
        close = getattr(self.registry, "close", None)
        if close:
            close()

    def __enter__(self) -> Platform:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _read_only_fs(path: str) -> bool:
    return bool(os.statvfs(path).f_flag & os.ST_RDONLY)


def connect(data_dir: str | os.PathLike, **params) -> Platform:
    """Open a data directory from Python (a notebook): store, devices, anomaly models, tasks.

    Use it while no server runs on the same directory, or for reading alongside one.
    """
    return Platform(data_dir, **params)
