"""Two-way RPC round trip over MQTT: REST request → server → paho device → answer → REST reply.

Against a real ``tbpanel serve`` on a throwaway data directory, with N paho-mqtt 2.x devices
connected (default 100), each subscribed to ``v1/devices/me/rpc/request/+`` and answering at
once. ``POST /api/rpc/twoway/{deviceId}`` is timed end to end from the REST client:

  1. sequential: one call at a time over one keep-alive connection, round-robin over the devices;
  2. concurrent: C client threads (default 10), each with its own connection, at once.

Usage: .venv/bin/python benchmarks/rpc_roundtrip.py [--devices 100] [--calls 2000] [--concurrency 10]
``main()`` takes the same arguments as a list (``benchmarks/entity_query.py`` can call it).
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from ingest_query import init_data, login_and_devices, machine  # noqa: E402
from report import write_report  # noqa: E402


def start_server(data: Path) -> tuple[subprocess.Popen, str, int]:
    """``tbpanel serve`` with MQTT on a free port: (process, base URL, MQTT port)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tbpanel.cli", "serve", "--data", str(data), "--port", "0"]
        + ["--mqtt-port", "0", "--coap-port", "-1", "--log-level", "WARNING"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    mqtt_port = 0
    assert proc.stdout is not None
    for line in proc.stdout:
        m = re.search(r"mqtt listening on \S+:(\d+)", line)
        if m:
            mqtt_port = int(m.group(1))
        if "tbpanel serving at" in line:
            url = line.split("tbpanel serving at", 1)[1].strip().rstrip("/")
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()  # drain
            return proc, url, mqtt_port
    raise RuntimeError("server did not start")


def connect_devices(port: int, tokens: list[str]) -> list:
    """One paho client per device, subscribed and answering every request with its params."""
    import paho.mqtt.client as mqtt

    clients = []
    for i, token in enumerate(tokens):
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"rpc-bench-{i}", protocol=mqtt.MQTTv311)
        client.username_pw_set(token)
        subscribed = threading.Event()

        def on_message(c, userdata, msg):
            rid = msg.topic.rsplit("/", 1)[1]
            c.publish(f"v1/devices/me/rpc/response/{rid}", msg.payload, qos=0)

        client.on_message = on_message
        client.on_subscribe = lambda *a, ev=subscribed: ev.set()
        client.on_connect = lambda c, *a: c.subscribe("v1/devices/me/rpc/request/+", qos=0)
        client.connect("127.0.0.1", port)
        client.loop_start()
        if not subscribed.wait(30):
            raise RuntimeError(f"device {i} did not subscribe")
        clients.append(client)
    return clients


def call(conn: http.client.HTTPConnection, auth: dict, device_id: str, n: int) -> float:
    body = json.dumps({"method": "echo", "params": {"n": n}, "timeout": 10_000})
    t = time.perf_counter()
    conn.request("POST", f"/api/rpc/twoway/{device_id}", body=body, headers=auth)
    resp = conn.getresponse()
    data = resp.read()
    elapsed = time.perf_counter() - t
    if resp.status != 200 or json.loads(data) != {"method": "echo", "params": {"n": n}}:
        raise RuntimeError(f"RPC failed: {resp.status} {data[:200]!r}")
    return elapsed


def percentiles(xs: list[float]) -> str:
    q = statistics.quantiles(xs, n=100)
    return f"{q[49] * 1000:.2f} ms | {q[94] * 1000:.2f} ms | {max(xs) * 1000:.2f} ms"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=10)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args(argv)
    shown = " ".join(sys.argv[1:] if argv is None else argv)
    lines = [
        f"# tbpanel two-way RPC round trip over MQTT · {time.strftime('%Y-%m-%d %H:%M:%S')}",
        f"machine: {machine()}",
        f"command: python benchmarks/rpc_roundtrip.py {shown}".rstrip(),
        f"{args.devices} paho-mqtt devices connected (MQTT 3.1.1, QoS 0), {args.calls} calls per run, "
        "REST client and devices on the same machine as the server",
        "",
        "| run | calls | p50 | p95 | max | calls/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    print("\n".join(lines), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "server"
        init_data(data)
        proc, url, mqtt_port = start_server(data)
        clients: list = []
        try:
            jwt, devices = login_and_devices(url, args.devices)
            clients = connect_devices(mqtt_port, [token for _, token in devices])
            auth = {"X-Authorization": f"Bearer {jwt}", "Content-Type": "application/json"}
            host = url.split("//")[1]
            conn = http.client.HTTPConnection(host, timeout=60)
            for i in range(min(100, args.calls)):  # warm-up
                call(conn, auth, devices[i % len(devices)][0], i)
            t0 = time.perf_counter()
            seq = [call(conn, auth, devices[i % len(devices)][0], i) for i in range(args.calls)]
            rate = args.calls / (time.perf_counter() - t0)
            row = f"| sequential (1 client) | {args.calls} | {percentiles(seq)} | {rate:,.0f} |"
            lines.append(row)
            print(row, flush=True)

            times: list[float] = []
            lock = threading.Lock()
            per = args.calls // args.concurrency

            def worker(w: int) -> None:
                c = http.client.HTTPConnection(host, timeout=60)
                mine = [call(c, auth, devices[(w * per + i) % len(devices)][0], i) for i in range(per)]
                with lock:
                    times.extend(mine)

            threads = [threading.Thread(target=worker, args=(w,)) for w in range(args.concurrency)]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            rate = len(times) / (time.perf_counter() - t0)
            row = f"| concurrent ({args.concurrency} clients) | {len(times)} | {percentiles(times)} | {rate:,.0f} |"
            lines.append(row)
            print(row, flush=True)
        finally:
            for c in clients:
                c.disconnect()
                c.loop_stop()
            proc.terminate()
            proc.wait(timeout=30)
    write_report(args.out, "rpc_roundtrip", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
