"""MQTT ingest speed: QoS 1 messages/s from concurrent device sessions, every PUBACK durable.

Each client process is one device session (MQTT 5, raw sockets built on tbpanel's codec so
the client costs little CPU) that keeps ``--window`` QoS 1 publishes of one small message in
flight and counts PUBACKs; a PUBACK is sent only after the message is committed. The server's
CPU time over the run is read from /proc. Goal (../shared/design.md, one small message per
request): ≥ 5,000 messages/s.

Usage:  .venv/bin/python benchmarks/mqtt_ingest.py [--seconds 10] [--clients 4] [--window 50]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from ingest_query import cpu_seconds, login_and_devices, machine  # noqa: E402
from ingest_query import start_server as start_tbpanel  # noqa: E402
from report import write_report  # noqa: E402

from tbpanel.transports import mqtt_codec as c  # noqa: E402


def start_server(data: Path) -> tuple[subprocess.Popen, str, int]:
    """The benchmark server with MQTT on a free port: (process, base URL, MQTT port)."""
    seen: list[str] = []
    proc, url = start_tbpanel(data, extra=["--mqtt-port", "0", "--coap-port", "-1"], seen=seen)
    ports = [int(m.group(1)) for line in seen if (m := re.search(r"mqtt listening on \S+:(\d+)", line))]
    return proc, url, ports[0] if ports else 0


def _client(args) -> tuple[int, int]:
    """(acknowledged, refused) QoS 1 messages of one session over ``seconds``."""
    port, token, seconds, window = args
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(c.encode_connect(c.Connect(c.MQTT_5, "bench", 60, True, token)))
    buf = b""

    def packets():
        nonlocal buf
        while True:
            head = c.split_fixed_header(buf)
            if head and len(buf) >= head[2] + head[1]:
                first, length, size = head
                body, buf = buf[size : size + length], buf[size + length :]
                yield first, body
                continue
            chunk = sock.recv(1 << 16)
            if not chunk:
                return
            buf += chunk

    reader = packets()
    first, body = next(reader)
    assert first >> 4 == c.CONNACK and body[1] == 0, body
    acked = refused = sent = 0
    deadline = time.perf_counter() + seconds
    in_flight = 0
    while True:
        if time.perf_counter() < deadline:
            batch = b"".join(
                c.publish(
                    c.MQTT_5,
                    "v1/devices/me/telemetry",
                    b'{"temperature": %d.5}' % ((sent + i) % 100),
                    1,
                    (sent + i) % 65535 + 1,
                )
                for i in range(window - in_flight)
            )
            sent += window - in_flight
            in_flight = window
            sock.sendall(batch)
        elif not in_flight:
            break
        first, body = next(reader)
        if first >> 4 == c.PUBACK:
            in_flight -= 1
            if len(body) > 2 and body[2]:
                refused += 1  # e.g. 0x97: over the per-device message rate
            else:
                acked += 1
    sock.close()
    return acked, refused


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--window", type=int, default=50, help="QoS 1 publishes in flight per session")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    lines = [
        f"# tbpanel MQTT ingest benchmark · {time.strftime('%Y-%m-%d %H:%M:%S')}",
        f"machine: {machine()}",
        f"command: {' '.join([Path(sys.executable).name] + sys.argv)}",
        "",
    ]
    print("\n".join(lines), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        proc, url, port = start_server(Path(tmp) / "server")
        try:
            _, devices = login_and_devices(url, args.clients)
            cpu0, t0 = cpu_seconds(proc.pid), time.perf_counter()
            with mp.Pool(args.clients) as pool:
                results = pool.map(_client, [(port, token, args.seconds, args.window) for _, token in devices])
            elapsed, cpu = time.perf_counter() - t0, cpu_seconds(proc.pid) - cpu0
        finally:
            proc.terminate()
            proc.wait()
    acked, refused = sum(r[0] for r in results), sum(r[1] for r in results)
    lines.append(
        f"MQTT 5 QoS 1, one small message per PUBLISH, {args.clients} sessions × "
        f"{args.window} in flight: {acked / elapsed:,.0f} messages/s durable "
        f"({acked:,} in {elapsed:.1f} s, {refused:,} refused; server CPU {cpu / elapsed:.2f} cores)"
    )
    print(lines[-1], flush=True)
    write_report(args.out, "mqtt_ingest", lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
