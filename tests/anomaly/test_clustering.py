"""K-Means / DBSCAN / Gaussian mixture: raw distances, auto sizing records, persistence."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from tbpanel.anomaly import ModelConfig
from tbpanel.anomaly.clustering import ClusterModel, fit_clusters, gmm_log_likelihood


def blobs(k=3, n=60, dim=4, seed=0, spread=0.03):
    rng = np.random.default_rng(seed)
    centres = np.eye(k, dim)
    return np.vstack([c + rng.normal(0, spread, size=(n, dim)) for c in centres]), centres


def test_kmeans_fixed_k_distance_to_nearest_centroid():
    x, _ = blobs()
    cfg = ModelConfig(algorithm="kmeans", auto_clusters=False, n_clusters=3)
    m, labels = fit_clusters(x, cfg)
    assert m.k == 3 and m.sizes.sum() == x.shape[0] and sorted(m.sizes.tolist()) == [60, 60, 60]
    d, lab = m.distances(x)
    full = cdist(x, m.centroids)
    np.testing.assert_allclose(d, full.min(axis=1))
    np.testing.assert_array_equal(lab, labels)


@pytest.mark.parametrize("metric", ["euclidean", "manhattan", "chebyshev", "canberra", "dtw"])
def test_kmeans_uses_the_configured_distance(metric):
    x, _ = blobs(dim=6)
    m, _ = fit_clusters(x, ModelConfig(auto_clusters=False, n_clusters=3, distance=metric))
    far = np.full((1, 6), 3.0)
    d_far, _ = m.distances(far)
    d_in, _ = m.distances(x)
    assert d_far[0] > d_in.max()


def test_kmeans_auto_k_records_silhouette_rule():
    x, _ = blobs(k=3)
    m, _ = fit_clusters(x, ModelConfig(auto_clusters=True))
    assert m.k == 3
    assert "silhouette" in m.auto["rule"]
    assert m.auto["chosen"] == 3
    ks = [k for k, _ in m.auto["candidates"]]
    assert ks[0] == 2 and 3 in ks
    best = max(m.auto["candidates"], key=lambda c: c[1])
    assert best[0] == 3
    json.dumps(m.auto)


def test_dbscan_distance_is_to_nearest_core_point_and_auto_eps_recorded():
    x, _ = blobs()
    outlier = np.array([[2.0, 2.0, 2.0, 2.0]])
    data = np.vstack([x, outlier])
    m, _ = fit_clusters(
        data, ModelConfig(algorithm="dbscan", dbscan_eps=0.2, dbscan_min_samples=4, auto_clusters=False)
    )
    assert m.k == 3 and m.info["noise"] >= 1
    d, _ = m.distances(outlier)
    assert d[0] == pytest.approx(cdist(outlier, m.refs).min())
    assert not np.any(np.all(m.refs == outlier, axis=1))  # noise is not a core point
    auto, _ = fit_clusters(data, ModelConfig(algorithm="dbscan", auto_clusters=True))
    assert "k-distance" in auto.auto["rule"] and auto.auto["chosen"] > 0 and auto.auto["clusters"] >= 1


def test_dbscan_with_dtw_uses_precomputed_matrix():
    x, _ = blobs(dim=6, n=20)
    m, _ = fit_clusters(
        x, ModelConfig(algorithm="dbscan", distance="dtw", dbscan_eps=0.3, dbscan_min_samples=3, auto_clusters=False)
    )
    d, _ = m.distances(np.full((1, 6), 3.0))
    assert d[0] > 1.0


def test_gmm_raw_distance_is_shifted_negative_log_likelihood():
    x, _ = blobs()
    m, _ = fit_clusters(x, ModelConfig(algorithm="gmm", gmm_components=3, auto_clusters=False))
    d, _ = m.distances(x)
    assert d.min() == pytest.approx(0.0, abs=1e-9) and np.all(d >= 0)
    ll = gmm_log_likelihood(x, m.gmm)
    np.testing.assert_allclose(d, -ll - m.gmm["floor"], atol=1e-9)
    d_far, _ = m.distances(np.full((1, 4), 2.0))
    assert d_far[0] > d.max()


@pytest.mark.parametrize("cov", ["diag", "full", "spherical", "tied"])
def test_gmm_likelihood_matches_sklearn(cov):
    from sklearn.mixture import GaussianMixture

    x, _ = blobs()
    gm = GaussianMixture(3, covariance_type=cov, random_state=0, reg_covar=1e-4).fit(x)
    g = {
        "weights": gm.weights_,
        "means": gm.means_,
        "precisions_cholesky": gm.precisions_cholesky_,
        "covariance_type": cov,
    }
    np.testing.assert_allclose(gmm_log_likelihood(x, g), gm.score_samples(x), rtol=1e-7)


def test_gmm_auto_records_bic():
    x, _ = blobs()
    m, _ = fit_clusters(x, ModelConfig(algorithm="gmm", auto_clusters=True))
    assert "BIC" in m.auto["rule"] and m.auto["chosen"] == m.k
    assert m.auto["chosen"] == min(m.auto["candidates"], key=lambda c: c[1])[0]


@pytest.mark.parametrize("algorithm", ["kmeans", "dbscan", "gmm"])
def test_cluster_model_json_round_trip(algorithm):
    x, _ = blobs()
    m, _ = fit_clusters(
        x,
        ModelConfig(
            algorithm=algorithm,
            auto_clusters=False,
            n_clusters=3,
            gmm_components=3,
            dbscan_eps=0.2,
            dbscan_min_samples=4,
        ),
    )
    again = ClusterModel.from_dict(json.loads(json.dumps(m.to_dict())))
    probe = np.vstack([x[:5], np.full((1, 4), 1.5)])
    d1, l1 = m.distances(probe)
    d2, l2 = again.distances(probe)
    np.testing.assert_array_equal(d1, d2)
    np.testing.assert_array_equal(l1, l2)


def test_no_training_segments():
    with pytest.raises(ValueError):
        fit_clusters(np.empty((0, 3)), ModelConfig())


def test_rare_kmeans_clusters_do_not_absorb_anomalies():
    """Anomalies in the training data that K-Means gives a centroid of their own still score high."""
    from tbpanel.anomaly.clustering import fit_clusters
    from tbpanel.anomaly.config import ModelConfig

    rng = np.random.default_rng(3)
    normal = np.vstack([rng.normal(0.2, 0.01, (150, 4)), rng.normal(0.6, 0.01, (150, 4))])
    outliers = np.full((2, 4), 0.95)
    x = np.vstack([normal, outliers])
    cfg = ModelConfig(auto_clusters=False, n_clusters=3, threshold_percent=1.0)
    model, labels = fit_clusters(x, cfg)
    assert model.info["rare_clusters"], "the two outliers should form a rare cluster"
    d, _ = model.distances(x)
    assert d[-2:].min() > 10 * np.percentile(d[:-2], 99)
    restored = type(model).from_dict(model.to_dict())
    assert np.allclose(restored.distances(x)[0], d)
