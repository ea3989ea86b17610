"""Kill-and-restart harness: a real ``tbpanel serve`` SIGKILLed at random moments under load.

Used by tests/test_crash_cycles.py (about 20 cycles, bounded) and benchmarks/crash_cycles.py
(hundreds). One :class:`CrashHarness` owns a data directory; every :meth:`CrashHarness.cycle`

1. starts the server (``--compaction-interval 0.1``: the compactor works almost all the time,
   because posters keep writing into closed months of 2024),
2. runs concurrent device posters, one over MQTT QoS 1 and the others over HTTP (each batch a
   numbered, deterministic set of points; a 200 or a PUBACK adds the batch to ``acked``, an
   error or lost connection to ``unsure``),
3. starts one disruption — a model refresh, a reprocess that raises and clears alarms, a model
   build, a burst of REST alarm changes, or late writes into already compacted months — and
4. SIGKILLs the server a random moment later, then checks the files (:meth:`check_files`)
   and, after the next start, the data (:meth:`check_after_restart`).

Invariants checked after every kill (a failure names the cycle and what broke):

* **acknowledged points**: every point of every acknowledged batch is stored, with exactly the
  value sent (a LONG and a DOUBLE key per point);
* **no duplicates**: raw history is strictly increasing in ts and its length equals the
  store's COUNT aggregate over both tiers (a point in hot *and* cold would count twice);
* **atomic batches**: a batch whose request failed is stored entirely or not at all;
* **clean store**: ``PRAGMA integrity_check`` is ``ok`` for telemetry, analytics and entity
  databases after the crash; every cold partition in the manifest exists; after the restart no
  orphan generation directory is left;
* **alarms**: at most one active alarm per (device, type); one anomaly has at most one alarm;
  an alarm whose anomaly is gone or ended is cleared; every acknowledged REST alarm change is
  there (a created alarm exists, a cleared one is cleared);
* **anomalies and tasks**: no task from before the kill is still QUEUED or IN_PROGRESS (it is
  FAILED as interrupted), no model is stuck building, (model, device, start) is unique among
  anomalies, every anomaly's model exists, and every refresh task that reported DONE is
  reflected in its model's ``last_refresh_end_ms``.
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import requests

from .mqtt import RawClient
from .server import Api, ServerProcess, cli

EMAIL, PASSWORD = "crash@tbpanel.test", "crash-pass-1"
HOUR = 3_600_000
BASE = 1_704_067_200_000  # 2024-01-01: every month the posters write is closed, so it is compacted
STEP = 600_000  # 10 min between points: a month fills in ~4,300 points per poster
PER_BATCH = 20
MQTT_POSTER = 0  # poster 0 publishes over MQTT (QoS 1), the others over HTTP
DISRUPTIONS = ("compaction", "refresh", "reprocess", "alarms", "build", "ingest")


def expected(poster: int, n: int) -> tuple[int, float]:
    """The (x, y) values of point ``n`` of a poster: exact LONG and an exactly representable DOUBLE."""
    return poster * 10**12 + n, (n % 1000) / 8


@dataclass
class Figures:
    cycles: int = 0
    points_checked: int = 0
    batches_acked: int = 0
    batches_acked_mqtt: int = 0  # of batches_acked, PUBACKed over MQTT
    batches_unsure: int = 0
    orphan_generations_at_kill: int = 0  # a compaction was between writing and committing
    interrupted_tasks: dict = field(default_factory=dict)  # kind -> tasks the kill interrupted
    alarm_changes_acked: int = 0
    disruptions: dict = field(default_factory=dict)


class Poster(threading.Thread):
    """One device posting numbered batches until stopped; records what was acknowledged."""

    def __init__(self, harness: CrashHarness, index: int):
        super().__init__(daemon=True)
        self.h, self.index = harness, index
        self.rng = random.Random(index * 7919 + harness.figures.cycles)
        self.stop_event = threading.Event()

    def batch(self, b: int) -> list[dict]:
        out = []
        for j in range(PER_BATCH):
            n = b * PER_BATCH + j
            x, y = expected(self.index, n)
            out.append({"ts": BASE + n * STEP, "values": {"x": x, "y": y}})
        return out

    def run(self) -> None:
        h = self.h
        send = self.over_mqtt() if self.index == MQTT_POSTER else self.over_http()
        while not self.stop_event.is_set():
            with h.lock:
                b = h.next_batch[self.index]
                h.next_batch[self.index] += 1
            self.post(send, b)
            if h.late_writes.is_set() and b > 50:  # rewrite an old batch: late data into a compacted month
                self.post(send, self.rng.randrange(0, b // 2))

    def over_http(self):
        session = requests.Session()
        url = f"{self.h.server.url}/api/v1/{self.h.tokens[self.index]}/telemetry"
        return lambda body: session.post(url, json=body, timeout=30).status_code == 200

    def over_mqtt(self):
        """QoS 1 publishes; a PUBACK with reason 0 is the acknowledgement."""
        client = None

        def send(body) -> bool:
            nonlocal client
            if client is None:
                client = RawClient(self.h.server.mqtt_port)
                assert client.connect(self.h.tokens[self.index]) == 0
            client.publish("v1/devices/me/telemetry", json.dumps(body).encode(), qos=1, packet_id=1)
            return client.puback() == (1, 0)

        return send

    def post(self, send, b: int) -> None:
        try:
            ok = send(self.batch(b))
        except (requests.RequestException, OSError):
            ok = False
            if self.index == MQTT_POSTER:
                self.stop_event.set()  # the session is gone with the server
        with self.h.lock:
            (self.h.acked if ok else self.h.unsure)[self.index].add(b)


class CrashHarness:
    """A data directory, a server started and killed over and over, and what was acknowledged."""

    def __init__(self, data: Path, seed: int = 0, posters: int = 3, meters: int = 3, log=lambda msg: None):
        self.data = data
        self.rng = random.Random(seed)
        self.n_posters, self.n_meters = posters, meters
        self.log = log
        self.lock = threading.Lock()
        self.acked = [set() for _ in range(posters)]
        self.unsure = [set() for _ in range(posters)]
        self.next_batch = [0] * posters
        self.late_writes = threading.Event()
        self.figures = Figures()
        self.server: ServerProcess | None = None
        self.alarm_created: set[str] = set()  # alarm ids an acknowledged POST /api/alarm returned
        self.alarm_cleared: set[str] = set()  # alarm ids an acknowledged .../clear cleared

    # -- setup ----------------------------------------------------------------------------------
    def start(self) -> None:
        self.started_ms = int(time.time() * 1000)  # tasks created before this predate the kill
        self.server = ServerProcess(self.data, extra=("--compaction-interval", "0.1", "--coap-port", "-1")).start()
        self.api = Api.login(self.server.url, EMAIL, PASSWORD)

    def setup(self) -> None:
        """Tenant, posters, meters with 48 h of history, a built model with alarm creation on."""
        cli("init", "--data", str(self.data), "--admin-email", EMAIL, "--admin-password", PASSWORD, "--tenant", "Crash")
        self.start()
        self.devices, self.tokens = [], []
        for i in range(self.n_posters):
            did, token = self.device(f"poster-{i}", "poster")
            self.devices.append(did)
            self.tokens.append(token)
        self.now0 = int(time.time() * 1000) // HOUR * HOUR
        self.meter_ids, self.meter_tokens = [], []
        for i in range(self.n_meters):
            did, token = self.device(f"meter-{i}", "meter")
            self.meter_ids.append(did)
            self.meter_tokens.append(token)
            self.post_meter(token, self.now0 - 54 * HOUR, self.now0 - 6 * HOUR)
        config = {
            "name": "meters",
            "device_type": "meter",
            "fields": ["power"],
            "window": "fixed",
            "segment_ms": HOUR,
            "train_start": self.now0 - 54 * HOUR,
            "train_end": self.now0 - 6 * HOUR,
        }
        self.model_id = self.api.post("/api/tbpanel/models", json={"config": config}).json()["id"]
        self.wait_task(self.api.post(f"/api/tbpanel/models/{self.model_id}/build").json()["id"])
        r = self.api.put(f"/api/tbpanel/models/{self.model_id}/refresh", json={"enabled": True, "create_alarms": True})
        assert r.status_code == 200, r.text
        self.spike_meters()

    def device(self, name: str, type_: str) -> tuple[str, str]:
        r = self.api.post("/api/device", json={"name": name, "type": type_})
        assert r.status_code == 200, r.text
        did = r.json()["id"]["id"]
        return did, self.api.get(f"/api/device/{did}/credentials").json()["credentialsId"]

    def post_meter(self, token: str, start: int, end: int, spike_from: int | None = None) -> None:
        ts = np.arange(start, end, STEP)
        values = 5 + np.sin(2 * np.pi * (ts % (24 * HOUR)) / (24 * HOUR))
        if spike_from is not None:
            values[ts >= spike_from] += 8
        body = [{"ts": int(t), "values": {"power": round(float(v), 4)}} for t, v in zip(ts, values)]
        r = requests.post(f"{self.server.url}/api/v1/{token}/telemetry", json=body, timeout=60)
        assert r.status_code == 200, r.text

    def spike_meters(self) -> None:
        """Rewrite the meters' last 6 h, some with a spike from a random hour: anomalies to find."""
        for token in self.meter_tokens:
            spike = self.now0 - self.rng.randrange(1, 6) * HOUR if self.rng.random() < 0.6 else None
            self.post_meter(token, self.now0 - 6 * HOUR, self.now0, spike)

    def wait_task(self, task_id: str, timeout: float = 120) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            task = self.api.get(f"/api/tbpanel/tasks/{task_id}").json()
            if task["status"] in ("DONE", "FAILED", "CANCELLED"):
                assert task["status"] == "DONE", task
                return task
            time.sleep(0.1)
        raise AssertionError(f"task {task_id} did not finish")

    # -- one cycle --------------------------------------------------------------------------------
    def cycle(self, kind: str | None = None) -> str:
        """Post, disrupt, SIGKILL, check the files, restart, check the data. Returns the kind."""
        kind = kind or DISRUPTIONS[self.figures.cycles % len(DISRUPTIONS)]
        c = self.figures.cycles
        if self.server is None or self.server.proc.poll() is not None:
            self.start()
        posters = [Poster(self, i) for i in range(self.n_posters)]
        if kind == "compaction":
            self.late_writes.set()
        for p in posters:
            p.start()
        time.sleep(self.rng.uniform(0.1, 0.3))
        stop_side = threading.Event()
        side, task_id = self.disrupt(kind, stop_side)
        if task_id:  # kill while the task runs (it may also finish first: both are fine)
            self.until_running(task_id)
            time.sleep(self.rng.uniform(0.0, 0.15))
        else:
            time.sleep(self.rng.uniform(0.0, 0.6))
        self.server.kill()
        stop_side.set()
        for p in posters:
            p.stop_event.set()
        for t in [*posters, *([side] if side else [])]:
            t.join(timeout=60)
        self.late_writes.clear()
        self.figures.disruptions[kind] = self.figures.disruptions.get(kind, 0) + 1
        self.check_files(c)
        self.start()
        self.check_after_restart(c)
        self.figures.cycles += 1
        self.log(f"cycle {c}: {kind}: ok")
        return kind

    def disrupt(self, kind: str, stop: threading.Event) -> tuple[threading.Thread | None, str | None]:
        """Start the cycle's disruption: a churn thread, or the id of a task it started."""
        api, m = self.api, f"/api/tbpanel/models/{self.model_id}"
        if kind == "alarms":
            t = threading.Thread(target=self.alarm_churn, args=(stop,), daemon=True)
            t.start()
            return t, None
        if kind in ("refresh", "reprocess"):
            self.spike_meters()
        request = {
            "refresh": lambda: api.post(f"{m}/refresh/run"),
            "reprocess": lambda: api.post(
                f"{m}/reprocess",
                json={"startTs": self.now0 - 54 * HOUR, "endTs": self.now0, "items": "all", "createAlarms": True},
            ),
            "build": lambda: api.post(f"{m}/build"),
        }.get(kind)
        if request is None:
            return None, None
        try:
            r = request()
        except requests.RequestException:
            return None, None
        assert r.status_code == 200, r.text
        return None, r.json()["id"]

    def until_running(self, task_id: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.api.get(f"/api/tbpanel/tasks/{task_id}").json()["status"]
            if status != "QUEUED":
                return
            time.sleep(0.02)

    @staticmethod
    def call(fn) -> None:
        try:
            fn()
        except requests.RequestException:
            pass  # the kill may come first

    def alarm_churn(self, stop: threading.Event) -> None:
        """Create, update, acknowledge and clear manual alarms until the server dies."""
        session = requests.Session()
        session.headers.update(self.api.session.headers)
        url = self.server.url
        rng = random.Random(self.figures.cycles)
        while not stop.is_set():
            device = rng.choice(self.meter_ids + self.devices)
            try:
                r = session.post(
                    f"{url}/api/alarm",
                    timeout=30,
                    json={
                        "type": rng.choice(["Manual", "Manual-2"]),
                        "originator": {"entityType": "DEVICE", "id": device},
                        "severity": rng.choice(["MINOR", "MAJOR", "CRITICAL"]),
                    },
                )
                if r.status_code != 200:
                    continue
                alarm_id = r.json()["id"]["id"]
                self.alarm_created.add(alarm_id)
                action = rng.choice(["ack", "clear", None])
                if action and session.post(f"{url}/api/alarm/{alarm_id}/{action}", timeout=30).status_code == 200:
                    if action == "clear":
                        self.alarm_cleared.add(alarm_id)
                self.figures.alarm_changes_acked += 1
            except requests.RequestException:
                return

    # -- checks -----------------------------------------------------------------------------------
    def check_files(self, c: int) -> None:
        """With the server dead: the databases are intact and the manifest's partitions exist."""
        for name in ("telemetry/telemetry.sqlite", "analytics.sqlite", "entities.sqlite"):
            path = self.data / name
            if path.exists():
                conn = sqlite3.connect(path)
                try:
                    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok", f"cycle {c}: {name} corrupt"
                finally:
                    conn.close()
        manifest, orphans = self.cold_state()
        for name, gen in manifest:
            assert (self.gen_path(name, gen) / "zarr.json").exists(), (
                f"cycle {c}: manifest names {name}/g{gen:06d}, which is missing"
            )
        self.figures.orphan_generations_at_kill += len(orphans)
        self._orphans = orphans
        for name, gen in orphans:  # a marker only the crashed run's directory carries
            (self.gen_path(name, gen) / "crash-marker").touch()

    def gen_path(self, name: str, gen: int) -> Path:
        return self.data / "telemetry" / "cold" / name / f"g{gen:06d}"

    def cold_state(self) -> tuple[set, set]:
        conn = sqlite3.connect(self.data / "telemetry" / "telemetry.sqlite")
        try:
            manifest = set(conn.execute("SELECT name, generation FROM cold_partitions"))
        finally:
            conn.close()
        cold = self.data / "telemetry" / "cold"
        on_disk = (
            {(m.name, int(g.name[1:])) for m in cold.glob("????-??") for g in m.glob("g*")} if cold.exists() else set()
        )
        return manifest, on_disk - manifest

    def check_after_restart(self, c: int) -> None:
        # the compactor may already be writing a new generation, even under a reused number:
        # an orphan of the crash survived only if its directory still holds the marker
        survived = [o for o in self._orphans if (self.gen_path(*o) / "crash-marker").exists()]
        assert not survived, f"cycle {c}: orphan generations survived the restart: {survived}"
        for i, did in enumerate(self.devices):
            self.check_points(c, i, did)
        self.check_analytics(c)

    def check_points(self, c: int, i: int, did: str) -> None:
        base = f"/api/plugins/telemetry/DEVICE/{did}/values/timeseries"
        end = BASE + (self.next_batch[i] + 1) * PER_BATCH * STEP
        q = dict(keys="x,y", startTs=BASE, endTs=end, useStrictDataTypes="true")
        r = self.api.get(base, params=dict(q, limit=10_000_000, orderBy="ASC"))
        assert r.status_code == 200, f"cycle {c}: {r.text}"
        data = r.json()
        counts = self.api.get(base, params=dict(q, agg="COUNT", interval=end - BASE, limit=1)).json()
        stored: dict[int, int] = {}
        for key in ("x", "y"):
            points = data.get(key, [])
            ts = [p["ts"] for p in points]
            assert all(a < b for a, b in zip(ts, ts[1:])), f"cycle {c}: poster {i} key {key}: duplicate or unordered ts"
            total = sum(int(p["value"]) for p in counts.get(key, []))
            assert total == len(points), f"cycle {c}: poster {i} key {key}: COUNT {total} != {len(points)} raw points"
            for p in points:
                n, rem = divmod(p["ts"] - BASE, STEP)
                assert rem == 0, f"cycle {c}: unexpected ts {p['ts']}"
                want = expected(i, n)[0 if key == "x" else 1]
                assert p["value"] == want, f"cycle {c}: poster {i} {key}@{p['ts']} is {p['value']!r}, sent {want!r}"
                stored[n // PER_BATCH] = stored.get(n // PER_BATCH, 0) + 1
        with self.lock:
            acked, unsure = set(self.acked[i]), set(self.unsure[i])
        for b in acked:
            assert stored.get(b) == 2 * PER_BATCH, (
                f"cycle {c}: poster {i}: acknowledged batch {b} has {stored.get(b, 0)} of {2 * PER_BATCH} values"
            )
        for b in unsure - acked:
            assert stored.get(b, 0) in (0, 2 * PER_BATCH), f"cycle {c}: poster {i}: failed batch {b} is partly stored"
        self.figures.points_checked += sum(stored.values())
        self.figures.batches_acked = sum(len(a) for a in self.acked)
        self.figures.batches_acked_mqtt = len(self.acked[MQTT_POSTER])
        self.figures.batches_unsure = sum(len(u - a) for u, a in zip(self.unsure, self.acked))

    def check_analytics(self, c: int) -> None:
        """Alarm, anomaly, model and task invariants, read straight from analytics.sqlite."""
        conn = sqlite3.connect(f"file:{self.data / 'analytics.sqlite'}?mode=ro", uri=True)
        try:
            q = lambda sql, *a: conn.execute(sql, a).fetchall()  # noqa: E731
            started = self.started_ms
            stuck = q(
                "SELECT id, kind, status FROM tasks WHERE status IN ('QUEUED', 'IN_PROGRESS') AND created_ms < ?",
                started,
            )
            assert not stuck, f"cycle {c}: tasks stuck after restart: {stuck}"
            for (kind,) in q("SELECT kind FROM tasks WHERE message LIKE 'interrupted%' AND finished_ms >= ?", started):
                self.figures.interrupted_tasks[kind] = self.figures.interrupted_tasks.get(kind, 0) + 1
            models = dict(q("SELECT id, status FROM models"))
            assert not [s for s in models.values() if s in ("QUEUED", "IN_PROGRESS")], (
                f"cycle {c}: model stuck building: {models}"
            )
            dup = q("SELECT model_id, item, start_ts, COUNT(*) FROM anomalies GROUP BY 1, 2, 3 HAVING COUNT(*) > 1")
            assert not dup, f"cycle {c}: duplicate anomalies {dup}"
            assert not q("SELECT id FROM anomalies WHERE model_id NOT IN (SELECT id FROM models)"), (
                f"cycle {c}: orphan anomalies"
            )
            ends = dict(q("SELECT id, last_refresh_end_ms FROM models"))
            for model_id, result in q("SELECT model_id, result FROM tasks WHERE kind = 'REFRESH' AND status = 'DONE'"):
                to = json.loads(result or "{}").get("to")
                assert to is None or (ends.get(model_id) or 0) >= to, f"cycle {c}: a DONE refresh is not in its model"
            active = q(
                "SELECT originator_id, type, COUNT(*) FROM alarms WHERE cleared = 0 GROUP BY 1, 2 HAVING COUNT(*) > 1"
            )
            assert not active, f"cycle {c}: two active alarms of one type on a device: {active}"
            linked = q(
                "SELECT anomaly_id, COUNT(*) FROM alarms WHERE anomaly_id IS NOT NULL GROUP BY 1 HAVING COUNT(*) > 1"
            )
            assert not linked, f"cycle {c}: one anomaly, several alarms: {linked}"
            bad = q(
                "SELECT a.id FROM alarms a LEFT JOIN anomalies n ON n.id = a.anomaly_id "
                "WHERE a.anomaly_id IS NOT NULL AND a.cleared = 0 AND (n.id IS NULL OR n.active = 0)"
            )
            assert not bad, f"cycle {c}: active alarms whose anomaly is gone or ended: {bad}"
            alarms = dict(q("SELECT id, cleared FROM alarms"))
            missing = self.alarm_created - set(alarms)
            assert not missing, f"cycle {c}: acknowledged alarms lost: {missing}"
            reopened = [a for a in self.alarm_cleared if not alarms.get(a)]
            assert not reopened, f"cycle {c}: acknowledged clears lost: {reopened}"
        finally:
            conn.close()

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
