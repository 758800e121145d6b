"""holoprot.evaluation: cosines, reconstruction, invariance, probes, labels and subsets.

The model-dependent checks use a small randomly initialised model (as test_embed.py does); the
shipped weights and their recorded metrics are tested in test_weights.py.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from holoprot.embedding.embedder import Embedder, Embedding
from holoprot.errors import HoloprotError
from holoprot.evaluation import (
    SLICE_TEST,
    SLICE_TRAIN,
    STANDARD_AMINO_ACIDS,
    cosines,
    encode_latents,
    evaluate_weights,
    input_invariants,
    latent_invariance,
    match_states,
    probe_table,
    random_init_model,
    read_group_sets,
    read_split,
    reconstruction_cosines,
    reconstruction_rows,
    residue_type_probe,
    sample_rows_by_file,
    secondary_structure_labels,
    subset_masks,
    summarise_reconstruction,
    three_state,
)
from holoprot.io.structure import read_structure, structure_id
from holoprot.zernike.basis import ZernikeBasis

EXAMPLES = Path(__file__).parents[1] / "examples" / "structures"
LS = ZernikeBasis().layout()["l"]
Blobs = Callable[..., tuple[np.ndarray, np.ndarray]]


def test_cosines_of_x_with_itself_and_its_negative() -> None:
    x = np.random.default_rng(0).normal(size=(5, len(LS)))
    for y, expected in ((x, 1.0), (3 * x, 1.0), (-x, -1.0)):
        c = cosines(x, y, LS)
        for key in ("overall", "weighted"):
            np.testing.assert_allclose(c[key], expected, atol=1e-12)
        assert c["per_l"].shape == (5, 7)
        np.testing.assert_allclose(c["per_l"], expected, atol=1e-12)


def test_cosines_known_two_sample_case() -> None:
    """Degrees (0, 1, 1): weights √1, √3, √3 in the reference's cosine."""
    ls = np.array([0, 1, 1])
    x = np.array([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    y = np.array([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    c = cosines(x, y, ls)
    np.testing.assert_allclose(c["overall"], [1 / np.sqrt(2), 1 / 2])
    r3 = np.sqrt(3)
    np.testing.assert_allclose(
        c["weighted"], [1 / np.sqrt(1 + r3), r3 / np.sqrt((1 + r3) * 2 * r3)]
    )
    # per l: l=0 → 1, then 0 (zero y block); l=1 → 0 (zero x block), then 1/√2
    np.testing.assert_allclose(c["per_l"], [[1.0, 0.0], [0.0, 1 / np.sqrt(2)]])


class _Scaled(torch.nn.Module):
    """Stand-in model: x_normalised = x / 0.5, recon = factor · x_normalised."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, sample: bool) -> SimpleNamespace:
        assert sample is False
        xn = x / 0.5
        return SimpleNamespace(x_normalised=xn, recon=self.factor * xn, z_mean=xn[:, :2])


def test_reconstruction_cosines_of_perfect_and_inverted_recon() -> None:
    x = np.random.default_rng(1).normal(size=(7, len(LS))).astype(np.float32)
    for factor in (2.0, -1.0):
        r = reconstruction_cosines(_Scaled(factor).eval(), x, LS, batch=3)
        assert r["n"] == 7
        assert r["overall"] == pytest.approx(np.sign(factor), abs=1e-6)
        assert r["weighted"] == pytest.approx(np.sign(factor), abs=1e-6)
        assert sorted(r["per_l"]) == list(range(7))
        assert all(v == pytest.approx(np.sign(factor), abs=1e-6) for v in r["per_l"].values())
    with pytest.raises(HoloprotError, match="eval mode"):
        reconstruction_cosines(_Scaled(1.0).train(), x, LS)


def test_reconstruction_cosines_match_direct_computation(weights: Path) -> None:
    """Batching does not change the result; the numbers are the mean of the row cosines."""
    model = Embedder(weights, device="cpu").model
    x = np.random.default_rng(2).normal(scale=0.01, size=(10, len(LS))).astype(np.float32)
    with torch.no_grad():
        out = model(torch.from_numpy(x), sample=False)
    a, b = out.x_normalised.double().numpy(), out.recon.double().numpy()
    direct = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    l3 = LS == 3
    direct_l3 = (a[:, l3] * b[:, l3]).sum(1) / np.linalg.norm(a[:, l3], axis=1)
    direct_l3 /= np.linalg.norm(b[:, l3], axis=1)
    for batch in (1, 4, 1024):
        r = reconstruction_cosines(model, x, LS, batch=batch)
        assert r["overall"] == pytest.approx(direct.mean(), abs=1e-6)
        assert r["per_l"][3] == pytest.approx(direct_l3.mean(), abs=1e-6)
    assert abs(r["overall"]) < 0.9  # an untrained model does not reconstruct


def test_latent_invariance_of_a_random_model(weights: Path) -> None:
    embedder = Embedder(weights, device="cpu")
    structure = read_structure(EXAMPLES / "1hvr.pdb")
    r = latent_invariance(embedder, structure, n_rotations=2, seed=0)
    assert r["n_residues"] == 198 and r["n_rotations"] == 2
    assert 0 < r["mean"] <= r["max"] <= 1e-4
    assert r["frame_error_max"] <= 1e-3
    assert latent_invariance(embedder, structure, n_rotations=2, seed=0) == r


class _Broken:
    """An embedder whose input is not rotation-equivariant (the l = 1, m = −1 coefficients are
    doubled): the invariance metric must see it."""

    def __init__(self, embedder: Embedder) -> None:
        layout = embedder.basis.layout()
        self.scale = torch.where(
            torch.from_numpy((layout["l"] == 1) & (layout["m"] == -1)), 2.0, 1.0
        )
        self.inner, self.basis, self.radius = embedder, embedder.basis, embedder.radius

    def embed_coefficients(self, x: torch.Tensor) -> Embedding:
        return self.inner.embed_coefficients(x * self.scale)


def test_latent_invariance_detects_a_broken_model(weights: Path) -> None:
    broken = _Broken(Embedder(weights, device="cpu"))
    r = latent_invariance(broken, read_structure(EXAMPLES / "1hvr.pdb"), n_rotations=1)
    assert r["max"] > 1e-2
    assert r["frame_error_max"] > 1e-2


def test_probe_on_separable_and_on_shuffled_labels(blobs: Blobs) -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=3.0, size=(20, 16))
    x_train, y_train = blobs(rng, 2000, centres, STANDARD_AMINO_ACIDS)
    x_test, y_test = blobs(rng, 1000, centres, STANDARD_AMINO_ACIDS)
    r = residue_type_probe(x_train, y_train, x_test, y_test, seed=0)
    assert r["accuracy"] > 0.95 and r["converged"]
    assert r["n_train"] == 2000 and r["n_test"] == 1000
    assert sorted(r["per_class"]) == sorted(STANDARD_AMINO_ACIDS)
    assert min(r["per_class"].values()) > 0.8
    assert r["majority_baseline"] < 0.1
    shuffled = residue_type_probe(x_train, rng.permutation(y_train), x_test, y_test, seed=0)
    assert shuffled["accuracy"] < 0.12  # chance: 1/20


def test_probe_drops_nonstandard_residues_and_subsamples_deterministically(blobs: Blobs) -> None:
    rng = np.random.default_rng(1)
    centres = rng.normal(scale=3.0, size=(20, 8))
    x_train, y_train = blobs(rng, 600, centres, STANDARD_AMINO_ACIDS)
    x_test, y_test = blobs(rng, 300, centres, STANDARD_AMINO_ACIDS)
    y_train[:50], y_test[:30] = "MSE", "UNK"
    r = residue_type_probe(x_train, y_train, x_test, y_test, seed=3, max_train=400)
    assert r["n_train"] == 400 and r["n_test"] == 270
    assert "UNK" not in r["per_class"]
    assert residue_type_probe(x_train, y_train, x_test, y_test, seed=3, max_train=400) == r
    other = residue_type_probe(x_train, y_train, x_test, y_test, seed=4, max_train=400)
    assert other["n_train"] == 400


def test_read_split(tmp_path: Path) -> None:
    path = tmp_path / "split.csv"
    path.write_text("source_path,structure_id,group,split\na.pdb,a,A,train\nb.pdb,b,B,test\n")
    assert read_split(path) == {"a.pdb": "train", "b.pdb": "test"}


def test_input_invariants_are_rotation_invariant_and_complete_in_degree_two() -> None:
    """float64: rotating the coefficients (Wigner-D per degree) changes no feature beyond 1e-12
    relative; l = 0 features are the l = 0 coefficients; the count is 44 + Σ K_l(K_l+1)/2."""
    from holoprot.model.so3 import rotate_flat

    basis = ZernikeBasis()
    rng = np.random.default_rng(7)
    x = rng.normal(size=(3, basis.dim))
    feats = input_invariants(x, LS)
    ks = [int(np.count_nonzero(np.asarray(LS) == l)) // (2 * l + 1) for l in range(7)]
    assert feats.shape == (3, ks[0] + sum(k * (k + 1) // 2 for k in ks[1:])) == (3, 4072)
    np.testing.assert_array_equal(feats[:, : ks[0]], x[:, LS == 0])
    for seed in range(3):
        R = torch.as_tensor(Rotation.random(random_state=seed).as_matrix())
        rotated = rotate_flat(torch.as_tensor(x), basis.irreps, R).numpy()
        assert not np.allclose(rotated, x)
        bound = 1e-12 * np.abs(feats).max()
        np.testing.assert_allclose(input_invariants(rotated, LS), feats, rtol=0, atol=bound)
    l1 = np.flatnonzero(LS == 1)
    assert feats[0, ks[0]] == pytest.approx(float(x[0, l1[:3]] @ x[0, l1[:3]]))


def test_input_invariants_reject_a_layout_that_is_not_degree_blocks() -> None:
    with pytest.raises(ValueError, match="contiguous"):
        input_invariants(np.zeros((1, 4)), np.array([1, 0, 1, 1]))


def test_reconstruction_rows_mse_and_r2_by_hand() -> None:
    """recon = 0.5·x̂ (x̂ = x / 0.5): squared error 0.25·Σx̂² per degree; R² against a zero mean
    is 1 − 0.25 = 0.75 in every degree; against the true mean it is computed directly."""
    x = np.random.default_rng(3).normal(size=(6, len(LS))).astype(np.float32)
    model = _Scaled(0.5).eval()
    xn = x.astype(np.float64) / 0.5
    rows = reconstruction_rows(model, x, LS, mean=np.zeros(len(LS)), batch=4)
    s = summarise_reconstruction(rows, LS)
    assert s["n"] == 6 and s["weighted_cosine_loss"] == pytest.approx(0.0, abs=1e-6)
    assert s["mse"] == pytest.approx(np.mean((0.5 * xn) ** 2), rel=1e-6)
    assert s["r2"] == pytest.approx(0.75, abs=1e-6)
    assert all(v == pytest.approx(0.75, abs=1e-6) for v in s["per_l_r2"].values())
    l2 = LS == 2
    assert s["per_l_mse"][2] == pytest.approx(np.mean((0.5 * xn[:, l2]) ** 2), rel=1e-6)
    mean = xn.mean(0)
    s = summarise_reconstruction(reconstruction_rows(model, x, LS, mean=mean), LS)
    assert s["r2"] == pytest.approx(1 - ((0.5 * xn) ** 2).sum() / ((xn - mean) ** 2).sum())
    np.testing.assert_array_equal(rows["latent"], xn[:, :2].astype(np.float32))
    assert "recon" not in rows
    kept = reconstruction_rows(model, x, LS, batch=4, keep=l2)["recon"]
    assert kept.dtype == np.float32 and kept.shape == (6, l2.sum())
    np.testing.assert_allclose(kept, 0.5 * xn[:, l2], rtol=1e-6)


def test_group_sets_old_and_new_files(tmp_path: Path) -> None:
    old = tmp_path / "old.csv"
    old.write_text("structure_id,group\n1BD2,1AKJ\n")
    assert read_group_sets(old) is None
    assert list(subset_masks(np.array(["a", "b"]), None)) == ["all"]
    new = tmp_path / "new.csv"
    new.write_text(
        "structure_id,group,split,set\n1A2K_l_u,1A2K,test,bm5\n1BD2,1AKJ,test,extra\n"
        "8ABC,8ABC,test,posebusters\n"
    )
    sets = read_group_sets(new)
    masks = subset_masks(np.array(["1A2K_l_u", "8ABC", "1BD2", "9XYZ"]), sets)
    assert masks["old_test_groups"].tolist() == [True, False, True, False]
    assert masks["new_test_groups"].tolist() == [False, True, False, False]
    assert masks["unlisted"].tolist() == [False, False, False, True]
    assert masks["all"].all()
    bad = tmp_path / "bad.csv"
    bad.write_text("id,group\n")
    with pytest.raises(HoloprotError, match="structure_id"):
        read_group_sets(bad)


def test_sample_rows_by_file_takes_whole_files_deterministically() -> None:
    files = np.repeat([f"f{i}" for i in range(10)], 100)
    rows = np.arange(1000)[files != "f3"]
    a = sample_rows_by_file(np.random.default_rng(5), rows, files, 250)
    b = sample_rows_by_file(np.random.default_rng(5), rows, files, 250)
    assert np.array_equal(a, b) and len(a) == 250 and np.all(np.diff(a) > 0)
    assert set(a.tolist()) <= set(rows.tolist())
    assert len(np.unique(files[a])) == 3  # 250 rows need 3 files of 100
    assert np.array_equal(sample_rows_by_file(np.random.default_rng(0), rows, files, None), rows)


def test_match_states_by_chain_number_and_insertion_code() -> None:
    structure = SimpleNamespace(
        chain=np.array(["A", "A", "A", "B", "B", "B", "A"], dtype=object),
        seq_num=np.array([1, 2, 2, 1, 5, 5, 900]),
        icode=np.array(["", "", "A", "", "", "", ""]),
        is_amino_acid=np.array([True, True, True, True, True, True, False]),
    )
    states = np.array(["H", "E", "G", "T", "S", "B", "X"])
    got = match_states(
        structure,
        states,
        np.array(["A", "A", "A", "B", "B", "C", "A"], dtype=object),
        np.array([2, 2, 1, 1, 5, 1, 900]),
        np.array(["A", "", "", "", "", "", ""], dtype=object),
    )
    # B 5 is duplicated (never guessed), C 1 does not exist, A 900 is not an amino acid
    assert got.tolist() == ["G", "E", "H", "T", "", "", ""]


def test_random_init_model_is_seeded_and_leaves_the_global_rng_alone(weights: Path) -> None:
    config = Embedder(weights, device="cpu").model.config
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    a = random_init_model(config, seed=1)
    assert torch.equal(torch.rand(3), expected)
    b, c = random_init_model(config, seed=1), random_init_model(config, seed=2)
    assert not a.training
    pa, pb, pc = (torch.cat([p.flatten() for p in m.parameters()]) for m in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)
    x = np.random.default_rng(0).normal(scale=0.01, size=(5, len(LS))).astype(np.float32)
    assert np.array_equal(encode_latents(a, x), encode_latents(b, x))


needs_mkdssp = pytest.mark.requires(
    shutil.which("mkdssp") is not None, "mkdssp (DSSP 4: `make dssp`)"
)
REPO = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def slice_run(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A dataset cache of the public slice (SLICE_TRAIN → train, SLICE_TEST → test), its
    split.csv and a groups file with a set column (1hvr in bm5, the other test files new)."""
    from holoprot.training.dataset import build_dataset
    from holoprot.zernike.pipeline import ProjectionSettings

    root = tmp_path_factory.mktemp("slice-run")
    paths = [str(REPO / p) for p in (*SLICE_TRAIN, *SLICE_TEST)]
    data, failures = build_dataset(paths, root / "cache", ProjectionSettings(), workers=0)
    assert not failures
    split = root / "split.csv"
    lines = ["source_path,structure_id,group,split"]
    groups = ["structure_id,group,split,set"]
    for p in paths:
        sid = structure_id(p)
        part = "train" if any(p.endswith(t) for t in SLICE_TRAIN) else "test"
        lines.append(f"{p},{sid},{sid},{part}")
        groups.append(f"{sid},{sid},{part},{'bm5' if sid in ('1hvr', '19hc') else 'dips'}")
    split.write_text("\n".join(lines) + "\n")
    (root / "groups.csv").write_text("\n".join(groups) + "\n")
    return SimpleNamespace(cache=root / "cache", split=split, groups=root / "groups.csv", data=data)


@needs_mkdssp
def test_secondary_structure_probe_collapses_when_labels_and_rows_are_misaligned(
    slice_run: SimpleNamespace,
) -> None:
    """DSSP labels matched to the cache rows: the input's l = 0 coefficients predict them well
    above the majority class; the same labels shuffled against the rows fall to chance."""
    data = slice_run.data
    split = read_split(slice_run.split)
    sources = data.index.column("source_path").to_numpy(zero_copy_only=False).astype(str)
    train = np.flatnonzero([split[s] == "train" for s in sources])
    test = np.flatnonzero([split[s] == "test" for s in sources])
    ss_train, failed = secondary_structure_labels(data.index, train)
    ss_test, failed_test = secondary_structure_labels(data.index, test)
    assert not failed and not failed_test
    assert np.mean(ss_train != "") > 0.97 and np.mean(ss_test != "") > 0.97
    x = data.rows(np.arange(len(data)))[:, LS == 0]
    masks = {"all": np.ones(len(test), dtype=bool)}

    def accuracy(y_train: np.ndarray, y_test: np.ndarray) -> tuple[float, float]:
        t = probe_table({"l0": (x[train], x[test])}, {"ss3": (y_train, y_test)}, masks)["ss3"]
        return t["features"]["l0"]["accuracy"]["all"], t["features"]["majority_class"]["accuracy"][
            "all"
        ]

    aligned, majority = accuracy(three_state(ss_train), three_state(ss_test))
    rng = np.random.default_rng(0)
    shuffled, _ = accuracy(rng.permutation(three_state(ss_train)), three_state(ss_test))
    assert aligned > majority + 0.15
    assert shuffled < majority + 0.05
    assert aligned - shuffled > 0.15


@needs_mkdssp
def test_evaluate_weights_end_to_end_is_reproducible_bit_for_bit(
    slice_run: SimpleNamespace,
    weights: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def run() -> dict:
        ev = evaluate_weights(
            weights,
            slice_run.cache,
            slice_run.split,
            [EXAMPLES / "1hvr.pdb"],
            groups_csv=slice_run.groups,
            max_test=700,
            max_probe_train=800,
            n_rotations=1,
            seed=3,
        )
        return ev

    full = run()
    ev = {k: v for k, v in full.items() if k not in ("timings_s", "wall_time_s")}
    assert ev["rows"]["test"] == 700 and ev["rows"]["probe_train"] == 800
    subsets = ev["rows"]["subsets"]
    assert subsets["all"] == 700 == subsets["old_test_groups"] + subsets["new_test_groups"]
    assert subsets["old_test_groups"] > 0 and subsets["new_test_groups"] > 0
    rec = ev["reconstruction"]
    assert set(rec["subsets"]) == {"old_test_groups", "new_test_groups"}
    assert rec["weighted_cosine_loss"] == pytest.approx(1 - rec["weighted"])
    assert sorted(rec["per_l_r2"]) == list(range(7)) and rec["r2"] < 1
    assert set(ev["probes"]) == {"ss3", "ss8", "residue_type"}
    for task in ev["probes"].values():
        assert set(task["features"]) == {
            "latent",
            "latent_random_init",
            "input_l0",
            "reconstruction_l0",
            "majority_class",
        }
        for f in task["features"].values():
            assert set(f["accuracy"]) == {"all", "old_test_groups", "new_test_groups"}
            assert all(0 <= v <= 1 for v in (*f["accuracy"].values(), *f["knn"].values()))
    assert set(ev["probes"]["ss3"]["classes"]) == {"H", "E", "C"}
    assert (
        ev["probe"]["accuracy"]
        == ev["probes"]["residue_type"]["features"]["latent"]["accuracy"]["all"]
    )
    assert ev["dssp"]["program"].startswith("mkdssp") and not ev["dssp"]["failed_files"]
    assert ev["invariance"]["max"] < 1e-4
    again = run()
    assert {k: v for k, v in again.items() if k not in ("timings_s", "wall_time_s")} == ev
    script = _script("evaluate")
    markdown = script.metrics_markdown(full)
    assert "| latent of these weights |" in markdown and "old test groups" in markdown
    card = tmp_path / "README.md"
    begin, end = script.card_markers("w")
    other = "".join(script.card_markers("w2"))
    card.write_text(f"intro\n{begin}\nold numbers\n{end}\n{other}\noutro\n")
    assert script.replace_card_section(card, "w", markdown)
    text = card.read_text()
    assert "old numbers" not in text and markdown in text
    assert text.endswith(f"{end}\n{other}\noutro\n")
    assert not script.replace_card_section(card, "w3", markdown)
    card.write_text("no markers\n")
    assert not script.replace_card_section(card, "w", markdown)

    # weights/probe_size.py draws the same rows: its first size repeats this 3-state probe (its
    # latents come from the CPU encoder, equal to the torch model's to ~1e-6, which may flip a
    # borderline prediction: one test row is 1/700)
    capsys.readouterr()
    argv = ["probe_size.py", "--weights", str(weights), "--cache", str(slice_run.cache)]
    argv += ["--split", str(slice_run.split), "--groups", str(slice_run.groups)]
    argv += ["--sizes", "800", "1000", "--max-test", "700", "--seed", "3"]
    monkeypatch.setattr("sys.argv", argv)
    _script("probe_size").main()
    out, err = capsys.readouterr()
    first = [line for line in err.splitlines() if " train rows of " in line][0]
    accuracy = float(re.search(r"iterations: all (0\.\d+)", first).group(1))
    want = ev["probes"]["ss3"]["features"]["latent"]["accuracy"]["all"]
    assert abs(accuracy - want) <= 2 / 700 + 1e-4, (accuracy, want)
    assert "| 800 train | 1,000 train |" in out and f"`{weights.stem}`" in out


def _script(name: str) -> ModuleType:
    """weights/<name>.py as a module."""
    spec = importlib.util.spec_from_file_location(f"{name}_script", REPO / "weights" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
