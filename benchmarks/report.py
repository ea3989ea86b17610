"""Where every benchmark puts its figures: ``<out>/<name>-<timestamp>.md``."""

from __future__ import annotations

import time
from pathlib import Path


def write_report(out: str | Path, name: str, lines: list[str]) -> Path:
    """Write the printed lines as a Markdown file and say where it went."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.md"
    path.write_text("\n".join(lines) + "\n")
    print(f"\nwritten to {path}")
    return path
