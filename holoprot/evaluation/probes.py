"""Probes of per-residue features: what a linear model or the nearest neighbours read from them.

Every probe is fit on train rows and scored on test rows, and returns one value per test row
(1 for a correct prediction, or the fraction of agreeing neighbours), so that a caller can
average it over any subset of the test rows. Everything is deterministic: the logistic regression
is seeded and the neighbour search is exact.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import NearestNeighbors
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from holoprot.errors import HoloprotError


def _check(train_y: np.ndarray, test_y: np.ndarray, what: str) -> None:
    if len(np.unique(train_y)) < 2 or len(test_y) == 0:
        raise HoloprotError(f"{what} needs two classes among the train rows and a test row")


def logistic_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    seed: int = 0,
    max_iter: int = 2000,
) -> dict:
    """Multinomial logistic regression (sklearn lbfgs, C = 1, ``random_state=seed``) on features
    standardised with the train rows' mean and scale.

    Args:
        train_x, test_x: (N, F) features.
        train_y, test_y: (N,) class labels (strings).

    Returns ``correct`` (N_test,) float64 0/1, ``predicted`` (N_test,), ``n_iter`` and
    ``converged`` (fewer iterations than `max_iter`).
    """
    train_y, test_y = np.asarray(train_y, str), np.asarray(test_y, str)
    _check(train_y, test_y, "logistic_probe")
    probe = make_pipeline(
        StandardScaler(), LogisticRegression(max_iter=max_iter, random_state=seed)
    )
    probe.fit(np.asarray(train_x, np.float64), train_y)
    predicted = probe.predict(np.asarray(test_x, np.float64))
    n_iter = int(np.max(probe[-1].n_iter_))
    return {
        "correct": (predicted == test_y).astype(np.float64),
        "predicted": predicted,
        "n_iter": n_iter,
        "converged": n_iter < max_iter,
    }


def knn_agreement(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    k: int = 10,
) -> np.ndarray:
    """Fraction of each test row's `k` nearest train rows (Euclidean, on features standardised
    with the train rows' mean and scale; exact search) whose label equals the test row's,
    (N_test,) float64."""
    train_y, test_y = np.asarray(train_y, str), np.asarray(test_y, str)
    _check(train_y, test_y, "knn_agreement")
    if len(train_y) < k:
        raise HoloprotError(f"knn_agreement needs at least k = {k} train rows")
    scaler = StandardScaler().fit(np.asarray(train_x, np.float64))
    nn = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(
        scaler.transform(np.asarray(train_x, np.float64))
    )
    _, neighbours = nn.kneighbors(scaler.transform(np.asarray(test_x, np.float64)))
    return (train_y[neighbours] == test_y[:, None]).mean(axis=1)


def majority_class(train_y: np.ndarray, test_y: np.ndarray) -> dict:
    """The baselines without features: ``correct`` (N_test,) of always predicting the most common
    train label (ties: the first in sorted order), and ``knn`` (N_test,): the expected fraction of
    k random train rows that share each test row's label (its label's train frequency)."""
    train_y, test_y = np.asarray(train_y, str), np.asarray(test_y, str)
    _check(train_y, test_y, "majority_class")
    names, counts = np.unique(train_y, return_counts=True)
    frequency = dict(zip(names.tolist(), (counts / counts.sum()).tolist(), strict=True))
    return {
        "correct": (test_y == names[np.argmax(counts)]).astype(np.float64),
        "predicted_class": str(names[np.argmax(counts)]),
        "knn": np.array([frequency.get(y, 0.0) for y in test_y.tolist()], dtype=np.float64),
    }


__all__ = ["knn_agreement", "logistic_probe", "majority_class"]
