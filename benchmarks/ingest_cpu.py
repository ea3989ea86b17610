"""Server CPU per point of tbpanel's HTTP ingest, and its RSS after it (issue 15 items 2 and 5).

The tbpanel half of ``benchmarks/vs_peers.py``'s ingest, without the peers and the queries:
``tbpanel serve`` on a throw-away directory, the same request bodies (``D devices x 5 keys x 20
one-minute timestamps`` = 100 points per request, then ``100 devices x 1 key``, 10,000 points per
request), fed from a separate client process over ``--connections`` keep-alive connections.
Server CPU (user + system of the server process, from /proc) per point for each batch size, RSS
peak (VmHWM) and idle (after the compactor settled), and the data directory's size.

``--profile DIR`` samples the server with py-spy during each phase (``--py-spy`` names the
binary; default: next to the interpreter) and writes collapsed stacks of the GIL-holding
threads (summarise them with ``benchmarks/profile_summary.py``).

Usage::

    .venv/bin/python benchmarks/ingest_cpu.py [--devices 1000] [--fleet-days 30] [--connections 4]
        [--serve-arg=--latest-cache-mib=...] [--profile /tmp/prof]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from ingest_query import machine  # noqa: E402
from report import write_report  # noqa: E402
from vs_peers import MIN, T0, Tbpanel, dir_bytes, feed, rss, small_batches, values  # noqa: E402


def spy(py_spy: str | None, pid: int, out: Path | None) -> subprocess.Popen | None:
    """py-spy recording the server's GIL-holding stacks into ``out`` (None: no profile)."""
    if py_spy is None or out is None:
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [py_spy, "record", "--pid", str(pid), "--gil", "--format", "raw", "--rate", "200", "-o", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # let it attach
    return proc


def unspy(proc: subprocess.Popen | None) -> None:
    if proc is not None:
        proc.send_signal(signal.SIGINT)  # py-spy writes its output when interrupted
        proc.wait(60)


def disk_breakdown(root: Path, top: int = 16) -> list[str]:
    """Markdown rows: the data directory's allocated bytes per file (SQLite files, WAL) and per
    cold-tier month, largest first: where the bytes per point go."""
    sizes: dict[str, int] = {}
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        rel = path.relative_to(root).parts
        depth = 5 if rel[:2] == ("telemetry", "cold") else 2  # cold: per month, generation and column
        name = "/".join(rel[:depth]) + "/…" if len(rel) > depth else "/".join(rel)
        try:
            sizes[name] = sizes.get(name, 0) + path.stat().st_blocks * 512
        except FileNotFoundError:
            pass
    rows = sorted(sizes.items(), key=lambda kv: -kv[1])[:top]
    return [f"| `{name}` | {size / 2**20:,.2f} MiB |" for name, size in rows]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--fleet-days", type=int, default=30)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--serve-arg", action="append", default=[], help="one more `tbpanel serve` option")
    parser.add_argument("--profile", type=Path, default=None, help="directory for py-spy's collapsed stacks")
    parser.add_argument("--py-spy", default=str(Path(sys.executable).with_name("py-spy")))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    py_spy = args.py_spy if args.profile is not None else None
    fleet, days = 100, args.fleet_days
    with tempfile.TemporaryDirectory(prefix="tbpanel-ingest-cpu-") as tmp:
        system = Tbpanel(Path(tmp))
        system.serve_args = tuple(args.serve_arg)
        try:
            system.start(args.devices, fleet)
            rss_start = rss(system.pid)[0]
            small = [
                (system.target(f"dev-{d}"), system.body("bench", f"dev-{d}", first, s))
                for d, first, s in small_batches(args.devices)
            ]
            prof = spy(py_spy, system.pid, args.profile and args.profile / "batch100.txt")
            b100 = feed(system, small, len(small) * 100, args.connections)
            unspy(prof)
            big = []
            per = 10_000
            for i in range(fleet):
                v = values(10_000 + i, days * 1440)
                for j in range(0, len(v), per):
                    big.append(
                        (system.target(f"fleet-{i}"), system.body("fleet", "", T0 + j * MIN, {"f": v[j : j + per]}))
                    )
            prof = spy(py_spy, system.pid, args.profile and args.profile / "batch10k.txt")
            b10k = feed(system, big, fleet * days * 1440, args.connections)
            unspy(prof)
            points = len(small) * 100 + fleet * days * 1440
            peak = rss(system.pid)[1]
            system.settle()
            idle = rss(system.pid)[0]
            disk = dir_bytes(system.dir)
            where = disk_breakdown(system.dir)
        finally:
            system.stop()
    lines = [
        "# tbpanel HTTP ingest: server CPU per point, RSS",
        "",
        f"machine: {machine()}",
        f"command: {' '.join([Path(sys.executable).name, *sys.argv])}",
        f"load average at the end: {os.getloadavg()[0]:.1f}",
        "",
        "| workload | figure |",
        "| --- | --- |",
        f"| server CPU per point, ~100 points/request ({len(small):,} requests) | {b100['cpu_us_per_point']:.2f} µs |",
        f"| points/s, ~100 points/request | {b100['points_per_s']:,.0f} |",
        f"| server CPU per point, ~10,000 points/request ({len(big):,} requests) | {b10k['cpu_us_per_point']:.2f} µs |",
        f"| points/s, ~10,000 points/request | {b10k['points_per_s']:,.0f} |",
        f"| RSS after start / peak / idle after settling | {rss_start:,.0f} / {peak:,.0f} / {idle:,.0f} MiB |",
        f"| disk per point after settling ({points:,} points) | {disk / points:.2f} B |",
    ]
    lines += ["", "| data directory after settling | allocated |", "| --- | --- |", *where]
    print("\n".join(lines))
    write_report(args.out, "ingest_cpu", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
