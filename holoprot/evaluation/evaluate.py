"""Evaluation of trained weights: every model-card metric in one report (:func:`evaluate_weights`).

The metrics of the model card (``weights/README.md``), computed by ``weights/evaluate.py`` and
stored in the weights JSON under ``metadata["evaluation"]``, on test (and probe-train) residues of
a training run's dataset cache:

* ``reconstruction``: :mod:`.reconstruction` on the test residues, overall, per degree l and per
  subset of held-out groups (:func:`.splits.subset_masks`);
* ``probes``: :func:`.probes.probe_table` for the centre residue's DSSP secondary structure (3 and
  8 states, :mod:`.dssp`) and type (20 amino acids, :mod:`.labels`), on the latent and, for
  scale, on a randomly initialised model of the same architecture, on the input's and the
  reconstruction's l = 0 coefficients and for the majority class (:mod:`.features`);
* ``invariance``: :mod:`.invariance` of the latent under rotations of the atoms;
* ``slice``: the residue-type probe on public files shipped with the repository
  (:mod:`.public_slice`), which a test recomputes to check that the recorded numbers come from
  this code and these weights;
* ``timings_s``: seconds per step.

Everything is deterministic given ``seed``: subsamples come from ``np.random.default_rng(seed)``,
the random model from ``torch.manual_seed(seed)``.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa
import torch

from holoprot.embedding.embedder import Embedder
from holoprot.errors import HoloprotError
from holoprot.evaluation.dssp import dssp_version, eight_state, three_state
from holoprot.evaluation.features import encode_latents, input_invariants, random_init_model
from holoprot.evaluation.invariance import latent_invariance_of_files
from holoprot.evaluation.labels import residue_type_labels, secondary_structure_labels
from holoprot.evaluation.probes import probe_table
from holoprot.evaluation.public_slice import slice_probe
from holoprot.evaluation.reconstruction import reconstruction_rows, summarise_reconstruction
from holoprot.evaluation.splits import (
    read_group_sets,
    read_split,
    sample_rows_by_file,
    subset_masks,
)
from holoprot.training.dataset import load_dataset


class _Stopwatch:
    """Seconds per step since the previous one (rounded to 0.1 s), logged as each step ends."""

    def __init__(self, log: Callable[[str], None] | None) -> None:
        self.start = time.perf_counter()
        self.timings: dict[str, float] = {}
        self.log = log

    def lap(self, step: str) -> None:
        elapsed = time.perf_counter() - self.start - sum(self.timings.values())
        self.timings[step] = round(elapsed, 1)
        if self.log:
            self.log(f"{step}: {self.timings[step]} s")

    def total(self) -> float:
        return round(time.perf_counter() - self.start, 1)


@dataclasses.dataclass(frozen=True)
class ProbeSample:
    """The evaluated rows of a dataset index, and the source file and residue name of every row.

    Attributes:
        test, train: sorted rows of the index (the probes train on ``train``).
        sources: (N,) source file of every row of the index.
        names: (N,) residue name of every row of the index.
        masks: {subset: (len(test),) bool} from :func:`subset_masks`.
    """

    test: np.ndarray
    train: np.ndarray
    sources: np.ndarray
    names: np.ndarray
    masks: dict[str, np.ndarray]


def _column(index: pa.Table, name: str) -> np.ndarray:
    return index.column(name).to_numpy(zero_copy_only=False).astype(str)


def draw_sample(
    index: pa.Table,
    split_csv: str | os.PathLike,
    cache_dir: str | os.PathLike,
    groups_csv: str | os.PathLike | None,
    max_test: int | None,
    max_probe_train: int | None,
    seed: int,
) -> ProbeSample:
    """Test rows, then probe-train rows, by :func:`sample_rows_by_file` with one generator."""
    split_of = read_split(split_csv)
    sources = _column(index, "source_path")
    unknown = sorted(set(sources) - set(split_of))
    if unknown:
        raise HoloprotError(f"{split_csv}: no split for {len(unknown)} file(s), e.g. {unknown[0]}")
    split = np.array([split_of[s] for s in sources])
    names = _column(index, "residue_name")
    ids = _column(index, "structure_id")
    rng = np.random.default_rng(seed)
    test = sample_rows_by_file(rng, np.flatnonzero(split == "test"), sources, max_test)
    train = sample_rows_by_file(rng, np.flatnonzero(split == "train"), sources, max_probe_train)
    if len(test) == 0 or len(train) == 0:
        raise HoloprotError(f"{split_csv}: no test or no train residues in {cache_dir}")
    masks = subset_masks(ids[test], read_group_sets(groups_csv) if groups_csv else None)
    return ProbeSample(test, train, sources, names, masks)


def _row_counts(sample: ProbeSample) -> dict:
    return {
        "test": int(len(sample.test)),
        "test_files": int(len(np.unique(sample.sources[sample.test]))),
        "probe_train": int(len(sample.train)),
        "probe_train_files": int(len(np.unique(sample.sources[sample.train]))),
        "subsets": {name: int(m.sum()) for name, m in sample.masks.items()},
    }


def _reconstruction(
    test_rec: dict[str, np.ndarray], ls: np.ndarray, masks: dict[str, np.ndarray]
) -> dict:
    """:func:`summarise_reconstruction` of `test_rec` (:func:`reconstruction_rows` of the test
    rows), with ``subsets`` {subset: the same of its rows} for each non-empty subset but ``all``."""
    reconstruction = summarise_reconstruction(test_rec, ls)
    reconstruction["subsets"] = {
        name: summarise_reconstruction({key: v[m] for key, v in test_rec.items()}, ls)
        for name, m in masks.items()
        if name != "all" and m.any()
    }
    return reconstruction


def _probe_features(
    embedder: Embedder,
    x_train: np.ndarray,
    x_test: np.ndarray,
    test_rec: dict[str, np.ndarray],
    ls: np.ndarray,
    seed: int,
    include_invariants: bool,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The probes' feature sets {name: (train, test)} of raw coefficients `x_train`, `x_test`;
    `test_rec` is :func:`reconstruction_rows` of `x_test` with ``keep=ls == 0``."""
    random_model = random_init_model(embedder.model.config, seed).to(embedder.device)
    train_rec = reconstruction_rows(embedder.model, x_train, ls, keep=ls == 0)
    features = {
        "latent": (train_rec["latent"], test_rec["latent"]),
        "latent_random_init": (
            encode_latents(random_model, x_train),
            encode_latents(random_model, x_test),
        ),
        "input_l0": (x_train[:, ls == 0], x_test[:, ls == 0]),
        "reconstruction_l0": (train_rec["recon"], test_rec["recon"]),
    }
    if include_invariants:
        features["input_invariants"] = (input_invariants(x_train, ls), input_invariants(x_test, ls))
    return features


def _residue_type_summary(residue_type: dict) -> dict:
    """The latent's residue-type entry of :func:`probe_table` in the older ``probe`` layout (that
    of :func:`.probes.residue_type_probe`), on all test rows."""
    latent = residue_type["features"]["latent"]
    return {
        "accuracy": latent["accuracy"]["all"],
        "per_class": residue_type["per_class"],
        "majority_baseline": residue_type["features"]["majority_class"]["accuracy"]["all"],
        "n_train": residue_type["n_train"],
        "n_test": residue_type["n_test"]["all"],
        "n_iter": latent["n_iter"],
        "converged": latent["converged"],
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
    latent in the older layout. ``invariance``: :func:`latent_invariance_of_files` on
    `structures_for_invariance`; ``slice``: :func:`slice_probe`. ``timings_s``: seconds per step.
    """
    clock = _Stopwatch(log)
    embedder = Embedder(weights, device=device)
    data = load_dataset(cache_dir)
    sample = draw_sample(
        data.index, split_csv, cache_dir, groups_csv, max_test, max_probe_train, seed
    )
    clock.lap("load")

    model_number = data.manifest.get("settings", {}).get("model")
    ss8_test, failed_test = secondary_structure_labels(data.index, sample.test, model_number)
    ss8_train, failed_train = secondary_structure_labels(data.index, sample.train, model_number)
    clock.lap("dssp")

    ls = embedder.basis.layout()["l"]
    x_train, x_test = data.rows(sample.train), data.rows(sample.test)
    mean = x_train.astype(np.float64).mean(axis=0) / embedder.model.config.input_norm_const
    test_rec = reconstruction_rows(embedder.model, x_test, ls, mean, keep=ls == 0)
    reconstruction = _reconstruction(test_rec, ls, sample.masks)
    clock.lap("reconstruction")

    features = _probe_features(embedder, x_train, x_test, test_rec, ls, seed, include_invariants)
    del test_rec
    clock.lap("encode")

    residue_type = residue_type_labels(sample.names)
    labels = {
        "ss3": (three_state(ss8_train), three_state(ss8_test)),
        "ss8": (eight_state(ss8_train), eight_state(ss8_test)),
        "residue_type": (residue_type[sample.train], residue_type[sample.test]),
    }
    probes = probe_table(features, labels, sample.masks, seed, k, max_iter, log)
    clock.lap("probes")

    invariance = latent_invariance_of_files(embedder, structures_for_invariance, n_rotations, seed)
    clock.lap("invariance")
    sliced = slice_probe(embedder, seed)
    clock.lap("slice")
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
        "rows": _row_counts(sample),
        "dssp": {"program": dssp_version(), "failed_files": failed_test + failed_train},
        "reconstruction": reconstruction,
        "probes": probes,
        "probe": _residue_type_summary(probes["residue_type"]),
        "invariance": invariance,
        "slice": sliced,
        "timings_s": clock.timings,
        "wall_time_s": clock.total(),
        "device": str(embedder.device),
        "cpu_threads": torch.get_num_threads(),
    }


__all__ = ["ProbeSample", "draw_sample", "evaluate_weights"]
