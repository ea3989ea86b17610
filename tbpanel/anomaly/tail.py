"""Adaptive thresholds from a score history: peaks over threshold (POT).

The tail of the training scores above a high quantile ``u`` is modelled by a generalised Pareto
distribution (fitted by the method of moments, Hosking & Wallis 1987; the SPOT detector of
Siffer et al., KDD 2017, uses the same construction), and the threshold is the score that a
normal segment exceeds with probability ``risk``::

    z = u + sigma / xi * ((risk * n / n_u) ** -xi - 1)        (xi != 0)
    z = u - sigma * log(risk * n / n_u)                         (xi == 0)

It adapts to the history's own spread: a heavy tail (rare big excursions already seen) raises
the threshold, a light one keeps it close to the bulk. With too few excesses to fit, the
threshold is the largest score seen, scaled by the tail's extrapolation of an exponential tail.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["pot_threshold"]

#: share of the history above the tail's starting quantile
TAIL_FRACTION = 0.05
#: fewest excesses needed for a GPD fit
MIN_EXCESSES = 10
#: the shape parameter is bounded: a very heavy or very short tail from few points is noise
XI_BOUNDS = (-0.5, 0.5)


def pot_threshold(scores: np.ndarray, risk: float) -> float:
    """The score exceeded with probability ``risk`` under a GPD fit of the history's upper tail
    (never below the tail's start, never zero)."""
    s = np.asarray(scores, dtype=np.float64)
    s = s[np.isfinite(s)]
    if s.size == 0:
        return 1.0
    n = s.size
    u = float(np.quantile(s, 1.0 - TAIL_FRACTION))
    y = s[s > u] - u
    if y.size < MIN_EXCESSES:
        top = float(s.max())
        med = float(np.median(s))
        spread = max(top - med, 1e-9)
        return max(top + spread * max(math.log(max(1.0 / (risk * n), 1.0)), 0.0) * 0.25, 1e-9)
    m = float(y.mean())
    v = float(y.var())
    if v <= 0 or m <= 0:
        return max(u + m, 1e-9)
    xi = 0.5 * (1.0 - m * m / v)
    sigma = 0.5 * m * (m * m / v + 1.0)
    xi = min(max(xi, XI_BOUNDS[0]), XI_BOUNDS[1])
    r = risk * n / y.size
    if r >= 1.0:
        return max(u, 1e-9)
    if abs(xi) < 1e-6:
        z = u - sigma * math.log(r)
    else:
        z = u + sigma / xi * (r ** (-xi) - 1.0)
    return max(float(z), u, 1e-9)
