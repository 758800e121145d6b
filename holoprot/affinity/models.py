"""The affinity regressors behind one interface: make, save, load, and the check that a saved
model's features can be rebuilt, column for column, before it predicts.

* `rf`: `forest.ForestEnsemble` (bootstrap ensemble of random forests), `forest.json` +
  `forest.skops`.
* `ridge`: `linear.RidgeModel` (standardised ridge regression), `ridge.json`.

Both record, besides their own settings, `feature_set` (e.g. `hae+counts`), `feature_columns`
(every column name in order, `features.feature_columns`), `split_name` and the split itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from holoprot.affinity import features as feats
from holoprot.errors import InputError

REGRESSORS = ("rf", "ridge")


def metadata_files() -> dict[str, str]:
    """{regressor: metadata file name}."""
    from holoprot.affinity import forest, linear

    return {"rf": forest.METADATA_FILE, "ridge": linear.METADATA_FILE}


def make_model(
    regressor: str,
    *,
    grid: str = "reference",
    n_forests: int = 10,
    grid_repeats: int = 3,
    seed: int = 0,
    n_jobs=-1,
):
    """An unfitted regressor with `fit(X, y, X_val=, y_val=)`, `predict`, `predict_each`
    (`grid`, `n_forests`, `grid_repeats`: the forest's; ridge has its own alpha grid)."""
    if regressor == "rf":
        from holoprot.affinity.forest import ForestEnsemble

        return ForestEnsemble(
            grid=grid,
            n_forests=n_forests,
            grid_repeats=grid_repeats,
            random_state=seed,
            n_jobs=n_jobs,
        )
    if regressor == "ridge":
        from holoprot.affinity.linear import RidgeModel

        return RidgeModel()
    raise InputError("--regressor", f"unknown regressor {regressor!r} (choose rf, ridge)")


def save_model(model, regressor: str, folder: Path, metadata: Mapping[str, Any]) -> Path:
    """Write a fitted model and its metadata into `folder`; returns the metadata file."""
    if regressor == "rf":
        from holoprot.affinity.forest import save_forest

        return save_forest(model, folder, dict(metadata) | {"regressor": "rf"})
    from holoprot.affinity.linear import save_ridge

    return save_ridge(model, folder, metadata)


def model_folders(folder: Path) -> list[Path]:
    """Folders below or at `folder` that hold a saved model, sorted."""
    names = metadata_files().values()
    if any((folder / name).is_file() for name in names):
        return [folder]
    return sorted({p.parent for name in names for p in folder.glob(f"*/{name}")})


def load_model(folder: Path) -> tuple[Any, dict[str, Any]]:
    """(model, metadata) of the model saved in `folder` (its checksums checked)."""
    files = metadata_files()
    if (folder / files["rf"]).is_file():
        from holoprot.affinity.forest import load_forest

        return load_forest(folder)
    if (folder / files["ridge"]).is_file():
        from holoprot.affinity.linear import load_ridge

        return load_ridge(folder)
    raise InputError(folder, "no saved affinity model (forest.json or ridge.json)")


def check_columns(recorded: Sequence[str], rebuilt: Sequence[str], where: object) -> None:
    """Refuse a model whose recorded feature columns differ from those rebuilt now, in names or
    in order (a model fitted on columns in another order would predict garbage)."""
    recorded, rebuilt = list(recorded), list(rebuilt)
    if recorded == rebuilt:
        return
    if sorted(recorded) == sorted(rebuilt):
        first = next(i for i, (a, b) in enumerate(zip(recorded, rebuilt, strict=True)) if a != b)
        raise InputError(
            where,
            f"feature columns are in another order than the features built now (column {first}:"
            f" model {recorded[first]!r}, rebuilt {rebuilt[first]!r}): refusing to predict",
        )
    missing = [c for c in recorded if c not in set(rebuilt)]
    raise InputError(
        where,
        f"model has {len(recorded)} feature columns, rebuilt features have {len(rebuilt)}"
        + (f" (cannot rebuild {missing[0]!r})" if missing else "")
        + ": refusing to predict",
    )


def feature_set_of(metadata: Mapping[str, Any], where: object) -> str:
    """The feature set a saved model was trained on, if this version can build it."""
    feature_set = metadata.get("feature_set") or metadata.get("features")
    if feature_set not in feats.FEATURE_SETS:
        raise InputError(
            where, f"model uses features {feature_set!r}, which this holoprot cannot build"
        )
    return feature_set


def rebuildable_columns(
    metadata: Mapping[str, Any], latent_dim: int | None, where: object
) -> list[str]:
    """The column names of a saved model's features as built now, after checking that they
    equal the recorded ones in the recorded order (`InputError` otherwise). `latent_dim`: the
    embedder's, for feature sets with `hae`."""
    feature_set = feature_set_of(metadata, where)
    recorded = metadata.get("feature_columns")
    if not isinstance(recorded, list):
        raise InputError(where, "model records no feature columns (older holoprot): retrain it")
    rebuilt = feats.feature_columns(feature_set, latent_dim, metadata.get("aggregate") or "sum")
    check_columns(recorded, rebuilt, where)
    if int(metadata.get("n_features", len(rebuilt))) != len(rebuilt):
        raise InputError(where, f"model expects {metadata['n_features']} features")
    return rebuilt
