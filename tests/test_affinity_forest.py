"""Forest ensemble (grid search, distinct bootstraps, safe save/load), metrics and splits."""

from __future__ import annotations

import json

import numpy as np
import pytest
import skops.io
from scipy import stats

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


def test_forests_use_distinct_recorded_seeds_and_resamples(fitted, data):
    """Reference pitfall 11: the resamples must differ between forests."""
    X, y, *_ = data
    assert len(set(fitted.seeds_)) == 3
    assert [f.random_state for f in fitted.forests_] == fitted.seeds_
    resamples = [np.random.default_rng(s).integers(0, len(y), len(y)) for s in fitted.seeds_]
    assert not np.array_equal(resamples[0], resamples[1])
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


def test_foreign_types_are_refused_even_with_matching_checksum(tmp_path, fitted):
    save_forest(fitted, tmp_path, {})
    skops.io.dump([fitted.forests_[0], stats.norm], tmp_path / "forest.skops")  # a scipy object
    meta = json.loads((tmp_path / "forest.json").read_text())
    from holoprot.hashing import seal, sha256_file

    meta["model_sha256"] = sha256_file(tmp_path / "forest.skops")
    (tmp_path / "forest.json").write_text(json.dumps(seal(meta)))  # checksums forged too
    with pytest.raises(InputError, match="outside sklearn/numpy"):
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
