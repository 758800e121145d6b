"""zernike-l0 features, concatenated feature sets and their recorded column order, the ridge
regressor, and predict-affinity refusing a model whose columns it cannot rebuild in order."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from holoprot._util.hashing import seal
from holoprot.affinity import features as feats
from holoprot.affinity.dataset import ComplexFiles, read_ligand
from holoprot.affinity.linear import RidgeModel, load_ridge, save_ridge
from holoprot.affinity.models import check_columns
from holoprot.affinity.pocket import pocket_residues
from holoprot.errors import InputError
from holoprot.io.structure import read_structure
from holoprot.zernike.neighborhoods import extract_neighborhoods

FIXTURE = Path(__file__).parent / "data" / "affinity"
FAST = ["--grid", "small", "--n-forests", "2"]


def _gbt() -> ComplexFiles:
    folder = FIXTURE / "1gbt"
    return ComplexFiles("1gbt", folder / "1gbt_protein.pdb", None, (folder / "1gbt_ligand.sdf",))


def test_zernike_l0_is_the_first_44_coefficients_summed_over_the_pocket():
    """Computed here atom list by atom list with `project_atoms` (not the batched path)."""
    from holoprot.zernike.basis import ZernikeBasis

    basis = ZernikeBasis()
    layout = basis.layout()
    assert (layout["l"][:44] == 0).all() and (layout["l"][44:] > 0).all()
    table = feats.featurise([_gbt()], ["zernike-l0"])
    structure = read_structure(FIXTURE / "1gbt" / "1gbt_protein.pdb")
    ligand = read_ligand([FIXTURE / "1gbt" / "1gbt_ligand.sdf"])
    pocket = pocket_residues(structure, ligand.coords, 6.0)
    nbh = extract_neighborhoods(
        structure, 10.0, residues=pocket, extra_coords=ligand.coords, extra_element=ligand.element
    )
    expected = np.zeros(44)
    for i in range(len(nbh)):
        rows = slice(nbh.offsets[i], nbh.offsets[i + 1])
        expected += basis.project_atoms(nbh.coords[rows], nbh.element[rows])[:44]
    assert len(pocket) > 5
    np.testing.assert_allclose(table.features["zernike-l0"][0], expected, rtol=1e-5)
    assert table.n_pocket[0] == len(pocket)
    # l = 0 is rotation invariant, l = 1 is not
    rows = slice(nbh.offsets[0], nbh.offsets[1])
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))
    one = basis.project_atoms(nbh.coords[rows], nbh.element[rows])
    turned = basis.project_atoms(nbh.coords[rows] @ q.T, nbh.element[rows])
    np.testing.assert_allclose(turned[:44], one[:44], rtol=1e-4, atol=1e-6)
    assert not np.allclose(turned[44:56], one[44:56], atol=1e-3)


def test_feature_set_columns_follow_the_concatenation_order():
    names = feats.feature_columns("hae+counts", latent_dim=3)
    assert names[:3] == ["hae:0", "hae:1", "hae:2"]
    assert names[3:] == [f"counts:{n}" for n in feats.count_feature_names()]
    zl0 = feats.feature_columns("hae+zernike-l0", latent_dim=2, how="sum+count")
    assert zl0[:3] == ["hae:0", "hae:1", "hae:n_pocket"]
    assert zl0[3] == "zernike-l0:C:n0" and zl0[4] == "zernike-l0:C:n2"
    assert zl0[-2:] == ["zernike-l0:S:n20", "zernike-l0:n_pocket"] and len(zl0) == 3 + 45
    table = feats.FeatureTable(
        ["a"],
        np.zeros(1),
        [None],
        {"hae": np.array([[1.0, 2.0]]), "counts": np.array([[3.0]])},
        np.zeros(1),
        ["x"],
    )
    np.testing.assert_array_equal(table.matrix("hae+counts"), [[1.0, 2.0, 3.0]])
    with pytest.raises(InputError, match="unknown features"):
        feats.set_kinds("counts+hae")


def test_shuffled_or_foreign_columns_are_refused():
    columns = feats.feature_columns("counts")
    check_columns(columns, columns, "m")
    shuffled = columns[1:] + columns[:1]
    with pytest.raises(InputError, match="another order"):
        check_columns(shuffled, columns, "m")
    with pytest.raises(InputError, match="cannot rebuild 'counts:X-Y'"):
        check_columns([*columns[:-1], "counts:X-Y"], columns, "m")


def test_ridge_chooses_alpha_on_validation_and_round_trips(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(80, 4)) * [1.0, 10.0, 100.0, 0.0]  # a constant column too
    y = X @ [0.5, -0.1, 0.01, 0.0] + 3.0 + rng.normal(scale=0.05, size=80)
    model = RidgeModel().fit(X[:60], y[:60], X_val=X[60:], y_val=y[60:])
    scores = [row["val_rmse"] for row in model.grid_scores_]
    assert model.alpha_ == model.alphas[int(np.argmin(scores))]
    assert np.sqrt(np.mean((model.predict(X[60:]) - y[60:]) ** 2)) < 0.1
    save_ridge(model, tmp_path, {"feature_set": "counts"})
    loaded, meta = load_ridge(tmp_path)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    meta["ridge"]["coef"][0] += 1.0
    (tmp_path / "ridge.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="does not match its content"):
        load_ridge(tmp_path)
    (tmp_path / "ridge.json").write_text(json.dumps(seal(meta)))  # resealed: numbers checked
    with pytest.raises(InputError, match="do not match their sha256"):
        load_ridge(tmp_path)


def test_several_feature_sets_and_regressors_then_column_checks(affinity_cli, tmp_path):
    out = tmp_path / "run"
    result = affinity_cli(
        "train-affinity", FIXTURE, "--features", "counts,zernike-l0", "--regressor", "rf",
        "--regressor", "ridge", *FAST, "--split", "random", "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert names == ["counts", "counts-ridge", "zernike-l0", "zernike-l0-ridge"]
    meta = json.loads((out / "zernike-l0-ridge" / "ridge.json").read_text())
    assert meta["feature_set"] == "zernike-l0" and meta["regressor"] == "ridge"
    assert meta["split_name"] == "random" and meta["aggregate"] == "sum"
    assert meta["feature_columns"] == feats.feature_columns("zernike-l0")
    forest_meta = json.loads((out / "counts" / "forest.json").read_text())
    assert forest_meta["feature_columns"] == feats.feature_columns("counts")
    assert forest_meta["regressor"] == "rf"

    result = affinity_cli("predict-affinity", out / "zernike-l0-ridge", FIXTURE)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 5 and lines[0].startswith("id,prediction")

    # a shuffled column order in the metadata is refused (resealed, so that this reaches the
    # column check rather than the seal's)
    meta["feature_columns"] = meta["feature_columns"][::-1]
    (out / "zernike-l0-ridge" / "ridge.json").write_text(json.dumps(seal(meta)))
    result = affinity_cli("predict-affinity", out / "zernike-l0-ridge", FIXTURE)
    assert result.exit_code == 1 and "another order" in result.output
    meta["feature_set"] = "esm"
    (out / "zernike-l0-ridge" / "ridge.json").write_text(json.dumps(seal(meta)))
    result = affinity_cli("predict-affinity", out / "zernike-l0-ridge", FIXTURE)
    assert result.exit_code == 1 and "which this holoprot cannot build" in result.output
    assert "Traceback" not in result.output


def test_cluster_cv_saves_its_clusters_and_reuses_them(affinity_cli, tmp_path):
    out = tmp_path / "run"
    args = ["train-affinity", FIXTURE, "--features", "counts", "--regressor", "ridge"]
    result = affinity_cli(*args, "--split", "cluster-cv", "--k-folds", "2", "--out", out)
    assert result.exit_code == 0, result.output
    clusters = pd.read_csv(out / "clusters" / "clusters.csv")
    assert sorted(clusters["id"]) == ["1a28", "1gbt", "1hvr", "4zhl"]
    meta = json.loads((out / "counts-ridge" / "ridge.json").read_text())
    assert meta["split_name"] == "cluster-cv" and meta["split"]["method"].startswith("all")
    folds = json.loads((out / "counts-ridge" / "metrics.json").read_text())["folds"]
    predicted = pd.read_csv(out / "counts-ridge" / "predictions.csv")
    assert len(folds) == 2 and sorted(predicted["id"]) == sorted(clusters["id"])  # each once
    again = tmp_path / "again"
    result = affinity_cli(
        *args, "--split", "cluster-cv", "--clusters", out / "clusters", "--out", again
    )
    assert result.exit_code == 0, result.output
    assert (again / "clusters" / "clusters.csv").read_text() == (
        out / "clusters" / "clusters.csv"
    ).read_text()


def test_core_split_tests_on_the_core_set(affinity_cli, tmp_path, core_set):
    index = FIXTURE / "index" / "INDEX_fixture_PL_data.txt"
    out = tmp_path / "run"
    result = affinity_cli(
        "train-affinity", FIXTURE, "--index", index, "--index", core_set, "--split", "core",
        "--features", "counts", "--regressor", "ridge", "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "counts-ridge" / "ridge.json").read_text())
    assert meta["split_name"] == "core" and meta["split"]["test"] == ["1hvr"]
    result = affinity_cli(
        "train-affinity", FIXTURE, "--index", index, "--split", "core", "--features",
        "counts", "--out", tmp_path / "none",
    )  # fmt: skip
    assert result.exit_code == 1 and "no CASF core complex" in result.output
