#!/usr/bin/env python
"""A point-level detector on NAB, offline: what it would score before it is built into the engine.

    benchmarks/nab_points.py --data DIR --labels FILE [--cache DIR] [--segments NAB_OUTDIR]

Per file, causally (row ``t`` sees rows ``<= t`` only), with nothing chosen per file name:

* **raw score** at row ``t``, per scale ``w``: the euclidean distance of the last ``w`` values
  (scaled by the probation rows' 5-95 % range) to the nearest earlier window of ``w`` values that
  ends at least ``w`` rows before (non-overlapping: the matrix-profile left discord of the newest
  window), over *every* earlier window (no reference subsampling: an upper bound of what a
  stored-reference member would see);
* **anomaly likelihood** (Numenta's AnomalyLikelihood construction): the Gaussian tail
  probability of the mean of the last ``K`` raw scores (or of their square roots) under the mean and spread of the previous
  ``L`` raw scores; several scales are combined by the smallest tail times the number of scales
  (Bonferroni);
* **detection events**: a detection when the tail falls below ``eps`` after at least ``cool``
  rows without any tail below ``eps`` (one detection per episode; the episode lasts while
  exceedances keep coming less than ``cool`` rows apart).

It prints the grid's best settings with the score per profile and per folder, and a
leave-one-folder-out figure (settings chosen by standard raw score on two folders, the third
scored with them, raw scores of the three held-out folders summed). ``--segments`` reads the
detections ``benchmarks/nab.py`` wrote and also scores their union / intersection with the
point detector's (within ``cool`` rows).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tbpanel.anomaly.nab_scoring import PROFILES, probation_rows, score_corpus_detail  # noqa: E402

SCALES = (8, 32, 64)
#: the raw score as the likelihood sees it: the distance itself, or its square root (a distance
#: is a root of a sum of squares: its square root has a lighter right tail, closer to the
#: Gaussian the likelihood assumes)
TRANSFORMS = {"none": lambda s: s, "sqrt": np.sqrt}
_CHUNK = 1024


def left_discord(x: np.ndarray, w: int) -> np.ndarray:
    """Distance of the window ending at each row to its nearest non-overlapping earlier window
    (NaN until one exists)."""
    n = x.size
    out = np.full(n, np.nan)
    if n < 2 * w:
        return out
    win = np.lib.stride_tricks.sliding_window_view(x, w)  # row i ends at i + w - 1
    sq = np.einsum("ij,ij->i", win, win)
    for a in range(w, win.shape[0], _CHUNK):
        b = min(win.shape[0], a + _CHUNK)
        d2 = sq[a:b, None] + sq[None, : b - w] - 2.0 * win[a:b] @ win[: b - w].T
        d2[np.arange(b - w)[None, :] > np.arange(a, b)[:, None] - w] = np.inf
        out[a + w - 1 : b + w - 1] = np.sqrt(np.maximum(d2.min(axis=1), 0.0))
    return out


def raw_scores(path: str) -> dict[str, np.ndarray]:
    import pandas as pd

    v = pd.read_csv(path)["value"].to_numpy(np.float64)
    train = v[: probation_rows(v.size)]
    lo, hi = np.percentile(train, [5, 95])
    x = (v - np.median(train)) / max(hi - lo, 1e-9)
    return {f"nn{w}": left_discord(x, w) for w in SCALES}


def tail_probability(s: np.ndarray, L: int, K: int, min_history: int = 50) -> np.ndarray:
    """Gaussian tail of the mean of the last ``K`` scores under the previous ``L`` scores."""
    from scipy.special import erfc

    n = s.size
    fin = np.isfinite(s)
    z = np.where(fin, s, 0.0)
    c1, c2 = np.concatenate(([0.0], np.cumsum(z))), np.concatenate(([0.0], np.cumsum(z * z)))
    cn = np.concatenate(([0], np.cumsum(fin)))
    t = np.arange(n)
    lo = np.maximum(t - L, 0)
    cnt = cn[t] - cn[lo]
    mu = (c1[t] - c1[lo]) / np.maximum(cnt, 1)
    sd = np.sqrt(np.maximum((c2[t] - c2[lo]) / np.maximum(cnt, 1) - mu * mu, 1e-12))
    zz = np.where(fin, s, mu)
    c = np.concatenate(([0.0], np.cumsum(zz)))
    k0 = np.maximum(t + 1 - K, 0)
    m = (c[t + 1] - c[k0]) / (t + 1 - k0)
    q = 0.5 * erfc((m - mu) / sd / np.sqrt(2.0))
    q[cnt < min_history] = 1.0
    return np.asarray(q)


def episodes(q: np.ndarray, p: int, eps: float, cool: int) -> np.ndarray:
    """One detection per episode of ``q < eps`` (episodes end after ``cool`` quiet rows)."""
    det = np.zeros(q.size, dtype=np.int64)
    last = -(10**9)
    for i in np.flatnonzero(q < eps):
        if i >= p and i - last > cool:
            det[i] = 1
        last = int(i)
    return det


def main(argv: list[str] | None = None) -> int:
    import pandas as pd

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--labels", required=True)
    ap.add_argument("--cache", default="/tmp/nab_points")
    ap.add_argument("--segments", help="a benchmarks/nab.py output directory to combine with")
    ap.add_argument(
        "--only",
        metavar="T,SCALES,L,K,EPS,COOL",
        help="score one setting per file instead of the grid, e.g. sqrt,nn8,1000,1,1e-4,50 (scales joined by +)",
    )
    args = ap.parse_args(argv)
    data = Path(args.data)
    windows = json.loads(Path(args.labels).read_text())
    files = sorted(p.relative_to(data).as_posix() for p in data.rglob("*.csv"))
    folders = sorted({f.split("/")[0] for f in files})
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    todo = [f for f in files if not (cache / (f.replace("/", "__") + ".npz")).exists()]
    with ProcessPoolExecutor(2) as ex:
        for f, r in zip(todo, ex.map(raw_scores, [str(data / f) for f in todo])):
            np.savez(cache / (f.replace("/", "__") + ".npz"), **r)
    raw = {f: dict(np.load(cache / (f.replace("/", "__") + ".npz"))) for f in files}
    ts = {f: pd.read_csv(data / f)["timestamp"].tolist() for f in files}

    def detections(
        transform: str, keys: tuple[str, ...], L: int, K: int, eps: float, cool: int
    ) -> dict[str, np.ndarray]:
        out = {}
        for f in files:
            q = np.min([tail_probability(TRANSFORMS[transform](raw[f][k]), L, K) for k in keys], axis=0) * len(keys)
            out[f] = episodes(q, probation_rows(len(ts[f])), eps, cool)
        return out

    def per_folder(det: dict[str, np.ndarray]) -> tuple[dict[str, float], dict[str, dict[str, list[float]]]]:
        d = score_corpus_detail({f: (ts[f], det[f]) for f in files}, windows, PROFILES)
        parts = {
            prof: {
                fo: [
                    sum(r[k] for f, r in d[prof]["files"].items() if f.startswith(fo + "/"))
                    for k in ("raw", "null", "perfect")
                ]
                for fo in folders
            }
            for prof in PROFILES
        }
        return {k: v["score"] for k, v in d.items()}, parts

    def norm(raw_null_perfect: list[float] | np.ndarray) -> float:
        a, b, c = raw_null_perfect
        return 100.0 * (a - b) / (c - b)

    if args.only:
        t, sc, L, K, eps, cool = args.only.split(",")
        det = detections(t, tuple(sc.split("+")), int(L), int(K), float(eps), int(cool))
        d = score_corpus_detail({f: (ts[f], det[f]) for f in files}, windows, PROFILES)
        print("| file | windows | detections | TP | FP | FN | raw (standard) |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for f, r in d["standard"]["files"].items():
            print(
                f"| {f} | {r['n_windows']} | {int(det[f].sum())} | {r['n_tp']} | {r['n_fp']} | {r['n_fn']} | {r['raw']:.3f} |"
            )
        parts = per_folder(det)[1]
        for prof in PROFILES:
            folder_scores = ", ".join(f"{fo} {norm(x):.1f}" for fo, x in parts[prof].items())
            print(f"{prof}: {d[prof]['score']:.2f} ({folder_scores})")
        return 0

    scale_sets = (("nn8",), ("nn8", "nn32"), ("nn8", "nn32", "nn64"))
    grid = list(itertools.product(tuple(TRANSFORMS), scale_sets, (500, 1000, 2000), (1, 5), (1e-4, 1e-5), (50, 200)))
    rows = []
    for g in grid:
        det = detections(*g)
        rows.append((g, det, *per_folder(det)))
    rows.sort(key=lambda r: -r[2]["standard"])
    print("best settings on all 20 files (in-sample):")
    for g, _, s, parts in rows[:8]:
        print(
            " ",
            g,
            {k: round(v, 2) for k, v in s.items()},
            {fo: round(norm(x), 1) for fo, x in parts["standard"].items()},
        )
    for prof in PROFILES:
        tot = np.zeros(3)
        picks = {}
        for held in folders:
            best = max(rows, key=lambda r: sum(r[3]["standard"][fo][0] for fo in folders if fo != held))
            picks[held] = best[0]
            tot += np.array(best[3][prof][held])
        print(f"leave-one-folder-out {prof}: {norm(tot):.2f}", picks if prof == "standard" else "")

    if args.segments:
        seg = {}
        for f in files:
            seg[f] = pd.read_csv(Path(args.segments) / f)["detection"].to_numpy(np.int64)
        print("segment detections alone:", {k: round(v, 2) for k, v in per_folder(seg)[0].items()})
        for g, det, _s, _ in rows[:3]:
            cool = g[5]
            union = {f: np.maximum(seg[f], det[f]) for f in files}
            both = {}  # the later of a point and a segment detection less than ``cool`` rows apart
            for f in files:
                k = np.ones(cool + 1)
                seen_seg = np.convolve(seg[f], k, "full")[: seg[f].size] > 0  # a segment detection in [t - cool, t]
                seen_pt = np.convolve(det[f], k, "full")[: det[f].size] > 0
                both[f] = ((det[f] > 0) & seen_seg | (seg[f] > 0) & seen_pt).astype(np.int64)
            print(" ", g, "union", {k: round(v, 2) for k, v in per_folder(union)[0].items()})
            print(" ", g, "both ", {k: round(v, 2) for k, v in per_folder(both)[0].items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
