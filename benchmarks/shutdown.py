"""How long ``tbpanel serve`` takes to stop on SIGTERM in the middle of compacting a big month
(issue 15, item 6: 26.5 s after a backfill before the fix).

Backfills ``--points`` points of January 2023 (closed, so compacted at once) straight into the
store, starts the server with ``--compaction-interval 0.2``, sends SIGTERM as soon as it logs
"compacting 2023-01", and prints the time until the process has exited. ``--root`` runs another
checkout's code (e.g. the main branch, for a before/after).

Usage:  .venv/bin/python benchmarks/shutdown.py [--points 5000000] [--root DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from ingest_query import machine  # noqa: E402

from tbpanel.store import open_store  # noqa: E402

MONTH0 = 1_672_531_200_000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=5_000_000)
    ap.add_argument("--root", default=str(ROOT), help="checkout whose tbpanel serves (default: this one)")
    args = ap.parse_args()
    print(f"machine: {machine()}")
    print(f"command: {' '.join([sys.executable, *sys.argv])}")
    with tempfile.TemporaryDirectory(prefix="tbpanel-shutdown-") as tmp:
        data = Path(tmp) / "data"
        entities = 100
        per = args.points // entities
        t0 = time.perf_counter()
        with open_store(data / "telemetry", compaction_interval_s=0) as store:
            ts = MONTH0 + np.arange(per, dtype=np.int64) * (31 * 86_400_000 // per)
            for e in range(entities):
                store.write_points([(f"ent-{e}", "v", int(t), 2, float(i)) for i, t in enumerate(ts)])
        print(f"backfill: {entities * per} points in {time.perf_counter() - t0:.1f} s")
        cmd = [sys.executable, "-m", "tbpanel.cli", "serve", "--data", str(data), "--port", "0"]
        cmd += ["--mqtt-port", "-1", "--coap-port", "-1", "--compaction-interval", "0.2"]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        proc = subprocess.Popen(
            cmd, cwd=args.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        seen = threading.Event()
        lines: list[str] = []

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                if "compacting 2023-01" in line:
                    seen.set()

        threading.Thread(target=pump, daemon=True).start()
        t0 = time.perf_counter()
        served = None  # the main branch does not log "compacting": SIGTERM 1.5 s after it serves
        while not seen.wait(0.05) and (served is None or time.perf_counter() - served < 1.5):
            if served is None and any("serving at" in x for x in lines):
                served = time.perf_counter()
            if proc.poll() is not None:
                raise SystemExit("".join(lines))
        t_sig = time.perf_counter()
        proc.terminate()
        proc.wait(timeout=600)
        print(f"SIGTERM {t_sig - t0:.1f} s after start, during the compaction of {entities * per} hot points")
        print(f"exit {time.perf_counter() - t_sig:.2f} s after SIGTERM (code {proc.returncode})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
