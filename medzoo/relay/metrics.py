"""Continual-learning metrics over the accuracy matrix, and bootstrap confidence intervals. Pure functions.

``R[i][j]`` is the score on site ``j``'s test split after training on the ``i``-th site of the order (sites
indexed in training order; ``T`` sites). ``b[j]`` is the score of the initial model on site ``j``. With
``higher_is_better=False`` (e.g. an error in mm) every difference is negated, so that for every task a
negative BWT means forgetting and a positive forgetting value means loss.

* final average: ``mean_j R[T-1][j]``.
* BWT (Lopez-Paz & Ranzato 2017): ``1/(T-1) * sum_{j<T-1} (R[T-1][j] - R[j][j])``.
* forgetting (Chaudhry et al. 2018, max-based): ``1/(T-1) * sum_{j<T-1} max_{l<T-1} (R[l][j] - R[T-1][j])``.
* FWT (Lopez-Paz & Ranzato 2017): ``1/(T-1) * sum_{j>=1} (R[j-1][j] - b[j])``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Matrix = Sequence[Sequence[float]]


def _check(R: Matrix) -> np.ndarray:
    a = np.asarray(R, dtype=float)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] < 1:
        raise ValueError(f"accuracy matrix must be square T x T, got shape {a.shape}")
    return a


def final_average(R: Matrix) -> float:
    """Mean score of the final model over all training sites.

    Example:
        >>> final_average([[0.8, 0.2], [0.6, 0.9]])
        0.75
    """
    a = _check(R)
    return float(a[-1].mean())


def backward_transfer(R: Matrix, higher_is_better: bool = True) -> float:
    """Lopez-Paz & Ranzato BWT; negative = forgetting. NaN for a single site.

    Example:
        >>> round(backward_transfer([[0.8, 0.2], [0.6, 0.9]]), 6)
        -0.2
    """
    a = _check(R)
    s = 1.0 if higher_is_better else -1.0
    T = a.shape[0]
    if T < 2:
        return float("nan")
    return float(s * np.mean([a[-1, j] - a[j, j] for j in range(T - 1)]))


def forgetting(R: Matrix, higher_is_better: bool = True) -> float:
    """Chaudhry et al. max-based average forgetting; positive = loss. NaN for a single site.

    Example:
        >>> round(forgetting([[0.8, 0.1, 0.0], [0.9, 0.7, 0.1], [0.5, 0.6, 0.9]]), 6)
        0.25
    """
    a = _check(R)
    s = 1.0 if higher_is_better else -1.0
    T = a.shape[0]
    if T < 2:
        return float("nan")
    return float(np.mean([max(s * a[l, j] for l in range(T - 1)) - s * a[-1, j] for j in range(T - 1)]))


def forward_transfer(R: Matrix, baseline: Sequence[float], higher_is_better: bool = True) -> float:
    """Lopez-Paz & Ranzato FWT against the initial model's scores ``baseline[j]``. NaN for a single site."""
    a = _check(R)
    s = 1.0 if higher_is_better else -1.0
    T = a.shape[0]
    if T < 2:
        return float("nan")
    return float(s * np.mean([a[j - 1, j] - baseline[j] for j in range(1, T)]))


def bootstrap_ci(final_samples: Sequence[Sequence[float]], diag_samples: Sequence[Sequence[float]] | None = None, *,
                 n_boot: int = 1000, seed: int = 0, higher_is_better: bool = True, level: float = 0.95
                 ) -> dict[str, list[float]]:
    """Percentile bootstrap CIs of the final average and BWT, resampling test images within each site.

    Args:
        final_samples: per-site lists of per-sample scores of the final model (sites in training order).
        diag_samples: per-site lists of per-sample scores of the model just after training on that site, on the
            same samples in the same order (paired with ``final_samples``); needed for the BWT interval.

    Returns:
        ``{"final_avg": [lo, hi], "bwt": [lo, hi]}`` (``bwt`` only with ``diag_samples`` and >= 2 sites).
    """
    rng = np.random.default_rng(seed)
    s = 1.0 if higher_is_better else -1.0
    fin = [np.asarray(v, dtype=float) for v in final_samples]
    dia = [np.asarray(v, dtype=float) for v in diag_samples] if diag_samples is not None else None
    T = len(fin)
    avgs, bwts = np.empty(n_boot), np.empty(n_boot)
    for b in range(n_boot):
        idx = [rng.integers(0, len(v), len(v)) for v in fin]
        avgs[b] = np.mean([fin[j][idx[j]].mean() for j in range(T)])
        if dia is not None and T > 1:
            bwts[b] = s * np.mean([(fin[j][idx[j]] - dia[j][idx[j]]).mean() for j in range(T - 1)])
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    out = {"final_avg": [float(x) for x in np.percentile(avgs, q)]}
    if dia is not None and T > 1:
        out["bwt"] = [float(x) for x in np.percentile(bwts, q)]
    return out


def mean_ci(samples: Sequence[float], *, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> list[float]:
    """Percentile bootstrap CI of a mean."""
    v = np.asarray(samples, dtype=float)
    if len(v) == 0:
        return [float("nan"), float("nan")]
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), (n_boot, len(v)))].mean(1)
    return [float(x) for x in np.percentile(means, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])]
