"""Saved affinity models are data, never code: a forged forest.skops whose checksums were
recomputed (as anyone can) must not run anything, and a forged ridge.json must not load."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import skops.io
from numpy.testing import runstring
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from holoprot._util.hashing import seal, sha256_file
from holoprot.affinity.forest import load_forest
from holoprot.affinity.linear import RidgeModel, _digest, load_ridge, save_ridge
from holoprot.errors import InputError

FIXTURE = Path(__file__).parent / "data" / "affinity"


def _payload(tree, marker: Path) -> Pipeline:
    """A 'tree' whose predict runs Python that creates `marker`, built only from sklearn and
    numpy callables: the code string is broadcast to an array, printed as `[code]` (a valid
    expression) and handed to numpy.testing's `runstring`, which `exec`s it."""
    code = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    fill = {"fill_value": code, "dtype": "U300", "shape": (1,)}
    return Pipeline(
        [
            ("code", FunctionTransformer(np.full_like, kw_args=fill)),
            ("text", FunctionTransformer(np.array2string, kw_args={"formatter": {"all": str}})),
            ("run", FunctionTransformer(runstring, kw_args={"dict": {}})),
            ("tree", tree),
        ]
    )


def test_crafted_forest_runs_no_code(affinity_cli, tmp_path):
    out = tmp_path / "run"
    args = ["--features", "counts", "--grid", "small", "--n-forests", "2", "--split", "random"]
    result = affinity_cli("train-affinity", FIXTURE, *args, "--out", out)
    assert result.exit_code == 0, result.output
    folder = out / "counts"
    model, _ = load_forest(folder)
    forests = copy.deepcopy(model.forests_)

    probe = tmp_path / "probe"  # the payload is live: run directly, it creates its marker
    _payload(forests[0].estimators_[1], probe)[:-1].transform(np.zeros((1, 36)))
    assert probe.is_file()

    marker = tmp_path / "pwned"
    forests[0].estimators_[1] = _payload(forests[0].estimators_[1], marker)
    skops.io.dump(forests, folder / "forest.skops")
    meta = json.loads((folder / "forest.json").read_text())
    meta["model_sha256"] = sha256_file(folder / "forest.skops")  # the attacker's checksums
    (folder / "forest.json").write_text(json.dumps(seal(meta)))

    result = affinity_cli("predict-affinity", out, FIXTURE / "1hvr")
    assert not marker.exists(), "the model file ran code"
    assert result.exit_code == 1 and "Traceback" not in result.output
    (line,) = result.stderr.strip().splitlines()
    assert f"{folder / 'forest.skops'}: holds types a random forest does not need" in line
    assert "runstring" in line or "Pipeline" in line
    with pytest.raises(InputError, match="holds types a random forest does not need"):
        load_forest(folder)
    assert not marker.exists()


@pytest.fixture
def ridge_folder(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 3))
    model = RidgeModel(alphas=[1.0]).fit(X, X @ [1.0, 2.0, 3.0])
    save_ridge(model, tmp_path, {"feature_set": "counts"})
    return tmp_path


def _forge_ridge(folder: Path, **changes) -> None:
    """Change ridge parameters and recompute `ridge_sha256` and the seal, as anyone can."""
    meta = json.loads((folder / "ridge.json").read_text())
    meta["ridge"] = meta["ridge"] | changes
    meta["ridge_sha256"] = _digest(meta["ridge"])
    (folder / "ridge.json").write_text(json.dumps(seal(meta)))


@pytest.mark.parametrize(
    "changes",
    [
        {"loader": "os.system"},  # a key the model does not have
        {"coef": [1.0, float("nan"), 3.0]},
        {"coef": ["1.0", "2.0", "3.0"]},  # numbers as text
        {"coef": [[1.0], [2.0], [3.0]]},  # another shape
        {"coef": [1.0, 2.0]},  # another length than n_features
        {"scale": [1.0, 0.0, 1.0]},  # divides by zero
        {"alpha": True},
        {"intercept": 1e400},  # JSON Infinity
    ],
    ids=["extra-key", "nan", "text", "2d", "short", "zero-scale", "bool", "infinite"],
)
def test_forged_ridge_parameters_are_refused(ridge_folder, changes):
    load_ridge(ridge_folder)  # loads before the forgery
    _forge_ridge(ridge_folder, **changes)
    with pytest.raises(InputError, match="ridge parameters") as refused:
        load_ridge(ridge_folder)
    assert str(refused.value).startswith(f"{ridge_folder / 'ridge.json'}: ")
    assert "\n" not in str(refused.value)
