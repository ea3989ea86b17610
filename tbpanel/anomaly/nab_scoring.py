"""NAB scoring of a binary detection stream (written from reference/nab-scoring.md).

* Windows map to the rows ``[l, r]`` of the *first* rows whose timestamps equal their start and
  end (the first row at or after, if no row is equal); width ``w = r - l + 1``.
* Probation: the first ``p = min(floor(0.15 N), 750)`` rows are not scored; a window wholly
  inside probation is neither hit nor missed.
* ``S(y) = 2 / (1 + exp(5 y)) - 1``. A window's earliest detection at row ``i`` scores
  ``tp * S(-(r - i + 1) / w) / S(-1)``; a window without detection scores ``-fn``.
* A detection outside every window scores ``fp * S((i - r') / (w' - 1))`` against the nearest
  preceding window ``[l', r']``; ``-fp`` before the first window or past 3 window widths.
* Normalised corpus score: ``100 * (raw - null) / (perfect - null)``, ``null = -fn`` and
  ``perfect = tp`` per scorable window.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "PROFILES",
    "scaled_sigmoid",
    "probation_rows",
    "window_rows",
    "score_file",
    "score_corpus",
    "score_corpus_detail",
    "load_profiles",
    "load_windows",
    "to_ms",
]

PROFILES = {
    "standard": {"tp": 1.0, "fn": 1.0, "fp": 0.11},
    "reward_low_FP_rate": {"tp": 1.0, "fn": 1.0, "fp": 0.22},
    "reward_low_FN_rate": {"tp": 1.0, "fn": 2.0, "fp": 0.11},
}


def scaled_sigmoid(y: float) -> float:
    if y > 3.0:  # far past a window
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


def probation_rows(n: int) -> int:
    return int(min(math.floor(0.15 * n), 750))


def to_ms(ts: Any) -> npt.NDArray[np.int64]:
    """Timestamps (strings, datetime64, or int ms) as int64 epoch milliseconds."""
    a = np.asarray(ts)
    if a.dtype.kind in "iu":
        return a.astype(np.int64)
    import pandas as pd

    s = pd.Series(np.ravel(a))
    if s.dtype == object:
        try:
            s = pd.to_datetime(s, format="ISO8601")
        except ValueError:
            s = pd.to_datetime(s, format="mixed")
    else:
        s = pd.to_datetime(s)
    ms: npt.NDArray[np.int64] = s.astype("datetime64[ms]").astype("int64").to_numpy()
    return ms


def _weights(profile: Any) -> dict[str, float]:
    if isinstance(profile, str):
        return PROFILES[profile]
    if "CostMatrix" in profile:
        cm = profile["CostMatrix"]
        return {"tp": float(cm["tpWeight"]), "fn": float(cm["fnWeight"]), "fp": float(cm["fpWeight"])}
    return {"tp": float(profile["tp"]), "fn": float(profile["fn"]), "fp": float(profile["fp"])}


def window_rows(ts_ms: np.ndarray, windows: Sequence[Sequence[Any]]) -> list[tuple[int, int]]:
    """Row index ``[l, r]`` of each window: first row whose timestamp equals (or follows) each end."""
    out = []
    ts_ms = np.asarray(ts_ms, dtype=np.int64)
    for w in windows:
        a, b = to_ms([w[0], w[1]])
        left = int(np.searchsorted(ts_ms, a, side="left"))
        r = int(np.searchsorted(ts_ms, b, side="left"))
        r = min(r, len(ts_ms) - 1)
        out.append((left, r))
    return out


def score_file(
    timestamps: Any,
    detections: Any,
    windows: Sequence[Sequence[Any]],
    profile: Any = "standard",
    probation: int | None = None,
) -> dict[str, Any]:
    """Raw NAB score of one file's binary detections (1 = detection at that row)."""
    wts = _weights(profile)
    ts = to_ms(timestamps)
    det = np.asarray(detections).astype(bool)
    n = len(ts)
    p = probation_rows(n) if probation is None else int(probation)
    rows = [lr for lr in window_rows(ts, windows) if lr[1] >= p]  # scorable windows
    tp = fp = fn = 0.0
    n_tp = n_fp = n_fn = 0
    hit = [False] * len(rows)
    details = []
    in_window = np.full(n, -1, dtype=np.int64)
    for k, (left, r) in enumerate(rows):
        in_window[left : r + 1] = k
    for i in np.flatnonzero(det):
        if i < p:
            continue
        k = int(in_window[i])
        if k >= 0:
            if hit[k]:
                continue
            left, r = rows[k]
            w = r - left + 1
            s = wts["tp"] * scaled_sigmoid(-(r - i + 1) / w) / scaled_sigmoid(-1.0)
            hit[k] = True
            tp += s
            n_tp += 1
            details.append((int(i), "tp", s))
        else:
            prev = [lr for lr in rows if lr[1] < i]
            if not prev:
                s = -wts["fp"]
            else:
                l2, r2 = prev[-1]
                w2 = r2 - l2 + 1
                s = wts["fp"] * scaled_sigmoid((i - r2) / max(w2 - 1, 1))
            fp += s
            n_fp += 1
            details.append((int(i), "fp", s))
    for k in range(len(rows)):
        if not hit[k]:
            fn -= wts["fn"]
            n_fn += 1
    nw = len(rows)
    return {
        "raw": tp + fp + fn,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "n_tp": n_tp,
        "n_fp": n_fp,
        "n_fn": n_fn,
        "n_windows": nw,
        "null": -wts["fn"] * nw,
        "perfect": wts["tp"] * nw,
        "probation": p,
        "window_rows": rows,
        "details": details,
    }


def _normalise(raw: float, null: float, perfect: float) -> float:
    if perfect == null:
        return 0.0
    return 100.0 * (raw - null) / (perfect - null)


def score_corpus_detail(
    results: Mapping[str, tuple[Any, Any]],
    windows_by_file: Mapping[str, Any],
    profiles: Mapping[str, Any] | Sequence[str] | None = None,
) -> dict[str, Any]:
    """Per profile: normalised score, raw/null/perfect totals and each file's result."""
    if profiles is None:
        profiles = PROFILES
    names = list(profiles) if not isinstance(profiles, Mapping) else list(profiles.keys())
    out: dict[str, Any] = {}
    for name in names:
        prof = profiles[name] if isinstance(profiles, Mapping) else name
        files = {f: score_file(ts, det, windows_by_file.get(f, []), prof) for f, (ts, det) in results.items()}
        raw = sum(r["raw"] for r in files.values())
        null = sum(r["null"] for r in files.values())
        perfect = sum(r["perfect"] for r in files.values())
        out[name] = {
            "score": _normalise(raw, null, perfect),
            "raw": raw,
            "null": null,
            "perfect": perfect,
            "files": files,
        }
    return out


def score_corpus(
    results: Mapping[str, tuple[Any, Any]],
    windows_by_file: Mapping[str, Any],
    profiles: Mapping[str, Any] | Sequence[str] | None = None,
) -> dict[str, float]:
    """``{profile: normalised score}`` over all files (raw scores summed before normalising)."""
    return {k: v["score"] for k, v in score_corpus_detail(results, windows_by_file, profiles).items()}


def load_profiles(path: str | Path) -> dict[str, Any]:
    profiles: dict[str, Any] = json.loads(Path(path).read_text())
    return profiles


def load_windows(path: str | Path) -> dict[str, list[Any]]:
    windows: dict[str, list[Any]] = json.loads(Path(path).read_text())
    return windows
