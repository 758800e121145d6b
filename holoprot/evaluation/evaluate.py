"""Evaluation of trained weights: reconstruction, invariance and probes of the latent.

These are the metrics of the model card (``weights/README.md``), computed by
``weights/evaluate.py`` (:func:`evaluate_weights`) and stored in the weights JSON under
``metadata["evaluation"]``:

* reconstruction on held-out test residues: the paper's cosine loss (1 − the √(2l+1)-weighted
  cosine), the plain cosine, MSE in normalised units and R² against the mean training input,
  overall and per degree l (:func:`reconstruction_rows`, :func:`summarise_reconstruction`);
* invariance: relative change of the latent when the atoms are rotated (:func:`latent_invariance`);
* probes (:func:`probe_table`): a logistic regression on train residues, scored on test residues,
  and the agreement of the 10 nearest train neighbours, for the centre residue's DSSP secondary
  structure (3 and 8 states, :mod:`.dssp`) and its type (20 amino acids); each on the
  latent and, for scale, on a randomly initialised model of the same architecture, on the
  input's l = 0 coefficients and for the majority class;
* a small residue-type probe on public files shipped with the repository (:func:`slice_probe`),
  which a test recomputes to check that the recorded numbers come from this code and these
  weights.

Test figures are reported for all test residues and per subset of held-out groups
(:func:`subset_masks`). Everything is deterministic given ``seed``: subsamples come from
``np.random.default_rng(seed)``, the random model from ``torch.manual_seed(seed)``.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from scipy.spatial.transform import Rotation

from holoprot.embedding.embedder import Embedder, Embedding
from holoprot.errors import HoloprotError, InputError
from holoprot.evaluation.dssp import dssp_states, dssp_version, eight_state, three_state
from holoprot.evaluation.probes import knn_agreement, logistic_probe, majority_class
from holoprot.io.structure import Structure, read_structure
from holoprot.model import HVAE, HVAEConfig
from holoprot.training.dataset import load_dataset
from holoprot.zernike.neighborhoods import extract_neighborhoods

#: The 20 standard amino acids: the classes of the residue-type probe.
STANDARD_AMINO_ACIDS = (
    "ALA", "ARG", "ASN", "ASP", "CYS", "GLN", "GLU", "GLY", "HIS", "ILE",
    "LEU", "LYS", "MET", "PHE", "PRO", "SER", "THR", "TRP", "TYR", "VAL",
)  # fmt: skip

#: Sets of the groups file whose test groups were held out for the first default weights
#: (``hae-z128-bm5``); their test rows are the ``old_test_groups`` subset.
OLD_SETS = ("bm5", "extra")

_REPO = Path(__file__).resolve().parents[2]

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
    rows = reconstruction_rows(model, coefficients, ls, batch=batch)
    summary = summarise_reconstruction(rows, ls)
    return {key: summary[key] for key in ("overall", "weighted", "per_l", "n")}


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

    :func:`.probes.logistic_probe` on the rows whose label is a standard amino acid;
    then at most ``max_train`` train rows are kept (``np.random.default_rng(seed)`` subsample).

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
    fit = logistic_probe(
        np.asarray(train_latents)[train],
        y_train,
        np.asarray(test_latents)[test],
        y_test,
        seed=seed,
        max_iter=max_iter,
    )
    correct = fit["correct"]
    return {
        "accuracy": float(correct.mean()),
        "per_class": {str(a): float(correct[y_test == a].mean()) for a in np.unique(y_test)},
        "majority_baseline": float(majority_class(y_train, y_test)["correct"].mean()),
        "n_train": int(len(train)),
        "n_test": int(len(test)),
        "n_iter": fit["n_iter"],
        "converged": fit["converged"],
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


def read_group_sets(path: str | os.PathLike) -> dict[str, str] | None:
    """Groups file → {structure_id: set} (``bm5``, ``extra``, ``posebusters``, …), or None when
    the file has no ``set`` column (the older ``structure_id,group`` files)."""
    try:
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            fields = reader.fieldnames or []
            if "structure_id" not in fields:
                raise InputError(path, "groups file needs a structure_id column")
            if "set" not in fields:
                return None
            return {row["structure_id"]: row["set"] for row in reader}
    except OSError as exc:
        raise InputError(path, f"cannot read groups file ({exc.strerror})") from exc


def subset_masks(structure_ids: np.ndarray, sets: dict[str, str] | None) -> dict[str, np.ndarray]:
    """Boolean masks over rows: ``all``; with `sets`, also ``old_test_groups`` (sets in
    :data:`OLD_SETS`: the groups held out for the first default weights), ``new_test_groups``
    (every other set) and, if any row's structure is not in `sets`, ``unlisted``."""
    ids = np.asarray(structure_ids, dtype=object)
    masks = {"all": np.ones(len(ids), dtype=bool)}
    if sets is None:
        return masks
    listed = np.array([s in sets for s in ids], dtype=bool)
    old = np.array([sets.get(s) in OLD_SETS for s in ids], dtype=bool)
    masks["old_test_groups"] = old
    masks["new_test_groups"] = listed & ~old
    if not listed.all():
        masks["unlisted"] = ~listed
    return masks


def sample_rows_by_file(
    rng: np.random.Generator, rows: np.ndarray, files: np.ndarray, limit: int | None
) -> np.ndarray:
    """At most `limit` of `rows` (sorted), from whole files taken in a seeded random order until
    they hold `limit` rows, then subsampled to exactly `limit`: few files, so DSSP runs on only
    those. `files` (N,) is the file of every row of the dataset."""
    rows = np.asarray(rows)
    if limit is None or len(rows) <= limit:
        return rows
    names, inverse = np.unique(np.asarray(files, dtype=str)[rows], return_inverse=True)
    order = rng.permutation(len(names))
    counts = np.bincount(inverse, minlength=len(names))[order]
    n_files = int(np.searchsorted(np.cumsum(counts), limit)) + 1
    chosen = rows[np.isin(inverse, order[:n_files])]
    return np.sort(rng.choice(chosen, limit, replace=False))


def match_states(
    structure: Structure,
    states: np.ndarray,
    chain: np.ndarray,
    number: np.ndarray,
    icode: np.ndarray,
) -> np.ndarray:
    """Per-residue `states` (R,) of `structure` → the rows given by (chain, residue number,
    insertion code) (N,); ``""`` where no amino-acid residue of the structure has that key, or
    more than one does (never guessed)."""
    table: dict[tuple[str, int, str], str] = {}
    seen: set[tuple[str, int, str]] = set()
    for r in np.flatnonzero(structure.is_amino_acid).tolist():
        key = (str(structure.chain[r]), int(structure.seq_num[r]), str(structure.icode[r]))
        table[key] = "" if key in seen else str(states[r])
        seen.add(key)
    return np.array(
        [
            table.get((str(c), int(n), str(i)), "")
            for c, n, i in zip(chain.tolist(), number.tolist(), icode.tolist(), strict=True)
        ],
        dtype="<U1",
    )


def secondary_structure_labels(
    index: pa.Table, rows: np.ndarray, model: int | None = None
) -> tuple[np.ndarray, list[str]]:
    """DSSP 8-state code of the centre residue of each of `rows` of a dataset index (N,) ('<U1',
    ``""`` for no label), running DSSP once per file of those rows. Returns the codes and the
    messages of the files that could not be read or labelled (their rows get ``""``)."""
    rows = np.asarray(rows)
    take = index.take(pa.array(rows, pa.int64()))
    paths = take.column("source_path").to_numpy(zero_copy_only=False).astype(str)
    chain = take.column("chain").to_numpy(zero_copy_only=False)
    number = take.column("residue_number").to_numpy()
    icode = take.column("insertion_code").to_numpy(zero_copy_only=False)
    labels = np.full(len(rows), "", dtype="<U1")
    failed = []
    for path in np.unique(paths).tolist():
        sel = np.flatnonzero(paths == path)
        try:
            structure = read_structure(path, model=model)
            states = dssp_states(structure)
        except HoloprotError as exc:
            failed.append(str(exc))
            continue
        labels[sel] = match_states(structure, states, chain[sel], number[sel], icode[sel])
    return labels, failed


@torch.no_grad()
def reconstruction_rows(
    model: HVAE,
    coefficients: np.ndarray,
    ls: np.ndarray,
    mean: np.ndarray | None = None,
    batch: int = 1024,
    keep: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Per-row reconstruction figures of raw `coefficients` (N, dim) (z = latent mean).

    Returns float64 arrays ``plain`` and ``weighted`` (N,) and ``per_l`` (N, L) (cosines, see
    :func:`cosines`); ``sq_error`` (N, L): Σ (recon − x)² over each degree's coefficients, in
    normalised units; with `mean` (dim,) (normalised units), ``sq_deviation`` (N, L):
    Σ (x − mean)² likewise; ``latent`` (N, latent_dim) float32; and with `keep` (dim,) bool,
    ``recon`` (N, keep.sum()) float32: those coefficients of the reconstruction (normalised).
    """
    if model.training:
        raise HoloprotError("reconstruction needs the model in eval mode")
    if len(coefficients) == 0:
        raise HoloprotError("reconstruction: no coefficients given")
    device = next(model.parameters()).device
    ls = np.asarray(ls)
    blocks = [ls == l for l in np.unique(ls)]
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(coefficients), batch):
        x = torch.as_tensor(np.asarray(coefficients[start : start + batch]), dtype=torch.float32)
        out = model(x.to(device), sample=False)
        xn = out.x_normalised.cpu().numpy().astype(np.float64)
        recon = out.recon.cpu().numpy().astype(np.float64)
        c = cosines(xn, recon, ls)
        row = {
            "plain": c["overall"],
            "weighted": c["weighted"],
            "per_l": c["per_l"],
            "sq_error": np.stack([((recon - xn)[:, b] ** 2).sum(1) for b in blocks], axis=1),
            "latent": out.z_mean.float().cpu().numpy(),
        }
        if keep is not None:
            row["recon"] = out.recon[:, torch.as_tensor(keep)].float().cpu().numpy()
        if mean is not None:
            dev = xn - np.asarray(mean, np.float64)
            row["sq_deviation"] = np.stack([(dev[:, b] ** 2).sum(1) for b in blocks], axis=1)
        for key, value in row.items():
            parts.setdefault(key, []).append(value)
    return {key: np.concatenate(value) for key, value in parts.items()}


def summarise_reconstruction(rows: dict[str, np.ndarray], ls: np.ndarray) -> dict:
    """Means of :func:`reconstruction_rows` over its rows.

    Returns ``overall`` (plain cosine), ``weighted`` (√(2l+1)-weighted cosine),
    ``weighted_cosine_loss`` (1 − weighted: the paper's cosine loss), ``mse`` (mean over rows and
    coefficients, normalised units), ``r2`` (1 − Σ squared error / Σ squared deviation from the
    mean; with ``sq_deviation`` only), per degree ``per_l`` (cosine; the loss is 1 − it, the
    weight cancels within one degree), ``per_l_mse``, ``per_l_r2``, and ``n``.
    """
    degrees = np.unique(np.asarray(ls))
    dims = np.array([np.count_nonzero(np.asarray(ls) == l) for l in degrees])
    n = len(rows["plain"])
    if n == 0:
        raise HoloprotError("summarise_reconstruction: no rows")
    sq_error = rows["sq_error"].sum(axis=0)
    out = {
        "overall": float(rows["plain"].mean()),
        "weighted": float(rows["weighted"].mean()),
        "weighted_cosine_loss": float(1.0 - rows["weighted"].mean()),
        "mse": float(sq_error.sum() / (n * dims.sum())),
        "per_l": {int(l): float(v) for l, v in zip(degrees, rows["per_l"].mean(0), strict=True)},
        "per_l_mse": {
            int(l): float(v) for l, v in zip(degrees, sq_error / (n * dims), strict=True)
        },
        "n": int(n),
    }
    if "sq_deviation" in rows:
        sq_dev = rows["sq_deviation"].sum(axis=0)
        out["r2"] = float(1.0 - sq_error.sum() / sq_dev.sum())
        out["per_l_r2"] = {
            int(l): float(v) for l, v in zip(degrees, 1.0 - sq_error / sq_dev, strict=True)
        }
    return out


@torch.no_grad()
def encode_latents(model: HVAE, coefficients: np.ndarray, batch: int = 1024) -> np.ndarray:
    """Latent means (N, latent_dim) float32 of raw `coefficients` (N, dim)."""
    device = next(model.parameters()).device
    out = [
        model.encode(
            torch.as_tensor(np.asarray(coefficients[s : s + batch]), dtype=torch.float32).to(device)
        )[0]
        .float()
        .cpu()
        .numpy()
        for s in range(0, len(coefficients), batch)
    ]
    return np.concatenate(out) if out else np.zeros((0, model.config.latent_dim), np.float32)


def random_init_model(config: HVAEConfig, seed: int = 0) -> HVAE:
    """An untrained HVAE of `config` (eval mode), initialised from ``torch.manual_seed(seed)``
    without touching the global torch RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return HVAE(config).eval()


def _means(values: np.ndarray, masks: dict[str, np.ndarray]) -> dict[str, float | None]:
    return {k: (float(values[m].mean()) if m.any() else None) for k, m in masks.items()}


def probe_table(
    features: dict[str, tuple[np.ndarray, np.ndarray]],
    labels: dict[str, tuple[np.ndarray, np.ndarray]],
    masks: dict[str, np.ndarray],
    seed: int = 0,
    k: int = 10,
    max_iter: int = 1000,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Logistic-regression probe and k-nearest-neighbour agreement of every feature set on every
    task, plus the majority class, per subset of the test rows.

    Args:
        features: {name: (train (N_train, F), test (N_test, F))}.
        labels: {task: (train (N_train,), test (N_test,))}, ``""`` for rows without a label
            (left out of that task and counted).
        masks: {subset: (N_test,) bool}, e.g. from :func:`subset_masks`.

    Returns {task: {``classes``, ``n_train``, ``unlabelled_train``, ``n_test`` {subset},
    ``unlabelled_test`` {subset}, ``features`` {name: {``accuracy`` {subset}, ``knn`` {subset},
    ``n_iter``, ``converged``}, ``majority_class``: {``accuracy``, ``knn`` (chance: the train
    frequency of the test row's label), ``predicted``}}}}.
    """
    table = {}
    for task, (y_train, y_test) in labels.items():
        y_train, y_test = np.asarray(y_train, str), np.asarray(y_test, str)
        train, test = y_train != "", y_test != ""
        sub = {name: m[test] for name, m in masks.items()}
        entry: dict = {
            "classes": sorted(np.unique(y_train[train]).tolist()),
            "n_train": int(train.sum()),
            "unlabelled_train": int((~train).sum()),
            "n_test": {name: int((m & test).sum()) for name, m in masks.items()},
            "unlabelled_test": {name: int((m & ~test).sum()) for name, m in masks.items()},
            "features": {},
        }
        for name, (x_train, x_test) in features.items():
            start = time.perf_counter()
            fit = logistic_probe(
                x_train[train], y_train[train], x_test[test], y_test[test], seed, max_iter
            )
            knn = knn_agreement(x_train[train], y_train[train], x_test[test], y_test[test], k)
            entry["features"][name] = {
                "accuracy": _means(fit["correct"], sub),
                "knn": _means(knn, sub),
                "n_iter": fit["n_iter"],
                "converged": fit["converged"],
            }
            if task == "residue_type" and name == "latent":
                y = y_test[test]
                entry["per_class"] = {
                    str(a): float(fit["correct"][y == a].mean()) for a in np.unique(y)
                }
            if log:
                log(
                    f"probe {task} on {name}: {time.perf_counter() - start:.1f} s,"
                    f" {fit['n_iter']} iterations"
                )
        majority = majority_class(y_train[train], y_test[test])
        entry["features"]["majority_class"] = {
            "accuracy": _means(majority["correct"], sub),
            "knn": _means(majority["knn"], sub),
            "predicted": majority["predicted_class"],
        }
        table[task] = entry
    return table


def _invariance(
    embedder: Embedder, structures: Sequence[str | os.PathLike], n_rotations: int, seed: int
) -> dict:
    per_structure = {
        str(p): latent_invariance(embedder, read_structure(p), n_rotations, seed + i)
        for i, p in enumerate(structures)
    }
    counts = [r["n_residues"] * r["n_rotations"] for r in per_structure.values()]
    return {
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


def evaluate_weights(
    weights: str | os.PathLike,
    cache_dir: str | os.PathLike,
    split_csv: str | os.PathLike,
    structures_for_invariance: Sequence[str | os.PathLike],
    *,
    groups_csv: str | os.PathLike | None = None,
    max_test: int | None = 20_000,
    max_probe_train: int | None = 50_000,
    k: int = 10,
    max_iter: int = 1000,
    n_rotations: int = 3,
    include_invariants: bool = False,
    seed: int = 0,
    device: str = "cpu",
    log: Callable[[str], None] | None = None,
) -> dict:
    """All model-card metrics of `weights` on the test split of a training run.

    Rows: at most `max_test` test residues and `max_probe_train` train residues, each drawn by
    :func:`sample_rows_by_file` with ``np.random.default_rng(seed)`` (test rows first).
    ``reconstruction``: :func:`summarise_reconstruction` on the test rows (R² against the mean
    normalised input of the train rows), overall and per subset of :func:`subset_masks` (from
    the ``set`` column of `groups_csv`). ``probes``: :func:`probe_table` for the tasks ``ss3``,
    ``ss8`` (DSSP of the centre residue, :func:`secondary_structure_labels`; κ-helix P counts as
    coil) and ``residue_type`` (20 standard amino acids) on the feature sets ``latent``,
    ``latent_random_init`` (:func:`random_init_model` with `seed`), ``input_l0`` (the input's
    l = 0 coefficients; lbfgs stops after `max_iter` iterations, ``converged`` says whether it
    stopped earlier), ``reconstruction_l0`` (the decoder's l = 0 coefficients: is what the
    latent drops also missing from the reconstruction?) and, with `include_invariants`,
    ``input_invariants`` (:func:`input_invariants`). ``probe``: the residue-type probe on the
    latent in the older layout. ``invariance``: :func:`latent_invariance` on each of
    `structures_for_invariance`; ``slice``: :func:`slice_probe`. ``timings_s``: seconds per step.
    """
    start = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(step: str) -> None:
        timings[step] = round(time.perf_counter() - start - sum(timings.values()), 1)
        if log:
            log(f"{step}: {timings[step]} s")

    embedder = Embedder(weights, device=device)
    data = load_dataset(cache_dir)
    split_of = read_split(split_csv)
    sources = data.index.column("source_path").to_numpy(zero_copy_only=False).astype(str)
    unknown = sorted(set(sources) - set(split_of))
    if unknown:
        raise HoloprotError(f"{split_csv}: no split for {len(unknown)} file(s), e.g. {unknown[0]}")
    split = np.array([split_of[s] for s in sources])
    names = data.index.column("residue_name").to_numpy(zero_copy_only=False).astype(str)
    ids = data.index.column("structure_id").to_numpy(zero_copy_only=False).astype(str)
    rng = np.random.default_rng(seed)
    test_rows = sample_rows_by_file(rng, np.flatnonzero(split == "test"), sources, max_test)
    train_rows = sample_rows_by_file(
        rng, np.flatnonzero(split == "train"), sources, max_probe_train
    )
    if len(test_rows) == 0 or len(train_rows) == 0:
        raise HoloprotError(f"{split_csv}: no test or no train residues in {cache_dir}")
    masks = subset_masks(ids[test_rows], read_group_sets(groups_csv) if groups_csv else None)
    lap("load")

    model_number = data.manifest.get("settings", {}).get("model")
    ss8_test, failed_test = secondary_structure_labels(data.index, test_rows, model_number)
    ss8_train, failed_train = secondary_structure_labels(data.index, train_rows, model_number)
    lap("dssp")

    ls = embedder.basis.layout()["l"]
    x_train, x_test = data.rows(train_rows), data.rows(test_rows)
    mean = x_train.astype(np.float64).mean(axis=0) / embedder.model.config.input_norm_const
    rows = reconstruction_rows(embedder.model, x_test, ls, mean, keep=ls == 0)
    reconstruction = summarise_reconstruction(rows, ls)
    reconstruction["subsets"] = {
        name: summarise_reconstruction({k_: v[m] for k_, v in rows.items()}, ls)
        for name, m in masks.items()
        if name != "all" and m.any()
    }
    lap("reconstruction")

    random_model = random_init_model(embedder.model.config, seed).to(embedder.device)
    train_rec = reconstruction_rows(embedder.model, x_train, ls, keep=ls == 0)
    features = {
        "latent": (train_rec["latent"], rows["latent"]),
        "latent_random_init": (
            encode_latents(random_model, x_train),
            encode_latents(random_model, x_test),
        ),
        "input_l0": (x_train[:, ls == 0], x_test[:, ls == 0]),
        "reconstruction_l0": (train_rec["recon"], rows["recon"]),
    }
    if include_invariants:
        features["input_invariants"] = (input_invariants(x_train, ls), input_invariants(x_test, ls))
    del random_model, rows, train_rec
    lap("encode")

    standard = np.isin(names, STANDARD_AMINO_ACIDS)
    residue_type = np.where(standard, names, "")
    labels = {
        "ss3": (three_state(ss8_train), three_state(ss8_test)),
        "ss8": (eight_state(ss8_train), eight_state(ss8_test)),
        "residue_type": (residue_type[train_rows], residue_type[test_rows]),
    }
    probes = probe_table(features, labels, masks, seed, k, max_iter, log)
    lap("probes")

    rt = probes["residue_type"]
    latent_rt = rt["features"]["latent"]
    probe = {
        "accuracy": latent_rt["accuracy"]["all"],
        "per_class": rt["per_class"],
        "majority_baseline": rt["features"]["majority_class"]["accuracy"]["all"],
        "n_train": rt["n_train"],
        "n_test": rt["n_test"]["all"],
        "n_iter": latent_rt["n_iter"],
        "converged": latent_rt["converged"],
    }
    invariance = _invariance(embedder, structures_for_invariance, n_rotations, seed)
    lap("invariance")
    sliced = slice_probe(embedder, seed)
    lap("slice")
    return {
        "weights": embedder.weights_name,
        "sha256": embedder.weights_sha256,
        "split": "test",
        "seed": seed,
        "limits": {
            "max_test": max_test,
            "max_probe_train": max_probe_train,
            "knn_k": k,
            "probe_max_iter": max_iter,
        },
        "rows": {
            "test": int(len(test_rows)),
            "test_files": int(len(np.unique(sources[test_rows]))),
            "probe_train": int(len(train_rows)),
            "probe_train_files": int(len(np.unique(sources[train_rows]))),
            "subsets": {name: int(m.sum()) for name, m in masks.items()},
        },
        "dssp": {
            "program": dssp_version(),
            "failed_files": failed_test + failed_train,
        },
        "reconstruction": reconstruction,
        "probes": probes,
        "probe": probe,
        "invariance": invariance,
        "slice": sliced,
        "timings_s": timings,
        "wall_time_s": round(time.perf_counter() - start, 1),
        "device": str(embedder.device),
        "cpu_threads": torch.get_num_threads(),
    }


__all__ = [
    "OLD_SETS",
    "SLICE_TEST",
    "SLICE_TRAIN",
    "STANDARD_AMINO_ACIDS",
    "cosines",
    "embed_structure",
    "encode_latents",
    "evaluate_weights",
    "input_invariants",
    "latent_invariance",
    "match_states",
    "probe_table",
    "random_init_model",
    "read_group_sets",
    "read_split",
    "reconstruction_cosines",
    "reconstruction_rows",
    "residue_type_probe",
    "sample_rows_by_file",
    "secondary_structure_labels",
    "slice_probe",
    "subset_masks",
    "summarise_reconstruction",
]
