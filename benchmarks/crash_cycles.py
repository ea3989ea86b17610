"""Crash safety at length: SIGKILL a real server hundreds of times under load and check it.

Runs tests/helpers/crash.py's harness (concurrent device posters over HTTP and MQTT, compaction every 0.1 s,
model refresh / reprocess / build and REST alarm changes as disruptions, a random SIGKILL in
each cycle, then a restart and every invariant checked) for ``--cycles`` cycles and reports
what was checked. The CI test (tests/test_crash_cycles.py) runs 20 cycles of the same thing.

Usage:  .venv/bin/python benchmarks/crash_cycles.py [--cycles 200] [--seed 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from ingest_query import machine  # noqa: E402
from report import write_report  # noqa: E402

from tests.helpers.crash import CrashHarness  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cycles", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    lines = [
        f"# tbpanel crash cycles · {time.strftime('%Y-%m-%d %H:%M:%S')}",
        f"machine: {machine()}",
        f"command: {' '.join([Path(sys.executable).name] + sys.argv)}",
        "",
    ]
    print("\n".join(lines), flush=True)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        h = CrashHarness(Path(tmp) / "data", seed=args.seed, log=lambda msg: print(msg, flush=True))
        try:
            h.setup()
            for _ in range(args.cycles):
                h.cycle()
        finally:
            h.close()
    f = h.figures
    elapsed = time.monotonic() - t0
    lines += [
        "",
        "| figure | value |",
        "|---|---|",
        f"| kill cycles (SIGKILL + restart + full check) | {f.cycles} |",
        f"| disruptions | {', '.join(f'{k} {v}' for k, v in sorted(f.disruptions.items()))} |",
        f"| point values checked (cumulative, every restart) | {f.points_checked:,} |",
        f"| batches acknowledged (of which MQTT QoS 1) / unacknowledged | {f.batches_acked:,} "
        f"({f.batches_acked_mqtt:,}) / {f.batches_unsure:,} |",
        f"| kills that left an uncommitted compaction generation | {f.orphan_generations_at_kill} |",
        f"| tasks interrupted by a kill | {', '.join(f'{k} {v}' for k, v in sorted(f.interrupted_tasks.items())) or '0'} |",
        f"| REST alarm changes acknowledged | {f.alarm_changes_acked} |",
        "| invariant violations | 0 (the run stops at the first) |",
        f"| time | {elapsed:.0f} s ({elapsed / max(f.cycles, 1):.1f} s per cycle) |",
    ]
    print("\n".join(lines[-11:]))
    write_report(args.out, "crash_cycles", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
