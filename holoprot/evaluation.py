"""Evaluation of trained weights: reconstruction, rotation invariance and a residue-type probe.

These are the metrics of the model card (``weights/README.md``), computed by
``weights/evaluate.py`` and stored in the weights JSON under ``metadata["evaluation"]``:

* reconstruction: cosine similarity between the normalised input coefficients and their
  reconstruction, overall and per degree l (:func:`reconstruction_cosines`);
* invariance: relative change of the latent when the atoms are rotated (:func:`latent_invariance`);
* residue-type probe: a logistic regression from latent to residue name over the 20 standard
  amino acids, trained on train residues, scored on test residues (:func:`residue_type_probe`);
* a small probe on public files shipped with the repository (:func:`slice_probe`), which a test
  recomputes to check that the recorded numbers come from this code and these weights;
* for scale, the same probe on the input's own rotation invariants (:func:`input_invariants`):
  what a linear read-out of the coefficients' degree-1 and degree-2 invariants achieves.

Everything is deterministic given ``seed``: subsamples come from ``np.random.default_rng(seed)``.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from scipy.spatial.transform import Rotation
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from holoprot.embedding import Embedder, Embedding
from holoprot.errors import HoloprotError
from holoprot.model import HVAE
from holoprot.neighborhoods import extract_neighborhoods
from holoprot.structure import Structure, read_structure
from holoprot.training.dataset import load_dataset

#: The 20 standard amino acids: the classes of the residue-type probe.
STANDARD_AMINO_ACIDS = (
    "ALA", "ARG", "ASN", "ASP", "CYS", "GLN", "GLU", "GLY", "HIS", "ILE",
    "LEU", "LYS", "MET", "PHE", "PRO", "SER", "THR", "TRP", "TYR", "VAL",
)  # fmt: skip

_REPO = Path(__file__).resolve().parents[1]

#: The public slice (paths relative to the repository root): the probe is trained on the residues
#: of the test-data structures and scored on those of the examples, so train and test residues
#: come from different proteins. The 6,608-residue unit cell 3kpr is left out to keep it fast.
#: Fixed lists, not globs: a new file in these folders must not change a recorded result.
SLICE_TRAIN = (
    "tests/data/structures/19hc.pdb.gz",
    "tests/data/structures/1a8o.pdb",
    "tests/data/structures/1gbt.cif",
    "tests/data/structures/1lcd_nmr.cif.gz",
)
SLICE_TEST = ("examples/1a28.pdb.gz", "examples/1hvr.pdb", "examples/4zhl.cif")


def cosines(x: np.ndarray, y: np.ndarray, ls: np.ndarray) -> dict[str, np.ndarray]:
    """Per-row cosine similarities of two (N, dim) arrays, in float64.

    Returns ``overall`` (N,): the plain cosine of the flat vectors (every coefficient weighs the
    same); ``weighted`` (N,): the reference's cosine (SPEC §4.6), an l-wise dot product in which
    every product of degree l is weighted by √(2l+1); ``per_l`` (N, L): the cosine restricted to
    the coefficients of each degree in ``np.unique(ls)`` (identical in both conventions, the
    weight cancels within one l). A zero vector has cosine 0.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    ls = np.asarray(ls)
    w = np.sqrt(2.0 * ls + 1.0)

    def cos(a: np.ndarray, b: np.ndarray, weight: np.ndarray | float = 1.0) -> np.ndarray:
        dot = (weight * a * b).sum(axis=1)
        norm = np.sqrt((weight * a * a).sum(axis=1) * (weight * b * b).sum(axis=1))
        return dot / np.maximum(norm, np.finfo(np.float64).tiny)

    per_l = [cos(x[:, ls == l], y[:, ls == l]) for l in np.unique(ls)]
    return {
        "overall": cos(x, y),
        "weighted": cos(x, y, w),
        "per_l": np.stack(per_l, axis=1) if per_l else np.zeros((len(x), 0)),
    }


@torch.no_grad()
def reconstruction_cosines(
    model: HVAE, coefficients: np.ndarray, ls: np.ndarray, batch: int = 1024
) -> dict:
    """Mean cosine similarity between normalised input and reconstruction (z = latent mean).

    Args:
        model: an HVAE in eval mode.
        coefficients: raw Zernike coefficients (N, dim), as in the dataset cache.
        ls: degree l of each coefficient (dim,), e.g. ``ZernikeBasis().layout()["l"]``.
        batch: rows per forward pass.

    Returns ``overall`` (mean over residues of the plain cosine of the flat vectors),
    ``weighted`` (the same with the reference's √(2l+1) weighting, see :func:`cosines`),
    ``per_l`` {l: mean cosine over the degree-l coefficients} and ``n`` (residues). The input
    normalisation divides by one scalar, so the cosines are those of the raw coefficients too.
    """
    if model.training:
        raise HoloprotError("reconstruction_cosines needs the model in eval mode")
    device = next(model.parameters()).device
    degrees = np.unique(ls)
    overall = weighted = 0.0
    per_l = np.zeros(len(degrees))
    for start in range(0, len(coefficients), batch):
        x = torch.as_tensor(np.asarray(coefficients[start : start + batch]), dtype=torch.float32)
        out = model(x.to(device), sample=False)
        c = cosines(out.x_normalised.cpu().numpy(), out.recon.cpu().numpy(), ls)
        overall += c["overall"].sum()
        weighted += c["weighted"].sum()
        per_l += c["per_l"].sum(axis=0)
    n = len(coefficients)
    if n == 0:
        raise HoloprotError("reconstruction_cosines: no coefficients given")
    return {
        "overall": float(overall / n),
        "weighted": float(weighted / n),
        "per_l": {int(l): float(v / n) for l, v in zip(degrees, per_l, strict=True)},
        "n": int(n),
    }


def embed_structure(embedder: Embedder, structure: Structure) -> tuple[np.ndarray, Embedding]:
    """Neighbourhoods → float32 projection → encoder for every residue with a Cα.

    Returns the centre residues (M,) (rows of the structure's residue table) and their embedding.
    """
    nbh = extract_neighborhoods(structure, embedder.radius)
    with torch.no_grad():
        coefficients = embedder.basis.project_neighborhoods(nbh, dtype=torch.float32)
    return nbh.residue_index, embedder.embed_coefficients(coefficients)


def latent_invariance(
    embedder: Embedder, structure: Structure, n_rotations: int = 5, seed: int = 0
) -> dict:
    """How much the latent changes when the atoms are rotated (and translated) in memory.

    Each of ``n_rotations`` uniformly random rotations R (with a random translation, σ = 10 Å)
    is applied to the atom coordinates; neighbourhoods are re-extracted, re-projected in float32
    and encoded. Returns ``max`` and ``mean`` of ‖z_R − z‖ / ‖z‖ over residues and rotations,
    ``frame_error_max`` = max |F_R − F·Rᵀ| (frames rotate with the atoms; rows x̂, ŷ, ẑ),
    ``n_residues`` and ``n_rotations``.
    """
    rng = np.random.default_rng(seed)
    rotations = Rotation.random(n_rotations, random_state=rng).as_matrix().reshape(-1, 3, 3)
    residues, base = embed_structure(embedder, structure)
    z_norm = np.maximum(np.linalg.norm(base.latent, axis=1), np.finfo(np.float32).tiny)
    relative, frame_error = [], []
    for rot in rotations:
        moved = dataclasses.replace(
            structure, coords=structure.coords @ rot.T + rng.normal(scale=10.0, size=3)
        )
        moved_residues, emb = embed_structure(embedder, moved)
        if not np.array_equal(moved_residues, residues):
            raise HoloprotError(f"{structure.path}: rotation changed the set of centre residues")
        relative.append(np.linalg.norm(emb.latent - base.latent, axis=1) / z_norm)
        frame_error.append(np.abs(emb.frame - base.frame @ rot.T.astype(np.float32)).max())
    rel = np.concatenate(relative)
    return {
        "max": float(rel.max()),
        "mean": float(rel.mean()),
        "frame_error_max": float(max(frame_error)),
        "n_residues": int(len(residues)),
        "n_rotations": int(n_rotations),
    }


def residue_type_probe(
    train_latents: np.ndarray,
    train_labels: np.ndarray,
    test_latents: np.ndarray,
    test_labels: np.ndarray,
    seed: int = 0,
    max_train: int | None = None,
    max_iter: int = 2000,
) -> dict:
    """Logistic-regression probe: residue name from latent, over the 20 standard amino acids.

    Features are standardised (mean and scale of the train latents); the model is sklearn's
    multinomial ``LogisticRegression`` (lbfgs, C = 1, ``random_state=seed``). Rows whose label is
    not a standard amino acid are dropped; then at most ``max_train`` train rows are kept
    (``np.random.default_rng(seed)`` subsample).

    Args:
        train_latents, test_latents: (N, latent_dim) latents.
        train_labels, test_labels: (N,) residue names (e.g. ``"ALA"``).

    Returns ``accuracy`` on the test rows, ``per_class`` {name: accuracy} (names present in the
    test rows), ``majority_baseline`` (test accuracy of always predicting the most common train
    label), ``n_train``, ``n_test``, ``n_iter`` and ``converged``.
    """
    train_labels, test_labels = np.asarray(train_labels, str), np.asarray(test_labels, str)
    train = np.flatnonzero(np.isin(train_labels, STANDARD_AMINO_ACIDS))
    test = np.flatnonzero(np.isin(test_labels, STANDARD_AMINO_ACIDS))
    if max_train is not None and len(train) > max_train:
        train = np.sort(np.random.default_rng(seed).choice(train, max_train, replace=False))
    y_train, y_test = train_labels[train], test_labels[test]
    if len(np.unique(y_train)) < 2 or len(test) == 0:
        raise HoloprotError("residue_type_probe needs two residue types to train and a test row")
    probe = make_pipeline(
        StandardScaler(), LogisticRegression(max_iter=max_iter, random_state=seed)
    )
    probe.fit(np.asarray(train_latents, np.float64)[train], y_train)
    correct = probe.predict(np.asarray(test_latents, np.float64)[test]) == y_test
    names, counts = np.unique(y_train, return_counts=True)
    n_iter = int(np.max(probe[-1].n_iter_))
    return {
        "accuracy": float(correct.mean()),
        "per_class": {str(a): float(correct[y_test == a].mean()) for a in np.unique(y_test)},
        "majority_baseline": float(np.mean(y_test == names[np.argmax(counts)])),
        "n_train": int(len(train)),
        "n_test": int(len(test)),
        "n_iter": n_iter,
        "converged": n_iter < max_iter,
    }


def input_invariants(coefficients: np.ndarray, ls: np.ndarray) -> np.ndarray:
    """Rotation invariants of flat coefficient vectors, (N, F) float64.

    The flat layout is degree-major with ``m`` fastest (:meth:`ZernikeBasis.layout`), so the
    degree-``l`` block of a row is ``K_l`` vectors ``v_k`` of length ``2l+1`` (one per channel
    and radial order). Features: the ``l = 0`` coefficients themselves, then for every ``l ≥ 1``
    the inner products ``⟨v_j, v_k⟩`` for ``j ≤ k`` (invariant because ``D^l(R)`` is
    orthogonal). For the default basis F = 44 + Σ_l K_l(K_l+1)/2 = 4,072.

    Args:
        coefficients: (N, dim) coefficient vectors.
        ls: (dim,) degree of each coefficient, e.g. ``ZernikeBasis().layout()["l"]``.
    """
    x = np.asarray(coefficients, dtype=np.float64)
    ls = np.asarray(ls)
    feats = []
    for l in np.unique(ls):
        cols = np.flatnonzero(ls == l)
        if len(cols) % (2 * l + 1) or np.any(np.diff(cols) != 1):
            raise ValueError(f"degree {l} is not one contiguous block of (2l+1)-vectors")
        v = x[:, cols].reshape(len(x), -1, 2 * l + 1)
        if l == 0:
            feats.append(v[:, :, 0])
        else:
            j, k = np.triu_indices(v.shape[1])
            feats.append(np.einsum("bjm,bkm->bjk", v, v)[:, j, k])
    return np.concatenate(feats, axis=1)


def _structure_latents(
    embedder: Embedder, paths: Sequence[str | os.PathLike]
) -> tuple[np.ndarray, np.ndarray]:
    """Latents (M, latent_dim) and residue names (M,) of every residue with a Cα in `paths`."""
    latents, names = [], []
    for path in paths:
        structure = read_structure(path)
        residues, emb = embed_structure(embedder, structure)
        latents.append(emb.latent)
        names.append(structure.res_name[residues].astype(str))
    return np.concatenate(latents), np.concatenate(names)


def slice_probe(embedder: Embedder, seed: int = 0, root: str | os.PathLike = _REPO) -> dict:
    """:func:`residue_type_probe` on the public slice (:data:`SLICE_TRAIN` → :data:`SLICE_TEST`,
    paths under `root`, the repository checkout), so that it can be recomputed without the
    training data. Also returns the file lists."""
    root = Path(root)
    missing = [p for p in (*SLICE_TRAIN, *SLICE_TEST) if not (root / p).is_file()]
    if missing:
        raise HoloprotError(f"slice files not found under {root}: {missing}")
    train = _structure_latents(embedder, [root / p for p in SLICE_TRAIN])
    test = _structure_latents(embedder, [root / p for p in SLICE_TEST])
    result = residue_type_probe(*train, *test, seed=seed)
    return {**result, "train_files": list(SLICE_TRAIN), "test_files": list(SLICE_TEST)}


def read_split(path: str | os.PathLike) -> dict[str, str]:
    """``split.csv`` of a training run → {source_path: train/val/test}."""
    with open(path, newline="") as fh:
        return {row["source_path"]: row["split"] for row in csv.DictReader(fh)}


def _subsample(rng: np.random.Generator, rows: np.ndarray, limit: int | None) -> np.ndarray:
    if limit is None or len(rows) <= limit:
        return rows
    return np.sort(rng.choice(rows, limit, replace=False))


def evaluate_weights(
    weights: str | os.PathLike,
    cache_dir: str | os.PathLike,
    split_csv: str | os.PathLike,
    structures_for_invariance: Sequence[str | os.PathLike],
    *,
    max_test: int | None = 20_000,
    max_probe_train: int | None = 30_000,
    max_probe_test: int | None = 10_000,
    n_rotations: int = 3,
    seed: int = 0,
    device: str = "cpu",
) -> dict:
    """All model-card metrics of `weights` on the test split of a training run.

    Reconstruction cosines on at most `max_test` test residues; the probe trained on at most
    `max_probe_train` train residues and scored on at most `max_probe_test` test residues (all
    standard amino acids), and on the same rows the probe of :func:`input_invariants` instead of
    latents (``input_invariants_probe``, for scale); invariance on each of
    `structures_for_invariance` (``n_rotations`` each, seeds ``seed``, ``seed + 1``, …;
    ``max``/``mean`` over all of them, the mean weighted by residues); ``slice``:
    :func:`slice_probe`. Subsamples: ``np.random.default_rng(seed)``.
    """
    start = time.perf_counter()
    embedder = Embedder(weights, device=device)
    data = load_dataset(cache_dir)
    split_of = read_split(split_csv)
    sources = data.index.column("source_path").to_numpy(zero_copy_only=False)
    unknown = sorted(set(sources) - set(split_of))
    if unknown:
        raise HoloprotError(f"{split_csv}: no split for {len(unknown)} file(s), e.g. {unknown[0]}")
    split = np.array([split_of[s] for s in sources])
    names = data.index.column("residue_name").to_numpy(zero_copy_only=False).astype(str)
    standard = np.isin(names, STANDARD_AMINO_ACIDS)
    rng = np.random.default_rng(seed)
    test_rows = _subsample(rng, np.flatnonzero(split == "test"), max_test)
    probe_train = _subsample(rng, np.flatnonzero((split == "train") & standard), max_probe_train)
    probe_test = _subsample(rng, np.flatnonzero((split == "test") & standard), max_probe_test)
    if len(test_rows) == 0:
        raise HoloprotError(f"{split_csv}: no test residues")

    ls = embedder.basis.layout()["l"]
    reconstruction = reconstruction_cosines(embedder.model, data.rows(test_rows), ls)
    x_train, x_test = data.rows(probe_train), data.rows(probe_test)
    probe = residue_type_probe(
        embedder.embed_coefficients(x_train).latent,
        names[probe_train],
        embedder.embed_coefficients(x_test).latent,
        names[probe_test],
        seed=seed,
    )
    invariants_train = input_invariants(x_train, ls)
    input_probe = residue_type_probe(
        invariants_train,
        names[probe_train],
        input_invariants(x_test, ls),
        names[probe_test],
        seed=seed,
    )
    input_probe = {k: v for k, v in input_probe.items() if k != "per_class"}
    input_probe["n_features"] = int(invariants_train.shape[1])
    del invariants_train
    per_structure = {
        str(p): latent_invariance(embedder, read_structure(p), n_rotations, seed + i)
        for i, p in enumerate(structures_for_invariance)
    }
    counts = [r["n_residues"] * r["n_rotations"] for r in per_structure.values()]
    invariance = {
        "max": max((r["max"] for r in per_structure.values()), default=float("nan")),
        "mean": float(np.average([r["mean"] for r in per_structure.values()], weights=counts))
        if counts
        else float("nan"),
        "frame_error_max": max(
            (r["frame_error_max"] for r in per_structure.values()), default=float("nan")
        ),
        "dtype": "float32",
        "structures": per_structure,
    }
    return {
        "weights": embedder.weights_name,
        "sha256": embedder.weights_sha256,
        "split": "test",
        "seed": seed,
        "limits": {
            "max_test": max_test,
            "max_probe_train": max_probe_train,
            "max_probe_test": max_probe_test,
        },
        "reconstruction": reconstruction,
        "invariance": invariance,
        "probe": probe,
        "input_invariants_probe": input_probe,
        "slice": slice_probe(embedder, seed),
        "wall_time_s": round(time.perf_counter() - start, 1),
        "device": str(embedder.device),
        "cpu_threads": torch.get_num_threads(),
    }


__all__ = [
    "SLICE_TEST",
    "SLICE_TRAIN",
    "STANDARD_AMINO_ACIDS",
    "cosines",
    "embed_structure",
    "evaluate_weights",
    "input_invariants",
    "latent_invariance",
    "read_split",
    "reconstruction_cosines",
    "residue_type_probe",
    "slice_probe",
]
