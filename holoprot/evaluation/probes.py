"""Probes of per-residue features: what a linear model or the nearest neighbours read from them.

Every probe is fit on train rows and scored on test rows, and returns one value per test row
(1 for a correct prediction, or the fraction of agreeing neighbours), so that a caller can
average it over any subset of the test rows. Everything is deterministic: the logistic regression
is seeded and the neighbour search is exact. :func:`probe_table` runs them for every feature set
on every task, :func:`residue_type_probe` is the logistic probe on the 20 amino acids alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import NearestNeighbors
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from holoprot.errors import HoloprotError
from holoprot.evaluation.labels import STANDARD_AMINO_ACIDS


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


def residue_type_probe(
    train_latents: np.ndarray,
    train_labels: np.ndarray,
    test_latents: np.ndarray,
    test_labels: np.ndarray,
    seed: int = 0,
    max_train: int | None = None,
    max_iter: int = 2000,
) -> dict:
    """Logistic-regression probe: residue name from latent, over the 20 standard amino acids.

    :func:`logistic_probe` on the rows whose label is a standard amino acid; then at most
    ``max_train`` train rows are kept (``np.random.default_rng(seed)`` subsample).

    Args:
        train_latents, test_latents: (N, latent_dim) latents.
        train_labels, test_labels: (N,) residue names (e.g. ``"ALA"``).

    Returns ``accuracy`` on the test rows, ``per_class`` {name: accuracy} (names present in the
    test rows), ``majority_baseline`` (test accuracy of always predicting the most common train
    label), ``n_train``, ``n_test``, ``n_iter`` and ``converged``.
    """
    train_labels, test_labels = np.asarray(train_labels, str), np.asarray(test_labels, str)
    train = np.flatnonzero(np.isin(train_labels, STANDARD_AMINO_ACIDS))
    test = np.flatnonzero(np.isin(test_labels, STANDARD_AMINO_ACIDS))
    if max_train is not None and len(train) > max_train:
        train = np.sort(np.random.default_rng(seed).choice(train, max_train, replace=False))
    y_train, y_test = train_labels[train], test_labels[test]
    if len(np.unique(y_train)) < 2 or len(test) == 0:
        raise HoloprotError("residue_type_probe needs two residue types to train and a test row")
    fit = logistic_probe(
        np.asarray(train_latents)[train],
        y_train,
        np.asarray(test_latents)[test],
        y_test,
        seed=seed,
        max_iter=max_iter,
    )
    correct = fit["correct"]
    return {
        "accuracy": float(correct.mean()),
        "per_class": {str(a): float(correct[y_test == a].mean()) for a in np.unique(y_test)},
        "majority_baseline": float(majority_class(y_train, y_test)["correct"].mean()),
        "n_train": int(len(train)),
        "n_test": int(len(test)),
        "n_iter": fit["n_iter"],
        "converged": fit["converged"],
    }


def _means(values: np.ndarray, masks: dict[str, np.ndarray]) -> dict[str, float | None]:
    return {k: (float(values[m].mean()) if m.any() else None) for k, m in masks.items()}


def probe_table(
    features: dict[str, tuple[np.ndarray, np.ndarray]],
    labels: dict[str, tuple[np.ndarray, np.ndarray]],
    masks: dict[str, np.ndarray],
    seed: int = 0,
    k: int = 10,
    max_iter: int = 1000,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Logistic-regression probe and k-nearest-neighbour agreement of every feature set on every
    task, plus the majority class, per subset of the test rows.

    Args:
        features: {name: (train (N_train, F), test (N_test, F))}.
        labels: {task: (train (N_train,), test (N_test,))}, ``""`` for rows without a label
            (left out of that task and counted).
        masks: {subset: (N_test,) bool}, e.g. from :func:`.splits.subset_masks`.

    Returns {task: {``classes``, ``n_train``, ``unlabelled_train``, ``n_test`` {subset},
    ``unlabelled_test`` {subset}, ``features`` {name: {``accuracy`` {subset}, ``knn`` {subset},
    ``n_iter``, ``converged``}, ``majority_class``: {``accuracy``, ``knn`` (chance: the train
    frequency of the test row's label), ``predicted``}}}}.
    """
    table = {}
    for task, (y_train, y_test) in labels.items():
        y_train, y_test = np.asarray(y_train, str), np.asarray(y_test, str)
        train, test = y_train != "", y_test != ""
        sub = {name: m[test] for name, m in masks.items()}
        entry: dict = {
            "classes": sorted(np.unique(y_train[train]).tolist()),
            "n_train": int(train.sum()),
            "unlabelled_train": int((~train).sum()),
            "n_test": {name: int((m & test).sum()) for name, m in masks.items()},
            "unlabelled_test": {name: int((m & ~test).sum()) for name, m in masks.items()},
            "features": {},
        }
        for name, (x_train, x_test) in features.items():
            start = time.perf_counter()
            fit = logistic_probe(
                x_train[train], y_train[train], x_test[test], y_test[test], seed, max_iter
            )
            knn = knn_agreement(x_train[train], y_train[train], x_test[test], y_test[test], k)
            entry["features"][name] = {
                "accuracy": _means(fit["correct"], sub),
                "knn": _means(knn, sub),
                "n_iter": fit["n_iter"],
                "converged": fit["converged"],
            }
            if task == "residue_type" and name == "latent":
                y = y_test[test]
                entry["per_class"] = {
                    str(a): float(fit["correct"][y == a].mean()) for a in np.unique(y)
                }
            if log:
                log(
                    f"probe {task} on {name}: {time.perf_counter() - start:.1f} s,"
                    f" {fit['n_iter']} iterations"
                )
        majority = majority_class(y_train[train], y_test[test])
        entry["features"]["majority_class"] = {
            "accuracy": _means(majority["correct"], sub),
            "knn": _means(majority["knn"], sub),
            "predicted": majority["predicted_class"],
        }
        table[task] = entry
    return table


__all__ = [
    "knn_agreement",
    "logistic_probe",
    "majority_class",
    "probe_table",
    "residue_type_probe",
]
