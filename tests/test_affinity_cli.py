"""train-affinity / predict-affinity end to end on the 4-complex fixture (tests/data/affinity).

`hae` runs use `ElementCountEmbedder`, a test double with the interface of
`holoprot.Embedder` whose latents are per-neighbourhood element counts, so the pipeline
(pocket, neighbourhoods with ligand atoms, cache, aggregation, forests) is exercised for real
without model weights.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from holoprot.affinity import features

FIXTURE = Path(__file__).parent / "data" / "affinity"
FAST = ["--grid", "small", "--n-forests", "2"]


class ElementCountEmbedder:
    """Test double: latent = counts of C, N, O, S atoms and all atoms in each neighbourhood."""

    weights_name = "test-double"
    latent_dim = 5

    def __init__(self, sha256: str = "ab" * 32) -> None:
        self.weights_sha256 = sha256
        self.calls = 0

    def embed_neighborhoods(self, nbh) -> np.ndarray:
        self.calls += 1
        out = np.zeros((len(nbh), self.latent_dim), dtype=np.float32)
        for i in range(len(nbh)):
            element = nbh.element[nbh.offsets[i] : nbh.offsets[i + 1]]
            out[i, :4] = [np.sum(element == e) for e in ("C", "N", "O", "S")]
            out[i, 4] = len(element)
        return out


@pytest.fixture
def embedder(monkeypatch):
    double = ElementCountEmbedder()
    monkeypatch.setattr(features, "load_embedder", lambda weights, device: double)
    return double


def test_counts_end_to_end_and_predict_roundtrip(affinity_cli, tmp_path):
    out = tmp_path / "run"
    result = affinity_cli("train-affinity", FIXTURE, "--features", "counts", *FAST, "--out", out)
    assert result.exit_code == 0, result.output
    assert "counts" in result.output and "RMSE" in result.output
    for name in ("forest.skops", "forest.json", "predictions.csv", "scatter.png", "metrics.json"):
        assert (out / "counts" / name).is_file(), name
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["run"]["n_complexes"] == 4 and summary["run"]["n_skipped"] == 0
    record = summary["counts"]
    assert record["split"].startswith("random 0.8/0.1/0.1 (seed 0)")
    assert {record[p]["n"] for p in ("train", "val", "test")} == {2, 1}
    assert set(record["test"]["ci95"]) == {"rmse", "mae", "pearson", "spearman"}
    meta = json.loads((out / "counts" / "forest.json").read_text())
    assert meta["features"] == "counts" and meta["pocket_cutoff"] == 6.0
    assert len(set(meta["forest"]["seeds"])) == 2
    assert sorted(meta["split"]["train"] + meta["split"]["val"] + meta["split"]["test"]) == [
        "1a28", "1gbt", "1hvr", "4zhl",
    ]  # fmt: skip
    trained = pd.read_csv(out / "counts" / "predictions.csv").set_index("id")
    assert trained.loc["1hvr", "label"] == pytest.approx(9.5086)  # Ki=0.31nM

    result = affinity_cli("predict-affinity", out, FIXTURE / "1hvr", "-o", tmp_path / "p.csv")
    assert result.exit_code == 0, result.output
    again = pd.read_csv(tmp_path / "p.csv").set_index("id")
    assert again.loc["1hvr", "prediction"] == trained.loc["1hvr", "prediction"]  # identical
    assert again.loc["1hvr", "label"] == pytest.approx(9.5086)  # from FIXTURE/index
    assert again.loc["1hvr", "ligand_source"] == "1hvr_ligand.sdf"
    result = affinity_cli("predict-affinity", out, FIXTURE / "4zhl", "-o", tmp_path / "p.csv")
    assert result.exit_code == 1 and "already exists, kept" in result.output
    assert pd.read_csv(tmp_path / "p.csv").equals(again.reset_index())
    (tmp_path / "bad.sdf").write_text("garbage\n")
    broken = f"{FIXTURE / '1hvr' / '1hvr_protein.pdb'}:{tmp_path / 'bad.sdf'}"
    result = affinity_cli("predict-affinity", out, broken)
    assert result.exit_code == 1 and "none of the 1 complex(es)" in result.output

    pair = f"{FIXTURE / '1a28' / '1a28_pocket.pdb'}:{FIXTURE / '1a28' / '1a28_ligand.sdf'}"
    result = affinity_cli("predict-affinity", out / "counts", pair)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].startswith("id,prediction,forest_std")
    assert result.stdout.splitlines()[1].startswith(f"1a28,{trained.loc['1a28', 'prediction']:.4f}")


def test_tampered_model_is_refused(affinity_cli, tmp_path):
    out = tmp_path / "run"
    assert (
        affinity_cli(
            "train-affinity", FIXTURE, "--features", "counts", *FAST, "--out", out
        ).exit_code
        == 0
    )
    meta_path = out / "counts" / "forest.json"
    meta = json.loads(meta_path.read_text())
    original = meta_path.read_text()
    for key, value in [
        ("model_sha256", "0" * 64),
        ("pocket_cutoff", 8.0),
        ("features", "hae"),
        ("n_features", 3),
        ("forest", meta["forest"] | {"seeds": [1, 2]}),
    ]:
        meta_path.write_text(json.dumps(meta | {key: value}))
        result = affinity_cli("predict-affinity", out, FIXTURE / "1hvr")
        assert result.exit_code == 1, key
        assert "forest.json: metadata_sha256 does not match" in result.output, key
        assert "Traceback" not in result.output
    meta_path.write_text(original)
    model = out / "counts" / "forest.skops"
    model.write_bytes(model.read_bytes() + b"\0")
    result = affinity_cli("predict-affinity", out, FIXTURE / "1hvr")
    assert result.exit_code == 1
    assert "sha256 does not match forest.json" in result.output


def test_hae_and_counts_cache_and_weights_check(affinity_cli, tmp_path, embedder, monkeypatch):
    cache, out = tmp_path / "cache", tmp_path / "run"
    args = ["train-affinity", FIXTURE, "--features", "both", "--cache-dir", cache, *FAST]
    result = affinity_cli(*args, "--out", out)
    assert result.exit_code == 0, result.output
    assert embedder.calls == 4 and len(list(cache.glob("*.npz"))) == 4
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["run"]["n_embedded"] == 4
    assert summary["hae"]["test"]["n"] == summary["counts"]["test"]["n"] == 1
    hae_meta = json.loads((out / "hae" / "forest.json").read_text())
    assert hae_meta["weights_sha256"] == embedder.weights_sha256
    assert hae_meta["aggregate"] == "sum"
    for name in ("hae", "counts"):
        meta = json.loads((out / name / "forest.json").read_text())
        assert meta["split"]["test"] == hae_meta["split"]["test"]  # same split for both

    # other forest settings and aggregation: nothing is re-embedded
    result = affinity_cli(
        *args, "--n-forests", "3", "--aggregate", "sum+count", "--out", out, "--overwrite"
    )
    assert result.exit_code == 0, result.output
    assert embedder.calls == 4
    assert json.loads((out / "metrics.json").read_text())["run"]["n_embeddings_from_cache"] == 4
    assert json.loads((out / "hae" / "forest.json").read_text())["n_features"] == 6

    result = affinity_cli("predict-affinity", out, FIXTURE / "1gbt")
    assert result.exit_code == 1 and "holds 2 models (counts, hae)" in result.output
    result = affinity_cli("predict-affinity", out / "hae", FIXTURE, "--cache-dir", cache)
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 5
    assert embedder.calls == 4  # all from the cache, which recorded the ligand files read
    rows = [line.split(",") for line in result.stdout.splitlines()[1:]]
    assert all(r[4] == f"{r[0]}_ligand.sdf" for r in rows), rows

    other = ElementCountEmbedder(sha256="cd" * 32)
    monkeypatch.setattr(features, "load_embedder", lambda weights, device: other)
    result = affinity_cli("predict-affinity", out / "hae", FIXTURE / "1gbt")
    assert result.exit_code == 1
    assert "trained with weights test-double" in result.output and other.calls == 0


def test_core_set_is_the_default_test_set(affinity_cli, tmp_path, core_set):
    index = FIXTURE / "index" / "INDEX_fixture_PL_data.txt"
    out = tmp_path / "run"
    result = affinity_cli(
        "train-affinity", FIXTURE, "--index", index, "--index", core_set,
        "--features", "counts", *FAST, "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "counts" / "forest.json").read_text())
    assert meta["split"]["test"] == ["1hvr"]
    assert meta["split"]["method"].startswith("CASF core set as test")
    assert len(meta["split"]["val"]) == 1  # carved from training


def _manifest(tmp_path, rows):
    path = tmp_path / "manifest.csv"
    lines = ["id,protein,ligand,label,split"]
    for complex_id, pdb_id, label, split in rows:
        structure = next((FIXTURE / pdb_id).glob("*_p*.pdb"))
        ligand = FIXTURE / pdb_id / f"{pdb_id}_ligand.sdf"
        lines.append(f"{complex_id},{structure},{ligand},{label},{split}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_manifest_split_column_kfold_and_skipped_complexes(affinity_cli, tmp_path):
    pdb_ids = ["1hvr", "1a28", "1gbt", "4zhl"] * 2
    rows = [(f"c{i}", p, 5.0 + i / 2, "train" if i < 6 else "test") for i, p in enumerate(pdb_ids)]
    manifest = _manifest(tmp_path, rows)
    with open(manifest, "a") as handle:
        handle.write(
            f"broken,{FIXTURE / '1hvr' / '1hvr_protein.pdb'},{tmp_path / 'none.sdf'},7.0,train\n"
        )
    out = tmp_path / "run"
    result = affinity_cli(
        "train-affinity", "--manifest", manifest, "--features", "counts", *FAST, "--out", out
    )
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "counts" / "forest.json").read_text())
    assert meta["split"]["test"] == ["c6", "c7"] and meta["split"]["method"].startswith(
        "split column"
    )
    skipped = pd.read_csv(out / "skipped.csv")
    assert list(skipped["id"]) == ["broken"] and "file not found" in skipped["problem"][0]

    out2 = tmp_path / "cv"
    result = affinity_cli(
        "train-affinity", "--manifest", manifest, "--split", "kfold", "--k-folds", "2",
        "--features", "counts", *FAST, "--out", out2,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    record = json.loads((out2 / "counts" / "metrics.json").read_text())
    assert len(record["folds"]) == 2 and record["pooled_test"]["test"]["n"] == 8
    predictions = pd.read_csv(out2 / "counts" / "predictions.csv")
    assert sorted(predictions["id"]) == sorted(f"c{i}" for i in range(8))
    final = json.loads((out2 / "counts" / "forest.json").read_text())
    assert final["split"]["test"] == [] and len(final["split"]["train"]) == 7


def test_bad_input_is_one_line_and_writes_nothing(affinity_cli, tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("id,protein,ligand,label\n../../escape,a.pdb,b.sdf,1\n")
    out = tmp_path / "run"
    result = affinity_cli(
        "train-affinity", "--manifest", manifest, "--features", "counts", "--out", out
    )
    assert result.exit_code == 1
    assert "invalid complex id" in result.output and "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.csv"]

    out.mkdir()
    result = affinity_cli("train-affinity", FIXTURE, "--features", "counts", "--out", out)
    assert result.exit_code == 1 and "already exists" in result.output

    result = affinity_cli("predict-affinity", tmp_path, "x.pdb:y.sdf")
    assert result.exit_code == 1 and "not a train-affinity output" in result.output


def test_overwrite_replaces_only_an_affinity_output(affinity_cli, tmp_path):
    """--overwrite must not delete a folder that holds no model written by holoprot."""
    out = tmp_path / "notes"
    (out / "data").mkdir(parents=True)
    (out / "thesis.txt").write_text("years of work\n")
    (out / "data" / "forest.json").write_text('{"model_sha256": "not sealed"}\n')
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    args = ["train-affinity", FIXTURE, "--features", "counts", *FAST, "--out", out]
    result = affinity_cli(*args, "--overwrite")
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert (out / "thesis.txt").read_text() == "years of work\n"
    assert result.exit_code == 1 and "Traceback" not in result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.endswith(
        f"{out}: holds no affinity model written by holoprot (forest.json or ridge.json): not"
        " replacing it with --overwrite; name a new folder"
    )

    run = tmp_path / "run"  # a train-affinity output is replaced
    assert affinity_cli(*args[:-1], run).exit_code == 0
    (run / "stale.txt").write_text("from the last run\n")
    result = affinity_cli(*args[:-1], run, "--overwrite")
    assert result.exit_code == 0, result.output
    assert not (run / "stale.txt").exists() and (run / "counts" / "forest.json").is_file()


def test_unlabelled_and_unreadable_complexes_are_reported(affinity_cli, tmp_path):
    data = tmp_path / "data"
    for pdb_id in ("1hvr", "1a28", "1gbt", "4zhl"):
        shutil.copytree(FIXTURE / pdb_id, data / pdb_id)
    (data / "5xyz").mkdir()
    shutil.copy(FIXTURE / "1a28" / "1a28_pocket.pdb", data / "5xyz" / "5xyz_pocket.pdb")
    (data / "5xyz" / "5xyz_ligand.sdf").write_text("garbage\n")
    index = FIXTURE / "index" / "INDEX_fixture_PL_data.txt"
    (data / "index").mkdir()
    (data / "index" / "INDEX_x").write_text(
        index.read_text() + "5xyz  2.00  2000  5.00  Kd=10uM  // x (y)\n"
        "6xyz  2.00  2000  5.00  Kd>10uM  // x (y)\n"
    )
    (data / "6xyz").mkdir()
    shutil.copy(FIXTURE / "1a28" / "1a28_pocket.pdb", data / "6xyz" / "6xyz_pocket.pdb")
    shutil.copy(FIXTURE / "1a28" / "1a28_ligand.sdf", data / "6xyz" / "6xyz_ligand.sdf")
    out = tmp_path / "run"
    result = affinity_cli("train-affinity", data, "--features", "counts", *FAST, "--out", out)
    assert result.exit_code == 0, result.output
    assert "4 complexes featurised, 2 skipped" in result.output
    skipped = pd.read_csv(out / "skipped.csv").set_index("id")
    assert skipped.loc["5xyz", "stage"] == "ligand"
    assert skipped.loc["6xyz", "problem"] == "censored label Kd>10uM"

    result = affinity_cli("predict-affinity", out, data)
    assert result.exit_code == 3  # predictions written, some complexes skipped
    assert "skipped 5xyz (ligand)" in result.stderr
    assert sorted(line.split(",")[0] for line in result.stdout.splitlines()[1:]) == [
        "1a28", "1gbt", "1hvr", "4zhl", "6xyz",
    ]  # fmt: skip


def test_counts_features_never_import_torch():
    """torch loads only when an Embedder is built. (skops itself imports it while saving or
    loading a model, through sklearn's array-API shims; that is outside this package.)"""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import holoprot.cli.affinity\n"
        "from holoprot.affinity.dataset import discover\n"
        "from holoprot.affinity.features import featurise\n"
        f"complexes, _ = discover({str(FIXTURE)!r})\n"
        "table = featurise(complexes, ['counts'])\n"
        "assert table.features['counts'].shape == (4, 36)\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_no_ic50_drops_ic50_labels(affinity_cli, tmp_path):
    index = tmp_path / "INDEX_ic50"
    index.write_text(
        (FIXTURE / "index" / "INDEX_fixture_PL_data.txt")
        .read_text()
        .replace("Ki=10mM", "IC50=10mM")
    )
    out = tmp_path / "run"
    args = ["train-affinity", FIXTURE, "--index", index, "--features", "counts", *FAST]
    result = affinity_cli(*args, "--no-ic50", "--split", "random", "--out", out)
    assert result.exit_code == 0, result.output
    skipped = pd.read_csv(out / "skipped.csv")
    assert list(skipped["id"]) == ["1gbt"] and skipped["problem"][0] == "measure IC50 excluded"


def test_real_embedder_end_to_end(affinity_cli, tmp_path):
    """With the real `holoprot.Embedder` and the default weights the package ships
    (torch and the weights are required dependencies: any failure to build it fails here)."""
    from holoprot.embedding.embedder import Embedder

    embedder = Embedder(weights="default", device="cpu")
    out, cache = tmp_path / "run", tmp_path / "cache"
    args = ["train-affinity", FIXTURE, "--features", "hae", "--device", "cpu", *FAST]
    result = affinity_cli(*args, "--n-forests", "1", "--cache-dir", cache, "--out", out)
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "hae" / "forest.json").read_text())
    assert meta["weights_sha256"] == embedder.weights_sha256
    assert meta["n_features"] == embedder.latent_dim
    trained = pd.read_csv(out / "hae" / "predictions.csv").set_index("id")
    result = affinity_cli("predict-affinity", out, FIXTURE / "4zhl", "--cache-dir", cache)
    assert result.exit_code == 0, result.output
    predicted = result.stdout.splitlines()[1].split(",")
    assert predicted[:2] == ["4zhl", f"{trained.loc['4zhl', 'prediction']:.4f}"]
