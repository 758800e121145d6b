"""Random-forest ensemble for affinity regression: grid search on validation RMSE, then K forests
on distinct bootstrap resamples, saved with skops (no pickle) next to a JSON metadata file.

Loading trusts no type by prefix: every node of the skops file must be one of `FOREST_NODES`, the
exact (type, skops loader) pairs that a list of fitted `RandomForestRegressor`s is made of, and the
loaded object must be exactly such a list, each forest's `estimators_` exactly
`DecisionTreeRegressor`s. A file with anything else (a `Pipeline`, a `FunctionTransformer`, a numpy
or scipy function) is refused before any of it is built, whatever its checksums say: anyone can
recompute `model_sha256` and the seal.

Unlike the reference (SPEC §8 pitfall 11, which re-created its RNG inside the loop so that all its
"bootstrap" forests saw the same resample), every forest here has its own recorded seed, which
draws both its bootstrap resample and its trees.
"""

from __future__ import annotations

import itertools
import json
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.ensemble import RandomForestRegressor
from sklearn.tree import DecisionTreeRegressor
from sklearn.tree._tree import Tree
from sklearn.utils.validation import check_array, check_is_fitted, check_X_y

from holoprot._util.hashing import check_seal, seal, sha256_file
from holoprot.errors import InputError

GRIDS: dict[str, dict[str, list[Any]]] = {
    # The reference grid (HV experiments/ATOM3D_LBA src/training/kd_prediction.py), 48 points.
    "reference": {
        "max_features": [1.0, 0.333, "sqrt"],
        "min_samples_leaf": [2, 5, 10, 15],
        "n_estimators": [32, 64, 100, 200],
    },
    # A quick grid for tests and small data, 4 points.
    "small": {"max_features": [0.333, "sqrt"], "min_samples_leaf": [2, 5], "n_estimators": [32]},
}
MODEL_FILE = "forest.skops"
METADATA_FILE = "forest.json"
#: Every (type, skops loader) pair in the file `save_forest` writes, measured by walking the
#: schema of real dumps (max_features 1.0, 0.333, "sqrt"; sklearn 1.9, skops 0.16). `builtins.str`
#: is also how skops labels JSON numbers and None; its TypeNodes are the `str` class of
#: `key_types`.
FOREST_NODES = frozenset(
    {
        ("builtins.dict", "DictNode"),
        ("builtins.list", "ListNode"),
        ("builtins.str", "JsonNode"),
        ("builtins.str", "TypeNode"),
        ("builtins.tuple", "TupleNode"),
        ("numpy.ndarray", "NdArrayNode"),
        ("sklearn.ensemble._forest.RandomForestRegressor", "ObjectNode"),
        ("sklearn.tree._classes.DecisionTreeRegressor", "ObjectNode"),
        ("sklearn.tree._tree.Tree", "TreeNode"),
    }
)
#: The types of `FOREST_NODES` that skops does not trust by default
#: (`skops.io.get_untrusted_types` of a saved forest), passed to `skops.io.load`.
FOREST_UNTRUSTED = frozenset({"sklearn.tree._tree.Tree"})
_FOREST_KEYS = frozenset(
    {"grid", "grid_repeats", "n_forests", "random_state", "seeds", "best_params", "grid_scores"}
)


def grid_points(grid: str | Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """All parameter combinations of a named grid or a {parameter: values} mapping."""
    if isinstance(grid, str):
        if grid not in GRIDS:
            raise InputError("--grid", f"unknown grid {grid!r} (choose {', '.join(GRIDS)})")
        grid = GRIDS[grid]
    names = sorted(grid)
    return [
        dict(zip(names, values, strict=True))
        for values in itertools.product(*(grid[n] for n in names))
    ]


def _rmse(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(y) - np.asarray(p)) ** 2)))


class ForestEnsemble(RegressorMixin, BaseEstimator):
    """Mean of `n_forests` random forests fitted on distinct bootstrap resamples of the train set.

    `fit(X, y, X_val=..., y_val=...)` first picks the grid point with the lowest mean validation
    RMSE over `grid_repeats` fits (each on its own bootstrap resample), then fits the ensemble
    with it. Without validation data the grid must have a single point.

    Args:
        grid: "reference", "small" or a {parameter: values} mapping for `RandomForestRegressor`.
        n_forests: ensemble size K.
        grid_repeats: fits per grid point, averaged.
        random_state: seeds every resample and forest (integers recorded in `seeds_`).
        n_jobs: passed to each forest.

    Attributes:
        best_params_: the chosen grid point.
        grid_scores_: [{"params":..., "val_rmse":...}] for every grid point.
        seeds_: (K,) the seeds of the ensemble's forests.
        forests_: the K fitted forests (`RandomForestRegressor`).
    """

    def __init__(
        self,
        grid: str | Mapping[str, Sequence[Any]] = "reference",
        n_forests: int = 10,
        grid_repeats: int = 3,
        random_state: int = 0,
        n_jobs: int | None = None,
    ) -> None:
        self.grid = grid
        self.n_forests = n_forests
        self.grid_repeats = grid_repeats
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _forest(self, params: Mapping[str, Any], seed: int, X: np.ndarray, y: np.ndarray):
        rows = np.random.default_rng(seed).integers(0, len(y), size=len(y))
        forest = RandomForestRegressor(**params, random_state=seed, n_jobs=self.n_jobs)
        return forest.fit(X[rows], y[rows])

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        *,
        X_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
    ) -> ForestEnsemble:
        """Fit (n, d) features, (n,) labels; parameters are chosen on (m, d), (m,) validation."""
        X, y = check_X_y(X, y, dtype=np.float64, y_numeric=True)
        if self.n_forests < 1 or self.grid_repeats < 1:
            raise ValueError("n_forests and grid_repeats must be >= 1")
        points = grid_points(self.grid)
        seeds = np.random.default_rng(self.random_state).choice(
            2**31 - 1, size=self.n_forests + self.grid_repeats * len(points), replace=False
        )
        self.grid_scores_ = []
        if X_val is None or y_val is None or len(y_val) == 0:
            if len(points) > 1:
                raise ValueError("a grid search needs validation data (X_val, y_val)")
            self.grid_scores_.append({"params": points[0], "val_rmse": None})
        else:
            X_val, y_val = check_X_y(X_val, y_val, dtype=np.float64, y_numeric=True)
            grid_seeds = seeds[self.n_forests :].reshape(len(points), self.grid_repeats)
            for params, repeat_seeds in zip(points, grid_seeds, strict=True):
                scores = [
                    _rmse(y_val, self._forest(params, int(s), X, y).predict(X_val))
                    for s in repeat_seeds
                ]
                self.grid_scores_.append({"params": params, "val_rmse": float(np.mean(scores))})
        best = min(self.grid_scores_, key=lambda row: row["val_rmse"] or 0.0)
        self.best_params_ = dict(best["params"])
        self.seeds_ = [int(s) for s in seeds[: self.n_forests]]
        self.forests_ = [self._forest(self.best_params_, s, X, y) for s in self.seeds_]
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """(n,) mean prediction of the forests for (n, d) features."""
        check_is_fitted(self, "forests_")
        X = check_array(X, dtype=np.float64)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"expected {self.n_features_in_} features, got {X.shape[1]}")
        return np.mean([forest.predict(X) for forest in self.forests_], axis=0)

    def predict_each(self, X: np.ndarray) -> np.ndarray:
        """(K, n) predictions of every forest (for per-forest spread)."""
        check_is_fitted(self, "forests_")
        X = check_array(X, dtype=np.float64)
        return np.stack([forest.predict(X) for forest in self.forests_])


def save_forest(model: ForestEnsemble, folder: str | Path, metadata: Mapping[str, Any]) -> Path:
    """Write `forest.skops` (the list of fitted forests) and `forest.json` (metadata, the model
    file's sha256, and a seal over all of it: see `holoprot._util.hashing.seal`)."""
    import skops.io

    check_is_fitted(model, "forests_")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model_path = folder / MODEL_FILE
    skops.io.dump(list(model.forests_), model_path, compression=zipfile.ZIP_DEFLATED)
    record = dict(metadata) | {
        "model_file": MODEL_FILE,
        "model_sha256": sha256_file(model_path),
        "n_features": model.n_features_in_,
        "sklearn_version": sklearn.__version__,
        "forest": {
            "grid": model.grid if isinstance(model.grid, str) else dict(model.grid),
            "grid_repeats": model.grid_repeats,
            "n_forests": model.n_forests,
            "random_state": model.random_state,
            "seeds": model.seeds_,
            "best_params": model.best_params_,
            "grid_scores": model.grid_scores_,
        },
    }
    text = json.dumps(seal(record), indent=2, allow_nan=False)
    (folder / METADATA_FILE).write_text(text + "\n")
    return folder / METADATA_FILE


def _foreign_nodes(model_path: Path) -> list[str]:
    """The (type, loader) pairs of the skops file's schema that are not in `FOREST_NODES`,
    sorted, as `module.Class (Loader)` strings."""
    with zipfile.ZipFile(model_path) as archive:
        schema = json.loads(archive.read("schema.json"))
    foreign: set[str] = set()
    stack: list[Any] = [schema]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            if "__loader__" in item:
                name = f"{item.get('__module__')}.{item.get('__class__')}"
                if (name, item["__loader__"]) not in FOREST_NODES:
                    foreign.add(f"{name} ({item['__loader__']})")
            stack.extend(item.values())
    return sorted(foreign)


def _is_forest(forest: object, n_features: int) -> bool:
    """Whether `forest` is exactly a fitted `RandomForestRegressor` of `DecisionTreeRegressor`s
    on `n_features` features."""
    if type(forest) is not RandomForestRegressor:
        return False
    trees = getattr(forest, "estimators_", None)
    return (
        type(trees) is list
        and len(trees) == getattr(forest, "n_estimators", None)
        and all(
            type(tree) is DecisionTreeRegressor and type(getattr(tree, "tree_", None)) is Tree
            for tree in trees
        )
        and getattr(forest, "n_features_in_", None) == n_features
    )


def _check_forest_metadata(metadata: Mapping[str, Any], meta_path: Path) -> None:
    """The fields `load_forest` reads: a positive integer `n_features` and a `forest` record with
    exactly the keys `save_forest` writes, `seeds` a list of `n_forests` integers."""
    info = metadata.get("forest")
    n_features = metadata.get("n_features")
    ok = (
        type(n_features) is int
        and n_features >= 1
        and isinstance(info, dict)
        and set(info) == _FOREST_KEYS
        and type(info["n_forests"]) is int
        and isinstance(info["seeds"], list)
        and len(info["seeds"]) == info["n_forests"]
        and all(type(s) is int for s in info["seeds"])
        and isinstance(info["best_params"], dict)
        and isinstance(info["grid_scores"], list)
    )
    if not ok:
        raise InputError(meta_path, "malformed forest record (n_features, forest): refusing it")


def load_forest(folder: str | Path) -> tuple[ForestEnsemble, dict[str, Any]]:
    """Load a saved ensemble after checking the metadata's seal, the model file's sha256, every
    type in it (`FOREST_NODES`) and the loaded structure (only random forests of regression
    trees).

    Raises:
        InputError: metadata missing, unreadable, malformed or edited, checksum mismatch, a type
            in the file that a forest does not need, or not a list of `n_forests` forests.
    """
    import skops.io

    folder = Path(folder)
    meta_path, model_path = folder / METADATA_FILE, folder / MODEL_FILE
    try:
        metadata = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise InputError(meta_path, f"cannot read model metadata ({exc})") from None
    if not isinstance(metadata, dict) or "model_sha256" not in metadata or "forest" not in metadata:
        raise InputError(meta_path, "not a holoprot affinity model (no model_sha256)")
    check_seal(metadata, meta_path)
    _check_forest_metadata(metadata, meta_path)
    if not model_path.is_file():
        raise InputError(model_path, "model file missing")
    if sha256_file(model_path) != metadata["model_sha256"]:
        raise InputError(
            model_path, "sha256 does not match forest.json: refusing a modified model file"
        )
    try:
        foreign = _foreign_nodes(model_path)
        if not foreign:
            forests = skops.io.load(model_path, trusted=sorted(FOREST_UNTRUSTED))
    except Exception as exc:  # zipfile, json and skops raise several types on corrupt archives
        raise InputError(model_path, f"not a readable skops file ({exc})") from None
    if foreign:
        more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        raise InputError(
            model_path,
            f"holds types a random forest does not need ({', '.join(map(repr, foreign[:3]))}"
            f"{more}): refusing it",
        )
    info = metadata["forest"]
    n_features = metadata["n_features"]
    if (
        type(forests) is not list
        or len(forests) != info["n_forests"]
        or not all(_is_forest(f, n_features) for f in forests)
    ):
        raise InputError(
            model_path,
            f"does not hold exactly {info['n_forests']} random forests of regression trees on"
            f" {n_features} features: refusing it",
        )
    model = ForestEnsemble(
        grid=info["grid"],
        n_forests=info["n_forests"],
        grid_repeats=info["grid_repeats"],
        random_state=info["random_state"],
    )
    model.forests_ = forests
    model.seeds_ = list(info["seeds"])
    model.best_params_ = dict(info["best_params"])
    model.grid_scores_ = list(info["grid_scores"])
    model.n_features_in_ = n_features
    return model, metadata
