"""The five segment distances, pairwise and point-to-centroids, vectorised.

Euclidean, Manhattan, Chebyshev and Canberra use ``scipy.spatial.distance.cdist`` (Canberra as
scipy defines it: ``sum |u-v| / (|u|+|v|)``, 0/0 = 0). DTW is computed for all pairs at once,
one anti-diagonal of the cost matrix at a time (every cell of an anti-diagonal depends only on
the two previous anti-diagonals), inside a Sakoe-Chiba band. A feature vector made of several
fields' curves (``blocks`` fields of equal length) is compared field by field and the DTW
distances are summed, so DTW never warps one field into another.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt
from scipy.spatial.distance import cdist

__all__ = ["METRICS", "pairwise", "nearest", "dtw_pairs", "dtw_naive", "band_width"]

METRICS = ("euclidean", "manhattan", "chebyshev", "canberra", "dtw")
_SCIPY = {"euclidean": "euclidean", "manhattan": "cityblock", "chebyshev": "chebyshev", "canberra": "canberra"}


def band_width(length: int, band_percent: float) -> int:
    """Sakoe-Chiba radius in samples for a band of ``band_percent`` % of ``length`` (>= 1)."""
    return max(1, int(round(length * band_percent / 100.0)))


def dtw_pairs(a: np.ndarray, b: np.ndarray, band: int | None = None) -> np.ndarray:
    """DTW distance (absolute-difference cost, steps (1,0), (0,1), (1,1)) between ``a[p]`` and
    ``b[p]`` for every pair p; ``a`` and ``b`` are ``(n_pairs, L)``. Only cells with
    ``|i - j| <= band`` are allowed (None = unconstrained)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim == 1:
        a, b = a[None, :], b[None, :]
    n, L = a.shape
    if b.shape != (n, L):
        raise ValueError("dtw_pairs needs equally shaped (n_pairs, L) arrays")
    if L == 0:
        return np.zeros(n)
    r = L if band is None else max(int(band), 0)
    inf = np.inf
    prev2 = np.full((n, L + 1), inf)  # anti-diagonal k-2, indexed by i (DP row, 0..L)
    prev1 = np.full((n, L + 1), inf)  # anti-diagonal k-1
    prev2[:, 0] = 0.0  # D[0, 0]
    for k in range(2, 2 * L + 1):
        i_lo, i_hi = max(1, k - L), min(L, k - 1)
        # band: |i - j| = |2i - k| <= r
        i_lo = max(i_lo, (k - r + 1) // 2)  # ceil((k - r) / 2)
        i_hi = min(i_hi, (k + r) // 2)
        cur = np.full((n, L + 1), inf)
        if i_lo <= i_hi:
            ii = np.arange(i_lo, i_hi + 1)
            jj = k - ii
            cost = np.abs(a[:, ii - 1] - b[:, jj - 1])
            best = np.minimum(np.minimum(prev1[:, ii - 1], prev1[:, ii]), prev2[:, ii - 1])
            cur[:, ii] = cost + best
        prev2, prev1 = prev1, cur
    return prev1[:, L]


def dtw_naive(a: Iterable[float], b: Iterable[float], band: int | None = None) -> float:
    """Textbook O(L^2) DTW with the same conventions as :func:`dtw_pairs` (for tests)."""
    a = list(map(float, a))
    b = list(map(float, b))
    L1, L2 = len(a), len(b)
    r = max(L1, L2) if band is None else band
    D = [[float("inf")] * (L2 + 1) for _ in range(L1 + 1)]
    D[0][0] = 0.0
    for i in range(1, L1 + 1):
        for j in range(1, L2 + 1):
            if abs(i - j) > r:
                continue
            D[i][j] = abs(a[i - 1] - b[j - 1]) + min(D[i - 1][j], D[i][j - 1], D[i - 1][j - 1])
    return D[L1][L2]


def _dtw_matrix(
    x: np.ndarray, y: np.ndarray, blocks: int, band_percent: float, max_pairs: int = 200_000
) -> npt.NDArray[np.float64]:
    n, m = x.shape[0], y.shape[0]
    d = x.shape[1]
    if d % blocks:
        raise ValueError("feature length is not a multiple of the number of fields")
    L = d // blocks
    band = band_width(L, band_percent)
    out = np.zeros((n, m))
    if n == 0 or m == 0:
        return out
    rows = max(1, max_pairs // max(m, 1))
    for r0 in range(0, n, rows):
        xs = x[r0 : r0 + rows]
        nr = xs.shape[0]
        acc = np.zeros(nr * m)
        for blk in range(blocks):
            cols = slice(blk * L, (blk + 1) * L)
            A = np.repeat(xs[:, cols], m, axis=0)
            B = np.tile(y[:, cols], (nr, 1))
            acc += dtw_pairs(A, B, band)
        out[r0 : r0 + nr] = acc.reshape(nr, m)
    return out


def pairwise(
    x: np.ndarray, y: np.ndarray, metric: str = "euclidean", *, blocks: int = 1, band_percent: float = 10.0
) -> npt.NDArray[np.float64]:
    """``(len(x), len(y))`` distances between the rows of ``x`` and ``y``."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    y = np.atleast_2d(np.asarray(y, dtype=np.float64))
    if metric == "dtw":
        return _dtw_matrix(x, y, blocks, band_percent)
    if metric not in _SCIPY:
        raise ValueError(f"unknown distance {metric!r}; choose from {', '.join(METRICS)}")
    d: npt.NDArray[np.float64] = cdist(x, y, metric=_SCIPY[metric])
    return d


def nearest(
    x: np.ndarray,
    refs: np.ndarray,
    metric: str = "euclidean",
    *,
    blocks: int = 1,
    band_percent: float = 10.0,
    chunk: int = 4096,
) -> tuple[np.ndarray, np.ndarray]:
    """Distance from each row of ``x`` to its nearest row of ``refs``, and that row's index."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    n = x.shape[0]
    dist = np.empty(n)
    idx = np.empty(n, dtype=np.int64)
    if n == 0:
        return dist, idx
    step = max(1, min(chunk, 20_000_000 // max(len(refs), 1) // max(x.shape[1], 1)))
    for r0 in range(0, n, step):
        d = pairwise(x[r0 : r0 + step], refs, metric, blocks=blocks, band_percent=band_percent)
        j = np.argmin(d, axis=1)
        idx[r0 : r0 + step] = j
        dist[r0 : r0 + step] = d[np.arange(d.shape[0]), j]
    return dist, idx
