"""Data readiness: is there enough of the chosen telemetry to learn "normal" from?

The wizard shows this between choosing the data and choosing sensitivity: how many devices and
keys have data, about how many points, the sampling step, the covered range, and a verdict
(Poor / Fair / Good / Excellent) with the reasons, so nobody builds a model on three hours of
one flaky sensor without being told. Computed from the telemetry store, no Panel import.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import param

from ...anomaly.config import ModelConfig
from ...clock import DAY_MS, duration_text

VERDICTS = ("Poor", "Fair", "Good", "Excellent")
#: points per segment when nobody says how long segments are: ModelConfig's own auto rule
SEGMENT_POINTS = int(ModelConfig.param.segment_points.default)


class DataReadiness(param.Parameterized):
    """What the store holds for ``items`` x ``keys`` in ``[start, end)``, and a verdict."""

    entities = param.Integer(default=0, doc="Devices with at least one numeric point.")
    entities_asked = param.Integer(default=0)
    keys = param.List(default=[], item_type=str, doc="Keys with numeric data on some device.")
    keys_missing = param.List(default=[], item_type=str, doc="Chosen keys no device has in range.")
    points = param.Integer(default=0, doc="Numeric points in range (all devices and keys).")
    step_ms = param.Integer(default=0, doc="Median sampling step over every series (0: unknown).")
    first_ts = param.Integer(default=None, allow_None=True)
    last_ts = param.Integer(default=None, allow_None=True)
    coverage = param.Number(default=0.0, doc="Points held / points expected at the median step.")
    segment_ms = param.Integer(default=0, doc="The segment length counted (0: no step, nothing counted).")
    segments = param.Integer(default=0, doc="Segments of ``segment_ms`` the range offers over all devices.")
    verdict: param.Selector[str] = param.Selector(default="Poor", objects=list(VERDICTS))
    reasons = param.List(default=[], item_type=str, doc="Why the verdict is what it is.")

    @property
    def span_ms(self) -> int:
        """Covered duration: first to last point plus one step (the last point's interval)."""
        if self.first_ts is None or self.last_ts is None:
            return 0
        return int(self.last_ts - self.first_ts + self.step_ms)


def assess(
    store,
    items: list[str],
    keys: list[str],
    start: int,
    end: int,
    segment_for: Callable[[int], int] | None = None,
) -> DataReadiness:
    """Read every numeric series of ``items`` x ``keys`` in ``[start, end)`` and judge it.

    ``segment_for(step_ms)`` is the segment length the model will cut at the data's step (the
    wizard passes its recommendation, so the count matches what it offers next); default
    ``SEGMENT_POINTS`` steps, ModelConfig's auto rule.

    Rules (tbpanel's own): the score is the lowest of four checks —
    training segments (< 50 Poor, < 200 Fair, < 1000 Good), coverage of the range at the data's
    own step (< 30 % Poor, < 60 % Fair, < 90 % Good), covered span (< 1 day Poor, < 3 days Fair:
    daily cycles need repeating, < 7 days Good: weekly ones too) and devices (1 device: at most
    Good, since nothing can be compared across items).
    """
    r = DataReadiness(entities_asked=len(items))
    seen_keys: set[str] = set()
    steps, first, last, points, segments = [], None, None, 0, 0.0
    per_series = []
    for item in items:
        arrays = store.numeric_arrays(item, list(keys) or None, int(start), int(end))
        if arrays:
            r.entities += 1
        for key, (ts, _) in arrays.items():
            seen_keys.add(key)
            points += len(ts)
            first = int(ts[0]) if first is None else min(first, int(ts[0]))
            last = int(ts[-1]) if last is None else max(last, int(ts[-1]))
            if len(ts) > 1:
                d = np.diff(ts)
                steps.append(float(np.median(d)))
            per_series.append((item, int(ts[0]), int(ts[-1])))
    r.keys = sorted(seen_keys)
    r.keys_missing = [k for k in keys if k not in seen_keys]
    r.points, r.first_ts, r.last_ts = points, first, last
    r.step_ms = int(round(float(np.median(steps)))) if steps else 0
    if r.step_ms:
        spans: dict[str, tuple[int, int]] = {}
        for item, a, b in per_series:
            lo, hi = spans.get(item, (a, b))
            spans[item] = (min(lo, a), max(hi, b))
        # coverage of the whole chosen range at the data's step, not only where data exists
        expected = r.entities * max(len(r.keys), 1) * max(int(end) - int(start), r.step_ms) / r.step_ms
        r.coverage = float(min(points / max(expected, 1.0), 1.0))
        r.segment_ms = int(segment_for(r.step_ms)) if segment_for is not None else SEGMENT_POINTS * r.step_ms
        segments = sum((hi - lo + r.step_ms) / max(r.segment_ms, 1) for lo, hi in spans.values())
    r.segments = int(segments)
    r.verdict, r.reasons = _verdict(r)
    return r


def _verdict(r: DataReadiness) -> tuple[str, list[str]]:
    if r.points == 0 or r.entities == 0:
        return "Poor", ["No numeric data for these devices and keys in the chosen range."]
    levels, reasons = [], []

    def grade(level: int, why: str) -> None:
        levels.append(level)
        reasons.append(f"{VERDICTS[level]}: {why}")

    seg = r.segments
    grade(
        0 if seg < 50 else 1 if seg < 200 else 2 if seg < 1000 else 3,
        f"about {seg:,} training segments of {segment_text(r.segment_ms, r.step_ms)}"
        + (" (at least 1,000 is best)" if seg < 1000 else ""),
    )
    cov = r.coverage * 100
    grade(
        0 if cov < 30 else 1 if cov < 60 else 2 if cov < 90 else 3,
        f"{cov:.0f} % of the range is covered at the data's own step" + (" (gaps or a late start)" if cov < 90 else ""),
    )
    days = r.span_ms / DAY_MS
    grade(
        0 if days < 1 else 1 if days < 3 else 2 if days < 7 else 3,
        f"{days:.1f} days of history" + (" (a week or more shows daily and weekly cycles)" if days < 7 else ""),
    )
    if r.entities == 1:
        grade(2, "a single device: nothing to compare it with")
    if r.keys_missing:
        reasons.append("No data for " + ", ".join(r.keys_missing) + " (left out of the model).")
    return VERDICTS[min(levels)], reasons


def segment_text(segment_ms: int, step_ms: int) -> str:
    """``30 min (~30 points)``: a segment length and the points it holds at the data's step."""
    points = f"~{segment_ms / step_ms:.0f} points" if step_ms else "points unknown"
    return f"{duration_text(segment_ms, exact=True)} ({points})"
