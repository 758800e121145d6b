"""Regression metrics for affinity predictions (−log10 M units) with bootstrap intervals."""

from __future__ import annotations

import numpy as np
from scipy import stats

METRICS = ("rmse", "mae", "pearson", "spearman")


def _validated(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true, dtype=np.float64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.float64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{y_true.size} labels but {y_pred.size} predictions")
    return y_true, y_pred


def _correlation(kind: str, y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Pearson or Spearman r; NaN with fewer than 2 points or a constant input."""
    if y_true.size < 2 or np.ptp(y_true) == 0.0 or np.ptp(y_pred) == 0.0:
        return float("nan")
    if kind == "pearson":
        return float(stats.pearsonr(y_true, y_pred).statistic)
    return float(stats.spearmanr(y_true, y_pred).statistic)


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """RMSE, MAE (label units), Pearson and Spearman r of (n,) labels and predictions (NaN: n=0)."""
    y_true, y_pred = _validated(y_true, y_pred)
    if y_true.size == 0:
        return {name: float("nan") for name in METRICS} | {"n": 0}
    error = y_pred - y_true
    return {
        "rmse": float(np.sqrt(np.mean(error**2))),
        "mae": float(np.mean(np.abs(error))),
        "pearson": _correlation("pearson", y_true, y_pred),
        "spearman": _correlation("spearman", y_true, y_pred),
        "n": int(y_true.size),
    }


def _row_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r of each row pair of (R, n) arrays; NaN where a row is constant."""
    constant = (np.ptp(a, axis=1) == 0.0) | (np.ptp(b, axis=1) == 0.0)
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.sum(a * b, axis=1) / np.sqrt(np.sum(a * a, axis=1) * np.sum(b * b, axis=1))
    r[constant] = np.nan
    return np.clip(r, -1.0, 1.0)


def bootstrap_intervals(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    *,
    n_resamples: int = 1000,
    level: float = 0.95,
    random_state: int = 0,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals of each metric, resampling complexes with replacement.

    Resamples where a correlation is undefined (constant values) are left out of that metric's
    percentiles; an interval is (NaN, NaN) when fewer than 2 complexes are given.
    """
    y_true, y_pred = _validated(y_true, y_pred)
    if y_true.size < 2:
        return {name: (float("nan"), float("nan")) for name in METRICS}
    rng = np.random.default_rng(random_state)
    draws = rng.integers(0, y_true.size, size=(n_resamples, y_true.size))
    truth, pred = y_true[draws], y_pred[draws]  # (n_resamples, n), vectorised over resamples
    error = pred - truth
    values = {
        "rmse": np.sqrt(np.mean(error**2, axis=1)),
        "mae": np.mean(np.abs(error), axis=1),
        "pearson": _row_correlation(truth, pred),
        "spearman": _row_correlation(stats.rankdata(truth, axis=1), stats.rankdata(pred, axis=1)),
    }
    tail = 100.0 * (1.0 - level) / 2.0
    intervals = {}
    for name, series in values.items():
        finite = np.asarray(series)[np.isfinite(series)]
        if finite.size == 0:
            intervals[name] = (float("nan"), float("nan"))
        else:
            low, high = np.percentile(finite, [tail, 100.0 - tail])
            intervals[name] = (float(low), float(high))
    return intervals
