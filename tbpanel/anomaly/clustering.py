"""Clustering of segment feature vectors and the raw distance of a segment to the model.

* **K-Means** (sklearn): raw distance = distance (chosen metric) to the nearest centroid.
* **DBSCAN** (sklearn): raw distance = distance to the nearest *core* point.
* **Gaussian mixture** (sklearn): raw distance = negative log-likelihood, shifted by the lowest
  training value so that it is >= 0 on the training data (scores stay ratios to ``d_thr``).

Auto mode picks the size itself and records how (``auto`` dict with ``rule``, ``candidates``,
``chosen``): K-Means by the silhouette over k = 2..10, the Gaussian mixture by BIC over
1..8 components, DBSCAN's epsilon from the k-distance curve.
Everything a model needs to score is plain arrays, so it persists as JSON.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from scipy.special import logsumexp

from .distances import nearest, pairwise

if TYPE_CHECKING:
    from .config import ModelConfig

__all__ = ["ClusterModel", "fit_clusters", "gmm_log_likelihood"]

_KMAX = 10
_GMM_MAX = 8
_SIL_SAMPLE = 1000


@dataclass
class ClusterModel:
    algorithm: str
    metric: str
    blocks: int
    band_percent: float
    centroids: np.ndarray  # (k, D): centroids / cluster means / component means
    sizes: np.ndarray  # (k,) training segments per cluster
    refs: np.ndarray  # (m, D) points distances are measured to
    ref_labels: np.ndarray  # (m,) cluster of each reference point
    auto: dict[str, Any] | None = None
    gmm: dict[str, Any] | None = None  # weights, means, precisions_cholesky, covariance_type, floor
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def k(self) -> int:
        return int(self.centroids.shape[0])

    def distances(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw distance and nearest cluster id for each row of ``x``."""
        x = np.asarray(x, dtype=np.float64)
        if x.shape[0] == 0:
            return np.empty(0), np.empty(0, dtype=np.int64)
        if self.algorithm == "gmm":
            g = self.gmm
            assert g is not None  # a "gmm" model always carries its mixture
            lp = _gmm_component_logprob(x, g) + np.log(np.asarray(g["weights"]))[None, :]
            ll: npt.NDArray[np.float64] = logsumexp(lp, axis=1)
            d = np.maximum(-ll - g["floor"], 0.0)
            return d, np.argmax(lp, axis=1).astype(np.int64)
        d, j = nearest(x, self.refs, self.metric, blocks=self.blocks, band_percent=self.band_percent)
        return d, self.ref_labels[j].astype(np.int64)

    def _refs_are_centroids(self) -> bool:
        return self.algorithm == "kmeans" and self.refs.shape == self.centroids.shape

    def to_dict(self) -> dict[str, Any]:
        g = None
        if self.gmm is not None:
            g = {k: (np.asarray(v).tolist() if isinstance(v, np.ndarray) else v) for k, v in self.gmm.items()}
        return {
            "algorithm": self.algorithm,
            "metric": self.metric,
            "blocks": self.blocks,
            "band_percent": self.band_percent,
            "centroids": self.centroids.tolist(),
            "sizes": self.sizes.tolist(),
            "refs": None if self._refs_are_centroids() else self.refs.tolist(),
            "ref_labels": None if self._refs_are_centroids() else self.ref_labels.tolist(),
            "auto": self.auto,
            "gmm": g,
            "info": self.info,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClusterModel:
        c = np.asarray(d["centroids"], dtype=np.float64).reshape(len(d["centroids"]), -1)
        if d["refs"] is None:
            refs, rl = c, np.arange(c.shape[0])
        else:
            refs = np.asarray(d["refs"], dtype=np.float64).reshape(len(d["refs"]), -1)
            rl = np.asarray(d["ref_labels"], dtype=np.int64)
        g = None
        if d.get("gmm") is not None:
            g = dict(d["gmm"])
            for k in ("weights", "means", "precisions_cholesky"):
                g[k] = np.asarray(g[k], dtype=np.float64)
        return cls(
            d["algorithm"],
            d["metric"],
            int(d["blocks"]),
            float(d["band_percent"]),
            c,
            np.asarray(d["sizes"], dtype=np.int64),
            refs,
            rl,
            d.get("auto"),
            g,
            d.get("info", {}),
        )


# ------------------------------------------------------------------ GMM maths
def _gmm_component_logprob(x: np.ndarray, g: dict[str, Any]) -> npt.NDArray[np.float64]:
    """log N(x | mu_k, Sigma_k) for every row and component (same maths as sklearn)."""
    means = np.asarray(g["means"])
    pc = np.asarray(g["precisions_cholesky"])
    ct = g["covariance_type"]
    n, dim = x.shape
    k = means.shape[0]
    if ct == "full":
        log_det = np.sum(np.log(np.diagonal(pc, axis1=1, axis2=2)), axis=1)
        lp = np.empty((n, k))
        for c in range(k):  # per component (k is small), vectorised over rows
            y = x @ pc[c] - means[c] @ pc[c]
            lp[:, c] = np.sum(y * y, axis=1)
    elif ct == "tied":
        log_det = np.full(k, np.sum(np.log(np.diag(pc))))
        lp = np.empty((n, k))
        for c in range(k):
            y = x @ pc - means[c] @ pc
            lp[:, c] = np.sum(y * y, axis=1)
    elif ct == "diag":
        log_det = np.sum(np.log(pc), axis=1)
        p = pc**2
        lp = np.sum(means**2 * p, 1) - 2.0 * x @ (means * p).T + (x**2) @ p.T
    else:  # spherical
        log_det = dim * np.log(pc)
        p = pc**2
        lp = np.sum(means**2, 1) * p - 2 * (x @ means.T) * p + np.outer(np.sum(x**2, 1), p)
    out: npt.NDArray[np.float64] = -0.5 * (dim * np.log(2 * np.pi) + lp) + log_det[None, :]
    return out


def gmm_log_likelihood(x: np.ndarray, g: dict[str, Any]) -> npt.NDArray[np.float64]:
    lp = _gmm_component_logprob(np.asarray(x, dtype=np.float64), g) + np.log(np.asarray(g["weights"]))[None, :]
    ll: npt.NDArray[np.float64] = logsumexp(lp, axis=1)
    return ll


# ------------------------------------------------------------------ fitting
def _kmeans(x: np.ndarray, k: int, cfg: ModelConfig, n_init: int = 3) -> Any:
    from sklearn.cluster import KMeans

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning on duplicate points
        return KMeans(n_clusters=k, max_iter=cfg.max_iter, n_init=n_init, random_state=cfg.random_state).fit(x)


def _n_distinct(x: np.ndarray, cap: int) -> int:
    return int(np.unique(np.round(x[: 20 * cap], 12), axis=0).shape[0]) if x.shape[0] else 0


def fit_clusters(x: np.ndarray, cfg: ModelConfig, blocks: int = 1) -> tuple[ClusterModel, np.ndarray]:
    """Fit the configured algorithm on the (normalised) training matrix ``x``.

    Returns the model and the training segments' cluster labels. sklearn runs single-threaded
    here: for segment matrices of this size its OpenMP start-up costs more than it saves
    (measured ~10x slower K-Means with 2 threads), and builds run beside the server's work."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return _fit_clusters(x, cfg, blocks)


def _fit_clusters(x: np.ndarray, cfg: ModelConfig, blocks: int) -> tuple[ClusterModel, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    if n == 0:
        raise ValueError("no training segments passed the segment filters")
    metric, band = cfg.distance, cfg.dtw_band_percent
    if cfg.algorithm == "kmeans":
        distinct = _n_distinct(x, _KMAX + 1)
        auto = None
        if cfg.auto_clusters:
            from sklearn.metrics import silhouette_score

            # candidates are fitted and judged on an evenly spaced sample (bounded cost)
            xs = x if n <= _SIL_SAMPLE else x[np.linspace(0, n - 1, _SIL_SAMPLE).round().astype(int)]
            dm = pairwise(xs, xs, "euclidean")
            cands = []
            for k in range(2, min(_KMAX, distinct - 1, xs.shape[0] - 1) + 1):
                km = _kmeans(xs, k, cfg, n_init=1)
                if len(np.unique(km.labels_)) < 2:
                    continue
                cands.append([k, float(silhouette_score(dm, km.labels_, metric="precomputed"))])
            chosen = max(cands, key=lambda c: c[1])[0] if cands else 1
            auto = {
                "rule": f"silhouette: max over k=2..{_KMAX} (euclidean, on <= {_SIL_SAMPLE} evenly spaced segments)",
                "candidates": cands,
                "chosen": int(chosen),
            }
            k = int(chosen)
        else:
            k = int(min(cfg.n_clusters, max(distinct, 1)))
        km = _kmeans(x, k, cfg)
        cents = km.cluster_centers_.astype(np.float64)
        # A cluster holding fewer segments than the anomalous share (threshold_percent) is not
        # behaviour but a group of anomalies that K-Means gave a centroid of their own; distances
        # are measured to the regular clusters only, so such segments still score high.
        counts = np.bincount(km.labels_, minlength=k)
        rare = counts < cfg.threshold_percent / 100.0 * n
        regular = np.flatnonzero(~rare) if (~rare).any() else np.arange(k)
        model = ClusterModel(
            "kmeans",
            metric,
            blocks,
            band,
            cents,
            np.zeros(k, np.int64),
            cents[regular],
            regular,
            auto,
            info={
                "rare_clusters": np.flatnonzero(rare).tolist(),
                "rare_rule": "fewer members than threshold_percent of the training segments)",
            },
        )
    elif cfg.algorithm == "dbscan":
        model = _fit_dbscan(x, cfg, blocks)
    elif cfg.algorithm == "gmm":
        model = _fit_gmm(x, cfg)
    else:
        raise ValueError(f"unknown algorithm {cfg.algorithm!r}")
    _, labels = model.distances(x)
    model.sizes = np.bincount(labels, minlength=model.k).astype(np.int64)
    return model, labels


def _fit_dbscan(x: np.ndarray, cfg: ModelConfig, blocks: int) -> ClusterModel:
    from sklearn.cluster import DBSCAN

    metric, band = cfg.distance, cfg.dtw_band_percent
    n = x.shape[0]
    ms = int(min(cfg.dbscan_min_samples, max(n - 1, 1)))
    pre = None
    if metric == "dtw":
        pre = pairwise(x, x, "dtw", blocks=blocks, band_percent=band)
    auto = None
    eps = float(cfg.dbscan_eps)
    if cfg.auto_clusters:
        # k-distance curve: distance of each point to its ms-th nearest neighbour (itself excluded)
        dm = pre if pre is not None else pairwise(x, x, metric) if n <= 5000 else None
        if dm is None:
            from sklearn.neighbors import NearestNeighbors

            sk = {"manhattan": "manhattan", "chebyshev": "chebyshev", "canberra": "canberra"}.get(metric, "euclidean")
            kd = NearestNeighbors(n_neighbors=ms + 1, metric=sk).fit(x).kneighbors(x)[0][:, -1]
        else:
            kd = np.sort(dm, axis=1)[:, min(ms, n - 1)]
        qs = [0.8, 0.9, 0.95]
        cands = [[q, float(np.quantile(kd, q))] for q in qs]
        eps = max(cands[1][1], 1e-9)
        auto = {
            "rule": f"k-distance: eps = 90th percentile of the distance to the {ms}-th nearest neighbour",
            "candidates": cands,
            "chosen": eps,
        }
    if pre is not None:
        db = DBSCAN(eps=eps, min_samples=ms, metric="precomputed").fit(pre)
    else:
        sk = {"manhattan": "manhattan", "chebyshev": "chebyshev", "canberra": "canberra"}.get(metric, "euclidean")
        db = DBSCAN(eps=eps, min_samples=ms, metric=sk).fit(x)
    core = np.asarray(db.core_sample_indices_, dtype=np.int64)
    info: dict[str, Any] = {"eps": eps, "min_samples": ms, "noise": int(np.sum(db.labels_ < 0))}
    if core.size == 0:  # everything is noise: every training point is a reference
        core = np.arange(n)
        labels = np.zeros(n, dtype=np.int64)
        info["fallback"] = "no core points; all training segments used as references"
    else:
        labels = db.labels_[core].astype(np.int64)
    refs = x[core]
    k = int(labels.max()) + 1
    cents = np.vstack([refs[labels == c].mean(axis=0) for c in range(k)])
    if auto is not None:
        auto["clusters"] = k
    return ClusterModel("dbscan", metric, blocks, band, cents, np.zeros(k, np.int64), refs, labels, auto, None, info)


def _gm(x: np.ndarray, k: int, cfg: ModelConfig) -> Any:
    from sklearn.mixture import GaussianMixture

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return GaussianMixture(
            n_components=k,
            covariance_type=cfg.gmm_covariance,
            max_iter=cfg.max_iter,
            reg_covar=1e-4,
            random_state=cfg.random_state,
        ).fit(x)


def _fit_gmm(x: np.ndarray, cfg: ModelConfig) -> ClusterModel:
    n = x.shape[0]
    auto = None
    if cfg.auto_clusters:
        cands = []
        best: tuple[Any, float, int] | None = None
        for k in range(1, min(_GMM_MAX, max(n // 2, 1)) + 1):
            gm = _gm(x, k, cfg)
            b = float(gm.bic(x))
            cands.append([k, b])
            if best is None or b < best[1]:
                best = (gm, b, k)
        assert best is not None  # k = 1 is always a candidate
        gm = best[0]
        auto = {"rule": "BIC (min over components=1..8)", "candidates": cands, "chosen": best[2]}
    else:
        gm = _gm(x, int(min(cfg.gmm_components, n)), cfg)
    g = {
        "weights": gm.weights_.astype(np.float64),
        "means": gm.means_.astype(np.float64),
        "precisions_cholesky": np.asarray(gm.precisions_cholesky_, dtype=np.float64),
        "covariance_type": cfg.gmm_covariance,
        "floor": 0.0,
    }
    g["floor"] = float(np.min(-gmm_log_likelihood(x, g)))
    cents = g["means"]
    k = cents.shape[0]
    return ClusterModel(
        "gmm", "nll", 1, cfg.dtw_band_percent, cents, np.zeros(k, np.int64), cents, np.arange(k), auto, g
    )
