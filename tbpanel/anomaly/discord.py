"""Nearest-neighbour discord score of segments: the distance from a segment to its most similar
*non-overlapping* reference segment (the matrix-profile idea, on the model's segments).

A segment that resembles something already seen scores low wherever (and whenever) that was; a
segment unlike every reference is a discord. Segments of the same item that overlap in time are
never each other's neighbours (a sliding segment trivially resembles its half-overlapping
neighbour), so a training segment's distance is measured exactly like a new segment's.

References are at most ``max_refs`` training segments, evenly spaced in time, so scoring costs
``O(n x max_refs)`` whatever the training length; distances are squared-euclidean by BLAS,
chunked to bound memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["DiscordModel", "fit_discord", "knn_distance"]

_CHUNK = 2048


def knn_distance(
    q: np.ndarray,
    refs: np.ndarray,
    q_item: np.ndarray,
    q_start: np.ndarray,
    r_item: np.ndarray,
    r_start: np.ndarray,
    exclusion_ms: int,
) -> np.ndarray:
    """Euclidean distance of each row of ``q`` to its nearest row of ``refs``, skipping references
    of the same item whose start lies within ``exclusion_ms`` of the query's (overlaps).
    ``inf`` when no reference is eligible."""
    n = q.shape[0]
    out = np.full(n, np.inf)
    if n == 0 or refs.shape[0] == 0:
        return out
    rr = np.einsum("ij,ij->i", refs, refs)
    for c0 in range(0, n, _CHUNK):
        sl = slice(c0, min(n, c0 + _CHUNK))
        qq = q[sl]
        d2 = np.einsum("ij,ij->i", qq, qq)[:, None] + rr[None, :] - 2.0 * (qq @ refs.T)
        near = (q_item[sl, None] == r_item[None, :]) & (np.abs(q_start[sl, None] - r_start[None, :]) < exclusion_ms)
        d2[near] = np.inf
        out[sl] = np.sqrt(np.maximum(d2.min(axis=1), 0.0))
    return out


@dataclass
class DiscordModel:
    """Reference segments (feature rows, item index, start) of one feature space."""

    refs: np.ndarray  # (m, D)
    ref_item: np.ndarray  # (m,) int: index into ``items``
    ref_start: np.ndarray  # (m,) int64 ms
    items: list[str]
    exclusion_ms: int

    def distances(self, x: np.ndarray, item: str, start: np.ndarray) -> np.ndarray:
        code = self.items.index(item) if item in self.items else -1
        q_item = np.full(x.shape[0], code, dtype=np.int64)
        d = knn_distance(
            x, self.refs, q_item, np.asarray(start, np.int64), self.ref_item, self.ref_start, self.exclusion_ms
        )
        return np.where(np.isfinite(d), d, 0.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "refs": self.refs.tolist(),
            "ref_item": self.ref_item.tolist(),
            "ref_start": self.ref_start.tolist(),
            "items": list(self.items),
            "exclusion_ms": int(self.exclusion_ms),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DiscordModel:
        refs = np.asarray(d["refs"], dtype=np.float64)
        return cls(
            refs.reshape(len(d["refs"]), -1),
            np.asarray(d["ref_item"], dtype=np.int64),
            np.asarray(d["ref_start"], dtype=np.int64),
            list(d["items"]),
            int(d["exclusion_ms"]),
        )


def fit_discord(
    x: np.ndarray, item_code: np.ndarray, start: np.ndarray, items: list[str], exclusion_ms: int, max_refs: int
) -> tuple[DiscordModel, np.ndarray]:
    """References from the training rows ``x`` and every training row's own discord distance."""
    n = x.shape[0]
    keep = np.arange(n) if n <= max_refs else np.unique(np.linspace(0, n - 1, max_refs).round().astype(int))
    model = DiscordModel(
        np.ascontiguousarray(x[keep]),
        item_code[keep].astype(np.int64),
        start[keep].astype(np.int64),
        list(items),
        int(exclusion_ms),
    )
    d = knn_distance(
        x,
        model.refs,
        item_code.astype(np.int64),
        start.astype(np.int64),
        model.ref_item,
        model.ref_start,
        model.exclusion_ms,
    )
    return model, np.where(np.isfinite(d), d, 0.0)
