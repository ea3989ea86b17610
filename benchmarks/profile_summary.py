"""Summarise a py-spy profile in collapsed-stack form (``py-spy record --format raw --threads``).

Prints, as Markdown: the share of samples per thread, the top functions by inclusive share
(a function counts once per sample however deep it recurses) and the top source files by
self share (where the sampled instruction was). Shares are of all non-idle samples.

Usage:  .venv/bin/python benchmarks/profile_summary.py PROFILE.txt [--top 25] [--thread NAME]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<fn>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _split(frame: str) -> tuple[str, str]:
    m = _FRAME.match(frame)
    if not m:
        return frame, ""
    file = m["file"]
    for marker in ("site-packages/", "lib/python3.11/", "/tbpanel/"):  # short, stable paths
        if marker in file:
            file = ("tbpanel/" if marker == "/tbpanel/" else "") + file.split(marker, 1)[1]
            break
    return m["fn"], file


#: What each sample was doing, for HTTP ingest profiles: first rule that matches wins.
CATEGORIES = (
    ("store writer thread (SQLite upserts, commit, bookkeeping)", lambda name, fr, deep: "store-writer" in name),
    (
        "tornado HTTP/1.1 (read, parse headers, route, handler plumbing, write response)",
        lambda name, fr, deep: any("tornado/" in f for f in deep),
    ),
    (
        "write acknowledgement (futures, cross-thread wake-ups)",
        lambda name, fr, deep: any(
            m in f for f in fr for m in ("wrap_future", "concurrent/futures", "acks.py", "submit_points")
        ),
    ),
    ("store point validation (validate_points)", lambda name, fr, deep: any("validate_points" in f for f in fr)),
    ("payload parsing (orjson, typing, key checks)", lambda name, fr, deep: any("payload.py" in f for f in fr)),
    ("device handler, other", lambda name, fr, deep: any("tbpanel/" in f for f in fr)),
    (
        "tornado HTTP/1.1 (read, parse headers, route, handler plumbing, write response)",
        lambda name, fr, deep: any("tornado/" in f for f in fr),
    ),
    ("asyncio loop, other", lambda name, fr, deep: True),
)


def stacks(path: Path):
    """``(thread label, frames root first, sample count)`` per line of a collapsed-stack file."""
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        name = frames[0] if frames[0].startswith(("thread", "process")) else "?"
        if name != "?":
            frames = frames[1:]
            if frames and frames[0].startswith("process"):
                frames = frames[1:]
        yield name, frames, int(count)


def categorize(path: Path) -> list[str]:
    """Shares of the CATEGORIES (``deep`` = the frames below the innermost tbpanel frame)."""
    counts: Counter = Counter()
    total = 0
    for name, frames, n in stacks(path):
        inner = max(
            (i for i, f in enumerate(frames) if "tbpanel/" in f and "cli.py" not in f and "server.py" not in f),
            default=None,
        )
        deep = frames[inner + 1 :] if inner is not None else frames
        for label, rule in CATEGORIES:
            if rule(name, frames if inner is not None else [], deep):
                counts[label] += n
                total += n
                break
    return ["| what the server was doing | share of samples |", "| --- | --- |"] + [
        f"| {k} | {100 * n / total:.0f}% |" for k, n in counts.most_common()
    ]


def summarize(path: Path, top: int = 25, thread: str | None = None) -> list[str]:
    threads: Counter = Counter()
    inclusive: Counter = Counter()
    self_file: Counter = Counter()
    total = 0
    for name, frames, n in stacks(path):
        if thread and thread not in name:
            continue
        total += n
        threads[name] += n
        seen = set()
        for fr in frames:
            fn, file = _split(fr)
            key = f"{fn} ({file})"
            if key not in seen:
                seen.add(key)
                inclusive[key] += n
        if frames:
            self_file[_split(frames[-1])[1] or frames[-1]] += n
    pct = (lambda n: f"{100 * n / total:.1f}%") if total else (lambda n: "-")
    out = [f"samples: {total:,} ({path.name})", "", "| thread | share |", "| --- | --- |"]
    out += [f"| {t} | {pct(n)} |" for t, n in threads.most_common(8)]
    out += ["", "| function (inclusive) | share |", "| --- | --- |"]
    out += [f"| `{k}` | {pct(n)} |" for k, n in inclusive.most_common(top)]
    out += ["", "| file (self) | share |", "| --- | --- |"]
    out += [f"| `{k}` | {pct(n)} |" for k, n in self_file.most_common(top // 2)]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("profile", type=Path)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--thread", default=None, help="only threads whose label contains this")
    args = ap.parse_args()
    print("\n".join(categorize(args.profile) + [""] + summarize(args.profile, args.top, args.thread)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
