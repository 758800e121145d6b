"""Fit and score affinity regressors on the splits of a feature table (used by the command and
the benchmark script). `feature_set` is one of `features.FEATURE_SETS` (e.g. `hae+counts`),
`regressor` one of `models.REGRESSORS`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from holoprot.affinity import splits as sp
from holoprot.affinity.features import FeatureTable
from holoprot.affinity.metrics import bootstrap_intervals, regression_metrics
from holoprot.affinity.models import make_model


def fit_split(
    table: FeatureTable,
    feature_set: str,
    split: sp.Split,
    *,
    regressor: str = "rf",
    grid: str = "reference",
    n_forests: int = 10,
    grid_repeats: int = 3,
    seed: int = 0,
    n_jobs: int | None = -1,
):
    """A model fitted on the split's train rows, its settings chosen on its validation rows."""
    train, val = table.rows(list(split.train)), table.rows(list(split.val))
    X = table.matrix(feature_set)
    model = make_model(
        regressor,
        grid=grid,
        n_forests=n_forests,
        grid_repeats=grid_repeats,
        seed=seed,
        n_jobs=n_jobs,
    )
    return model.fit(
        X[train],
        table.labels[train],
        X_val=X[val] if len(val) else None,
        y_val=table.labels[val] if len(val) else None,
    )


def evaluate_split(
    model, table: FeatureTable, feature_set: str, split: sp.Split, *, seed: int = 0
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Metrics per split part (test with seeded bootstrap 95% CIs) and the predictions frame
    (columns id, split, label, prediction)."""
    metrics: dict[str, Any] = {}
    frames = []
    X = table.matrix(feature_set)
    for part in sp.PARTS:
        ids = list(getattr(split, part))
        rows = table.rows(ids)
        y = table.labels[rows]
        pred = model.predict(X[rows]) if ids else np.zeros(0)
        metrics[part] = regression_metrics(y, pred)
        if part == "test":
            metrics[part]["ci95"] = bootstrap_intervals(y, pred, random_state=seed)
        frames.append(pd.DataFrame({"id": ids, "split": part, "label": y, "prediction": pred}))
    return metrics, pd.concat(frames, ignore_index=True)


def cross_validate(
    table: FeatureTable,
    feature_set: str,
    folds: Sequence[sp.Split],
    *,
    regressor: str = "rf",
    grid: str = "reference",
    n_forests: int = 10,
    grid_repeats: int = 3,
    seed: int = 0,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Per-fold metrics and pooled out-of-fold test metrics (with CIs), and the pooled test
    predictions (with a `fold` column, 1-based)."""
    records, frames = [], []
    for number, fold in enumerate(folds, start=1):
        model = fit_split(
            table,
            feature_set,
            fold,
            regressor=regressor,
            grid=grid,
            n_forests=n_forests,
            grid_repeats=grid_repeats,
            seed=seed,
        )
        metrics, predictions = evaluate_split(model, table, feature_set, fold, seed=seed)
        records.append(metrics | {"split": fold.method, "best_params": model.best_params_})
        frames.append(predictions[predictions["split"] == "test"].assign(fold=number))
    pooled_predictions = pd.concat(frames, ignore_index=True)
    y, pred = pooled_predictions["label"], pooled_predictions["prediction"]
    pooled = regression_metrics(y, pred) | {"ci95": bootstrap_intervals(y, pred, random_state=seed)}
    record = {
        "split": f"{len(folds)}-fold cross-validation (seed {seed})",
        "folds": records,
        "pooled_test": {"test": pooled},
    }
    return record, pooled_predictions
