"""Complex features for the affinity forest.

* `hae`: H-(V)AE invariant latents of the pocket residues' neighbourhoods, aggregated per complex
  (`sum` as in the reference, `mean`, or `sum+count` = sum plus the number of pocket residues).
  Pocket residues: `pocket.pocket_residues` on the full protein when there is one, else on the
  pocket file (a pocket file truncates the 10 Å spheres). Neighbourhoods (the embedder's radius,
  10 Å by default) are cut from that same structure (waters and H already dropped by
  `read_structure`) with the ligand heavy atoms added as environment atoms. Per-residue latents
  are cached per complex as `.npz` (read with `allow_pickle=False`) under a key made of the
  weights sha256, the pocket cutoff, the radius and the sha256 of every input file, so changing
  forest settings or the aggregation re-embeds nothing.
* `counts`: RF-Score-style (Ballester & Mitchell 2010) counts of protein–ligand heavy-atom pairs
  within 12 Å (inclusive), for protein elements C, N, O, S × ligand elements C, N, O, F, P, S, Cl,
  Br, I (36 features). Protein atoms are all non-water heavy atoms of the structure file (protein
  when present, else pocket, where counts beyond the pocket's extent are lost).

A complex that fails for any requested kind is skipped for all kinds (and reported), so that
feature kinds are compared on the same complexes. `torch` is imported only when an `Embedder` is
built (`load_embedder`), so `counts` never loads it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from scipy.spatial import cKDTree

from holoprot.affinity.dataset import ComplexFiles, Failure, Ligand, collect_failure, read_ligand
from holoprot.affinity.pocket import DEFAULT_CUTOFF, pocket_residues
from holoprot.errors import HoloprotError, InputError
from holoprot.hashing import sha256_file
from holoprot.neighborhoods import extract_neighborhoods
from holoprot.structure import read_structure

FEATURE_KINDS = ("hae", "counts")
AGGREGATES = ("sum", "mean", "sum+count")
NEIGHBORHOOD_RADIUS = 10.0
COUNT_CUTOFF = 12.0
COUNT_PROTEIN_ELEMENTS = ("C", "N", "O", "S")
COUNT_LIGAND_ELEMENTS = ("C", "N", "O", "F", "P", "S", "CL", "BR", "I")
CACHE_FORMAT = "holoprot-affinity-hae-v1"


class EmbedderLike(Protocol):
    """What the `hae` featuriser needs from `holoprot.embedding.Embedder` (an optional `radius`
    attribute, Å, sets the neighbourhood radius; default 10)."""

    weights_name: str
    weights_sha256: str
    latent_dim: int

    def embed_neighborhoods(self, nbh) -> np.ndarray: ...


def load_embedder(weights: str = "default", device: str = "auto") -> EmbedderLike:
    """A `holoprot.embedding.Embedder` (imports torch)."""
    try:
        from holoprot.embedding import Embedder
    except ImportError as exc:
        raise HoloprotError(f"the hae features need holoprot.embedding and torch ({exc})") from None
    return Embedder(weights=weights, device=device)


def default_cache_dir() -> Path:
    """`$HOLOPROT_CACHE_DIR/affinity`, else `$XDG_CACHE_HOME/holoprot/affinity` (~/.cache)."""
    if os.environ.get("HOLOPROT_CACHE_DIR"):
        return Path(os.environ["HOLOPROT_CACHE_DIR"]) / "affinity"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "holoprot" / "affinity"


def count_feature_names() -> list[str]:
    """Names of the 36 `counts` features, `protein-ligand` element pairs, e.g. 'C-CL'."""
    return [f"{p}-{lig}" for p in COUNT_PROTEIN_ELEMENTS for lig in COUNT_LIGAND_ELEMENTS]


def count_features(
    protein_coords: np.ndarray, protein_element: np.ndarray, ligand: Ligand
) -> np.ndarray:
    """(36,) float64 pair counts within `COUNT_CUTOFF` Å, row-major (protein el., ligand el.)."""
    protein_coords = np.asarray(protein_coords, dtype=np.float64)
    counts = np.zeros((len(COUNT_PROTEIN_ELEMENTS), len(COUNT_LIGAND_ELEMENTS)))
    for i, p_el in enumerate(COUNT_PROTEIN_ELEMENTS):
        atoms = protein_coords[protein_element == p_el]
        if len(atoms) == 0:
            continue
        tree = cKDTree(atoms)
        for j, l_el in enumerate(COUNT_LIGAND_ELEMENTS):
            lig = ligand.coords[ligand.element == l_el]
            if len(lig):
                counts[i, j] = tree.query_ball_point(lig, COUNT_CUTOFF, return_length=True).sum()
    return counts.ravel()


def aggregate(latents: np.ndarray, how: str = "sum") -> np.ndarray:
    """Complex vector from (P, D) pocket latents: (D,) sum or mean, or (D+1,) sum and P."""
    latents = np.asarray(latents, dtype=np.float64)
    if how == "sum":
        return latents.sum(axis=0)
    if how == "mean":
        return latents.mean(axis=0)
    if how == "sum+count":
        return np.append(latents.sum(axis=0), latents.shape[0])
    raise InputError("--aggregate", f"unknown aggregation {how!r} (choose {', '.join(AGGREGATES)})")


class EmbeddingCache:
    """Per-complex pocket latents as `<key>.npz` files in `folder` (None: no caching)."""

    def __init__(self, folder: str | Path | None) -> None:
        self.folder = None if folder is None else Path(folder)

    @staticmethod
    def key(
        complex_files: ComplexFiles,
        weights_sha256: str,
        pocket_cutoff: float,
        radius: float = NEIGHBORHOOD_RADIUS,
    ) -> str:
        """Hex sha256 of the cache format, weights, cutoff, radius and input file contents."""
        files = [complex_files.protein, complex_files.pocket, *complex_files.ligands]
        record = {
            "format": CACHE_FORMAT,
            "weights_sha256": weights_sha256,
            "pocket_cutoff": float(pocket_cutoff),
            "radius": float(radius),
            "files": [None if f is None else sha256_file(f) for f in files],
        }
        return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()

    def load(self, key: str, weights_sha256: str) -> np.ndarray | None:
        """(P, D) float32 latents, or None when absent, unreadable or made with other weights."""
        if self.folder is None:
            return None
        path = self.folder / f"{key}.npz"
        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data["weights_sha256"]) != weights_sha256:
                    return None
                return np.asarray(data["latents"], dtype=np.float32)
        except (OSError, KeyError, ValueError):
            return None

    def ligand_source(self, key: str) -> str | None:
        """The ligand file recorded with a cached entry (None if absent or not recorded)."""
        if self.folder is None:
            return None
        try:
            with np.load(self.folder / f"{key}.npz", allow_pickle=False) as data:
                return str(data["ligand_source"])
        except (OSError, KeyError, ValueError):
            return None

    def save(
        self, key: str, weights_sha256: str, latents: np.ndarray, ligand_source: str = ""
    ) -> None:
        """Write atomically (temp file + rename) so concurrent runs never see half a file."""
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=f".{key}.", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez(
                    handle,
                    latents=latents,
                    weights_sha256=np.array(weights_sha256),
                    ligand_source=np.array(ligand_source),
                )
            os.replace(tmp, self.folder / f"{key}.npz")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


@dataclass
class FeatureTable:
    """Features of the complexes that could be featurised, in input order.

    `features[kind]` is (n, d) float64 for each requested kind; `ids`, `labels` (n,) (NaN where
    unlabelled) and `splits` follow the same rows; `ligand_source` says which file was read.
    """

    ids: list[str]
    labels: np.ndarray
    splits: list[str | None]
    features: dict[str, np.ndarray]
    n_pocket: np.ndarray
    ligand_source: list[str]
    failures: list[Failure] = field(default_factory=list)
    n_embedded: int = 0
    n_cached: int = 0
    embed_seconds: float = 0.0

    def rows(self, ids: Sequence[str]) -> np.ndarray:
        """Row numbers of `ids` (each must be present)."""
        where = {complex_id: row for row, complex_id in enumerate(self.ids)}
        return np.array([where[i] for i in ids], dtype=np.int64)


def featurise(
    complexes: Sequence[ComplexFiles],
    kinds: Sequence[str],
    *,
    embedder: EmbedderLike | None = None,
    pocket_cutoff: float = DEFAULT_CUTOFF,
    how: str = "sum",
    cache: EmbeddingCache | None = None,
    progress: Callable[[], None] | None = None,
) -> FeatureTable:
    """Features of each complex for each of `kinds` ("hae", "counts"); failures are collected."""
    unknown = sorted(set(kinds) - set(FEATURE_KINDS))
    if unknown or not kinds:
        raise InputError("--features", f"unknown feature kind(s) {unknown or kinds}")
    if "hae" in kinds and embedder is None:
        raise ValueError("the hae features need an embedder")
    aggregate(np.zeros((1, 1)), how)  # validates `how` before any work
    cache = cache or EmbeddingCache(None)
    radius = float(getattr(embedder, "radius", NEIGHBORHOOD_RADIUS))
    table = FeatureTable([], np.zeros(0), [], {k: [] for k in kinds}, np.zeros(0), [])
    labels, n_pocket = [], []
    for complex_files in complexes:
        stage = "files"
        try:
            key = latents = structure = ligand = None
            if "hae" in kinds:
                key = cache.key(complex_files, embedder.weights_sha256, pocket_cutoff, radius)
                latents = cache.load(key, embedder.weights_sha256)
            if "counts" in kinds or latents is None:
                stage = "ligand"
                ligand = read_ligand(complex_files.ligands)
                stage = "structure"
                structure = read_structure(complex_files.structure_file)
            row: dict[str, np.ndarray] = {}
            if "counts" in kinds:
                stage = "counts"
                row["counts"] = count_features(structure.coords, structure.element, ligand)
            if "hae" in kinds:
                stage = "embedding"
                if latents is None:
                    start = time.perf_counter()
                    pocket = pocket_residues(structure, ligand.coords, pocket_cutoff)
                    if len(pocket) == 0:
                        raise HoloprotError(
                            f"no residue Cα within {pocket_cutoff:g} Å of the ligand"
                        )
                    nbh = extract_neighborhoods(
                        structure,
                        radius,
                        residues=pocket,
                        extra_coords=ligand.coords,
                        extra_element=ligand.element,
                    )
                    latents = np.asarray(embedder.embed_neighborhoods(nbh), dtype=np.float32)
                    if latents.shape != (len(nbh), embedder.latent_dim):
                        raise HoloprotError(f"embedder returned shape {latents.shape}")
                    table.embed_seconds += time.perf_counter() - start
                    table.n_embedded += 1
                    cache.save(key, embedder.weights_sha256, latents, ligand.source)
                else:
                    table.n_cached += 1
                row["hae"] = aggregate(latents, how)
        except (HoloprotError, OSError, ValueError, RuntimeError, KeyError, IndexError) as exc:
            table.failures.append(collect_failure(complex_files.id, stage, exc))
        else:
            table.ids.append(complex_files.id)
            table.splits.append(complex_files.split)
            table.ligand_source.append(
                ligand.source if ligand is not None else cache.ligand_source(key) or "cached"
            )
            labels.append(np.nan if complex_files.label is None else complex_files.label)
            n_pocket.append(len(latents) if latents is not None else -1)
            for kind, values in row.items():
                table.features[kind].append(values)
        if progress is not None:
            progress()
    table.labels = np.asarray(labels, dtype=np.float64)
    table.n_pocket = np.asarray(n_pocket, dtype=np.int64)
    table.features = {
        kind: np.asarray(rows, dtype=np.float64) if rows else np.zeros((0, 0))
        for kind, rows in table.features.items()
    }
    return table
