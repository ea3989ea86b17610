#!/usr/bin/env python
"""Where NAB points are lost, and what a post-processing change would do, without re-running the
engine for every variant.

    benchmarks/nab_sweep.py dump  --data DIR --out CACHE [--set KNOB=JSON ...]
    benchmarks/nab_sweep.py sweep --data DIR --labels FILE --cache CACHE
    benchmarks/nab_sweep.py breakdown --data DIR --labels FILE --out NAB_OUTDIR

``dump`` replays every file causally exactly like ``benchmarks/nab.py --engine-only`` (build on
the probation rows, one refresh period at a time, adaptive re-fit after each) with the ensemble
detector, and stores per scored segment its end time and every member's ratio (distance / the
member threshold in force when it was scored). ``sweep`` turns those ratios into detections
(combination rule, threshold on the combined ratio, cool-down) and scores them with the NAB
scorer per profile, per folder, and on two halves of the files (choose on one, report the other).
Every variant is the same rule for every file: nothing per file name.

``breakdown`` reads the detections ``benchmarks/nab.py`` wrote (``NAB_OUTDIR/<folder>/<file>.csv``)
and splits each profile's raw score into hits, false positives and misses, per file and per
folder, with two bounds: the score without any false positive, and with every hit moved to its
window's left edge (what earlier detection could still win).
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
sys.path.insert(0, str(ROOT / "benchmarks"))

from tbpanel.anomaly import ModelConfig, fit, refit  # noqa: E402
from tbpanel.anomaly.nab_scoring import PROFILES, score_corpus_detail  # noqa: E402

ITEM = "item"


def dump_file(path: str, config_json: str) -> dict:
    from nab import _visible, read_file  # type: ignore[import-not-found]

    df, ts, item, p = read_file(path)
    ts_all = item["value"][0]
    t_train_end = int(ts_all[min(p, ts_all.size - 1)])
    t_last = int(ts_all[-1]) + 1
    cfg = ModelConfig.from_json(config_json).copy(train_start=None, train_end=t_train_end, items=[ITEM])
    model = fit(cfg, {ITEM: _visible(item, None, t_train_end)})
    r = model.resolved
    seg, period = r.segment_ms, model.step * r.refit_every_segments
    ends, ratios = [], []
    T = t_train_end
    while T < t_last:
        T_next = min(T + period, t_last)
        vis = _visible(item, T - seg + 1 - model.context_ms, T_next)
        it, table, x = model._segments(vis, T - seg + 1, T_next)
        keep = table.end > T
        if keep.any():
            rr = model.member_ratios(ITEM, it, table, x)
            ends.append(table.end[keep])
            ratios.append(rr[keep])
        if T_next < t_last:
            try:
                model = refit(model, {ITEM: _visible(item, None, T_next)}, until_ms=T_next)
            except ValueError:
                pass
        T = T_next
    return {
        "end": np.concatenate(ends) if ends else np.empty(0, np.int64),
        "ratios": np.vstack(ratios) if ratios else np.empty((0, 0)),
        "segment_ms": int(seg),
        "timestamps": df["timestamp"].tolist(),
        "ts": ts,
    }


def detections(end: np.ndarray, combined: np.ndarray, thr: float, cooldown_ms: int) -> list[int]:
    """Alarm times: the end of an anomalous segment that starts a new episode (no anomalous
    segment ended within ``cooldown_ms`` before it)."""
    out: list[int] = []
    last = None
    for e, s in zip(end.tolist(), combined.tolist()):
        if s < thr:
            continue
        if last is None or e - last > cooldown_ms:
            out.append(e)
        last = e
    return out


def breakdown(out: Path, files: list[str], windows: dict) -> str:
    """Text table: per file and folder, hits / false positives / misses and the two bounds."""
    import pandas as pd

    res = {}
    for f in files:
        df = pd.read_csv(out / f)
        res[f] = (df["timestamp"].tolist(), df["detection"].tolist())
    lines = []
    for prof in PROFILES:
        d = score_corpus_detail(res, windows, {prof: PROFILES[prof]})[prof]
        span = d["perfect"] - d["null"]
        lines.append(f"== {prof}: {d['score']:.2f}")
        lines.append(f"{'file':58s} {'win':>3s} {'hits':>4s} {'tp':>6s} {'fp#':>4s} {'fp':>6s} {'fn#':>3s} {'raw':>7s}")
        tot = {"tp": 0.0, "fp": 0.0, "fn": 0.0, "n_tp": 0}
        folders: dict[str, list[float]] = {}
        for f in files:
            r = d["files"][f]
            lines.append(
                f"{f:58s} {r['n_windows']:3d} {r['n_tp']:4d} {r['tp']:6.3f} {r['n_fp']:4d} {r['fp']:6.3f} "
                f"{r['n_fn']:3d} {r['raw']:7.3f}"
            )
            for k in tot:
                tot[k] += r[k]
            acc = folders.setdefault(f.split("/")[0], [0.0, 0.0, 0.0])
            acc[0] += r["raw"]
            acc[1] += r["null"]
            acc[2] += r["perfect"]
        for name, (raw, null, perf) in folders.items():
            lines.append(f"  folder {name:24s} {100 * (raw - null) / (perf - null):7.2f}")
        w = PROFILES[prof]
        no_fp = 100 * (d["raw"] - tot["fp"] - d["null"]) / span
        left = 100 * (d["raw"] - tot["tp"] + w["tp"] * tot["n_tp"] - d["null"]) / span
        lines.append(
            f"  hits {tot['n_tp']} (+{tot['tp']:.2f}), false positives {tot['fp']:.2f}, misses {tot['fn']:.2f}; "
            f"without false positives {no_fp:.2f}; every hit at its left edge {left:.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", choices=["dump", "sweep", "breakdown"])
    ap.add_argument("--data", required=True)
    ap.add_argument("--labels")
    ap.add_argument("--out")
    ap.add_argument("--cache")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--set", action="append", default=[])
    args = ap.parse_args(argv)
    data_dir = Path(args.data)
    files = sorted(p.relative_to(data_dir).as_posix() for p in data_dir.rglob("*.csv"))
    if args.mode == "dump":
        config = ModelConfig(name="nab", fields=["value"], adaptive=True, detector="ensemble")
        if args.set:
            config = config.copy(**{k: json.loads(v) for k, v in (kv.split("=", 1) for kv in args.set)})
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        with ProcessPoolExecutor(max_workers=args.jobs) as ex:
            res = list(ex.map(dump_file, [str(data_dir / f) for f in files], [config.to_json()] * len(files)))
        for f, r in zip(files, res):
            np.savez(
                out / (f.replace("/", "__") + ".npz"),
                end=r["end"],
                ratios=r["ratios"],
                segment_ms=r["segment_ms"],
                ts=r["ts"],
                timestamps=np.array(r["timestamps"]),
            )
        return 0
    windows = json.loads(Path(args.labels).read_text())
    if args.mode == "breakdown":
        print(breakdown(Path(args.out), files, windows))
        return 0
    cache = {f: np.load(Path(args.cache) / (f.replace("/", "__") + ".npz")) for f in files}
    combos = {
        "max": lambda r: r.max(axis=1),
        "max_sl": lambda r: r[:, 1:].max(axis=1),
        "mean": lambda r: r.mean(axis=1),
        "gmean": lambda r: np.exp(np.log(np.maximum(r, 1e-9)).mean(axis=1)),
    }
    half_a = files[0::2]
    rows = []
    for (cname, comb), thr, cd in itertools.product(combos.items(), [0.8, 1.0, 1.25, 1.5, 2.0], [2, 4, 8, 16]):
        res = {}
        for f, z in cache.items():
            det_t = detections(z["end"], comb(z["ratios"]), thr, cd * int(z["segment_ms"]))
            ts = z["ts"]
            det = np.zeros(ts.size, dtype=np.int64)
            for t in det_t:
                i = int(np.searchsorted(ts, t, side="left"))
                if i < ts.size:
                    det[i] = 1
            res[f] = (z["timestamps"].tolist(), det.tolist())
        d = score_corpus_detail(res, windows, PROFILES)
        dA = score_corpus_detail({f: res[f] for f in half_a}, windows, PROFILES)
        dB = score_corpus_detail({f: res[f] for f in files if f not in half_a}, windows, PROFILES)
        rows.append(
            (
                f"{cname}/t{thr}/c{cd}",
                d["standard"]["score"],
                d["reward_low_FP_rate"]["score"],
                d["reward_low_FN_rate"]["score"],
                dA["standard"]["score"],
                dB["standard"]["score"],
            )
        )
    rows.sort(key=lambda r: -r[1])
    print(f"{'variant':22s} {'std':>7s} {'lowFP':>7s} {'lowFN':>7s} {'halfA':>7s} {'halfB':>7s}")
    for r in rows:
        print(f"{r[0]:22s} " + " ".join(f"{x:7.2f}" for x in r[1:]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
