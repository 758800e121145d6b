"""Forest ensemble (grid search, distinct bootstraps, safe save/load), metrics and splits."""

from __future__ import annotations

import copy
import itertools
import json

import numpy as np
import pytest
import skops.io
from scipy import stats
from sklearn.ensemble import RandomForestRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from holoprot._util.hashing import seal, sha256_file
from holoprot.affinity import splits as sp
from holoprot.affinity.forest import (
    GRIDS,
    ForestEnsemble,
    grid_points,
    load_forest,
    save_forest,
)
from holoprot.affinity.metrics import bootstrap_intervals, regression_metrics
from holoprot.errors import InputError


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(80, 6))
    y = 2.0 * X[:, 0] - X[:, 1] + 0.1 * rng.normal(size=80)
    return X[:60], y[:60], X[60:70], y[60:70], X[70:]


@pytest.fixture(scope="module")
def fitted(data):
    X, y, Xv, yv, _ = data
    return ForestEnsemble(grid="small", n_forests=3, grid_repeats=1, random_state=3).fit(
        X, y, X_val=Xv, y_val=yv
    )


def test_reference_grid_has_48_points():
    assert len(grid_points("reference")) == 48
    assert GRIDS["reference"]["max_features"] == [1.0, 0.333, "sqrt"]
    with pytest.raises(InputError, match="unknown grid"):
        grid_points("huge")


def test_grid_search_picks_lowest_validation_rmse(fitted):
    assert len(fitted.grid_scores_) == 4
    best = min(fitted.grid_scores_, key=lambda row: row["val_rmse"])
    assert fitted.best_params_ == best["params"]


def test_forests_use_distinct_recorded_seeds_and_resamples(fitted, data, monkeypatch):
    """Reference pitfall 11: the resamples must differ between forests. The rows each forest is
    fitted on are observed (captured at `RandomForestRegressor.fit`), not re-derived."""
    X, y, *_ = data
    assert len(set(fitted.seeds_)) == 3
    assert [f.random_state for f in fitted.forests_] == fitted.seeds_
    row_of = {row.tobytes(): i for i, row in enumerate(X)}  # the rows of X are distinct
    seen: list[tuple[int, np.ndarray]] = []
    fit = RandomForestRegressor.fit

    def spy(self, X_fit, y_fit, *args, **kwargs):
        rows = np.array([row_of[row.tobytes()] for row in X_fit])
        np.testing.assert_array_equal(y_fit, y[rows])  # labels travel with their rows
        seen.append((self.random_state, rows))
        return fit(self, X_fit, y_fit, *args, **kwargs)

    monkeypatch.setattr(RandomForestRegressor, "fit", spy)
    model = ForestEnsemble(grid={"n_estimators": [5]}, n_forests=3, random_state=3).fit(X, y)
    assert [state for state, _ in seen] == model.seeds_
    counts = [np.bincount(rows, minlength=len(y)) for _, rows in seen]
    for rows, count in zip((rows for _, rows in seen), counts, strict=True):
        assert len(rows) == len(y) and count.max() > 1  # a resample, with replacement
    for a, b in itertools.combinations(range(3), 2):
        assert not np.array_equal(counts[a], counts[b]), (a, b)
    each = fitted.predict_each(X)
    assert not np.allclose(each[0], each[1])
    np.testing.assert_allclose(each.mean(axis=0), fitted.predict(X))


def test_fit_is_reproducible_for_a_seed(data, fitted):
    X, y, Xv, yv, Xt = data
    again = ForestEnsemble(grid="small", n_forests=3, grid_repeats=1, random_state=3)
    np.testing.assert_array_equal(
        again.fit(X, y, X_val=Xv, y_val=yv).predict(Xt), fitted.predict(Xt)
    )


def test_grid_without_validation_is_refused(data):
    X, y, *_ = data
    with pytest.raises(ValueError, match="validation"):
        ForestEnsemble(grid="small").fit(X, y)
    one = ForestEnsemble(grid={"n_estimators": [5]}, n_forests=2).fit(X, y)
    assert one.best_params_ == {"n_estimators": 5}


def test_save_load_predicts_identically(tmp_path, fitted, data):
    save_forest(fitted, tmp_path, {"features": "counts", "note": "x"})
    loaded, meta = load_forest(tmp_path)
    assert meta["features"] == "counts" and meta["forest"]["seeds"] == fitted.seeds_
    np.testing.assert_array_equal(loaded.predict(data[4]), fitted.predict(data[4]))


def test_tampered_model_file_is_refused(tmp_path, fitted):
    save_forest(fitted, tmp_path, {})
    with open(tmp_path / "forest.skops", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(InputError, match="sha256 does not match"):
        load_forest(tmp_path)


def _forge(folder, forests) -> None:
    """Replace the saved model by `forests` and recompute its sha256 and seal, as an attacker
    can."""
    skops.io.dump(forests, folder / "forest.skops")
    meta = json.loads((folder / "forest.json").read_text())
    meta["model_sha256"] = sha256_file(folder / "forest.skops")
    (folder / "forest.json").write_text(json.dumps(seal(meta)))


def _tree_in_pipeline(forest):
    """`forest` with its second tree behind a FunctionTransformer: all types skops trusts."""
    forest = copy.deepcopy(forest)
    step = FunctionTransformer(np.negative)
    forest.estimators_[1] = Pipeline([("f", step), ("tree", forest.estimators_[1])])
    return forest


@pytest.mark.parametrize(
    ("make", "named"),
    [
        (lambda forest: stats.norm, "scipy.stats"),
        (lambda forest: FunctionTransformer(np.exp), "FunctionTransformer"),
        (lambda forest: np.save, "save (FunctionNode)"),
        (lambda forest: np.exp, "numpy.exp"),
        (_tree_in_pipeline, "sklearn.pipeline.Pipeline"),
    ],
    ids=["scipy-object", "sklearn-callable", "numpy-function", "numpy-ufunc", "tree-in-pipeline"],
)
def test_foreign_types_are_refused_even_with_matching_checksum(tmp_path, fitted, make, named):
    """Only the exact types of a forest load: not scipy objects, nor sklearn or numpy callables
    (which skops itself trusts by default), however the checksums were recomputed."""
    save_forest(fitted, tmp_path, {})
    forests = list(fitted.forests_)
    forests[1] = make(forests[1])
    _forge(tmp_path, forests)
    with pytest.raises(InputError, match="holds types a random forest does not need") as refused:
        load_forest(tmp_path)
    message = str(refused.value)
    assert message.startswith(f"{tmp_path / 'forest.skops'}: ") and "\n" not in message
    assert named in message


def test_only_random_forests_of_regression_trees_are_loaded(tmp_path, fitted):
    """Files made only of the allowed types must still hold exactly the saved structure."""
    save_forest(fitted, tmp_path, {})
    first, *rest = fitted.forests_
    forest_in_forest = copy.deepcopy(first)
    forest_in_forest.estimators_[1] = rest[0]
    for forests in (
        [first.estimators_[0], *rest],  # a tree where a forest belongs
        [forest_in_forest, *rest],  # a forest where a tree belongs
        rest,  # fewer forests than recorded
    ):
        _forge(tmp_path, forests)
        with pytest.raises(InputError, match="does not hold exactly 3 random forests"):
            load_forest(tmp_path)
    _forge(tmp_path, list(fitted.forests_))
    meta = json.loads((tmp_path / "forest.json").read_text())
    for key, value in [("n_features", "6"), ("forest", meta["forest"] | {"seeds": "1 2 3"})]:
        (tmp_path / "forest.json").write_text(json.dumps(seal(meta | {key: value})))
        with pytest.raises(InputError, match="malformed forest record"):
            load_forest(tmp_path)


def test_missing_metadata_is_refused(tmp_path):
    with pytest.raises(InputError, match="cannot read model metadata"):
        load_forest(tmp_path)


def test_metrics_match_scipy_and_intervals_cover():
    rng = np.random.default_rng(1)
    y = rng.normal(6.0, 2.0, 200)
    p = y + rng.normal(0.0, 1.0, 200)
    m = regression_metrics(y, p)
    assert m["rmse"] == pytest.approx(np.sqrt(np.mean((p - y) ** 2)))
    assert m["mae"] == pytest.approx(np.mean(np.abs(p - y)))
    assert m["pearson"] == pytest.approx(stats.pearsonr(y, p).statistic)
    assert m["spearman"] == pytest.approx(stats.spearmanr(y, p).statistic)
    ci = bootstrap_intervals(y, p, n_resamples=300, random_state=0)
    for name in ("rmse", "mae", "pearson", "spearman"):
        assert ci[name][0] < m[name] < ci[name][1]
    assert ci == bootstrap_intervals(y, p, n_resamples=300, random_state=0)
    assert np.isnan(regression_metrics([1.0], [2.0])["pearson"])
    assert np.isnan(bootstrap_intervals([1.0], [2.0])["rmse"][0])


IDS = [f"c{i:02d}" for i in range(20)]


def test_random_split_is_seeded_disjoint_and_complete():
    split = sp.random_split(IDS, seed=4)
    assert (len(split.train), len(split.val), len(split.test)) == (16, 2, 2)
    assert sorted(split.train + split.val + split.test) == IDS
    assert split == sp.random_split(IDS, seed=4)
    assert split != sp.random_split(IDS, seed=5)


def test_kfold_tests_every_id_once():
    folds = sp.kfold_splits(IDS, 5, seed=0)
    tested = [i for fold in folds for i in fold.test]
    assert sorted(tested) == IDS
    assert all(fold.val and not set(fold.val) & set(fold.test) for fold in folds)
    with pytest.raises(InputError):
        sp.kfold_splits(IDS, 1)


def test_held_out_carves_validation_from_training():
    split = sp.held_out(IDS, ["c00", "c01", "zz99"], seed=0)
    assert split.test == ("c00", "c01")
    assert len(split.val) == 2 and not set(split.val) & set(split.test)
    assert "1 listed ids are not among the usable complexes" in split.notes


def test_split_dir_and_column(tmp_path):
    (tmp_path / "train.txt").write_text("\n".join(IDS[:14]) + "\n")
    (tmp_path / "val_ids.txt").write_text("# validation\nC14 c15\n")
    (tmp_path / "test.txt").write_text(",".join(IDS[16:]))
    split = sp.from_split_dir(IDS, tmp_path)
    assert split.val == ("c14", "c15") and split.test == tuple(IDS[16:])
    column = sp.from_column({i: ("training" if i < "c18" else "testing") for i in IDS})
    assert len(column.test) == 2 and len(column.val) == 2  # carved


def test_split_dir_rejects_integer_indices_and_missing_lists(tmp_path):
    (tmp_path / "train_indices.txt").write_text("0\n1\n2\n")
    (tmp_path / "test_indices.txt").write_text("3\n")
    with pytest.raises(InputError, match="integer indices"):
        sp.from_split_dir(IDS, tmp_path)
    (tmp_path / "train_indices.txt").write_text("c00\nc01\n")
    (tmp_path / "test_indices.txt").unlink()
    with pytest.raises(InputError, match="no test list"):
        sp.from_split_dir(IDS, tmp_path)


def test_overlapping_parts_are_refused():
    with pytest.raises(InputError, match="more than one split part"):
        sp.Split(("a",), ("a",), (), method="x")
