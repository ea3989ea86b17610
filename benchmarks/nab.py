#!/usr/bin/env python
"""Numenta Anomaly Benchmark replay of tbpanel's anomaly pipeline.

    benchmarks/nab.py --data DIR --labels FILE --out OUTDIR [--profile standard]

For every ``DIR/<folder>/<file>.csv`` (``timestamp,value``): one item, one model with the
project's default settings (``ModelConfig()``; auto knobs resolved from the training data's own
sampling step), built on the probationary first rows (15 %, at most 750). The rest is replayed
causally in refresh periods (:func:`replay`): each period scores the new complete segments with
the model known at its start, then (adaptive mode) the model is re-fitted on everything seen.
Every new anomaly that raises an alarm (score >= lowest enabled severity threshold, at most one
active alarm per device) becomes a detection at the first row at or after its creation time.
Detections are written to ``OUTDIR/<folder>/<file>.csv`` and scored with the NAB method.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tbpanel.anomaly import ModelConfig, ScoredSegments, assemble, fit, refit  # noqa: E402
from tbpanel.anomaly.nab_scoring import PROFILES, probation_rows, score_corpus_detail, to_ms  # noqa: E402
from tbpanel.anomaly.segments import ItemData  # noqa: E402

ITEM = "item"


def _visible(item_data: ItemData, start: int | None, end: int) -> ItemData:
    """The points with ``start <= ts < end`` (what the store would return for that range)."""
    out = {}
    for f, (ts, v) in item_data.items():
        a = 0 if start is None else int(np.searchsorted(ts, start, side="left"))
        b = int(np.searchsorted(ts, end, side="left"))
        out[f] = (ts[a:b], v[a:b])
    return out


def replay(item_data: ItemData, config: ModelConfig, probation_rows: int, stats: dict | None = None) -> list[int]:
    """Build on the first ``probation_rows`` rows, then refresh period by period in data time.

    Returns the data times (ms) at which alarms were created, one per new alarmed anomaly."""
    ts_all = np.unique(np.concatenate([ts for ts, _ in item_data.values()]))
    t_train_end = int(ts_all[min(probation_rows, ts_all.size - 1)])  # rows [0, p) are training
    t_last = int(ts_all[-1]) + 1
    cfg = config.copy(train_start=None, train_end=t_train_end, items=[ITEM])
    try:
        model = fit(cfg, {ITEM: _visible(item_data, None, t_train_end)})
    except ValueError as e:  # e.g. no training segment passed the filters: a FAILED build
        if stats is not None:
            stats.update(
                failed=str(e), segment_ms=0, step_ms=0, period_ms=0, refits=0, segments=0, anomalies=0, alarms=0, k=0
            )
        return []
    r = model.resolved
    seg, period = r.segment_ms, model.step * r.refit_every_segments
    parts: list[ScoredSegments] = []
    lowest: list[tuple[int, float]] = []  # (from time, lowest enabled threshold) per period
    T = t_train_end
    n_refits = 0
    while T < t_last:
        T_next = min(T + period, t_last)
        lowest.append((T, min(model.thresholds().values())))
        # one refresh run: score new complete segments (end in (T, T_next]) with the current model
        # the store read of a refresh run: from one segment (plus the seasonal member's earlier
        # cycles) before the run's first new segment
        segs = model.score({ITEM: _visible(item_data, T - seg + 1 - model.context_ms, T_next)}, T - seg + 1, T_next)
        parts.append(segs.take(segs.end_ts > T))
        if r.adaptive and T_next < t_last:
            try:
                model = refit(model, {ITEM: _visible(item_data, None, T_next)}, until_ms=T_next)
                n_refits += 1
            except ValueError:
                pass  # a failed re-fit keeps the model in force
        T = T_next
    allsegs = ScoredSegments.concat(parts)
    anomalies = assemble(allsegs, cfg)
    # alarms: created when the anomaly's score first reaches the lowest enabled threshold (at or
    # after it met the min duration); at most one active alarm per device, cleared at the data
    # time its anomaly was seen to end
    starts = np.array([p[0] for p in lowest])
    created: list[int] = []
    active_until = -1  # clear time of the active alarm (inf while its anomaly is active)
    for a in sorted(anomalies, key=lambda a: a.confirmed_at):
        m = (allsegs.start_ts >= a.start_ts) & (allsegs.end_ts <= a.end_ts)
        ends, sc = allsegs.end_ts[m], allsegs.score[m]
        thr = lowest[max(int(np.searchsorted(starts, a.detected_at, side="right")) - 1, 0)][1]
        ok = np.flatnonzero((np.maximum.accumulate(sc) >= thr) & (ends >= a.confirmed_at))
        if ok.size == 0:
            continue
        t_alarm = int(ends[ok[0]])
        if t_alarm < active_until:
            continue  # suppressed: another alarm of this type is still active on the device
        created.append(t_alarm)
        active_until = a.ended_at if a.ended_at is not None else np.iinfo(np.int64).max
    if stats is not None:
        stats.update(
            segment_ms=seg,
            step_ms=model.step,
            period_ms=period,
            refits=n_refits,
            segments=len(allsegs),
            anomalies=len(anomalies),
            alarms=len(created),
            k=model.clusters.k,
        )
    return created


def nab_config() -> ModelConfig:
    """The benchmarked configuration: ``ModelConfig()`` defaults in adaptive (monitoring) mode.

    Nothing here depends on a file: segment length, sliding step, gap / point filters and
    aggregation points are resolved from each file's own training data (its median sampling
    step) by :meth:`ModelConfig.resolved`; k is chosen by the silhouette rule at every (re)fit."""
    return ModelConfig(name="nab", fields=["value"], adaptive=True)


class AlarmRule:
    """The alarm-creation rule of reference/anomaly-detection.md, fed by the service's anomaly
    changes inside each refresh transaction: an alarm for a new or growing anomaly once its
    score meets the lowest enabled severity threshold, at most one active alarm per device
    (later anomalies are suppressed), cleared when its anomaly ends."""

    def __init__(self, lowest_threshold):
        self.lowest = lowest_threshold  # () -> current lowest enabled threshold
        self.now = 0  # data time of the refresh run in progress
        self.active: dict[str, str] = {}  # device -> anomaly id holding the active alarm
        self.alarmed: set[str] = set()
        self.created: list[int] = []

    def __call__(self, db, model, changes) -> None:
        if not changes.create_alarms:
            return
        for a in changes.ended + changes.deleted:
            if self.active.get(a["item"]) == a["id"]:
                del self.active[a["item"]]
        for a in changes.created + changes.extended:
            if a["id"] in self.alarmed or a["score"] < self.lowest() or a["item"] in self.active:
                continue  # already alarmed, below every enabled tier, or suppressed
            self.alarmed.add(a["id"])
            self.created.append(self.now)
            if a["active"]:
                self.active[a["item"]] = a["id"]


def replay_pipeline(
    item_data: ItemData, config: ModelConfig, probation_rows: int, stats: dict | None = None
) -> list[int]:
    """The same replay through the product: a data directory, a device posting its rows period by
    period into the durable store, a model built by the task runner, and one refresh run per
    period (with adaptive re-fits and alarm creation on). Returns the alarm data times (ms)."""
    import tempfile

    from tbpanel.platform import Platform
    from tbpanel.store import ValueType

    ts_all, v_all = item_data["value"]
    t_train_end = int(ts_all[min(probation_rows, ts_all.size - 1)])
    t_last = int(ts_all[-1]) + 1
    with tempfile.TemporaryDirectory() as tmp:
        platform = Platform(tmp, compaction_interval_s=0)
        try:
            tenant = platform.registry.create_tenant("nab")
            dev = platform.registry.save_device(tenant.id, "nab", type="nab").id

            def post(lo: int, hi: int) -> None:
                a, b = np.searchsorted(ts_all, lo), np.searchsorted(ts_all, hi)
                if b > a:
                    platform.store.write_points(
                        [
                            (dev, "value", int(t), ValueType.DOUBLE, float(x))
                            for t, x in zip(ts_all[a:b].tolist(), v_all[a:b].tolist())
                        ]
                    )

            post(0, t_train_end)
            cfg = config.copy(device_type="nab", fields=["value"], items=[dev], train_start=None, train_end=t_train_end)
            model = platform.anomaly.create_model(tenant.id, cfg)
            build = platform.tasks.wait(platform.anomaly.build(model.id).id)
            if build.status != "DONE":
                raise RuntimeError(build.message)
            platform.anomaly.set_refresh(model.id, {"enabled": True, "create_alarms": True})
            rule = AlarmRule(lambda: min(platform.anomaly.trained(model.id).thresholds().values()))
            platform.anomaly.changed.connect(rule)
            period = platform.anomaly.trained(model.id).step
            T, runs = t_train_end, 0
            while T < t_last:
                T_next = min(T + period, t_last)
                post(T, T_next)
                rule.now = T_next
                run = platform.tasks.wait(platform.anomaly.refresh_now(model.id, T_next).id)
                if run.status != "DONE":
                    raise RuntimeError(run.message)
                T, runs = T_next, runs + 1
            m = platform.anomaly.get_model(model.id)
            if stats is not None:
                tm = platform.anomaly.trained(model.id)
                stats.update(
                    segment_ms=tm.segment_ms,
                    step_ms=tm.step,
                    period_ms=period,
                    refits=m.refits,
                    refresh_runs=runs,
                    anomalies=len(platform.anomaly.anomalies(model.id)),
                    alarms=len(rule.created),
                    k=tm.clusters.k,
                )
            return rule.created
        finally:
            platform.close()


def read_file(path: str) -> tuple[Any, np.ndarray, ItemData, int]:
    """A NAB file: (its rows, their epoch-ms times, the series as item data sorted by time,
    the number of probation rows)."""
    import pandas as pd

    df = pd.read_csv(path)
    ts = to_ms(df["timestamp"].to_numpy())
    v = df["value"].to_numpy(dtype=np.float64)
    o = np.argsort(ts, kind="stable")
    return df, ts, {"value": (ts[o], v[o])}, probation_rows(len(df))


def run_file(path: str, rel: str, config_json: str, engine_only: bool = False) -> dict:
    t0 = time.perf_counter()
    df, ts, item, p = read_file(path)
    stats: dict = {}
    created = (replay if engine_only else replay_pipeline)(item, ModelConfig.from_json(config_json), p, stats)
    det = np.zeros(len(df), dtype=np.int64)
    for t in created:
        i = int(np.searchsorted(ts, t, side="left"))  # first row at or after the alarm time
        if i < len(df):
            det[i] = 1
    return {
        "file": rel,
        "timestamps": df["timestamp"].tolist(),
        "detections": det.tolist(),
        "stats": stats,
        "seconds": time.perf_counter() - t0,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="directory holding <folder>/<file>.csv")
    ap.add_argument("--labels", required=True, help="combined_windows.json")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--profile", default="standard", choices=list(PROFILES))
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KNOB=JSON",
        help="override a ModelConfig knob for every file, e.g. --set detector='\"ensemble\"' "
        "(the same value for every file: nothing per file name)",
    )
    ap.add_argument(
        "--engine-only",
        action="store_true",
        help="replay through the engine in memory (fast) instead of store + tasks + refresh runs",
    )
    args = ap.parse_args(argv)

    t_start = time.perf_counter()
    data_dir, out = Path(args.data), Path(args.out)
    windows = json.loads(Path(args.labels).read_text())
    prof_file = Path(args.labels).parent / "profiles.json"
    profiles = json.loads(prof_file.read_text()) if prof_file.exists() else PROFILES
    files = sorted(p.relative_to(data_dir).as_posix() for p in data_dir.rglob("*.csv"))
    config = nab_config()
    if args.set:
        config = config.copy(**{k: json.loads(v) for k, v in (kv.split("=", 1) for kv in args.set)})
    cj = config.to_json()
    with ProcessPoolExecutor(max_workers=max(args.jobs, 1)) as ex:
        results = list(
            ex.map(
                run_file, [str(data_dir / f) for f in files], files, [cj] * len(files), [args.engine_only] * len(files)
            )
        )
    elapsed = time.perf_counter() - t_start

    out.mkdir(parents=True, exist_ok=True)
    for r in results:
        dest = out / r["file"]
        dest.parent.mkdir(parents=True, exist_ok=True)
        with dest.open("w") as fh:
            fh.write("timestamp,detection\n")
            fh.writelines(f"{t},{d}\n" for t, d in zip(r["timestamps"], r["detections"]))
    res = {r["file"]: (r["timestamps"], r["detections"]) for r in results}
    detail = score_corpus_detail(res, windows, profiles)
    head = args.profile

    lines = [
        f"{'file':58s} {'win':>3s} {'det':>4s} {'tp':>3s} {'fp':>4s} {'fn':>3s} {'raw(' + head + ')':>14s} {'sec':>6s}"
    ]
    for r in results:
        f = detail[head]["files"][r["file"]]
        lines.append(
            f"{r['file']:58s} {f['n_windows']:3d} {sum(r['detections']):4d} {f['n_tp']:3d} "
            f"{f['n_fp']:4d} {f['n_fn']:3d} {f['raw']:14.3f} {r['seconds']:6.1f}"
        )
    lines.append("")
    for name in profiles:
        lines.append(f"corpus {name:20s} {detail[name]['score']:7.2f}")
    lines.append(
        f"total run time {elapsed:.1f} s ({args.jobs} worker processes, {len(files)} files, "
        f"{'engine only' if args.engine_only else 'through store + refresh runs'})"
    )
    print("\n".join(lines))

    mode = (
        "engine only, in memory (--engine-only)"
        if args.engine_only
        else "through the product: durable store, task runner, one refresh run per period, alarm rule"
    )
    md = [
        "# NAB replay of tbpanel's default anomaly model",
        "",
        f"Replay: {mode}.",
        "",
        f"Command: `benchmarks/nab.py --data {args.data} --labels {args.labels} --out {args.out} --profile {head}`",
        "",
        "| profile | normalised score |",
        "| --- | ---: |",
    ]
    md += [f"| {name} | {detail[name]['score']:.2f} |" for name in profiles]
    md += [
        "",
        f"Total run time: {elapsed:.1f} s on {args.jobs} worker processes.",
        "",
        f"Overrides: `{' '.join(args.set) or 'none'}`.",
        "",
        "Model: `ModelConfig(adaptive=True)`: every knob at its default (unless overridden above), in adaptive (monitoring) "
        "mode; the auto knobs (segment = 24 x the median sampling step, sliding step 50 %, gap / "
        "point filters, 12 aggregation points) are resolved from each file's own training rows, "
        "k by the silhouette rule at every (re)fit. Build on the probationary rows, then refresh "
        "periods of `refit_every_segments` segment steps: each new complete segment is scored once "
        "by the model in force when it completed, then the model is re-fitted on everything seen. "
        "A detection is written at the first row at or after each new alarm's creation time "
        "(alarm = new anomaly with score >= lowest enabled severity, at most one active per device).",
        "",
        "Configuration as stored:",
        "",
        "```json",
        json.dumps(config.to_dict(), indent=1, sort_keys=True),
        "```",
        "",
        "| file | windows | detections | TP | FP | FN | raw (" + head + ") | segment | refits | seconds |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        f = detail[head]["files"][r["file"]]
        s = r["stats"]
        md.append(
            f"| {r['file']} | {f['n_windows']} | {sum(r['detections'])} | {f['n_tp']} | {f['n_fp']} | "
            f"{f['n_fn']} | {f['raw']:.3f} | {s['segment_ms'] / 60000:.0f} min | {s['refits']} | "
            f"{r['seconds']:.1f} |"
        )
    (out / "summary.md").write_text("\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
