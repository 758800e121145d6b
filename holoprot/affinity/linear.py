"""Ridge regression for affinity (the paper's "linear regression" rows), saved as plain JSON.

Features are standardised with the training mean and standard deviation (a constant column is
left unscaled), then `sklearn.linear_model.Ridge` is fitted; the penalty `alpha` is the grid value
with the lowest validation RMSE. The fitted model is a mean, a scale, coefficients and an
intercept, written to `ridge.json` with a sha256 over those numbers and a seal over the whole
file (`holoprot._util.hashing.seal`), so loading never unpickles anything and an edit is refused.
A loaded record must have exactly those five parameters, finite JSON numbers of consistent
lengths (a forged file recomputes both checksums, so the numbers are checked too).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
from sklearn.linear_model import Ridge
from sklearn.utils.validation import check_array, check_X_y

from holoprot._util.hashing import check_seal, seal
from holoprot.errors import InputError

ALPHAS = tuple(float(a) for a in np.logspace(-2, 5, 15))
METADATA_FILE = "ridge.json"
_PARAMETER_KEYS = frozenset({"alpha", "mean", "scale", "coef", "intercept"})


def _rmse(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(y) - np.asarray(p)) ** 2)))


class RidgeModel:
    """Standardised ridge regression with `alpha` chosen on validation RMSE.

    Attributes (after `fit`): `alpha_`, `mean_` (d,), `scale_` (d,), `coef_` (d,), `intercept_`,
    `grid_scores_` ([{"params": {"alpha": a}, "val_rmse": r}]), `best_params_`, `n_features_in_`.
    """

    def __init__(self, alphas: Sequence[float] = ALPHAS) -> None:
        self.alphas = tuple(float(a) for a in alphas)

    def _fit_one(self, alpha: float, X: np.ndarray, y: np.ndarray) -> Ridge:
        return Ridge(alpha=alpha).fit((X - self.mean_) / self.scale_, y)

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        *,
        X_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
    ) -> RidgeModel:
        """Fit (n, d) features, (n,) labels; `alpha` chosen on (m, d), (m,) validation data."""
        X, y = check_X_y(X, y, dtype=np.float64, y_numeric=True)
        self.mean_ = X.mean(axis=0)
        std = X.std(axis=0)
        self.scale_ = np.where(std > 0, std, 1.0)
        self.grid_scores_: list[dict[str, Any]] = []
        if X_val is None or y_val is None or len(y_val) == 0:
            if len(self.alphas) > 1:
                raise ValueError("choosing alpha needs validation data (X_val, y_val)")
            self.grid_scores_.append({"params": {"alpha": self.alphas[0]}, "val_rmse": None})
        else:
            X_val, y_val = check_X_y(X_val, y_val, dtype=np.float64, y_numeric=True)
            for alpha in self.alphas:
                fitted = self._fit_one(alpha, X, y)
                score = _rmse(y_val, fitted.predict((X_val - self.mean_) / self.scale_))
                self.grid_scores_.append({"params": {"alpha": alpha}, "val_rmse": score})
        best = min(self.grid_scores_, key=lambda row: row["val_rmse"] or 0.0)
        self.alpha_ = float(best["params"]["alpha"])
        self.best_params_ = {"alpha": self.alpha_}
        fitted = self._fit_one(self.alpha_, X, y)
        self.coef_ = np.asarray(fitted.coef_, dtype=np.float64)
        self.intercept_ = float(fitted.intercept_)
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """(n,) predictions for (n, d) features."""
        X = check_array(X, dtype=np.float64)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"expected {self.n_features_in_} features, got {X.shape[1]}")
        return ((X - self.mean_) / self.scale_) @ self.coef_ + self.intercept_

    def predict_each(self, X: np.ndarray) -> np.ndarray:
        """(1, n): one model (the forest ensemble's per-forest spread has no ridge analogue)."""
        return self.predict(X)[None, :]

    def parameters(self) -> dict[str, Any]:
        """The fitted numbers, as JSON-ready lists."""
        return {
            "alpha": self.alpha_,
            "mean": self.mean_.tolist(),
            "scale": self.scale_.tolist(),
            "coef": self.coef_.tolist(),
            "intercept": self.intercept_,
        }


def _digest(parameters: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parameters, sort_keys=True).encode()).hexdigest()


def save_ridge(model: RidgeModel, folder: str | Path, metadata: Mapping[str, Any]) -> Path:
    """Write `ridge.json`: metadata, the fitted parameters and their sha256."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    parameters = model.parameters()
    record = dict(metadata) | {
        "regressor": "ridge",
        "n_features": model.n_features_in_,
        "sklearn_version": sklearn.__version__,
        "ridge": parameters,
        "ridge_sha256": _digest(parameters),
        "grid_scores": model.grid_scores_,
    }
    path = folder / METADATA_FILE
    path.write_text(json.dumps(seal(record), indent=2, allow_nan=False) + "\n")
    return path


def _is_number(value: object) -> bool:
    """A finite JSON number that fits a float (bool excluded)."""
    try:
        return type(value) in (int, float) and math.isfinite(value)
    except OverflowError:
        return False


def _check_parameters(parameters: object, n_features: object, path: Path) -> None:
    """Refuse ridge parameters other than exactly `_PARAMETER_KEYS`: `alpha` >= 0 and `intercept`
    finite numbers; `mean`, `scale` (> 0) and `coef` lists of `n_features` finite numbers."""
    if not isinstance(parameters, dict) or set(parameters) != _PARAMETER_KEYS:
        raise InputError(path, f"ridge parameters must be exactly {sorted(_PARAMETER_KEYS)}")
    vectors = [parameters[k] for k in ("mean", "scale", "coef")]
    ok = (
        _is_number(parameters["alpha"])
        and parameters["alpha"] >= 0
        and _is_number(parameters["intercept"])
        and type(n_features) is int
        and n_features >= 1
        and all(
            isinstance(v, list) and len(v) == n_features and all(map(_is_number, v))
            for v in vectors
        )
        and all(x > 0 for x in parameters["scale"])
    )
    if not ok:
        raise InputError(
            path,
            "ridge parameters are not finite numbers with mean, scale (> 0) and coef of"
            " n_features each: refusing them",
        )


def load_ridge(folder: str | Path) -> tuple[RidgeModel, dict[str, Any]]:
    """Load `ridge.json` after checking its seal, its parameters' recorded sha256 and their form
    (`_check_parameters`)."""
    path = Path(folder) / METADATA_FILE
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
        parameters = metadata["ridge"]
        recorded = metadata["ridge_sha256"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise InputError(path, f"cannot read ridge model ({exc})") from None
    check_seal(metadata, path)
    if _digest(parameters) != recorded:
        raise InputError(path, "ridge parameters do not match their sha256: refusing them")
    _check_parameters(parameters, metadata.get("n_features"), path)
    model = RidgeModel(alphas=[parameters["alpha"]])
    model.alpha_ = float(parameters["alpha"])
    model.best_params_ = {"alpha": model.alpha_}
    model.mean_ = np.asarray(parameters["mean"], dtype=np.float64)
    model.scale_ = np.asarray(parameters["scale"], dtype=np.float64)
    model.coef_ = np.asarray(parameters["coef"], dtype=np.float64)
    model.intercept_ = float(parameters["intercept"])
    model.n_features_in_ = len(model.coef_)
    grid_scores = metadata.get("grid_scores", [])
    if not isinstance(grid_scores, list):
        raise InputError(path, "grid_scores is not a list: refusing it")
    model.grid_scores_ = grid_scores
    return model, metadata
